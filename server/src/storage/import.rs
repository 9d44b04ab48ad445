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

/// Stages `blocks` (CIDs already verified); blocks staged before are kept.
pub fn stage_blocks(db: &dyn Sql, blocks: &[(Cid, Vec<u8>)]) -> Result<()> {
    db.transaction(|| {
        for chunk in blocks.chunks(MAX_PARAMS / 2) {
            let mut params = Vec::with_capacity(chunk.len() * 2);
            for (cid, bytes) in chunk {
                params.push(SqlValue::Text(cid.to_string()));
                params.push(SqlValue::Blob(bytes.clone()));
            }
            db.execute(
                &format!(
                    "INSERT OR IGNORE INTO import_block (cid, bytes) VALUES {}",
                    vec!["(?, ?)"; chunk.len()].join(", ")
                ),
                &params,
            )?;
        }
        Ok(())
    })
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
