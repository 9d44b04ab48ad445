//! Repository imports, staged: the blocks of an imported CAR arrive in batches into
//! `import_block` (already checked against their CIDs at the edge), then the repository they
//! make is swapped in whole, in one transaction that walks the imported tree (so a tree that
//! fails its checks midway rolls everything back), with a new commit over the same tree. Until
//! the swap the previous repository is untouched, and a repeated import reuses what is staged.

use cid::Cid;

use super::blocks::put_blocks;
use super::error::Result;
use super::sql::{Sql, SqlExt, SqlValue, MAX_PARAMS};
use crate::repo::blockstore::{BlockMap, BlockStore};
use crate::repo::error::RepoError;

/// How long a stage that receives nothing is kept: a day, room for a client to retry.
pub const STAGE_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// Stages `blocks` (CIDs already verified) at `now_ms`; blocks staged before are kept (and
/// count as staged now when they arrive again).
pub fn stage_blocks(db: &dyn Sql, blocks: &[(Cid, Vec<u8>)], now_ms: i64) -> Result<()> {
    db.transaction(|| {
        for chunk in blocks.chunks(MAX_PARAMS / 3) {
            let mut params = Vec::with_capacity(chunk.len() * 3);
            for (cid, bytes) in chunk {
                params.push(SqlValue::Text(cid.to_string()));
                params.push(SqlValue::Blob(bytes.clone()));
                params.push(SqlValue::Integer(now_ms));
            }
            db.execute(
                &format!(
                    "INSERT INTO import_block (cid, bytes, staged_ms) VALUES {} \
                     ON CONFLICT (cid) DO UPDATE SET staged_ms = excluded.staged_ms",
                    vec!["(?, ?, ?)"; chunk.len()].join(", ")
                ),
                &params,
            )?;
        }
        Ok(())
    })
}

/// When the stage expires ([`STAGE_TTL_MS`] after its last block arrived), if anything is
/// staged.
pub fn stage_expiry(db: &dyn Sql) -> Result<Option<i64>> {
    match db.query_opt("SELECT MAX(staged_ms) FROM import_block", &[])? {
        Some(row) => Ok(row.opt_integer(0)?.map(|t| t.saturating_add(STAGE_TTL_MS))),
        None => Ok(None),
    }
}

/// Purges the stage if it expired by `now_ms` (an import abandoned midway); whether it did.
pub fn purge_expired_stage(db: &dyn Sql, now_ms: i64) -> Result<bool> {
    match stage_expiry(db)? {
        Some(expiry) if expiry <= now_ms => {
            clear_stage(db)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// How many blocks are staged.
pub fn staged_count(db: &dyn Sql) -> Result<i64> {
    match db.query_opt("SELECT COUNT(*) FROM import_block", &[])? {
        Some(row) => row.integer(0),
        None => Ok(0),
    }
}

/// Forgets every staged block.
pub fn clear_stage(db: &dyn Sql) -> Result<()> {
    db.execute("DELETE FROM import_block", &[])?;
    Ok(())
}

/// The staged blocks as a read-only block store (for verifying the imported tree).
pub struct StagedBlocks<'a> {
    db: &'a dyn Sql,
}

impl<'a> StagedBlocks<'a> {
    /// The blocks staged in `db`.
    pub fn new(db: &'a dyn Sql) -> StagedBlocks<'a> {
        StagedBlocks { db }
    }
}

impl BlockStore for StagedBlocks<'_> {
    fn get(&self, cid: &Cid) -> crate::repo::error::Result<Option<Vec<u8>>> {
        let row = self.db.execute(
            "SELECT bytes FROM import_block WHERE cid = ?",
            &[SqlValue::Text(cid.to_string())],
        )?;
        match row.into_iter().next() {
            Some(row) => Ok(Some(row.into_blob(0)?)),
            None => Ok(None),
        }
    }

    fn put(&mut self, _cid: Cid, _bytes: Vec<u8>) -> crate::repo::error::Result<()> {
        Err(RepoError::Storage("staged blocks are read-only".into()))
    }
}

/// Starts swapping an import in (inside the caller's transaction): nothing staged is marked
/// kept yet, and the repository's blocks, record index and blob references are emptied, to be
/// refilled from the imported tree as it is walked ([`keep_blocks`], [`index_records`]) and
/// completed by [`finish_swap`].
pub fn begin_swap(db: &dyn Sql) -> Result<()> {
    db.execute("UPDATE import_block SET keep = 0 WHERE keep = 1", &[])?;
    db.execute("DELETE FROM repo_block", &[])?;
    db.execute("DELETE FROM record", &[])?;
    db.execute("DELETE FROM record_blob", &[])?;
    Ok(())
}

/// Marks staged blocks the imported tree reaches.
pub fn keep_blocks(db: &dyn Sql, cids: &[Cid]) -> Result<()> {
    for chunk in cids.chunks(MAX_PARAMS) {
        let params: Vec<SqlValue> = chunk
            .iter()
            .map(|c| SqlValue::Text(c.to_string()))
            .collect();
        db.execute(
            &format!(
                "UPDATE import_block SET keep = 1 WHERE cid IN ({})",
                vec!["?"; chunk.len()].join(", ")
            ),
            &params,
        )?;
    }
    Ok(())
}

pub use super::repo_store::index_records;

/// The new head of an imported repository.
pub struct ImportedHead<'a> {
    /// The DID the repository belongs to.
    pub did: &'a str,
    /// The new commit over the imported tree: its CID and block.
    pub commit: (Cid, Vec<u8>),
    /// The new commit's revision.
    pub rev: &'a str,
    /// The imported tree's root.
    pub data: Cid,
}

/// Completes the swap [`begin_swap`] started: the kept staged blocks and the new commit become
/// the repository's blocks, the head moves to the new commit, blob references are recounted
/// (blobs no record references count as unreferenced from `now_ms`), and the stage is emptied.
pub fn finish_swap(db: &dyn Sql, head: &ImportedHead<'_>, now_ms: i64) -> Result<()> {
    db.execute(
        "INSERT INTO repo_block (cid, bytes, rev) SELECT cid, bytes, ? FROM import_block \
         WHERE keep = 1",
        &[SqlValue::from(head.rev)],
    )?;
    let mut commit = BlockMap::new();
    commit.insert(head.commit.0, head.commit.1.clone());
    put_blocks(db, &commit, head.rev)?;
    db.execute(
        "INSERT OR REPLACE INTO repo_root (id, did, commit_cid, rev, data_cid) \
         VALUES (1, ?, ?, ?, ?)",
        &[
            SqlValue::from(head.did),
            SqlValue::Text(head.commit.0.to_string()),
            SqlValue::from(head.rev),
            SqlValue::Text(head.data.to_string()),
        ],
    )?;
    super::blobs::recount_references(db, now_ms)?;
    clear_stage(db)
}
