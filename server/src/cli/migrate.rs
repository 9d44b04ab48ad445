//! `pds migrate`: moves an account from its current PDS onto this one, the standard way (the
//! reference's and goat's steps), as a state machine over what both servers hold: each step
//! first asks whether it is already done, so running the command again after an interruption
//! goes on where it stopped. There is no local state file.
//!
//! The steps: resolve the account and its PDS; sign in there (with the account password, and an
//! email code if it asks); create the account here with a service token from there; import the
//! repository (streamed from one server to the other); transfer the missing blobs in parallel,
//! each checked against its CID, retried with backoff; copy the preferences; move the identity
//! (a PLC operation signed there, checked here, submitted here); check and activate here;
//! deactivate there.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use super::{is_error, pds_endpoint, Pds};

/// What `pds migrate` was asked to do.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// The account: its handle or DID.
    pub from: String,
    /// This PDS's URL.
    pub url: String,
    /// The current PDS's URL, if not the one the DID document names.
    pub old_pds: Option<String>,
    /// The PLC directory (for did:plc accounts).
    pub plc_url: String,
    /// How many blobs move at once.
    pub parallel: usize,
    /// Only report what would move.
    pub dry_run: bool,
    /// Whether to deactivate the account on the old PDS at the end (`None`: ask).
    pub deactivate_old: Option<bool>,
    /// The email the new PDS's `createAccount` is given (the reference PDS wants one).
    pub email: Option<String>,
    /// The account's password on the old PDS (`None`: asked for).
    pub old_password: Option<String>,
    /// Its password on the new PDS (`None`: the old one).
    pub new_password: Option<String>,
}

/// How the command asks its user for what it must not take from arguments.
pub trait Ask {
    /// A secret (a password), not echoed.
    fn secret(&self, prompt: &str) -> Result<String, String>;
    /// A line of text (a code from an email).
    fn line(&self, prompt: &str) -> Result<String, String>;
    /// A yes or no question.
    fn confirm(&self, prompt: &str) -> Result<bool, String>;
}

/// What a migration moved, for the closing report.
#[derive(Debug, Default, Clone)]
pub struct Moved {
    /// Records in the imported repository (0 when the import was already done).
    pub records: i64,
    /// Bytes of the repository's CAR streamed.
    pub repo_bytes: u64,
    /// Blobs transferred by this run.
    pub blobs: usize,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Time spent on blobs.
    pub blob_time: Duration,
    /// Blob transfers tried again (after a network error, a 5xx or a 429).
    pub retries: u32,
}

const CREATE_ACCOUNT: &str = "com.atproto.server.createAccount";
/// How often a failed blob transfer is tried in all.
const BLOB_ATTEMPTS: u32 = 5;
/// The longest wait between tries, whatever a server asks.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Runs the migration; prints its steps on standard error.
pub async fn migrate(opts: &MigrateOptions, ask: &dyn Ask) -> Result<Moved, String> {
    let http = stream_client()?;
    let did = resolve_did(&http, opts).await?;
    let doc = did_document(&http, &did, &opts.plc_url).await?;
    let old_url = match &opts.old_pds {
        Some(url) => url.clone(),
        None => {
            pds_endpoint(&doc).ok_or_else(|| format!("the DID document of {did} names no PDS"))?
        }
    };
    say(&format!("account {did}, now on {old_url}"));

    let old = Pds::new(&old_url)?;
    let old_password = match &opts.old_password {
        Some(p) => p.clone(),
        None => ask.secret("Password on the old PDS: ")?,
    };
    match old.sign_in(&did, &old_password).await {
        Ok(()) => {}
        Err(e) if is_error(&e, "AuthFactorTokenRequired") => {
            let code = ask.line("The old PDS emailed a sign-in code; enter it: ")?;
            old.sign_in_with(&did, &old_password, Some(code.trim()))
                .await?;
        }
        Err(e) => return Err(e),
    }
    let ours = Pds::new(&opts.url)?;

    if opts.dry_run {
        let result = async {
            let status = old.query("com.atproto.server.checkAccountStatus").await?;
            let cids = old.list_blobs(&did).await?;
            let (bytes, unknown) = blob_sizes(&http, &old, &did, cids.clone(), opts.parallel).await;
            let unknown = if unknown == 0 {
                String::new()
            } else {
                format!(", {unknown} of them of unknown size")
            };
            say(&format!(
                "would move {} records ({} repository blocks) and {} blobs of {bytes} bytes \
                 ({:.1} MiB{unknown}) from {old_url} to {}",
                status["indexedRecords"],
                status["repoBlocks"],
                cids.len(),
                mib(bytes),
                opts.url
            ));
            Ok::<(), String>(())
        }
        .await;
        let _ = old.sign_out().await;
        return result.map(|()| Moved::default());
    }

    let mut moved = Moved::default();
    let result = async {
        let password = opts
            .new_password
            .clone()
            .unwrap_or_else(|| old_password.clone());
        account_here(
            &http,
            &old,
            &ours,
            &did,
            &doc,
            &password,
            opts.email.as_deref(),
        )
        .await?;
        let status = ours.query("com.atproto.server.checkAccountStatus").await?;
        if status["activated"] == true {
            say("the account is already active here");
        } else {
            import_repo(&http, &old, &ours, &did, &mut moved).await?;
            transfer_blobs(&http, &old, &ours, &did, opts.parallel, &mut moved).await?;
            let prefs = old.query("app.bsky.actor.getPreferences").await?;
            ours.procedure("app.bsky.actor.putPreferences", prefs)
                .await?;
            say("preferences copied");
            move_identity(&http, &old, &ours, &did, &opts.plc_url, &old_password, ask).await?;
            activate(&ours).await?;
        }
        let session = old.query("com.atproto.server.getSession").await?;
        if session["active"] == false {
            say("the account is already deactivated on the old PDS");
            return Ok(());
        }
        let deactivate = match opts.deactivate_old {
            Some(answer) => answer,
            None => ask.confirm("Deactivate the account on the old PDS now? [y/N] ")?,
        };
        if deactivate {
            old.procedure(
                "com.atproto.server.deactivateAccount",
                serde_json::json!({}),
            )
            .await?;
            say("deactivated on the old PDS (nothing is deleted there)");
        } else {
            say("the account stays active on the old PDS: deactivate it there when ready");
        }
        Ok::<(), String>(())
    }
    .await;
    let _ = old.sign_out().await;
    let _ = ours.sign_out().await;
    result.map(|()| moved)
}

/// Prints a step's news.
fn say(line: &str) {
    eprintln!("pds migrate: {line}");
}

/// A client for streamed transfers: no overall timeout (a repository or a blob may take long),
/// but a bounded wait to connect.
fn stream_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| e.to_string())
}

/// The DID of `opts.from`: itself, or the DID its handle resolves to (through the old PDS when
/// one is given, else the handle's `/.well-known/atproto-did`).
async fn resolve_did(http: &reqwest::Client, opts: &MigrateOptions) -> Result<String, String> {
    if opts.from.starts_with("did:") {
        return Ok(opts.from.clone());
    }
    let handle = opts.from.trim_start_matches('@');
    if let Some(old) = &opts.old_pds {
        let resolved = Pds::new(old)?
            .query_with("com.atproto.identity.resolveHandle", &[("handle", handle)])
            .await?;
        return resolved["did"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{handle} resolves to no DID"));
    }
    let url = format!("https://{handle}/.well-known/atproto-did");
    let text = get_text(http, &url).await?;
    let did = text.trim();
    if did.starts_with("did:") {
        Ok(did.to_owned())
    } else {
        Err(format!(
            "{url} names no DID: give the account's DID instead of its handle"
        ))
    }
}

async fn get_text(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status().as_u16()));
    }
    response.text().await.map_err(|e| format!("{url}: {e}"))
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(&get_text(http, url).await?).map_err(|e| format!("{url}: {e}"))
}

/// The DID document of `did` (did:plc from the directory, did:web from its host).
async fn did_document(
    http: &reqwest::Client,
    did: &str,
    plc_url: &str,
) -> Result<serde_json::Value, String> {
    if did.starts_with("did:plc:") {
        get_json(http, &format!("{}/{did}", plc_url.trim_end_matches('/'))).await
    } else if let Some(host) = did.strip_prefix("did:web:") {
        let host = host.replace("%3A", ":");
        get_json(http, &format!("https://{host}/.well-known/did.json")).await
    } else {
        Err(format!("{did}: only did:plc and did:web accounts can move"))
    }
}

/// The account here: signed in if it exists already, else created with a service token from
/// the old PDS (and then signed in).
async fn account_here(
    http: &reqwest::Client,
    old: &Pds,
    ours: &Pds,
    did: &str,
    doc: &serde_json::Value,
    password: &str,
    email: Option<&str>,
) -> Result<(), String> {
    if ours.sign_in(did, password).await.is_ok() {
        say("the account exists here already");
        return Ok(());
    }
    let described = ours.query("com.atproto.server.describeServer").await?;
    let service_did = described["did"]
        .as_str()
        .ok_or("describeServer names no service DID")?;
    let token = old
        .query_with(
            "com.atproto.server.getServiceAuth",
            &[("aud", service_did), ("lxm", CREATE_ACCOUNT)],
        )
        .await?;
    let token = token["token"]
        .as_str()
        .ok_or("getServiceAuth answered no token")?;
    let handle = doc["alsoKnownAs"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|aka| aka.as_str()?.strip_prefix("at://"))
        .ok_or("the DID document names no handle")?;
    let mut input = serde_json::json!({ "did": did, "handle": handle, "password": password });
    if let Some(email) = email {
        input["email"] = email.into();
    }
    let url = format!("{}/xrpc/{CREATE_ACCOUNT}", ours.base());
    let response = http
        .post(&url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(input.to_string())
        .send()
        .await
        .map_err(|e| format!("{CREATE_ACCOUNT}: {e}"))?;
    let created = answer_json(CREATE_ACCOUNT, response).await?;
    ours.adopt_session(&created)?;
    say("account created here (deactivated until the end)");
    Ok(())
}

/// A JSON answer, or the XRPC error it carries as a line.
async fn answer_json(nsid: &str, response: reqwest::Response) -> Result<serde_json::Value, String> {
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| format!("{nsid}: {e}"))?;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status == 200 {
        return Ok(json);
    }
    Err(format!(
        "{nsid}: {status} {}: {}",
        json["error"].as_str().unwrap_or("error"),
        json["message"].as_str().unwrap_or("")
    ))
}

/// Streams the repository from the old PDS into this one, unless this one holds its tree.
async fn import_repo(
    http: &reqwest::Client,
    old: &Pds,
    ours: &Pds,
    did: &str,
    moved: &mut Moved,
) -> Result<(), String> {
    // The same tree here (the account's data, whichever key signed its commit): done.
    let theirs = old.head_commit(did).await?.data;
    if ours.head_commit(did).await.ok().map(|c| c.data) == Some(theirs) {
        say("repository: already imported");
        return Ok(());
    }
    let started = Instant::now();
    let source = format!("{}/xrpc/com.atproto.sync.getRepo?did={did}", old.base());
    let mut request = http.get(&source);
    if let Some(token) = old.access_token() {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| format!("getRepo: {e}"))?;
    if response.status().as_u16() != 200 {
        return Err(answer_json("com.atproto.sync.getRepo", response)
            .await
            .err()
            .unwrap_or_else(|| "getRepo failed".into()));
    }
    let (body, counted) = counted_body(response);
    let target = format!("{}/xrpc/com.atproto.repo.importRepo", ours.base());
    let response = http
        .post(&target)
        .bearer_auth(ours.access_token().unwrap_or_default())
        .header("content-type", "application/vnd.ipld.car")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("importRepo: {e}"))?;
    if response.status().as_u16() != 200 {
        return Err(answer_json("com.atproto.repo.importRepo", response)
            .await
            .err()
            .unwrap_or_else(|| "importRepo failed".into()));
    }
    let status = ours.query("com.atproto.server.checkAccountStatus").await?;
    moved.records = status["indexedRecords"].as_i64().unwrap_or(0);
    moved.repo_bytes = counted.load(std::sync::atomic::Ordering::Relaxed);
    say(&format!(
        "repository imported: {} records, {:.1} MiB in {:.1} s",
        moved.records,
        mib(moved.repo_bytes),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// `response`'s body, streamed on as another request's, and the count of its bytes so far.
fn counted_body(
    response: reqwest::Response,
) -> (reqwest::Body, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use futures_util::StreamExt;
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = counted.clone();
    let stream = response.bytes_stream().map(move |chunk| {
        if let Ok(bytes) = &chunk {
            counter.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        chunk
    });
    (reqwest::Body::wrap_stream(stream), counted)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Every blob the records here reference and this PDS lacks (`listMissingBlobs`, paged).
async fn missing_blobs(ours: &Pds) -> Result<Vec<String>, String> {
    let mut cids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut params = vec![("limit", "500")];
        if let Some(c) = &cursor {
            params.push(("cursor", c.as_str()));
        }
        let page = ours
            .query_with("com.atproto.repo.listMissingBlobs", &params)
            .await?;
        let blobs = page["blobs"].as_array().cloned().unwrap_or_default();
        cids.extend(
            blobs
                .iter()
                .filter_map(|b| b["cid"].as_str().map(str::to_owned)),
        );
        match page["cursor"].as_str() {
            Some(next) if !blobs.is_empty() => cursor = Some(next.to_owned()),
            _ => return Ok(cids),
        }
    }
}

/// Moves the missing blobs, `parallel` at a time, with a progress bar on a terminal (a line per
/// blob otherwise). Blobs that still fail after their retries are listed, and the step fails.
async fn transfer_blobs(
    http: &reqwest::Client,
    old: &Pds,
    ours: &Pds,
    did: &str,
    parallel: usize,
    moved: &mut Moved,
) -> Result<(), String> {
    let missing = missing_blobs(ours).await?;
    if missing.is_empty() {
        say("blobs: none missing");
        return Ok(());
    }
    let total = missing.len();
    say(&format!("blobs: {total} to transfer, {parallel} at a time"));
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} blobs, {msg} [{elapsed_precise}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let started = Instant::now();
    let ends = Ends {
        old_base: old.base().to_owned(),
        old_token: old.access_token(),
        our_base: ours.base().to_owned(),
        our_token: ours.access_token().unwrap_or_default(),
        did: did.to_owned(),
    };
    let mut queue = missing.into_iter();
    let mut running = tokio::task::JoinSet::new();
    let mut failures = Vec::new();
    let mut done = 0usize;
    loop {
        while running.len() < parallel.max(1) {
            let Some(cid) = queue.next() else { break };
            let (http, ends) = (http.clone(), ends.clone());
            running.spawn(async move {
                let result = transfer_blob(&http, &ends, &cid).await;
                (cid, result)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (cid, result) = joined.map_err(|e| format!("a blob transfer stopped: {e}"))?;
        done += 1;
        match result {
            Ok((bytes, retries)) => {
                moved.blobs += 1;
                moved.blob_bytes += bytes;
                moved.retries += retries;
                match &bar {
                    Some(bar) => {
                        bar.inc(1);
                        bar.set_message(format!("{:.1} MiB", mib(moved.blob_bytes)));
                    }
                    None => say(&format!("blob {done}/{total} {cid} ({bytes} bytes)")),
                }
            }
            Err(e) => failures.push(format!("{cid}: {e}")),
        }
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    moved.blob_time = started.elapsed();
    say(&format!(
        "blobs: {} transferred, {:.1} MiB in {:.1} s, {} retries",
        moved.blobs,
        mib(moved.blob_bytes),
        moved.blob_time.as_secs_f64(),
        moved.retries
    ));
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} blobs failed (run again to retry them):\n  {}",
            failures.len(),
            failures.join("\n  ")
        ))
    }
}

/// Both servers, as the blob transfers need them.
#[derive(Clone)]
struct Ends {
    old_base: String,
    old_token: Option<String>,
    our_base: String,
    our_token: String,
    did: String,
}

/// Why one try of a transfer failed: worth another try after a wait, or not.
enum Failure {
    Retry(Duration, String),
    Fatal(String),
}

/// One blob, from the old PDS to this one, streamed; tried again after transient failures
/// (network errors, 5xx, 429 after the wait the server asks for). Its size, and how many
/// times it was tried again.
/// A `com.atproto.sync.getBlob` request for `did`'s blob `cid` at `base`, with `token` if any.
fn get_blob(
    http: &reqwest::Client,
    method: reqwest::Method,
    base: &str,
    token: Option<&str>,
    did: &str,
    cid: &str,
) -> reqwest::RequestBuilder {
    let request = http.request(
        method,
        format!("{base}/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}"),
    );
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// The bytes of the blobs `cids` on the old PDS, from the length each `getBlob` answer declares
/// (a HEAD, so no blob is read), `parallel` at a time; and how many declared none.
async fn blob_sizes(
    http: &reqwest::Client,
    old: &Pds,
    did: &str,
    cids: Vec<String>,
    parallel: usize,
) -> (u64, usize) {
    let mut queue = cids.into_iter();
    let mut running = tokio::task::JoinSet::new();
    let (mut bytes, mut unknown) = (0u64, 0usize);
    loop {
        while running.len() < parallel.max(1) {
            let Some(cid) = queue.next() else { break };
            let request = get_blob(
                http,
                reqwest::Method::HEAD,
                old.base(),
                old.access_token().as_deref(),
                did,
                &cid,
            );
            running.spawn(async move {
                let response = request.send().await.ok()?;
                if !response.status().is_success() {
                    return None;
                }
                response
                    .headers()
                    .get("content-length")?
                    .to_str()
                    .ok()?
                    .parse::<u64>()
                    .ok()
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        match joined.ok().flatten() {
            Some(n) => bytes += n,
            None => unknown += 1,
        }
    }
    (bytes, unknown)
}

async fn transfer_blob(
    http: &reqwest::Client,
    ends: &Ends,
    cid: &str,
) -> Result<(u64, u32), String> {
    let mut last = String::new();
    for attempt in 0..BLOB_ATTEMPTS {
        match transfer_once(http, ends, cid).await {
            Ok(bytes) => return Ok((bytes, attempt)),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(wait, e)) => {
                last = e;
                if attempt + 1 < BLOB_ATTEMPTS {
                    let backoff = Duration::from_millis(500 << attempt);
                    tokio::time::sleep(wait.max(backoff).min(MAX_BACKOFF)).await;
                }
            }
        }
    }
    Err(format!("{last} (after {BLOB_ATTEMPTS} tries)"))
}

async fn transfer_once(http: &reqwest::Client, ends: &Ends, cid: &str) -> Result<u64, Failure> {
    let response = get_blob(
        http,
        reqwest::Method::GET,
        &ends.old_base,
        ends.old_token.as_deref(),
        &ends.did,
        cid,
    )
    .send()
    .await
    .map_err(|e| Failure::Retry(Duration::ZERO, format!("getBlob: {e}")))?;
    check_transfer("getBlob", &response)?;
    let mime = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let (body, counted) = counted_body(response);
    let response = http
        .post(format!(
            "{}/xrpc/com.atproto.repo.uploadBlob",
            ends.our_base
        ))
        .bearer_auth(&ends.our_token)
        .header("content-type", mime)
        .body(body)
        .send()
        .await
        .map_err(|e| Failure::Retry(Duration::ZERO, format!("uploadBlob: {e}")))?;
    check_transfer("uploadBlob", &response)?;
    let body = response
        .bytes()
        .await
        .map_err(|e| Failure::Retry(Duration::ZERO, format!("uploadBlob: {e}")))?;
    let uploaded: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let stored = uploaded["blob"]["ref"]["$link"]
        .as_str()
        .unwrap_or_default();
    if stored != cid {
        return Err(Failure::Fatal(format!(
            "the old PDS sent bytes whose CID is {stored}"
        )));
    }
    Ok(counted.load(std::sync::atomic::Ordering::Relaxed))
}

/// Whether an answer in a transfer is a success, a failure worth another try (with the wait
/// the server asks for: `RateLimit-Reset` or `Retry-After`), or a failure to report.
fn check_transfer(what: &str, response: &reqwest::Response) -> Result<(), Failure> {
    let status = response.status().as_u16();
    if status == 200 {
        return Ok(());
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let wait = header("retry-after")
        .or_else(|| header("ratelimit-reset").map(|reset| reset.saturating_sub(now)))
        .map_or(Duration::ZERO, Duration::from_secs);
    let message = format!("{what}: HTTP {status}");
    if status == 429 || status >= 500 {
        Err(Failure::Retry(wait, message))
    } else {
        Err(Failure::Fatal(message))
    }
}

/// A PLC token from the old PDS: read directly when it is one of these PDSes (which mail
/// nothing: `dev.rustpds.identity.getPlcOperationToken`), else requested and typed in from the
/// email it sends.
async fn plc_token_of(old: &Pds, password: &str, ask: &dyn Ask) -> Result<String, String> {
    let direct = old
        .procedure(
            "dev.rustpds.identity.getPlcOperationToken",
            serde_json::json!({ "password": password }),
        )
        .await;
    if let Ok(issued) = direct {
        if let Some(token) = issued["token"].as_str() {
            say("identity: the PLC token comes straight from the old PDS");
            return Ok(token.to_owned());
        }
    }
    old.procedure_without_input("com.atproto.identity.requestPlcOperationSignature")
        .await?;
    ask.line("The old PDS emailed a PLC token; enter it: ")
}

/// Points the identity at this PDS, unless it does already: for did:plc, an operation with this
/// PDS's recommended credentials (the user's own rotation keys kept first), signed by the old
/// PDS with the emailed token, checked against the DID's current rotation keys, submitted here.
async fn move_identity(
    http: &reqwest::Client,
    old: &Pds,
    ours: &Pds,
    did: &str,
    plc_url: &str,
    old_password: &str,
    ask: &dyn Ask,
) -> Result<(), String> {
    let status = ours.query("com.atproto.server.checkAccountStatus").await?;
    if status["validDid"] == true {
        say("identity: already points here");
        return Ok(());
    }
    if !did.starts_with("did:plc:") {
        let ours_rec = ours
            .query("com.atproto.identity.getRecommendedDidCredentials")
            .await?;
        return Err(format!(
            "identity: update {did}'s document yourself to name this PDS and its key ({}), \
             then run this again",
            ours_rec["verificationMethods"]
        ));
    }
    let token = match std::env::var("PDS_PLC_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        Some(t) => t,
        None => plc_token_of(old, old_password, ask).await?,
    };
    let recommended = ours
        .query("com.atproto.identity.getRecommendedDidCredentials")
        .await?;
    let theirs = old
        .query("com.atproto.identity.getRecommendedDidCredentials")
        .await?;
    let data = get_json(
        http,
        &format!("{}/{did}/data", plc_url.trim_end_matches('/')),
    )
    .await?;
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v["rotationKeys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect()
    };
    let current = keys(&data);
    let (old_keys, new_keys) = (keys(&theirs), keys(&recommended));
    // The user's own keys (neither server's) stay, first: they outrank the servers'.
    let mut rotation: Vec<String> = current
        .iter()
        .filter(|k| !old_keys.contains(k) && !new_keys.contains(k))
        .cloned()
        .collect();
    rotation.extend(new_keys);
    let input = serde_json::json!({
        "token": token.trim(),
        "rotationKeys": rotation,
        "alsoKnownAs": recommended["alsoKnownAs"],
        "verificationMethods": recommended["verificationMethods"],
        "services": recommended["services"],
    });
    let signed = old
        .procedure("com.atproto.identity.signPlcOperation", input)
        .await?;
    let operation = &signed["operation"];
    // An operation none of the current rotation keys signed would be refused by the directory,
    // or worse, be one the old PDS made up: it is not sent.
    crate::plc::Operation::from_json(operation)
        .and_then(|op| op.verify(&current))
        .map_err(|e| format!("the old PDS signed an operation that does not verify: {e}"))?;
    ours.procedure(
        "com.atproto.identity.submitPlcOperation",
        serde_json::json!({ "operation": operation }),
    )
    .await?;
    say("identity: the PLC operation naming this PDS is submitted");
    Ok(())
}

/// The checks before activation (the identity names this PDS, every blob is here), then
/// activation, which announces the account and asks the relays to crawl.
async fn activate(ours: &Pds) -> Result<(), String> {
    let status = ours.query("com.atproto.server.checkAccountStatus").await?;
    if status["validDid"] != true {
        return Err("the DID document does not name this PDS and its keys yet".into());
    }
    if status["importedBlobs"] != status["expectedBlobs"] {
        return Err(format!(
            "{} of {} blobs are here: run again to transfer the rest",
            status["importedBlobs"], status["expectedBlobs"]
        ));
    }
    ours.procedure_without_input("com.atproto.server.activateAccount")
        .await?;
    say("activated here: the relays are asked to crawl this PDS");
    Ok(())
}
