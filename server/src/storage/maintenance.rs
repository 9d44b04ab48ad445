//! What background maintenance remembers between runs (`maintenance_state`,
//! `relay_crawl`): it must survive Durable Object eviction, so it lives in
//! SQL, not memory. Plain data access; the schedule is `crate::maintenance`'s.

use super::account::AccountStatus;
use super::error::{Result, StorageError};
use super::sql::{Row, Sql, SqlExt, SqlValue};
use crate::first_error::FirstError;

/// The one `maintenance_state` row (all `None` before anything happened).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceState {
    /// The handle last announced with `#identity`.
    pub announced_handle: Option<String>,
    /// When events were last pruned (ms).
    pub last_prune_ms: Option<i64>,
    /// When relays were last asked to crawl (ms).
    pub last_crawl_ms: Option<i64>,
    /// The newest seq when relays were last asked to crawl.
    pub last_crawl_seq: Option<i64>,
    /// When the blob store was last swept for upload leftovers (ms).
    pub last_blob_sweep_ms: Option<i64>,
}

/// The state row, or defaults before the first write.
pub fn state(db: &dyn Sql) -> Result<MaintenanceState> {
    let Some(row) = db.query_opt(
        "SELECT announced_handle, last_prune_ms, last_crawl_ms, last_crawl_seq, \
         last_blob_sweep_ms FROM maintenance_state WHERE id = 1",
        &[],
    )?
    else {
        return Ok(MaintenanceState::default());
    };
    let mut e = FirstError::new();
    let v = state_of(&row, &mut e);
    e.finish(v)
}

/// The state from the first five columns of `row` (in [`state`]'s order).
fn state_of(row: &Row, e: &mut FirstError<StorageError>) -> MaintenanceState {
    MaintenanceState {
        announced_handle: e.keep(row.opt_text(0)),
        last_prune_ms: e.keep(row.opt_integer(1)),
        last_crawl_ms: e.keep(row.opt_integer(2)),
        last_crawl_seq: e.keep(row.opt_integer(3)),
        last_blob_sweep_ms: e.keep(row.opt_integer(4)),
    }
}

/// Everything maintenance's schedule is decided on, read by [`snapshot`] in one statement: it
/// is read after every write, and each statement is a crossing into the runtime's SQL on
/// Workers. Besides its own tables it reads the account's status, the event log's bounds,
/// the import stage and blob metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The `maintenance_state` row.
    pub state: MaintenanceState,
    /// The account's status (`None` before it exists).
    pub account_status: Option<AccountStatus>,
    /// When the account's status last changed (ms).
    pub status_changed_ms: Option<i64>,
    /// The newest seq ever assigned, as [`super::sequencer::latest_seq`].
    pub latest_seq: Option<i64>,
    /// The oldest seq still stored.
    pub earliest_seq: Option<i64>,
    /// When the newest stored event happened (ms).
    pub latest_event_ms: Option<i64>,
    /// The earliest next attempt among pending crawl requests (ms).
    pub next_crawl_attempt_ms: Option<i64>,
    /// When the import stage expires (ms), if anything is staged.
    pub stage_expiry_ms: Option<i64>,
    /// Since when the longest-unreferenced blob has been unreferenced (ms).
    pub oldest_unreferenced_ms: Option<i64>,
    /// Whether any blob is known.
    pub any_blob: bool,
    /// When the status page's checks last ran (ms).
    pub last_checked_ms: Option<i64>,
}

/// Reads the [`Snapshot`].
pub fn snapshot(db: &dyn Sql) -> Result<Snapshot> {
    let rows = db.execute(
        concat!(
            "SELECT m.announced_handle, m.last_prune_ms, m.last_crawl_ms, m.last_crawl_seq, \
             m.last_blob_sweep_ms, a.status, a.status_changed_ms, ",
            super::sequencer::latest_seq_sql!(),
            ", (SELECT MIN(seq) FROM sequencer_event), \
             (SELECT time_ms FROM sequencer_event ORDER BY seq DESC LIMIT 1), \
             (SELECT MIN(next_attempt_ms) FROM relay_crawl), \
             (SELECT MAX(staged_ms) FROM import_block), \
             (SELECT MIN(unreferenced_since_ms) FROM blob_metadata \
              WHERE unreferenced_since_ms IS NOT NULL), \
             EXISTS (SELECT 1 FROM blob_metadata), \
             (SELECT MAX(checked_ms) FROM status_check) \
             FROM (SELECT 1) LEFT JOIN maintenance_state m ON m.id = 1 \
             LEFT JOIN account a ON a.id = 1"
        ),
        &[],
    )?;
    let row = rows
        .first()
        .ok_or_else(|| StorageError::Corrupt("the maintenance snapshot returned no row".into()))?;
    let mut e = FirstError::new();
    let account_status = match e.keep(row.opt_text(5)) {
        Some(status) => e.keep(super::account::stored_status(&status).map(Some)),
        None => None,
    };
    let v = Snapshot {
        state: state_of(row, &mut e),
        account_status,
        status_changed_ms: e.keep(row.opt_integer(6)),
        latest_seq: e.keep(row.opt_integer(7)).filter(|seq| *seq > 0),
        earliest_seq: e.keep(row.opt_integer(8)),
        latest_event_ms: e.keep(row.opt_integer(9)),
        next_crawl_attempt_ms: e.keep(row.opt_integer(10)),
        stage_expiry_ms: e
            .keep(row.opt_integer(11))
            .map(|t| t.saturating_add(super::import::STAGE_TTL_MS)),
        oldest_unreferenced_ms: e.keep(row.opt_integer(12)),
        any_blob: e.keep(row.integer(13)) != 0,
        last_checked_ms: e.keep(row.opt_integer(14)),
    };
    e.finish(v)
}

fn update(db: &dyn Sql, set: &str, params: &[SqlValue]) -> Result<()> {
    db.transaction(|| {
        db.execute(
            "INSERT OR IGNORE INTO maintenance_state (id) VALUES (1)",
            &[],
        )?;
        db.execute(
            &format!("UPDATE maintenance_state SET {set} WHERE id = 1"),
            params,
        )?;
        Ok(())
    })
}

/// Records the handle just announced.
pub fn set_announced_handle(db: &dyn Sql, handle: &str) -> Result<()> {
    update(db, "announced_handle = ?", &[SqlValue::from(handle)])
}

/// Records a prune at `now_ms`.
pub fn set_last_prune(db: &dyn Sql, now_ms: i64) -> Result<()> {
    update(db, "last_prune_ms = ?", &[SqlValue::Integer(now_ms)])
}

/// Records a sweep of the blob store at `now_ms`.
pub fn set_last_blob_sweep(db: &dyn Sql, now_ms: i64) -> Result<()> {
    update(db, "last_blob_sweep_ms = ?", &[SqlValue::Integer(now_ms)])
}

/// A requestCrawl call not yet delivered to one relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCrawl {
    /// The relay's base URL.
    pub relay: String,
    /// When the request was queued (ms); identifies it.
    pub queued_ms: i64,
    /// Failed attempts so far.
    pub attempts: i64,
    /// When to try next (ms).
    pub next_attempt_ms: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

fn pending_row(row: &Row) -> Result<PendingCrawl> {
    let mut e = FirstError::new();
    let v = PendingCrawl {
        relay: e.keep(row.text(0)),
        queued_ms: e.keep(row.integer(1)),
        attempts: e.keep(row.integer(2)),
        next_attempt_ms: e.keep(row.integer(3)),
        last_error: e.keep(row.opt_text(4)),
    };
    e.finish(v)
}

/// Queues a crawl request to each of `relays` (replacing one still pending, which starts over)
/// and records the moment and the newest seq, in one transaction.
pub fn queue_crawls(db: &dyn Sql, relays: &[String], now_ms: i64, latest_seq: i64) -> Result<()> {
    db.transaction(|| {
        for relay in relays {
            db.execute(
                "INSERT OR REPLACE INTO relay_crawl \
                 (relay, queued_ms, attempts, next_attempt_ms, last_error) \
                 VALUES (?, ?, 0, ?, NULL)",
                &[
                    SqlValue::from(relay.as_str()),
                    SqlValue::Integer(now_ms),
                    SqlValue::Integer(now_ms),
                ],
            )?;
        }
        update(
            db,
            "last_crawl_ms = ?, last_crawl_seq = ?",
            &[SqlValue::Integer(now_ms), SqlValue::Integer(latest_seq)],
        )
    })
}

/// Every pending crawl request, by relay.
pub fn pending_crawls(db: &dyn Sql) -> Result<Vec<PendingCrawl>> {
    db.execute(
        "SELECT relay, queued_ms, attempts, next_attempt_ms, last_error FROM relay_crawl \
         ORDER BY relay",
        &[],
    )?
    .iter()
    .map(pending_row)
    .collect()
}

/// Removes a crawl request (delivered, refused, given up, or its relay is no longer
/// configured), unless it was queued again meanwhile (another `queued_ms`).
pub fn finish_crawl(db: &dyn Sql, relay: &str, queued_ms: i64) -> Result<()> {
    db.execute(
        "DELETE FROM relay_crawl WHERE relay = ? AND queued_ms = ?",
        &[SqlValue::from(relay), SqlValue::Integer(queued_ms)],
    )?;
    Ok(())
}

/// Records a failed attempt and the next one, unless the request was queued again meanwhile.
pub fn retry_crawl(
    db: &dyn Sql,
    relay: &str,
    queued_ms: i64,
    attempts: i64,
    next_attempt_ms: i64,
    error: &str,
) -> Result<()> {
    db.execute(
        "UPDATE relay_crawl SET attempts = ?, next_attempt_ms = ?, last_error = ? \
         WHERE relay = ? AND queued_ms = ?",
        &[
            SqlValue::Integer(attempts),
            SqlValue::Integer(next_attempt_ms),
            SqlValue::from(error),
            SqlValue::from(relay),
            SqlValue::Integer(queued_ms),
        ],
    )?;
    Ok(())
}
