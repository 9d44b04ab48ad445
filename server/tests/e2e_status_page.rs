//! The status page (`/` in a browser) and `dev.rustpds.server.getStatus`, end to end on both
//! shells: the account's public figures after real writes, an open firehose subscriber, and the
//! background checks run against a played DNS-over-HTTPS resolver and relay; then the page in
//! headless Chromium with JavaScript off, at a phone's and a desktop's width: the whole content,
//! no horizontal overflow, no secret. The screenshots are kept in `target/status-page/`.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use support::account::{create_record, did, login, vars, HANDLE, PASSWORD};
use support::fake_service::{FakeService, Reply};
use support::http::{get, request, upgrade};
use support::relay::Relay;
use support::{start_shell, ShellKind};

/// A DNS-over-HTTPS resolver (JSON API) that knows one TXT record: the test handle's.
fn doh_resolver() -> FakeService {
    FakeService::start(|call| {
        let asked = call.query.contains("name=_atproto.alice.test");
        Reply::json(
            200,
            if asked {
                serde_json::json!({
                    "Status": 0,
                    "Answer": [{
                        "name": "_atproto.alice.test.",
                        "type": 16,
                        "TTL": 300,
                        "data": format!("\"did={}\"", did()),
                    }],
                })
            } else {
                serde_json::json!({ "Status": 3 })
            },
        )
    })
}

fn status_of(base: &str) -> serde_json::Value {
    let res = get(base, "/xrpc/dev.rustpds.server.getStatus");
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    res.json()
}

fn the_status_page_shows_the_account_and_its_checks(kind: ShellKind) {
    let doh = doh_resolver();
    let relay = Relay::start(&[]);
    let server = start_shell(
        kind,
        &[
            ("PDS_DOH_URL", &format!("{}/dns-query", doh.url)),
            ("PDS_RELAYS", &relay.url),
        ],
    );
    let base = server.base();
    let (token, _) = login(base);

    // Writes: a blob in a post, two more posts, a like.
    let (_, uris) = support::account::post_an_image(base, &token, &[7u8; 3000]);
    let post = create_record(
        base,
        &token,
        serde_json::json!({ "$type": "app.bsky.feed.post", "text": "liked", "createdAt": "2026-12-06T00:00:00Z" }),
    );
    create_record(
        base,
        &token,
        serde_json::json!({
            "$type": "app.bsky.feed.like",
            "subject": { "uri": post["uri"], "cid": post["cid"] },
            "createdAt": "2026-12-06T00:00:00Z",
        }),
    );

    // A firehose subscriber stays connected while the status is read.
    let subscriber = upgrade(base, "/xrpc/com.atproto.sync.subscribeRepos").unwrap();

    // The checks run in the background shortly after start; wait for their outcome.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = status_of(base);
        if status["checks"].as_array().unwrap().len() == 3 || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["did"], did());
    assert_eq!(status["handle"], HANDLE);
    assert_eq!(status["status"], "active");
    assert_eq!(status["records"], 5);
    assert_eq!(
        status["collections"],
        serde_json::json!([
            { "collection": "app.bsky.feed.post", "records": 4 },
            { "collection": "app.bsky.feed.like", "records": 1 },
        ])
    );
    assert_eq!(
        status["blobs"],
        serde_json::json!({ "count": 1, "bytes": 3000 })
    );
    assert_eq!(status["firehose"]["subscribers"], 1, "{status}");
    let latest = get(
        base,
        &format!("/xrpc/com.atproto.sync.getLatestCommit?did={}", did()),
    )
    .json();
    let commits = status["recentCommits"].as_array().unwrap();
    assert_eq!(commits[0]["rev"], latest["rev"], "newest first");
    assert_eq!(commits[0]["ops"][0]["action"], "create");
    assert!(commits[0]["ops"][0]["path"]
        .as_str()
        .unwrap()
        .starts_with("app.bsky.feed.like/"));
    assert!(status["firehose"]["lastSeq"].as_i64().unwrap() >= commits[0]["seq"].as_i64().unwrap());
    let days = status["commitsPerDay"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    let counted: i64 = days.iter().map(|d| d["commits"].as_i64().unwrap()).sum();
    assert!(counted >= 5, "{days:?}");

    // The checks: the handle resolves through the played resolver; the relay crawls this host;
    // the DID document of did:web:localhost is served on port 80, where nothing listens here.
    let checks = status["checks"].as_array().unwrap();
    let check = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check in {status}"))
            .clone()
    };
    assert_eq!(check("handle")["level"], "ok", "{status}");
    assert_eq!(
        check("handle")["summary"],
        format!("alice.test resolves to {}", did())
    );
    let relay_check = check(&format!("relay:{}", relay.url));
    assert_eq!(relay_check["level"], "ok", "{relay_check}");
    assert!(relay_check["summary"]
        .as_str()
        .unwrap()
        .contains("crawls this host (last seq 42)"));
    assert!(relay.host_status_reads() >= 1);
    let document = check("didDocument");
    assert_eq!(document["level"], "problem", "{document}");
    assert!(document["fix"]
        .as_str()
        .unwrap()
        .contains("/.well-known/did.json"));

    // Anything but a browser gets the one line at the edge; a browser the page.
    let plain = get(base, "/");
    assert_eq!(plain.status, 200);
    assert!(plain
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let page = request(base, "GET", "/", &[("accept", "text/html")], b"");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .starts_with("default-src 'none'"));
    let html = String::from_utf8(page.body.clone()).unwrap();
    assert!(!html.contains("<script"), "no script on the page");

    // In Chromium with JavaScript off, at both widths.
    let name = match kind {
        ShellKind::Native => "native",
        ShellKind::Worker => "worker",
    };
    let out_dir = support::worker::project_root().join("target/status-page");
    let seen = support::oracle::run_node(
        "browser-page.mjs",
        &serde_json::json!({ "url": format!("{base}/"), "outDir": out_dir, "name": name }),
    );
    let secrets: Vec<String> = vars()
        .iter()
        .filter(|(k, _)| {
            [
                pds::config::vars::SIGNING_KEY,
                pds::config::vars::PLC_ROTATION_KEY,
                pds::config::vars::PASSWORD_HASH,
                pds::config::vars::JWT_SECRET,
            ]
            .contains(&k.as_str())
        })
        .map(|(_, v)| v.clone())
        .chain([PASSWORD.to_owned(), token.clone()])
        .collect();
    assert!(secrets.len() >= 5, "the secrets looked for");
    for view in seen["views"].as_array().unwrap() {
        let label = view["label"].as_str().unwrap();
        assert_eq!(view["status"], 200, "{label}");
        assert_eq!(view["contentType"], "text/html; charset=utf-8", "{label}");
        let width = view["width"].as_i64().unwrap();
        assert!(
            view["scrollWidth"].as_i64().unwrap() <= width,
            "{label}: content {} px wide in a {width} px viewport",
            view["scrollWidth"]
        );
        let text = view["text"].as_str().unwrap();
        for shown in [
            format!("@{HANDLE}"),
            did(),
            "active".to_owned(),
            "app.bsky.feed.post".to_owned(),
            "app.bsky.feed.like".to_owned(),
            "2.9 KiB".to_owned(),
            "subscribers".to_owned(),
            "crawls this host (last seq 42)".to_owned(),
            format!("alice.test resolves to {}", did()),
            "Commits per day".to_owned(),
            "commits in the last 30 days".to_owned(),
            latest["rev"].as_str().unwrap().to_owned(),
            uris[0].rsplit('/').next().unwrap().to_owned(),
        ] {
            assert!(
                text.contains(&shown),
                "{label}: {shown:?} not in the page:\n{text}"
            );
        }
        let html = view["html"].as_str().unwrap();
        assert!(html.contains("<svg"), "{label}: the chart");
        for secret in &secrets {
            assert!(
                !html.contains(secret.as_str()),
                "{label}: a secret on the page"
            );
        }
        let shot = std::fs::metadata(view["screenshot"].as_str().unwrap()).unwrap();
        assert!(shot.len() > 1000, "{label}: a screenshot");
    }
    drop(subscriber);
}

on_both_kinds!(the_status_page_shows_the_account_and_its_checks);
