//! The status page: what `dev.rustpds.server.getStatus` answers, read from kept counts and
//! stored check outcomes (a few row reads and the newest commit events; no outbound call), and
//! the same as a self-contained HTML page (no script, one inline style sheet, an SVG chart).

use crate::oauth::page::escape as esc;
use pds_api::dev::rustpds::server::get_status::{
    BlobUsage, Check, CheckLevel, CollectionCount, CommitOp, CommitOpAction, DayCount, Firehose,
    Output, OutputStatus, RecentCommit,
};
use pds_api::runtime::lex::{Datetime, Did, Handle, Nsid, Tid};
use pds_api::runtime::xrpc::XrpcError;

use crate::account::Account;
use crate::config::Config;
use crate::data::{cbor, Value};
use crate::http::HttpResponse;
use crate::storage::account::{get_account, AccountStatus};
use crate::storage::status::{self as stored, DAY_MS};

/// How many of the newest commits the page lists.
pub const RECENT_COMMITS: u32 = 8;
/// How many days the commits-per-day chart covers, today included.
pub const CHART_DAYS: i64 = 30;
/// The ops listed per commit; a commit with more says how many more.
const OPS_SHOWN: usize = 5;

/// The account's public status, as of `now_ms`, with `subscribers` firehose sockets open.
pub fn snapshot(
    config: &Config,
    account: &Account,
    subscribers: usize,
    now_ms: i64,
) -> Result<Output, XrpcError> {
    let db = account.sql.as_ref();
    let internal = |e: crate::storage::StorageError| XrpcError::internal_message(e.to_string());
    let status = get_account(db)?.map_or(AccountStatus::Active, |a| a.status);
    let tally = crate::storage::repo_store::tally(db).map_err(internal)?;
    let collections = stored::collection_counts(db)
        .map_err(internal)?
        .into_iter()
        .filter_map(|(collection, records)| {
            Some(CollectionCount {
                collection: Nsid::new(collection).ok()?,
                records,
            })
        })
        .collect();
    let checks = stored::load_checks(db)
        .map_err(internal)?
        .into_iter()
        .map(|c| Check {
            name: c.name,
            level: CheckLevel::from(c.level),
            summary: c.summary,
            fix: c.fix,
            checked_at: Datetime::from_unix_millis(c.checked_ms),
        })
        .collect();
    let recent_commits = crate::storage::sequencer::newest_events(db, "commit", RECENT_COMMITS)
        .map_err(internal)?
        .into_iter()
        .filter_map(|event| recent_commit(event.seq, event.time_ms, &event.event))
        .collect();
    let today = now_ms.div_euclid(DAY_MS);
    let first_day = today - (CHART_DAYS - 1);
    let counted = stored::commits_per_day(db, first_day).map_err(internal)?;
    let commits_per_day = (first_day..=today)
        .map(|day| DayCount {
            day: Datetime::from_unix_millis(day * DAY_MS).as_str()[..10].to_owned(),
            commits: counted
                .iter()
                .find(|(d, _)| *d == day)
                .map_or(0, |(_, n)| *n),
        })
        .collect();
    Ok(Output {
        did: Did::new(config.did.as_str().to_owned()).map_err(|e| internal_syntax(&e))?,
        handle: Handle::new(config.handle.as_str().to_owned()).ok(),
        status: OutputStatus::from(status.as_str().to_owned()),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        records: tally.records,
        collections,
        blobs: BlobUsage {
            count: tally.stored_blobs,
            bytes: tally.stored_blob_bytes,
        },
        firehose: Firehose {
            subscribers: i64::try_from(subscribers).unwrap_or(i64::MAX),
            last_seq: crate::storage::latest_seq(db).map_err(internal)?,
        },
        checks,
        recent_commits,
        commits_per_day,
    })
}

fn internal_syntax(e: &dyn std::fmt::Display) -> XrpcError {
    XrpcError::internal_message(e.to_string())
}

/// A stored `#commit` event as the page lists it; `None` for one it cannot read.
fn recent_commit(seq: i64, time_ms: i64, event: &[u8]) -> Option<RecentCommit> {
    let Ok(Value::Map(body)) = cbor::decode(event) else {
        return None;
    };
    let rev = match body.get("rev") {
        Some(Value::String(rev)) => Tid::new(rev.clone()).ok()?,
        _ => return None,
    };
    let ops = match body.get("ops") {
        Some(Value::Array(ops)) => ops
            .iter()
            .filter_map(|op| match op {
                Value::Map(op) => match (op.get("action"), op.get("path")) {
                    (Some(Value::String(action)), Some(Value::String(path))) => Some(CommitOp {
                        action: CommitOpAction::from(action.clone()),
                        path: path.clone(),
                    }),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some(RecentCommit {
        seq,
        rev,
        time: Datetime::from_unix_millis(time_ms),
        ops,
    })
}

/// The status page's answer: the HTML, never cached (it changes with every commit), with a
/// content security policy that allows no script and nothing from elsewhere.
pub fn page_response(status: &Output, now_ms: i64) -> HttpResponse {
    let mut res = HttpResponse::bytes(
        200,
        "text/html; charset=utf-8",
        render(status, now_ms).into_bytes(),
    );
    res.headers
        .push(("cache-control".into(), "no-cache".into()));
    res.headers.push((
        "content-security-policy".into(),
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
            .into(),
    ));
    res.headers
        .push(("x-content-type-options".into(), "nosniff".into()));
    res
}

/// A byte count for people: `1.5 MiB`.
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A datetime as the page shows it: `2026-12-06 18:04 UTC`.
fn when(datetime: &Datetime) -> String {
    let s = datetime.as_str();
    format!("{} {} UTC", &s[..10], &s[11..16])
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1b1f24;background:#f6f7f9}\
main{max-width:46rem;margin:0 auto;padding:1rem}\
h1{font-size:1.5rem;margin:.5rem 0 0;overflow-wrap:anywhere}\
h2{font-size:1.1rem;margin:0 0 .5rem}\
section{background:#fff;border:1px solid #dde1e6;border-radius:.6rem;padding:1rem;margin:1rem 0}\
.did,code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em;overflow-wrap:anywhere;word-break:break-all}\
.muted{color:#5c6670}\
.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.85rem;font-weight:600}\
.ok{background:#dcf5e3;color:#11632b}.note{background:#e8eefc;color:#2346a0}.problem{background:#fde2e1;color:#9d1c17}\
ul{list-style:none;padding:0;margin:0}\
li{padding:.4rem 0;border-top:1px solid #eef0f3;overflow-wrap:anywhere}\
li:first-child{border-top:0}\
table{width:100%;border-collapse:collapse;table-layout:fixed}\
td{padding:.3rem 0;border-top:1px solid #eef0f3;overflow-wrap:anywhere;word-break:break-all}\
td.n{text-align:right;width:7rem;word-break:normal}\
.figures{display:flex;flex-wrap:wrap;gap:1rem}\
.figure{flex:1 1 8rem}\
.figure b{display:block;font-size:1.4rem}\
svg{display:block;width:100%;height:6rem}\
.axis{display:flex;justify-content:space-between;font-size:.8rem}\
.fix{display:block;margin-top:.2rem;font-size:.9rem}\
footer{font-size:.85rem;color:#5c6670;text-align:center;padding:1rem 0}";

/// The page, from the status and the time it is shown.
pub fn render(status: &Output, now_ms: i64) -> String {
    let handle = status.handle.as_ref().map_or("(no handle)", |h| h.as_str());
    let mut html = String::with_capacity(16 * 1024);
    html.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    html.push_str(&format!(
        "<title>{} · Personal Data Server</title><style>{STYLE}</style></head><body><main>",
        esc(handle)
    ));
    let account_level = match status.status {
        OutputStatus::Active => "ok",
        _ => "problem",
    };
    html.push_str(&format!(
        "<header><p class=\"muted\">AT Protocol Personal Data Server</p><h1>@{}</h1>\
         <p class=\"did\">{}</p><p><span class=\"badge {account_level}\">{}</span></p></header>",
        esc(handle),
        esc(status.did.as_str()),
        esc(status.status.as_str()),
    ));
    checks_section(&mut html, &status.checks);
    html.push_str(&format!(
        "<section><h2>Repository</h2><div class=\"figures\">\
         <div class=\"figure\"><b>{}</b>records</div>\
         <div class=\"figure\"><b>{}</b>blobs</div>\
         <div class=\"figure\"><b>{}</b>of blobs</div></div>",
        status.records,
        status.blobs.count,
        human_bytes(status.blobs.bytes),
    ));
    if !status.collections.is_empty() {
        html.push_str("<table aria-label=\"Records by collection\">");
        for c in &status.collections {
            html.push_str(&format!(
                "<tr><td><code>{}</code></td><td class=\"n\">{}</td></tr>",
                esc(c.collection.as_str()),
                c.records
            ));
        }
        html.push_str("</table>");
    }
    html.push_str("</section>");
    html.push_str(&format!(
        "<section><h2>Firehose</h2><div class=\"figures\">\
         <div class=\"figure\"><b>{}</b>subscribers</div>\
         <div class=\"figure\"><b>{}</b>last sequence number</div></div></section>",
        status.firehose.subscribers,
        status
            .firehose
            .last_seq
            .map_or("none yet".to_owned(), |s| s.to_string()),
    ));
    chart_section(&mut html, &status.commits_per_day);
    commits_section(&mut html, &status.recent_commits);
    html.push_str(&format!(
        "<footer>rust-pds {} · public information only · shown {}</footer></main></body></html>",
        esc(&status.version),
        when(&Datetime::from_unix_millis(now_ms)),
    ));
    html
}

fn checks_section(html: &mut String, checks: &[Check]) {
    html.push_str("<section><h2>Checks</h2>");
    if checks.is_empty() {
        html.push_str(
            "<p class=\"muted\">Not checked yet. Background maintenance checks the handle, the \
             DID document and the relays shortly after the PDS starts, then every hour.</p>",
        );
    } else {
        html.push_str("<ul>");
        for c in checks {
            let level = match c.level {
                CheckLevel::Ok => "ok",
                CheckLevel::Note => "note",
                _ => "problem",
            };
            html.push_str(&format!(
                "<li><span class=\"badge {level}\">{level}</span> {}",
                esc(&c.summary)
            ));
            if let Some(fix) = &c.fix {
                html.push_str(&format!(
                    "<span class=\"fix muted\">Fix: {}</span>",
                    esc(fix)
                ));
            }
            html.push_str("</li>");
        }
        html.push_str("</ul>");
        if let Some(latest) = checks
            .iter()
            .map(|c| &c.checked_at)
            .max_by_key(|d| d.as_str())
        {
            html.push_str(&format!(
                "<p class=\"muted\">Checked {}.</p>",
                esc(&when(latest))
            ));
        }
    }
    html.push_str("</section>");
}

/// The commits-per-day bar chart, as inline SVG with a text summary (read by screen readers,
/// and the whole story without the picture).
fn chart_section(html: &mut String, days: &[DayCount]) {
    let total: i64 = days.iter().map(|d| d.commits).sum();
    let busiest = days.iter().max_by_key(|d| d.commits);
    let summary = match busiest {
        Some(day) if total > 0 => format!(
            "{total} commits in the last {} days; the busiest day was {} with {}.",
            days.len(),
            day.day,
            day.commits
        ),
        _ => format!("No commits in the last {} days.", days.len()),
    };
    // Drawn in a 300 x 80 box stretched to the section's width and a fixed height (bars scale
    // well; text would not, so the dates are HTML below it).
    let (width, height) = (300.0_f64, 80.0_f64);
    let max = busiest.map_or(0, |d| d.commits).max(1) as f64;
    let slot = width / days.len().max(1) as f64;
    html.push_str(&format!(
        "<section><h2>Commits per day</h2><svg viewBox=\"0 0 {width} {height}\" \
         preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{}\">",
        esc(&summary)
    ));
    html.push_str(&format!(
        "<line x1=\"0\" y1=\"{height}\" x2=\"{width}\" y2=\"{height}\" stroke=\"#c4cad1\" \
         stroke-width=\"1\"/>"
    ));
    for (i, day) in days.iter().enumerate() {
        let bar = if day.commits > 0 {
            (day.commits as f64 / max * (height - 4.0)).max(1.5)
        } else {
            0.0
        };
        html.push_str(&format!(
            "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{bar:.2}\" fill=\"#3a6fd8\">\
             <title>{}: {}</title></rect>",
            i as f64 * slot + slot * 0.15,
            height - bar,
            slot * 0.7,
            esc(&day.day),
            day.commits
        ));
    }
    html.push_str("</svg>");
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        html.push_str(&format!(
            "<div class=\"axis muted\"><span>{}</span><span>{}</span></div>",
            esc(&first.day),
            esc(&last.day)
        ));
    }
    html.push_str(&format!(
        "<p class=\"muted\">{}</p></section>",
        esc(&summary)
    ));
}

fn commits_section(html: &mut String, commits: &[RecentCommit]) {
    html.push_str("<section><h2>Last commits</h2>");
    if commits.is_empty() {
        html.push_str("<p class=\"muted\">No commits on the firehose yet.</p></section>");
        return;
    }
    html.push_str("<ul>");
    for c in commits {
        html.push_str(&format!(
            "<li><span class=\"muted\">#{} · {} · rev <code>{}</code></span>",
            c.seq,
            esc(&when(&c.time)),
            esc(c.rev.as_str())
        ));
        for op in c.ops.iter().take(OPS_SHOWN) {
            html.push_str(&format!(
                "<br>{} <code>{}</code>",
                esc(op.action.as_str()),
                esc(&op.path)
            ));
        }
        if c.ops.len() > OPS_SHOWN {
            html.push_str(&format!(
                "<br><span class=\"muted\">and {} more</span>",
                c.ops.len() - OPS_SHOWN
            ));
        }
        html.push_str("</li>");
    }
    html.push_str("</ul></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_bytes_read_well() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(200 * 1024 * 1024), "200.0 MiB");
    }
}
