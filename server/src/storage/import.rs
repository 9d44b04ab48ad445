//! Repository imports, staged: the blocks of an imported CAR arrive in batches into
//! `import_block` (already checked against their CIDs at the edge); then the imported tree is
//! walked in steps of bounded size, each one transaction that marks the blocks it reaches and
//! indexes the records it meets into a stage of the record index (`import_walk` says where the
//! walk stands); then, in one last transaction, all of it is swapped in with a new commit over
//! the same tree. Until the swap the previous repository is untouched (a crash between steps
//! loses at most the step under way), and a repeated import reuses what is staged.

use cid::Cid;

use super::blocks::put_blocks;
use super::error::Result;
use super::sql::{Sql, SqlExt, SqlValue, MAX_PARAMS};
use crate::first_error::FirstError;
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
                params.push(SqlValue::Text(crate::data::cid_string(cid)));
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

/// Forgets every staged block and any walk of them.
pub fn clear_stage(db: &dyn Sql) -> Result<()> {
    forget_walk(db)?;
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
            &[SqlValue::Text(crate::data::cid_string(cid))],
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

/// A walk of an imported tree under way: which import, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportWalk {
    /// The imported commit.
    pub root: String,
    /// The revision the new commit will have: a TID no other walk gets, so it also names the
    /// walk (an import can tell when another replaced its walk).
    pub rev: String,
    /// Where the walk stands (a [`crate::repo::verify::WalkState`] as JSON).
    pub state: String,
    /// Nodes and records visited so far.
    pub visited: i64,
}

/// The walk under way, if any.
pub fn load_walk(db: &dyn Sql) -> Result<Option<ImportWalk>> {
    let Some(row) = db.query_opt(
        "SELECT root, rev, state, visited FROM import_walk WHERE id = 1",
        &[],
    )?
    else {
        return Ok(None);
    };
    let mut e = FirstError::new();
    let v = ImportWalk {
        root: e.keep(row.text(0)),
        rev: e.keep(row.text(1)),
        state: e.keep(row.text(2)),
        visited: e.keep(row.integer(3)),
    };
    e.finish(v).map(Some)
}

/// Starts a walk (replacing any other): nothing staged is marked kept yet and the stage of the
/// record index is emptied, to be refilled as the walk goes ([`keep_blocks`],
/// [`index_records`] with [`RecordIndex::Import`]).
pub fn begin_walk(db: &dyn Sql, walk: &ImportWalk) -> Result<()> {
    forget_walk(db)?;
    db.execute("UPDATE import_block SET keep = 0 WHERE keep = 1", &[])?;
    save_walk(db, walk)
}

/// Records where the walk stands.
pub fn save_walk(db: &dyn Sql, walk: &ImportWalk) -> Result<()> {
    db.execute(
        "INSERT OR REPLACE INTO import_walk (id, root, rev, state, visited) \
         VALUES (1, ?, ?, ?, ?)",
        &[
            SqlValue::from(walk.root.as_str()),
            SqlValue::from(walk.rev.as_str()),
            SqlValue::from(walk.state.as_str()),
            SqlValue::Integer(walk.visited),
        ],
    )?;
    Ok(())
}

/// Drops the walk and what it indexed (the staged blocks stay, for another try).
pub fn forget_walk(db: &dyn Sql) -> Result<()> {
    db.execute("DELETE FROM import_walk", &[])?;
    db.execute("DELETE FROM import_record", &[])?;
    db.execute("DELETE FROM import_record_blob", &[])?;
    Ok(())
}

/// Marks staged blocks the imported tree reaches.
pub fn keep_blocks(db: &dyn Sql, cids: &[Cid]) -> Result<()> {
    for chunk in cids.chunks(MAX_PARAMS) {
        let params: Vec<SqlValue> = chunk
            .iter()
            .map(|c| SqlValue::Text(crate::data::cid_string(c)))
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

pub use super::repo_store::{index_records, RecordIndex};

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

/// Swaps in what a finished walk marked and indexed: the kept staged blocks and the new commit
/// become the repository's blocks, the staged index its record index, the head moves to the new
/// commit, blob references are recounted (blobs no record references count as unreferenced from
/// `now_ms`), and the stage is emptied. The caller holds a transaction around it.
pub fn swap_in(db: &dyn Sql, head: &ImportedHead<'_>, now_ms: i64) -> Result<()> {
    db.execute("DELETE FROM repo_block", &[])?;
    db.execute("DELETE FROM record", &[])?;
    db.execute("DELETE FROM record_blob", &[])?;
    db.execute(
        "INSERT INTO repo_block (cid, bytes, rev) SELECT cid, bytes, ? FROM import_block \
         WHERE keep = 1",
        &[SqlValue::from(head.rev)],
    )?;
    db.execute(
        "INSERT INTO record (collection, rkey, cid, rev) \
         SELECT collection, rkey, cid, rev FROM import_record",
        &[],
    )?;
    db.execute(
        "INSERT INTO record_blob (collection, rkey, blob_cid, rev) \
         SELECT collection, rkey, blob_cid, rev FROM import_record_blob",
        &[],
    )?;
    let mut commit = BlockMap::new();
    commit.insert(head.commit.0, head.commit.1.clone());
    put_blocks(db, &commit, head.rev)?;
    db.execute(
        "INSERT OR REPLACE INTO repo_root (id, did, commit_cid, rev, data_cid) \
         VALUES (1, ?, ?, ?, ?)",
        &[
            SqlValue::from(head.did),
            SqlValue::Text(crate::data::cid_string(&head.commit.0)),
            SqlValue::from(head.rev),
            SqlValue::Text(crate::data::cid_string(&head.data)),
        ],
    )?;
    super::blobs::recount_references(db, now_ms)?;
    clear_stage(db)
}
