//! The blob store port (bytes keyed by raw CID: R2 on Workers, a directory
//! natively) and the blob metadata in SQL (what was uploaded, which records
//! use it).
//!
//! The port is asynchronous (R2 is) but not `Send` (nothing in a Durable
//! Object is): futures are boxed and local so the port can be a trait object.

use super::blocks::stored_cid;
use super::error::Result as SqlResult;
use super::sql::{Sql, SqlExt, SqlValue};
use crate::data::RawCidHasher;
use crate::first_error::FirstError;
use cid::Cid;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A boxed future that need not be `Send`.
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Why a blob operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobError {
    /// The blob is larger than the limit given to `put`; nothing was kept.
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The upload's source failed (client went away, bad body); nothing was kept.
    Source(String),
    /// A byte range outside the blob.
    InvalidRange {
        /// The blob's size.
        size: u64,
    },
    /// The backing store failed (I/O, R2).
    Store(String),
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobError::TooLarge { limit } => write!(f, "blob is larger than {limit} bytes"),
            BlobError::Source(m) => write!(f, "upload source failed: {m}"),
            BlobError::InvalidRange { size } => {
                write!(f, "range is outside the blob ({size} bytes)")
            }
            BlobError::Store(m) => write!(f, "blob store: {m}"),
        }
    }
}

impl std::error::Error for BlobError {}

/// Bytes arriving in chunks (an upload body, a stored blob being read).
pub trait ChunkSource {
    /// The next chunk, or `None` at the end.
    fn next_chunk(&mut self) -> LocalBoxFuture<'_, Result<Option<Vec<u8>>, BlobError>>;

    /// How many bytes the sender declared (an upload's Content-Length), to size buffers by: a
    /// hint, never trusted as the size.
    fn declared_len(&self) -> Option<u64> {
        None
    }
}

/// Chunks from an iterator (tests, bodies already in memory).
pub struct IterChunks<I>(pub I);

impl<I: Iterator<Item = Vec<u8>>> ChunkSource for IterChunks<I> {
    fn next_chunk(&mut self) -> LocalBoxFuture<'_, Result<Option<Vec<u8>>, BlobError>> {
        let next = self.0.next();
        Box::pin(async move { Ok(next) })
    }
}

/// Reads a whole source into memory.
pub async fn read_all(source: &mut dyn ChunkSource) -> Result<Vec<u8>, BlobError> {
    let mut out = Vec::new();
    while let Some(chunk) = source.next_chunk().await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A blob as `put` stored it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBlob {
    /// The raw CID of the bytes (CIDv1, raw, sha2-256).
    pub cid: Cid,
    /// Its size in bytes.
    pub size: u64,
}

/// Which bytes of a blob to read: `start` (inclusive) to `end` (exclusive,
/// `None`: to the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte; `None` reads to the end.
    pub end: Option<u64>,
}

impl ByteRange {
    /// Resolves against a blob of `size` bytes: (start, end), both within it,
    /// `start < end` unless the blob is empty and the range is `0..`.
    pub fn resolve(self, size: u64) -> Result<(u64, u64), BlobError> {
        let end = self.end.unwrap_or(size).min(size);
        if self.start > end || (self.start == end && size > 0) {
            return Err(BlobError::InvalidRange { size });
        }
        Ok((self.start, end))
    }
}

/// A blob being read.
pub struct BlobBody {
    /// Size of the whole blob.
    pub size: u64,
    /// The bytes returned: `start..end` of the blob.
    pub start: u64,
    /// One past the last byte returned.
    pub end: u64,
    /// The bytes, in chunks.
    pub chunks: Box<dyn ChunkSource>,
}

/// Where blob bytes live, by raw CID.
pub trait BlobStore {
    /// Stores the bytes of `source`, computing their raw CID as they stream
    /// by. Refuses (and keeps nothing) once more than `max_size` bytes
    /// arrive, or if the source fails: a failed upload leaves no trace. The
    /// blob appears under its CID only once complete.
    fn put<'a>(
        &'a self,
        source: &'a mut dyn ChunkSource,
        max_size: u64,
    ) -> LocalBoxFuture<'a, Result<StoredBlob, BlobError>>;

    /// The blob's bytes, or a range of them; `None` if it is not stored.
    fn get<'a>(
        &'a self,
        cid: &'a Cid,
        range: Option<ByteRange>,
    ) -> LocalBoxFuture<'a, Result<Option<BlobBody>, BlobError>>;

    /// Deletes a blob; returns whether it was there.
    fn delete<'a>(&'a self, cid: &'a Cid) -> LocalBoxFuture<'a, Result<bool, BlobError>>;

    /// Removes what interrupted uploads left, last written before `before_ms`: temporary
    /// objects of uploads that never finished, and blobs `is_known` does not know (an upload
    /// whose completion was never recorded, a collected blob whose delete failed). Returns how
    /// many were removed.
    fn remove_leftovers<'a>(
        &'a self,
        before_ms: i64,
        is_known: &'a dyn Fn(&Cid) -> bool,
    ) -> LocalBoxFuture<'a, Result<usize, BlobError>>;

    /// Up to `limit` stored CIDs in key order, after `after` (exclusive).
    fn list<'a>(
        &'a self,
        after: Option<&'a Cid>,
        limit: usize,
    ) -> LocalBoxFuture<'a, Result<Vec<Cid>, BlobError>>;
}

/// Hashes and counts an upload, enforcing the size limit: the part of `put`
/// shared by every backend.
#[derive(Default)]
pub struct UploadMeter {
    hasher: RawCidHasher,
}

impl UploadMeter {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Accounts for the next chunk; fails once the total passes `max_size`.
    pub fn update(&mut self, chunk: &[u8], max_size: u64) -> Result<(), BlobError> {
        if self.hasher.len() + chunk.len() as u64 > max_size {
            return Err(BlobError::TooLarge { limit: max_size });
        }
        self.hasher.update(chunk);
        Ok(())
    }
    /// The blob's CID and size.
    pub fn finish(self) -> StoredBlob {
        let size = self.hasher.len();
        StoredBlob {
            cid: self.hasher.finish(),
            size,
        }
    }
}

/// An uploaded blob's metadata row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMetadata {
    /// Raw CID (the blob store key).
    pub cid: Cid,
    /// MIME type as detected or declared at upload.
    pub mime_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Upload time, ms since the epoch.
    pub created_ms: i64,
    /// Since when no record has referenced the blob (ms); `None` while one does. Ignored by
    /// [`insert_blob_metadata`], which works it out.
    pub unreferenced_since_ms: Option<i64>,
}

impl BlobMetadata {
    /// Whether the blob may be served at `now_ms`: a record references it, or it has been
    /// unreferenced for less than `grace_ms` (an upload not yet used, a record just deleted).
    pub fn is_live(&self, now_ms: i64, grace_ms: i64) -> bool {
        self.unreferenced_since_ms
            .is_none_or(|since| now_ms < since.saturating_add(grace_ms))
    }
}

/// Records an uploaded blob (call after [`BlobStore::put`] succeeded). An upload of bytes
/// already known keeps the first row's type and size; if no record references them, their
/// grace window starts again, as for a new upload.
pub fn insert_blob_metadata(db: &dyn Sql, meta: &BlobMetadata) -> SqlResult<()> {
    let size = i64::try_from(meta.size)
        .map_err(|_| super::StorageError::Sql(format!("blob size {} too large", meta.size)))?;
    let cid = SqlValue::Text(crate::data::cid_string(&meta.cid));
    db.execute(
        "INSERT INTO blob_metadata (cid, mime_type, size, created_ms, unreferenced_since_ms) \
         VALUES (?, ?, ?, ?, CASE WHEN EXISTS (SELECT 1 FROM record_blob WHERE blob_cid = ?) \
         THEN NULL ELSE ? END) \
         ON CONFLICT (cid) DO UPDATE SET unreferenced_since_ms = CASE \
         WHEN blob_metadata.unreferenced_since_ms IS NULL THEN NULL \
         ELSE excluded.unreferenced_since_ms END",
        &[
            cid.clone(),
            SqlValue::from(meta.mime_type.as_str()),
            SqlValue::Integer(size),
            SqlValue::Integer(meta.created_ms),
            cid,
            SqlValue::Integer(meta.created_ms),
        ],
    )?;
    Ok(())
}

const METADATA_COLUMNS: &str = "cid, mime_type, size, created_ms, unreferenced_since_ms";

fn metadata_row(row: &super::sql::Row) -> SqlResult<BlobMetadata> {
    let mut e = FirstError::new();
    let v = BlobMetadata {
        cid: e.keep(row.text(0).and_then(|t| stored_cid(&t))),
        mime_type: e.keep(row.text(1)),
        size: e.keep(row.integer(2).and_then(|n| {
            u64::try_from(n).map_err(|_| super::StorageError::Corrupt("negative blob size".into()))
        })),
        created_ms: e.keep(row.integer(3)),
        unreferenced_since_ms: e.keep(row.opt_integer(4)),
    };
    e.finish(v)
}

/// An uploaded blob's metadata, if known.
pub fn blob_metadata(db: &dyn Sql, cid: &Cid) -> SqlResult<Option<BlobMetadata>> {
    match db.query_opt(
        &format!("SELECT {METADATA_COLUMNS} FROM blob_metadata WHERE cid = ?"),
        &[SqlValue::Text(crate::data::cid_string(cid))],
    )? {
        Some(row) => metadata_row(&row).map(Some),
        None => Ok(None),
    }
}

/// Up to `limit` blob CIDs that some record references, after `cursor`
/// (exclusive), in CID string order (`sync.listBlobs`). With `since`, only
/// blobs referenced by records written in a commit after that rev.
pub fn list_referenced_blobs(
    db: &dyn Sql,
    since: Option<&str>,
    cursor: Option<&str>,
    limit: u32,
) -> SqlResult<Vec<Cid>> {
    db.execute(
        "SELECT DISTINCT blob_cid FROM record_blob WHERE blob_cid > ? AND rev > ? \
         ORDER BY blob_cid LIMIT ?",
        &[
            SqlValue::from(cursor.unwrap_or("")),
            SqlValue::from(since.unwrap_or("")),
            SqlValue::Integer(i64::from(limit)),
        ],
    )?
    .iter()
    .map(|row| stored_cid(&row.text(0)?))
    .collect()
}

/// Blobs records reference but the account does not hold (an import's, before their upload),
/// ordered by CID after `cursor`, each with the first record (`collection`, `rkey`) that
/// references it.
pub fn list_missing_blobs(
    db: &dyn Sql,
    cursor: Option<&str>,
    limit: u32,
) -> SqlResult<Vec<(Cid, String, String)>> {
    db.execute(
        "SELECT rb.blob_cid, MIN(rb.collection || '/' || rb.rkey) FROM record_blob rb \
         LEFT JOIN blob_metadata b ON b.cid = rb.blob_cid \
         WHERE b.cid IS NULL AND rb.blob_cid > ? \
         GROUP BY rb.blob_cid ORDER BY rb.blob_cid LIMIT ?",
        &[
            SqlValue::from(cursor.unwrap_or("")),
            SqlValue::Integer(i64::from(limit)),
        ],
    )?
    .iter()
    .map(|row| {
        let path = row.text(1)?;
        let (collection, rkey) = path.split_once('/').unwrap_or((path.as_str(), ""));
        Ok((
            stored_cid(&row.text(0)?)?,
            collection.to_owned(),
            rkey.to_owned(),
        ))
    })
    .collect()
}

/// After a commit changed which records reference which blobs: `added` blobs are referenced
/// (their grace window no longer matters), and each of `dropped` that no record references any
/// more is unreferenced from `now_ms`. Call inside the commit's transaction.
pub fn note_reference_changes(
    db: &dyn Sql,
    added: &std::collections::BTreeSet<String>,
    dropped: &std::collections::BTreeSet<String>,
    now_ms: i64,
) -> SqlResult<()> {
    for cid in added {
        db.execute(
            "UPDATE blob_metadata SET unreferenced_since_ms = NULL \
             WHERE cid = ? AND unreferenced_since_ms IS NOT NULL",
            &[SqlValue::from(cid.as_str())],
        )?;
    }
    for cid in dropped.difference(added) {
        let cid = SqlValue::from(cid.as_str());
        db.execute(
            "UPDATE blob_metadata SET unreferenced_since_ms = ? WHERE cid = ? \
             AND unreferenced_since_ms IS NULL \
             AND NOT EXISTS (SELECT 1 FROM record_blob WHERE blob_cid = ?)",
            &[SqlValue::Integer(now_ms), cid.clone(), cid],
        )?;
    }
    Ok(())
}

/// After the whole record index was rebuilt (a repository import): every blob's reference
/// state is worked out again; those newly unreferenced count from `now_ms`.
pub fn recount_references(db: &dyn Sql, now_ms: i64) -> SqlResult<()> {
    db.execute(
        "UPDATE blob_metadata SET unreferenced_since_ms = CASE \
         WHEN EXISTS (SELECT 1 FROM record_blob WHERE blob_cid = blob_metadata.cid) THEN NULL \
         ELSE COALESCE(unreferenced_since_ms, ?) END",
        &[SqlValue::Integer(now_ms)],
    )?;
    Ok(())
}

/// Up to `limit` blobs that no record has referenced since `until_ms` or earlier, longest
/// unreferenced first: garbage to forget with [`forget_collectable_blob`], then delete from the
/// blob store.
pub fn collectable_blobs(db: &dyn Sql, until_ms: i64, limit: u32) -> SqlResult<Vec<Cid>> {
    db.execute(
        "SELECT cid FROM blob_metadata WHERE unreferenced_since_ms <= ? \
         ORDER BY unreferenced_since_ms LIMIT ?",
        &[
            SqlValue::Integer(until_ms),
            SqlValue::Integer(i64::from(limit)),
        ],
    )?
    .iter()
    .map(|row| stored_cid(&row.text(0)?))
    .collect()
}

/// Whether blob metadata names `cid` (bytes in the blob store without a row are leftovers).
pub fn is_known_blob(db: &dyn Sql, cid: &Cid) -> SqlResult<bool> {
    Ok(db
        .query_opt(
            "SELECT 1 FROM blob_metadata WHERE cid = ?",
            &[SqlValue::Text(crate::data::cid_string(cid))],
        )?
        .is_some())
}

/// Forgets a blob's metadata if it is still garbage: no record references it, and it has had
/// none since `until_ms` or earlier (an upload of the same bytes since starts its window
/// again). Returns whether it was forgotten. A row that a record does reference has its
/// unreferenced time cleared, so that it is never picked again.
pub fn forget_collectable_blob(db: &dyn Sql, cid: &Cid, until_ms: i64) -> SqlResult<bool> {
    db.transaction(|| {
        let cid = SqlValue::Text(crate::data::cid_string(cid));
        let referenced = "EXISTS (SELECT 1 FROM record_blob WHERE blob_cid = ?)";
        let removed = db.execute(
            &format!(
                "DELETE FROM blob_metadata WHERE cid = ? AND unreferenced_since_ms <= ? \
                 AND NOT {referenced} RETURNING cid"
            ),
            &[cid.clone(), SqlValue::Integer(until_ms), cid.clone()],
        )?;
        if removed.is_empty() {
            db.execute(
                &format!(
                    "UPDATE blob_metadata SET unreferenced_since_ms = NULL \
                     WHERE cid = ? AND {referenced}"
                ),
                &[cid.clone(), cid],
            )?;
        }
        Ok(!removed.is_empty())
    })
}

/// Forgets a blob's metadata if no record references it; returns whether it
/// was removed.
pub fn delete_blob_metadata(db: &dyn Sql, cid: &Cid) -> SqlResult<bool> {
    db.transaction(|| {
        let cid = SqlValue::Text(crate::data::cid_string(cid));
        let removed = db.execute(
            "DELETE FROM blob_metadata WHERE cid = ? AND NOT EXISTS \
             (SELECT 1 FROM record_blob WHERE blob_cid = ?) RETURNING cid",
            &[cid.clone(), cid],
        )?;
        Ok(!removed.is_empty())
    })
}
