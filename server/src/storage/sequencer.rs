//! The sequencer: firehose events with strictly growing, never reused
//! sequence numbers. The bytes are stored as given (the event body without
//! `seq`); framing them for `subscribeRepos` is the firehose's job.

use super::error::{Result, StorageError};
use super::sql::{Sql, SqlExt, SqlValue, MAX_SAFE_INTEGER};

/// An event to append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewEvent<'a> {
    /// `commit`, `sync`, `identity` or `account`.
    pub kind: &'a str,
    /// The event body's DAG-CBOR, without `seq`.
    pub event: &'a [u8],
    /// When it happened (clock port, ms since the epoch).
    pub time_ms: i64,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its sequence number.
    pub seq: i64,
    /// Its kind (see [`NewEvent::kind`]).
    pub kind: String,
    /// The bytes given to [`append_event`] or [`super::persist_commit`].
    pub event: Vec<u8>,
    /// Its time, ms since the epoch.
    pub time_ms: i64,
}

/// Durable Object SQLite rows are capped at 2 MB; the sync v1.1 lexicon caps
/// a commit's `blocks` at 2,000,000 bytes, so a bigger event is refused here
/// with a clear error rather than by the platform.
pub const MAX_EVENT_BYTES: usize = 2_000_000;

pub(crate) fn insert_event(db: &dyn Sql, event: &NewEvent<'_>) -> Result<i64> {
    if event.event.len() > MAX_EVENT_BYTES {
        return Err(StorageError::Sql(format!(
            "event of {} bytes is above the {MAX_EVENT_BYTES}-byte limit",
            event.event.len()
        )));
    }
    let rows = db.execute(
        "INSERT INTO sequencer_event (kind, event, time_ms) VALUES (?, ?, ?) RETURNING seq",
        &[
            SqlValue::from(event.kind),
            SqlValue::from(event.event),
            SqlValue::Integer(event.time_ms),
        ],
    )?;
    match rows.first() {
        Some(row) => row.integer(0),
        None => Err(StorageError::Sql("INSERT returned no seq".into())),
    }
}

/// Appends an event that is not part of a commit (identity, account) and
/// returns its sequence number. Commit events go through
/// [`super::persist_commit`], in the commit's transaction.
pub fn append_event(db: &dyn Sql, event: &NewEvent<'_>) -> Result<i64> {
    insert_event(db, event)
}

/// Up to `limit` events with `seq > after`, in order (firehose backfill).
pub fn events_after(db: &dyn Sql, after: i64, limit: u32) -> Result<Vec<StoredEvent>> {
    db.execute(
        "SELECT seq, kind, event, time_ms FROM sequencer_event WHERE seq > ? \
         ORDER BY seq LIMIT ?",
        &[
            SqlValue::Integer(after),
            SqlValue::Integer(i64::from(limit)),
        ],
    )?
    .into_iter()
    .map(stored_event)
    .collect()
}

/// The newest `limit` events of `kind`, newest first.
pub fn newest_events(db: &dyn Sql, kind: &str, limit: u32) -> Result<Vec<StoredEvent>> {
    db.execute(
        "SELECT seq, kind, event, time_ms FROM sequencer_event WHERE kind = ? \
         ORDER BY seq DESC LIMIT ?",
        &[SqlValue::from(kind), SqlValue::Integer(i64::from(limit))],
    )?
    .into_iter()
    .map(stored_event)
    .collect()
}

/// A row of `SELECT seq, kind, event, time_ms`.
fn stored_event(row: super::sql::Row) -> Result<StoredEvent> {
    Ok(StoredEvent {
        seq: row.integer(0)?,
        kind: row.text(1)?,
        time_ms: row.integer(3)?,
        event: row.into_blob(2)?,
    })
}

/// The SQL expression for [`latest_seq`]'s value (0 before the first event), as a literal for
/// `concat!`: other reads fold it into their one statement.
macro_rules! latest_seq_sql {
    () => {
        "MAX(IFNULL((SELECT seq FROM sqlite_sequence WHERE name = 'sequencer_event'), 0), \
             IFNULL((SELECT MAX(seq) FROM sequencer_event), 0))"
    };
}
pub(crate) use latest_seq_sql;

/// The newest sequence number ever assigned (none before the first event).
///
/// Read from SQLite's AUTOINCREMENT counter (`sqlite_sequence`), which
/// survives pruning: once retention has deleted every event, `MAX(seq)` would
/// forget the last number and a subscriber's old cursor would look like a
/// future one. Falls back to `MAX(seq)` if the counter cannot be read. One
/// statement either way: each is a crossing into the runtime on Workers.
pub fn latest_seq(db: &dyn Sql) -> Result<Option<i64>> {
    let rows = db
        .execute(concat!("SELECT ", latest_seq_sql!()), &[])
        .or_else(|_| db.execute("SELECT MAX(seq) FROM sequencer_event", &[]))?;
    match rows.first() {
        Some(row) => Ok(row.opt_integer(0)?.filter(|seq| *seq > 0)),
        None => Ok(None),
    }
}

/// The oldest sequence number still stored (none when empty).
pub fn earliest_seq(db: &dyn Sql) -> Result<Option<i64>> {
    let rows = db.execute("SELECT MIN(seq) FROM sequencer_event", &[])?;
    match rows.first() {
        Some(row) => row.opt_integer(0),
        None => Ok(None),
    }
}

/// Deletes events older than `time_ms` (retention); returns how many. Their
/// numbers are not reused.
pub fn prune_events_before(db: &dyn Sql, time_ms: i64) -> Result<usize> {
    let rows = db.execute(
        "DELETE FROM sequencer_event WHERE time_ms < ? RETURNING seq",
        &[SqlValue::Integer(time_ms)],
    )?;
    Ok(rows.len())
}

/// Retention: deletes events older than `before_ms`, then all but the
/// `keep_newest` newest (when given), in one transaction; returns how many
/// were deleted. Numbers are not reused ([`latest_seq`] still reports the
/// newest assigned one).
pub fn prune_events(db: &dyn Sql, before_ms: i64, keep_newest: Option<u64>) -> Result<usize> {
    db.transaction(|| {
        let mut deleted = prune_events_before(db, before_ms)?;
        if let Some(keep) = keep_newest {
            let keep = i64::try_from(keep)
                .unwrap_or(i64::MAX)
                .min(MAX_SAFE_INTEGER);
            // The seq of the newest event beyond the `keep` newest, if there is one.
            let cutoff = db.query_opt(
                "SELECT seq FROM sequencer_event ORDER BY seq DESC LIMIT 1 OFFSET ?",
                &[SqlValue::Integer(keep)],
            )?;
            if let Some(cutoff) = cutoff {
                let rows = db.execute(
                    "DELETE FROM sequencer_event WHERE seq <= ? RETURNING seq",
                    &[SqlValue::Integer(cutoff.integer(0)?)],
                )?;
                deleted += rows.len();
            }
        }
        Ok(deleted)
    })
}
