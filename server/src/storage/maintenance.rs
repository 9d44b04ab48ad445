//! What background maintenance remembers between runs (`maintenance_state`,
//! `relay_crawl`): it must survive Durable Object eviction, so it lives in
//! SQL, not memory. Plain data access; the schedule is `crate::maintenance`'s.

use super::error::Result;
use super::sql::{Row, Sql, SqlExt, SqlValue};

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
    Ok(MaintenanceState {
        announced_handle: row.opt_text(0)?,
        last_prune_ms: row.opt_integer(1)?,
        last_crawl_ms: row.opt_integer(2)?,
        last_crawl_seq: row.opt_integer(3)?,
        last_blob_sweep_ms: row.opt_integer(4)?,
    })
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
    Ok(PendingCrawl {
        relay: row.text(0)?,
        queued_ms: row.integer(1)?,
        attempts: row.integer(2)?,
        next_attempt_ms: row.integer(3)?,
        last_error: row.opt_text(4)?,
    })
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

/// The earliest next attempt among pending crawl requests.
pub fn next_crawl_attempt(db: &dyn Sql) -> Result<Option<i64>> {
    match db.query_opt("SELECT MIN(next_attempt_ms) FROM relay_crawl", &[])? {
        Some(row) => row.opt_integer(0),
        None => Ok(None),
    }
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
