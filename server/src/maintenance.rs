//! Background maintenance, off the request path: firehose retention, telling relays to crawl
//! this PDS (`com.atproto.sync.requestCrawl`), blob collection, and the status page's checks
//! ([`crate::status::checks`], every `PDS_STATUS_CHECK_SECONDS`).
//!
//! Platform-free: the shells drive it. After each account request the lifecycle calls
//! [`after_account_request`] (one statement after a write, usually none otherwise) and makes
//! sure a wake-up is scheduled no later than the time it returns; at that time they call
//! [`run`] (the Durable Object alarm on Workers, a local timer task natively) and schedule its
//! answer in turn. Everything that must outlive a Durable Object eviction (pending crawl
//! requests, their attempts and next attempt times, the last prune and the last crawl request)
//! is in SQL ([`crate::storage::maintenance`]).
//!
//! When relays are asked to crawl: on activation, and on the first new event after a quiet
//! period (no crawl request within `PDS_CRAWL_QUIET_SECONDS`), like the reference PDS, which
//! notifies its crawlers on a write at most every 20 minutes. A failed request is retried per
//! relay with exponential backoff (30 s doubling, capped at an hour) and given up after a day,
//! or at once on a 4xx other than 429 (the relay refuses this host; retrying will not help).

use crate::storage::blobs::LocalBoxFuture;
use pds_api::runtime::xrpc::XrpcError;

use crate::account::Account;
use crate::config::Config;
use crate::identity_events::announce_identity_changes;
use crate::net::http_client::{ClientRequest, HttpClient};
use crate::storage::account::AccountStatus;
use crate::storage::blobs;
use crate::storage::maintenance::{self as state, PendingCrawl, Snapshot};
use crate::storage::sequencer::prune_events;
use crate::storage::{Sql, StorageError};

/// How often events are pruned.
pub const PRUNE_INTERVAL_MS: i64 = 3_600_000;
/// The wait before the first retry of a failed crawl request; doubles with each failure.
pub const FIRST_RETRY_MS: i64 = 30_000;
/// The longest wait between two attempts.
pub const MAX_RETRY_MS: i64 = 3_600_000;
/// A crawl request still failing this long after it was queued is given up.
pub const GIVE_UP_MS: i64 = 24 * 3_600_000;
/// When a run fails on storage, the next one is tried this much later.
const AFTER_FAILURE_MS: i64 = 300_000;

/// The outbound HTTP a crawl request needs. Every [`HttpClient`] is one; tests script answers
/// through it without a network.
pub trait RelayClient {
    /// POSTs `body` as `application/json` to `url`; the response's status code, or why no
    /// response came (connection refused, timeout, unsupported scheme).
    fn post_json<'a>(
        &'a self,
        url: &'a str,
        body: &'a [u8],
    ) -> LocalBoxFuture<'a, Result<u16, String>>;
}

/// The most of a relay's answer that is read: only its status matters.
const RELAY_RESPONSE_LIMIT: u64 = 64 * 1024;
/// How long a crawl request may take.
const RELAY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl<C: HttpClient> RelayClient for C {
    fn post_json<'a>(
        &'a self,
        url: &'a str,
        body: &'a [u8],
    ) -> LocalBoxFuture<'a, Result<u16, String>> {
        Box::pin(async move {
            let request = ClientRequest::post_json(url, body.to_vec())
                .timeout(RELAY_TIMEOUT)
                .max_response_bytes(RELAY_RESPONSE_LIMIT);
            // The relay is known from the pending row; the error says what went wrong.
            let response = self.send(request).await.map_err(|e| e.to_string())?;
            let status = response.status;
            // The (small, capped) answer is read to its end; its content is not used.
            let _ = response.bytes().await;
            Ok(status)
        })
    }
}

/// Called after each account request that stored events (see [`after_account_request`]):
/// announces a changed handle, queues crawl requests when due, and returns when [`run`] should
/// next happen (`None`: no maintenance is pending). The shell schedules a wake-up at that time
/// unless one is scheduled earlier.
pub fn after_request(
    config: &Config,
    account: &Account,
    now_ms: i64,
) -> Result<Option<i64>, XrpcError> {
    let snapshot = state::snapshot(account.sql.as_ref())?;
    let snapshot = settle_after_request(config, account, now_ms, snapshot)?;
    Ok(next_wake(config, &snapshot, now_ms))
}

/// [`after_request`]'s writes, decided on `snapshot`; the snapshot they leave. The snapshot is
/// read again only after something was announced or queued, which is rare.
fn settle_after_request(
    config: &Config,
    account: &Account,
    now_ms: i64,
    mut snapshot: Snapshot,
) -> Result<Snapshot, XrpcError> {
    let db = account.sql.as_ref();
    if snapshot.state.announced_handle.as_deref() != Some(config.handle.as_str())
        && announce_identity_changes(config, account)?
    {
        snapshot = state::snapshot(db)?;
    }
    if queue_crawls_if_due(config, db, &snapshot, now_ms)? {
        snapshot = state::snapshot(db)?;
    }
    Ok(snapshot)
}

/// The time on the account's clock, in ms since the epoch.
pub fn now_ms(account: &Account) -> i64 {
    i64::try_from(account.clock.now_millis()).unwrap_or(i64::MAX)
}

/// The shells' hook after each account request (and on start): skipped when the configuration
/// or the schema is unusable, and when no event was stored since this instance's last check (a
/// request that wrote nothing usually costs no SQL: the account database's memo answers);
/// otherwise [`after_request`]. Returns the wake-up to schedule, if it has to move. Failures
/// wait for the next request: the response is decided.
pub fn after_account_request(config: &Config, account: &Account) -> Option<i64> {
    account.check_schema().ok()?;
    // One statement after a write; none otherwise, as the memo keeps the answer.
    let snapshot = state::snapshot(account.sql.as_ref()).ok()?;
    if account.maintenance_seen_seq.get() == Some(snapshot.latest_seq.unwrap_or(0)) {
        return None;
    }
    let now_ms = now_ms(account);
    let snapshot = settle_after_request(config, account, now_ms, snapshot).ok()?;
    // Its own announcement (a new #identity) is no reason to run again.
    account
        .maintenance_seen_seq
        .set(Some(snapshot.latest_seq.unwrap_or(0)));
    next_wake(config, &snapshot, now_ms)
}

/// The maintenance run (the alarm body): prunes events past retention when an hour has passed
/// since the last prune, sends the crawl requests that are due, and returns the next wake-up
/// time. Never fails: a storage failure is retried a few minutes later.
pub async fn run(
    config: &Config,
    account: &Account,
    now_ms: i64,
    relay: &dyn RelayClient,
) -> Option<i64> {
    let db = account.sql.as_ref();
    // A failing blob store must not hold up pruning and crawl requests: they go on, and the
    // collection is tried again a few minutes later.
    let blobs_failed = match collect_blobs(config, account, now_ms).await {
        Ok(()) => false,
        Err(e) => {
            crate::log::error(&format!("blob collection failed: {e}"));
            true
        }
    };
    // An import abandoned midway is forgotten a day after its last block.
    if let Err(e) = crate::storage::import::purge_expired_stage(db, now_ms) {
        crate::log::error(&format!("purging an abandoned import failed: {e}"));
    }
    let crawls_next = run_crawls_and_prune(config, db, now_ms, relay).await;
    // Last: the checks wait on other hosts, and nothing above should wait for them.
    let checks_next = match run_checks_if_due(config, account, now_ms).await {
        Ok(()) => state::snapshot(db).map_or(Some(now_ms + AFTER_FAILURE_MS), |snapshot| {
            next_checks(config, &snapshot, now_ms)
        }),
        Err(e) => {
            crate::log::error(&format!("the status checks failed: {e}"));
            Some(now_ms + AFTER_FAILURE_MS)
        }
    };
    let next = earliest(crawls_next, checks_next).map(|t| t.max(now_ms));
    if blobs_failed {
        return Some(next.map_or(now_ms + AFTER_FAILURE_MS, |t| {
            t.min(now_ms + AFTER_FAILURE_MS)
        }));
    }
    next
}

/// Runs the status page's checks when they are due.
async fn run_checks_if_due(config: &Config, account: &Account, now_ms: i64) -> Result<(), String> {
    let db = account.sql.as_ref();
    let snapshot = state::snapshot(db).map_err(|e| e.to_string())?;
    let due = next_checks(config, &snapshot, now_ms);
    if due.is_none_or(|at| at > now_ms) {
        return Ok(());
    }
    // The handle as stored (it may have changed since the deployment).
    let effective = account.effective_config(config).map_err(|e| e.message)?;
    let outcomes = crate::status::checks::run(&effective, account, now_ms).await;
    crate::storage::status::save_checks(db, &outcomes).map_err(|e| e.to_string())
}

/// When the status checks are next due: at once before the first run, then every
/// `PDS_STATUS_CHECK_SECONDS` (never when that is 0).
fn next_checks(config: &Config, snapshot: &Snapshot, now_ms: i64) -> Option<i64> {
    let interval = config.maintenance.status_check_seconds;
    if interval == 0 {
        return None;
    }
    let interval_ms = i64::try_from(interval.saturating_mul(1000)).unwrap_or(i64::MAX);
    Some(
        snapshot
            .last_checked_ms
            .map_or(now_ms, |last| last.saturating_add(interval_ms)),
    )
}

/// Prunes events when due and sends the crawl requests that are due; the next wake-up.
async fn run_crawls_and_prune(
    config: &Config,
    db: &dyn Sql,
    now_ms: i64,
    relay: &dyn RelayClient,
) -> Option<i64> {
    let prepared = prune_if_due(config, db, now_ms)
        .and_then(|()| state::snapshot(db))
        .and_then(|snapshot| queue_crawls_if_due(config, db, &snapshot, now_ms))
        .and_then(|_| state::pending_crawls(db));
    let Ok(pending) = prepared else {
        return Some(now_ms + AFTER_FAILURE_MS);
    };
    let body = crawl_body(config);
    for crawl in pending {
        if !config.maintenance.relays.contains(&crawl.relay) {
            // The relay was removed from the configuration.
            if state::finish_crawl(db, &crawl.relay, crawl.queued_ms).is_err() {
                return Some(now_ms + AFTER_FAILURE_MS);
            }
            continue;
        }
        if crawl.next_attempt_ms > now_ms {
            continue;
        }
        let url = format!("{}/xrpc/com.atproto.sync.requestCrawl", crawl.relay);
        let outcome = classify(relay.post_json(&url, &body).await);
        if record_attempt(db, &crawl, outcome, now_ms).is_err() {
            return Some(now_ms + AFTER_FAILURE_MS);
        }
    }
    state::snapshot(db).map_or(Some(now_ms + AFTER_FAILURE_MS), |snapshot| {
        next_wake_besides_checks(config, &snapshot, now_ms)
    })
}

/// Blobs forgotten per pass of [`collect_blobs`].
const COLLECT_BATCH: u32 = 100;
/// Passes per run; blobs still due after them wait for the next run, which comes at once.
const COLLECT_PASSES: usize = 10;
/// How often the blob store is swept for what interrupted uploads left.
pub const BLOB_SWEEP_INTERVAL_MS: i64 = 24 * 3_600_000;
/// Leftovers of uploads younger than this are spared (whatever the grace window): an upload
/// still in progress writes its bytes before the account records them.
const LEFTOVER_MIN_AGE_MS: i64 = 3_600_000;

/// Whether blobs are collected now: only while the account is active. A deactivated account
/// may be receiving a migration, whose records and blobs arrive apart.
fn collects_blobs(snapshot: &Snapshot) -> bool {
    snapshot.account_status == Some(AccountStatus::Active)
}

/// Blob garbage collection: deletes each blob no record has referenced for longer than the
/// grace window (its metadata first, so that nothing serves or references it any more, then its
/// bytes) and, daily, sweeps the blob store for what interrupted uploads left.
async fn collect_blobs(
    config: &Config,
    account: &Account,
    now_ms: i64,
) -> Result<(), StorageError> {
    let db = account.sql.as_ref();
    if !collects_blobs(&state::snapshot(db)?) {
        return Ok(());
    }
    let window_start = now_ms.saturating_sub(config.blob_grace_ms());
    for _ in 0..COLLECT_PASSES {
        let due = blobs::collectable_blobs(db, window_start, COLLECT_BATCH)?;
        for cid in &due {
            // Re-checked one by one: while a delete below is awaited, requests run, and may
            // have used or uploaded again a blob further down the list.
            if blobs::forget_collectable_blob(db, cid, window_start)? {
                account.note_collected(*cid, now_ms, now_ms.saturating_sub(LEFTOVER_MIN_AGE_MS));
                // Bytes a failed delete leaves are named by no row: the sweep removes them.
                let _ = account.blobs.delete(cid).await;
            }
        }
        if due.len() < COLLECT_BATCH as usize {
            break;
        }
    }
    if next_sweep(&state::snapshot(db)?).is_some_and(|at| at <= now_ms) {
        let before = window_start.min(now_ms.saturating_sub(LEFTOVER_MIN_AGE_MS));
        // A blob whose row cannot be read is kept.
        let is_known = |cid: &cid::Cid| blobs::is_known_blob(db, cid).unwrap_or(true);
        account
            .blobs
            .remove_leftovers(before, &is_known)
            .await
            .map_err(|e| StorageError::Sql(format!("blob store sweep: {e}")))?;
        state::set_last_blob_sweep(db, now_ms)?;
    }
    Ok(())
}

/// When the blob store is due a sweep: a day after the last, once any blob was uploaded.
fn next_sweep(snapshot: &Snapshot) -> Option<i64> {
    if !snapshot.any_blob {
        return None;
    }
    Some(
        snapshot
            .state
            .last_blob_sweep_ms
            .map_or(i64::MIN, |last| last.saturating_add(BLOB_SWEEP_INTERVAL_MS)),
    )
}

/// When blob collection next has work: the end of the earliest grace window, or the next
/// sweep (never while blobs are not collected).
fn next_blob_work(config: &Config, snapshot: &Snapshot) -> Option<i64> {
    if !collects_blobs(snapshot) {
        return None;
    }
    let window_end = snapshot
        .oldest_unreferenced_ms
        .map(|since| since.saturating_add(config.blob_grace_ms()));
    earliest(window_end, next_sweep(snapshot))
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The requestCrawl input: `{"hostname": ...}` (lexicon `com.atproto.sync.requestCrawl`).
fn crawl_body(config: &Config) -> Vec<u8> {
    serde_json::json!({ "hostname": config.hostname })
        .to_string()
        .into_bytes()
}

/// What an attempt's result means for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// 2xx: the relay will crawl.
    Delivered,
    /// A 4xx other than 429: the relay refuses; retrying will not change that.
    Refused,
    /// 5xx, 429, an unexpected status or no response: try again later.
    Failed(String),
}

fn classify(result: Result<u16, String>) -> Outcome {
    match result {
        Ok(200..=299) => Outcome::Delivered,
        Ok(429) => Outcome::Failed("HTTP 429".into()),
        Ok(400..=499) => Outcome::Refused,
        Ok(status) => Outcome::Failed(format!("HTTP {status}")),
        Err(e) => Outcome::Failed(e),
    }
}

/// The wait after `attempts` failed attempts: 30 s, 1 min, 2 min, ... capped at an hour.
pub fn backoff_ms(attempts: i64) -> i64 {
    let doublings = attempts.saturating_sub(1).clamp(0, 20) as u32;
    FIRST_RETRY_MS
        .saturating_mul(1_i64 << doublings)
        .min(MAX_RETRY_MS)
}

fn record_attempt(
    db: &dyn Sql,
    crawl: &PendingCrawl,
    outcome: Outcome,
    now_ms: i64,
) -> Result<(), StorageError> {
    match outcome {
        Outcome::Delivered | Outcome::Refused => {
            state::finish_crawl(db, &crawl.relay, crawl.queued_ms)
        }
        Outcome::Failed(error) => {
            let attempts = crawl.attempts + 1;
            let next = now_ms + backoff_ms(attempts);
            if next - crawl.queued_ms > GIVE_UP_MS {
                state::finish_crawl(db, &crawl.relay, crawl.queued_ms)
            } else {
                state::retry_crawl(db, &crawl.relay, crawl.queued_ms, attempts, next, &error)
            }
        }
    }
}

/// Queues crawl requests to every configured relay when there are events relays have not been
/// told about and either the account was activated since the last request or the newest
/// event came after the quiet period following it (events within the quiet period never ask,
/// as in the reference PDS). Returns whether it queued.
fn queue_crawls_if_due(
    config: &Config,
    db: &dyn Sql,
    snapshot: &Snapshot,
    now_ms: i64,
) -> Result<bool, StorageError> {
    let st = &snapshot.state;
    let latest = snapshot.latest_seq.unwrap_or(0);
    if latest <= st.last_crawl_seq.unwrap_or(0) {
        return Ok(false);
    }
    let quiet_ms = i64::try_from(config.maintenance.crawl_quiet_seconds)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    let quiet_over = match (snapshot.latest_event_ms, st.last_crawl_ms) {
        (Some(event_ms), Some(last)) => event_ms.saturating_sub(last) >= quiet_ms,
        (Some(_), None) => true,
        // Pruned already: nothing left to announce.
        (None, _) => false,
    };
    // Activation emitted events (so `latest` moved) at its status change time; a crawl queued
    // since (at or after that time) already covered it.
    let activated = st.last_crawl_ms.is_some_and(|last| {
        snapshot.account_status == Some(AccountStatus::Active)
            && snapshot.status_changed_ms.is_some_and(|t| t > last)
    });
    if !(quiet_over || activated) {
        return Ok(false);
    }
    state::queue_crawls(db, &config.maintenance.relays, now_ms, latest)?;
    Ok(true)
}

fn prune_if_due(config: &Config, db: &dyn Sql, now_ms: i64) -> Result<(), StorageError> {
    let snapshot = state::snapshot(db)?;
    if snapshot
        .state
        .last_prune_ms
        .is_some_and(|last| now_ms - last < PRUNE_INTERVAL_MS)
        && !over_count(config, &snapshot)
    {
        return Ok(());
    }
    let m = &config.maintenance;
    let retention_ms = i64::try_from(m.event_retention_seconds)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    prune_events(
        db,
        now_ms.saturating_sub(retention_ms),
        m.event_retention_count,
    )?;
    crate::oauth::permission_set::prune_cache(db, now_ms)?;
    crate::rate_limit::prune_ended(db, now_ms)?;
    state::set_last_prune(db, now_ms)
}

/// Whether the log holds a tenth more events than the count retention keeps: a burst of
/// writes then gets pruned at once rather than at the next hourly run, bounding storage.
fn over_count(config: &Config, snapshot: &Snapshot) -> bool {
    let Some(cap) = config.maintenance.event_retention_count else {
        return false;
    };
    let (Some(oldest), Some(newest)) = (snapshot.earliest_seq, snapshot.latest_seq) else {
        return false;
    };
    let held = u64::try_from(newest.saturating_sub(oldest).saturating_add(1)).unwrap_or(0);
    held > cap.saturating_add(cap / 10)
}

/// The next time maintenance has work: [`next_wake_besides_checks`] or the next status checks;
/// never before `now_ms`.
fn next_wake(config: &Config, snapshot: &Snapshot, now_ms: i64) -> Option<i64> {
    let next = earliest(
        next_wake_besides_checks(config, snapshot, now_ms),
        next_checks(config, snapshot, now_ms),
    );
    next.map(|t| t.max(now_ms))
}

/// The next prune (hourly while events are stored, at once when the count retention is
/// overrun), the earliest crawl attempt, the next blob collection, or an import stage's expiry;
/// never before `now_ms`.
fn next_wake_besides_checks(config: &Config, snapshot: &Snapshot, now_ms: i64) -> Option<i64> {
    let prune = match snapshot.earliest_seq {
        None => None,
        Some(_) if over_count(config, snapshot) => Some(now_ms),
        Some(_) => Some(
            snapshot
                .state
                .last_prune_ms
                .map_or(now_ms, |last| last + PRUNE_INTERVAL_MS),
        ),
    };
    let next = earliest(
        earliest(
            earliest(prune, snapshot.next_crawl_attempt_ms),
            next_blob_work(config, snapshot),
        ),
        snapshot.stage_expiry_ms,
    );
    next.map(|t| t.max(now_ms))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::config::MaintenanceConfig;
    use crate::crypto::{KeyAlgorithm, SigningKey};
    use crate::firehose::identity_event;
    use crate::platform::native::{DirBlobStore, NativeSql};
    use crate::storage::append_event;
    use crate::storage::sequencer::{earliest_seq, events_after, latest_seq};
    use pds_api::runtime::syntax::{Did, Handle};
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    const T0: i64 = 1_700_000_000_000;
    const A: &str = "http://relay-a.test";
    const B: &str = "https://relay-b.test";

    /// A clock the test moves while the account holds it.
    struct SharedClock(Rc<ManualClock>);
    impl Clock for SharedClock {
        fn now_micros(&self) -> u64 {
            self.0.now_micros()
        }
    }

    /// Scripted answers to one URL, in order.
    type Script = (String, VecDeque<Result<u16, String>>);

    /// Answers from a script per URL (200 once the script runs out) and records each call.
    #[derive(Default)]
    struct FakeRelays {
        script: RefCell<Vec<Script>>,
        calls: RefCell<Vec<(String, Vec<u8>)>>,
    }

    impl FakeRelays {
        fn answer(&self, relay: &str, answers: Vec<Result<u16, String>>) {
            self.script.borrow_mut().push((
                format!("{relay}/xrpc/com.atproto.sync.requestCrawl"),
                answers.into(),
            ));
        }
        fn calls_to(&self, relay: &str) -> usize {
            self.calls
                .borrow()
                .iter()
                .filter(|(url, _)| url.starts_with(relay))
                .count()
        }
    }

    impl RelayClient for FakeRelays {
        fn post_json<'a>(
            &'a self,
            url: &'a str,
            body: &'a [u8],
        ) -> LocalBoxFuture<'a, Result<u16, String>> {
            self.calls
                .borrow_mut()
                .push((url.to_owned(), body.to_vec()));
            let answer = self
                .script
                .borrow_mut()
                .iter_mut()
                .find(|(u, _)| u == url)
                .and_then(|(_, answers)| answers.pop_front())
                .unwrap_or(Ok(200));
            Box::pin(async move { answer })
        }
    }

    struct Fixture {
        config: Config,
        account: Account,
        clock: Rc<ManualClock>,
        _dir: std::path::PathBuf,
    }

    impl Fixture {
        fn new(relays: &[&str]) -> Fixture {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "pds-maintenance-{}-{}",
                std::process::id(),
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            let clock = Rc::new(ManualClock::new(T0 as u64 * 1000));
            let account = Account::open(
                Box::new(NativeSql::open_in_memory().unwrap()),
                Box::new(DirBlobStore::open(&dir).unwrap()),
                Box::new(SharedClock(clock.clone())),
            );
            let config = Config {
                hostname: "pds.example.com".into(),
                // Born here, so active from the start (a did:plc would wait for its migration).
                did: Did::new("did:web:pds.example.com").unwrap(),
                handle: Handle::new("alice.example.com").unwrap(),
                signing_key: SigningKey::from_bytes(KeyAlgorithm::K256, &[9; 32]).unwrap(),
                plc_rotation_key: None,
                password_hash: String::new(),
                jwt_secret: vec![1; 32],
                blob_upload_limit: 1,
                blob_grace_seconds: 60,
                edge_cache_seconds: 0,
                upload_bytes_per_day: 1,
                session_lifetime_days: 1,
                oauth_trusted_clients: Vec::new(),
                firehose: Default::default(),
                writes: Default::default(),
                maintenance: MaintenanceConfig {
                    relays: relays.iter().map(|r| r.to_string()).collect(),
                    // These tests time the other work; the checks have their own.
                    status_check_seconds: 0,
                    ..MaintenanceConfig::default()
                },
                network: Default::default(),
                proxy: Default::default(),
            };
            Fixture {
                config,
                account,
                clock,
                _dir: dir,
            }
        }

        fn now(&self) -> i64 {
            self.clock.now_millis() as i64
        }

        fn set(&self, ms: i64) {
            self.clock.set(ms as u64 * 1000);
        }

        fn after_request(&self) -> Option<i64> {
            after_request(&self.config, &self.account, self.now()).unwrap()
        }

        fn run(&self, relays: &FakeRelays) -> Option<i64> {
            futures_executor::block_on(run(&self.config, &self.account, self.now(), relays))
        }

        fn db(&self) -> &dyn Sql {
            self.account.sql.as_ref()
        }

        /// A new event now (a commit, as far as scheduling is concerned).
        fn event(&self) {
            let body = identity_event(&self.config.did, None, self.now() as u64 * 1000);
            append_event(self.db(), &body.new_event(self.now())).unwrap();
        }

        fn pending(&self) -> Vec<PendingCrawl> {
            state::pending_crawls(self.db()).unwrap()
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self._dir);
        }
    }

    #[test]
    fn overrunning_the_count_retention_prunes_at_once() {
        let mut f = Fixture::new(&[]);
        f.config.maintenance.event_retention_count = Some(1000);
        let relays = FakeRelays::default();
        // The first run prunes (nothing to drop) and schedules the next in an hour; the first
        // start's #identity is event 1.
        f.after_request();
        f.run(&relays);
        let hourly = Some(T0 + PRUNE_INTERVAL_MS);
        for _ in 0..1099 {
            f.event();
        }
        // At the cap plus a tenth, still hourly.
        assert_eq!(f.after_request(), hourly);
        f.event();
        assert_eq!(f.after_request(), Some(T0), "overrun: prune now");
        f.run(&relays);
        assert_eq!(earliest_seq(f.db()).unwrap(), Some(1101 - 1000 + 1));
        assert_eq!(latest_seq(f.db()).unwrap(), Some(1101));
        assert_eq!(f.after_request(), hourly);
    }

    impl Fixture {
        /// Stores `bytes` as an upload recorded now.
        fn upload(&self, bytes: &[u8]) -> cid::Cid {
            let source = &mut crate::storage::blobs::IterChunks(std::iter::once(bytes.to_vec()));
            let stored = futures_executor::block_on(self.account.blobs.put(source, 1 << 20));
            let cid = stored.unwrap().cid;
            let meta = blobs::BlobMetadata {
                cid,
                mime_type: "image/png".into(),
                size: bytes.len() as u64,
                created_ms: self.now(),
                unreferenced_since_ms: None,
            };
            blobs::insert_blob_metadata(self.db(), &meta).unwrap();
            cid
        }

        /// Whether the blob's bytes are stored.
        fn stored(&self, cid: &cid::Cid) -> bool {
            futures_executor::block_on(self.account.blobs.get(cid, None))
                .unwrap()
                .is_some()
        }

        /// Whether the blob's metadata is kept.
        fn known(&self, cid: &cid::Cid) -> bool {
            blobs::is_known_blob(self.db(), cid).unwrap()
        }
    }

    #[test]
    fn unreferenced_blobs_are_collected_after_their_grace_window_while_active() {
        let f = Fixture::new(&[]);
        f.account.effective_config(&f.config).unwrap();
        let relays = FakeRelays::default();
        let grace = f.config.blob_grace_ms();
        let unused = f.upload(b"never used");
        let used = f.upload(b"used by a post");
        let referenced: std::collections::BTreeSet<String> = [used.to_string()].into();
        f.db()
            .execute(
                "INSERT INTO record_blob (collection, rkey, blob_cid, rev) \
                 VALUES ('app.bsky.feed.post', '3l', ?, '3l')",
                &[crate::storage::SqlValue::Text(used.to_string())],
            )
            .unwrap();
        blobs::note_reference_changes(f.db(), &referenced, &Default::default(), f.now()).unwrap();
        // The first run sweeps the store (nothing is old enough) and wakes for the window's end.
        assert_eq!(f.run(&relays), Some(T0 + grace));

        f.set(T0 + grace - 1);
        f.run(&relays);
        assert!(f.known(&unused) && f.stored(&unused), "within its window");
        f.set(T0 + grace);
        let next = f.run(&relays);
        assert!(!f.known(&unused) && !f.stored(&unused), "collected");
        assert!(f.known(&used) && f.stored(&used), "referenced: kept");
        assert_eq!(next, Some(T0 + BLOB_SWEEP_INTERVAL_MS), "the next sweep");

        // Deactivated (a migration may be arriving): nothing is collected or scheduled.
        let later = f.upload(b"uploaded while deactivated");
        crate::storage::account::set_account_status(f.db(), AccountStatus::Deactivated, f.now())
            .unwrap();
        assert_eq!(
            next_blob_work(&f.config, &state::snapshot(f.db()).unwrap()),
            None
        );
        f.set(T0 + 10 * grace);
        f.run(&relays);
        assert!(f.known(&later) && f.stored(&later));
        crate::storage::account::set_account_status(f.db(), AccountStatus::Active, f.now())
            .unwrap();
        f.run(&relays);
        assert!(
            !f.known(&later) && !f.stored(&later),
            "collected once active"
        );
    }

    #[test]
    fn an_abandoned_import_is_purged_a_day_after_its_last_block() {
        use crate::storage::import::{stage_blocks, staged_count, STAGE_TTL_MS};
        let f = Fixture::new(&[]);
        f.account.effective_config(&f.config).unwrap();
        let relays = FakeRelays::default();
        let block = b"\xa1ax\x01".to_vec();
        let cid = crate::data::cid::cid_for_cbor(&block);
        stage_blocks(f.db(), &[(cid, block.clone())], f.now()).unwrap();
        let staged_at = f.now();
        // Kept until it expires, and the next wake-up is then.
        f.set(staged_at + STAGE_TTL_MS - 1);
        assert_eq!(f.run(&relays), Some(staged_at + STAGE_TTL_MS));
        assert_eq!(staged_count(f.db()).unwrap(), 1);
        // A block arriving again (a retried import) counts as staged now.
        stage_blocks(f.db(), &[(cid, block)], f.now()).unwrap();
        f.set(staged_at + STAGE_TTL_MS);
        f.run(&relays);
        assert_eq!(staged_count(f.db()).unwrap(), 1, "refreshed by the retry");
        f.set(staged_at + 2 * STAGE_TTL_MS);
        f.run(&relays);
        assert_eq!(staged_count(f.db()).unwrap(), 0, "abandoned: purged");
    }

    #[test]
    fn the_daily_sweep_removes_what_interrupted_uploads_left() {
        let f = Fixture::new(&[]);
        f.account.effective_config(&f.config).unwrap();
        let relays = FakeRelays::default();
        let kept = f.upload(b"recorded");
        // Bytes stored whose upload was never recorded, and a half-written upload.
        let orphan = f.upload(b"never recorded");
        assert!(blobs::delete_blob_metadata(f.db(), &orphan).unwrap());
        std::fs::write(f._dir.join("tmp").join("upload-1-1"), b"half").unwrap();
        // Referenced as far as collection knows, so kept however old: only the sweep is tested.
        f.db()
            .execute("UPDATE blob_metadata SET unreferenced_since_ms = NULL", &[])
            .unwrap();
        // The files are written on the system clock: leftovers younger than an hour are spared.
        let real_now = crate::clock::SystemClock.now_millis() as i64;
        f.set(real_now);
        f.run(&relays);
        assert!(f.stored(&orphan), "too young to be a leftover");
        assert_eq!(
            state::state(f.db()).unwrap().last_blob_sweep_ms,
            Some(real_now)
        );
        f.set(real_now + BLOB_SWEEP_INTERVAL_MS);
        f.run(&relays);
        assert!(!f.stored(&orphan), "no metadata names it: removed");
        assert!(f.stored(&kept));
        assert_eq!(std::fs::read_dir(f._dir.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn backoff_doubles_from_30_seconds_up_to_an_hour() {
        let waits: Vec<i64> = (1..=9).map(backoff_ms).collect();
        assert_eq!(
            waits,
            [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
                .map(|s| s * 1000)
                .to_vec()
        );
        assert_eq!(backoff_ms(1000), MAX_RETRY_MS);
    }

    #[test]
    fn identity_is_announced_on_first_start_and_when_the_handle_changes() {
        let mut f = Fixture::new(&[]);
        f.after_request();
        f.after_request();
        let events = events_after(f.db(), 0, 10).unwrap();
        assert_eq!(events.len(), 1, "announced once");
        assert_eq!(events[0].kind, "identity");
        let body = crate::data::decode(&events[0].event).unwrap();
        assert_eq!(
            body.as_map().unwrap()["handle"].as_str(),
            Some("alice.example.com")
        );

        f.config.handle = Handle::new("alice.other.example").unwrap();
        assert!(announce_identity_changes(&f.config, &f.account).unwrap());
        assert!(!announce_identity_changes(&f.config, &f.account).unwrap());
        f.after_request();
        let events = events_after(f.db(), 0, 10).unwrap();
        assert_eq!(events.len(), 2);
        let body = crate::data::decode(&events[1].event).unwrap();
        assert_eq!(
            body.as_map().unwrap()["handle"].as_str(),
            Some("alice.other.example")
        );
    }

    #[test]
    fn crawl_requests_are_retried_with_backoff_per_relay() {
        let f = Fixture::new(&[A, B]);
        let relays = FakeRelays::default();
        relays.answer(A, vec![Ok(500), Err("connection refused".into()), Ok(429)]);
        relays.answer(B, vec![Ok(200)]);

        // First start: the identity announcement is news; a crawl is due at once.
        assert_eq!(f.after_request(), Some(T0));
        assert_eq!(f.pending().len(), 2);
        // The alarm: A fails (retry in 30 s), B is done; the next prune is in an hour.
        assert_eq!(f.run(&relays), Some(T0 + 30_000));
        let pending = f.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].relay, A);
        assert_eq!(pending[0].attempts, 1);
        assert_eq!(pending[0].last_error.as_deref(), Some("HTTP 500"));
        let (url, body) = relays.calls.borrow()[1].clone();
        assert_eq!(url, format!("{B}/xrpc/com.atproto.sync.requestCrawl"));
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({ "hostname": "pds.example.com" })
        );

        // Too early: nothing is sent.
        f.set(T0 + 29_000);
        assert_eq!(f.run(&relays), Some(T0 + 30_000));
        assert_eq!(relays.calls_to(A), 1);

        f.set(T0 + 30_000);
        assert_eq!(f.run(&relays), Some(T0 + 90_000), "then 60 s");
        f.set(T0 + 90_000);
        assert_eq!(f.run(&relays), Some(T0 + 210_000), "429 is retried, 120 s");
        f.set(T0 + 210_000);
        assert_eq!(f.run(&relays), Some(T0 + PRUNE_INTERVAL_MS), "delivered");
        assert!(f.pending().is_empty());
        assert_eq!(relays.calls_to(A), 4);
        assert_eq!(relays.calls_to(B), 1);
    }

    #[test]
    fn new_events_ask_again_only_after_the_quiet_period() {
        let f = Fixture::new(&[A]);
        let relays = FakeRelays::default();
        f.after_request();
        f.run(&relays);
        assert_eq!(relays.calls_to(A), 1);

        // A commit 5 minutes later: within the quiet period, no request.
        f.set(T0 + 300_000);
        f.event();
        f.after_request();
        assert!(f.pending().is_empty());
        // Nothing new after the quiet period: no request either.
        f.set(T0 + 1_300_000);
        f.after_request();
        assert!(f.pending().is_empty());
        // The first commit after it: a request.
        f.set(T0 + 1_400_000);
        f.event();
        assert_eq!(f.after_request(), Some(T0 + 1_400_000));
        f.run(&relays);
        assert_eq!(relays.calls_to(A), 2);
    }

    #[test]
    fn activation_asks_at_once_even_within_the_quiet_period() {
        use crate::auth::{AccountStatus as Status, AuthStore, SqlAuthStore};
        let f = Fixture::new(&[A]);
        let relays = FakeRelays::default();
        f.after_request();
        f.run(&relays);
        let store = SqlAuthStore::new(f.db(), f.config.did.as_str());
        let events = |status| {
            vec![crate::firehose::account_event(
                &f.config.did,
                status,
                f.now() as u64 * 1000,
            )]
        };

        f.set(T0 + 60_000);
        let deactivated = events(Some(crate::firehose::AccountStatus::Deactivated));
        store
            .set_account_status(Status::Deactivated, f.now() as u64, &deactivated)
            .unwrap();
        f.after_request();
        assert!(
            f.pending().is_empty(),
            "deactivation is not a reason to crawl"
        );

        f.set(T0 + 120_000);
        store
            .set_account_status(Status::Active, f.now() as u64, &events(None))
            .unwrap();
        assert_eq!(f.after_request(), Some(T0 + 120_000));
        f.run(&relays);
        assert_eq!(relays.calls_to(A), 2);
    }

    #[test]
    fn refused_requests_are_dropped_and_failing_ones_given_up_after_a_day() {
        let f = Fixture::new(&[A, B]);
        let relays = FakeRelays::default();
        relays.answer(A, vec![Ok(400)]);
        relays.answer(B, vec![Err("down".into()); 100]);
        f.after_request();
        f.run(&relays);
        assert_eq!(f.pending().len(), 1, "A refused: not retried");
        let mut runs = 0;
        while !f.pending().is_empty() {
            let next = state::snapshot(f.db())
                .unwrap()
                .next_crawl_attempt_ms
                .unwrap();
            f.set(next);
            f.run(&relays);
            runs += 1;
            assert!(runs < 100);
        }
        assert_eq!(relays.calls_to(A), 1);
        assert!(f.now() - T0 <= GIVE_UP_MS, "given up within a day");
        assert!(
            f.now() - T0 > GIVE_UP_MS - 2 * MAX_RETRY_MS,
            "not much earlier"
        );
        // Hourly attempts for most of the day, not one per 30 s.
        assert!(
            (24..40).contains(&relays.calls_to(B)),
            "{}",
            relays.calls_to(B)
        );
    }

    #[test]
    fn relays_no_longer_configured_are_forgotten() {
        let mut f = Fixture::new(&[A]);
        let relays = FakeRelays::default();
        relays.answer(A, vec![Ok(503)]);
        f.after_request();
        f.run(&relays);
        assert_eq!(f.pending().len(), 1);
        f.config.maintenance.relays.clear();
        f.set(T0 + 30_000);
        f.run(&relays);
        assert!(f.pending().is_empty());
        assert_eq!(relays.calls_to(A), 1);
    }

    #[test]
    fn runs_prune_hourly_by_age_and_count() {
        let mut f = Fixture::new(&[]);
        f.config.maintenance.event_retention_seconds = 3600;
        let relays = FakeRelays::default();
        assert_eq!(
            f.after_request(),
            Some(T0),
            "events exist and were never pruned"
        );
        assert_eq!(f.run(&relays), Some(T0 + PRUNE_INTERVAL_MS));
        assert_eq!(
            earliest_seq(f.db()).unwrap(),
            Some(1),
            "the announcement is recent"
        );
        f.set(T0 + 1_000);
        for _ in 0..5 {
            f.event();
        }
        // Within the hour: no prune yet.
        f.set(T0 + 3_000_000);
        assert_eq!(f.run(&relays), Some(T0 + PRUNE_INTERVAL_MS));
        // After it: events older than an hour (the announcement at T0) are gone.
        f.set(T0 + PRUNE_INTERVAL_MS + 500);
        assert_eq!(f.run(&relays), Some(T0 + 2 * PRUNE_INTERVAL_MS + 500));
        assert_eq!(earliest_seq(f.db()).unwrap(), Some(2));
        // A count cap keeps the newest.
        f.config.maintenance.event_retention_count = Some(2);
        f.config.maintenance.event_retention_seconds = 30 * 86_400;
        f.set(T0 + 2 * PRUNE_INTERVAL_MS + 500);
        f.run(&relays);
        assert_eq!(earliest_seq(f.db()).unwrap(), Some(5));
        assert_eq!(latest_seq(f.db()).unwrap(), Some(6));
        // Everything pruned: no more hourly wake-ups until new events arrive.
        f.config.maintenance.event_retention_seconds = 3600;
        f.set(T0 + 10 * PRUNE_INTERVAL_MS);
        assert_eq!(f.run(&relays), None);
        assert_eq!(latest_seq(f.db()).unwrap(), Some(6), "numbering survives");
    }
}
