//! Repository imports, staged: the blocks of an imported CAR arrive in batches into
//! `import_block` (already checked against their CIDs at the edge), then the repository they
//! make is swapped in whole, in one transaction, with a new commit over the same tree. Until the
//! swap the previous repository is untouched, and a repeated import reuses what is staged.

use cid::Cid;

use super::blocks::put_blocks;
use super::error::Result;
use super::repo_store::{index_records, RecordBlobs};
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

/// What an import swaps in.
pub struct ImportedRepo<'a> {
    /// The DID the repository belongs to.
    pub did: &'a str,
    /// The blocks to keep from the stage: the tree's nodes and records.
    pub reachable: Vec<Cid>,
    /// Every record: (`collection/rkey`, CID).
    pub records: &'a [(String, Cid)],
    /// The blobs each record references.
    pub blobs: &'a RecordBlobs,
    /// The new commit over the imported tree: its CID and block.
    pub commit: (Cid, Vec<u8>),
    /// The new commit's revision.
    pub rev: &'a str,
    /// The imported tree's root.
    pub data: Cid,
}

/// Replaces the repository with the imported one, all-or-nothing: its reachable staged blocks
/// and new commit become the repository's blocks, the record index and blob references are
/// rebuilt, the head moves to the new commit, and the stage is emptied. Blobs no record
/// references any more count as unreferenced from `now_ms`.
pub fn swap_in(db: &dyn Sql, repo: &ImportedRepo<'_>, now_ms: i64) -> Result<()> {
    db.transaction(|| {
        db.execute("UPDATE import_block SET keep = 0", &[])?;
        for chunk in repo.reachable.chunks(MAX_PARAMS) {
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
        db.execute("DELETE FROM repo_block", &[])?;
        db.execute("DELETE FROM record", &[])?;
        db.execute("DELETE FROM record_blob", &[])?;
        db.execute(
            "INSERT INTO repo_block (cid, bytes, rev) SELECT cid, bytes, ? FROM import_block \
             WHERE keep = 1",
            &[SqlValue::from(repo.rev)],
        )?;
        let mut commit = BlockMap::new();
        commit.insert(repo.commit.0, repo.commit.1.clone());
        put_blocks(db, &commit, repo.rev)?;
        index_records(db, repo.records, repo.blobs, repo.rev)?;
        db.execute(
            "INSERT OR REPLACE INTO repo_root (id, did, commit_cid, rev, data_cid) \
             VALUES (1, ?, ?, ?, ?)",
            &[
                SqlValue::from(repo.did),
                SqlValue::Text(repo.commit.0.to_string()),
                SqlValue::from(repo.rev),
                SqlValue::Text(repo.data.to_string()),
            ],
        )?;
        super::blobs::recount_references(db, now_ms)?;
        clear_stage(db)
    })
}
