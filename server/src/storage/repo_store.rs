//! The repository in SQL: its head, the record index, and the one function
//! that persists a commit atomically.

use super::blobs::{note_reference_changes, recount_references};
use super::blocks::{put_blocks, reachable_blocks, stored_cid};
use super::error::{Result, StorageError};
use super::sequencer::{insert_event, NewEvent};
use super::sql::{placeholders, Sql, SqlExt, SqlValue, MAX_PARAMS};
use crate::first_error::FirstError;
use crate::repo::repository::OpAction;
use crate::repo::verify::VerifiedRepo;
use crate::repo::{BlockStore, CommitOutput};
use cid::Cid;
use std::collections::{BTreeMap, BTreeSet};

/// The repository head as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRoot {
    /// The account DID.
    pub did: String,
    /// CID of the current commit (open the repository with it).
    pub commit_cid: Cid,
    /// The current revision.
    pub rev: String,
    /// The current MST root.
    pub data_cid: Cid,
}

/// The blobs each created or updated record references, by `collection/rkey`
/// (the server extracts them from the record values). Records absent here
/// reference none.
pub type RecordBlobs = BTreeMap<String, Vec<Cid>>;

/// What [`persist_commit`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersistedCommit {
    /// The sequence number of the commit's event.
    pub seq: i64,
}

/// The stored head, or `None` before the first commit.
pub fn load_root(db: &dyn Sql) -> Result<Option<RepoRoot>> {
    let Some(row) = db.query_opt(
        "SELECT did, commit_cid, rev, data_cid FROM repo_root WHERE id = 1",
        &[],
    )?
    else {
        return Ok(None);
    };
    let mut e = FirstError::new();
    let v = RepoRoot {
        did: e.keep(row.text(0)),
        commit_cid: e.keep(row.text(1).and_then(|t| stored_cid(&t))),
        rev: e.keep(row.text(2)),
        data_cid: e.keep(row.text(3).and_then(|t| stored_cid(&t))),
    };
    e.finish(v).map(Some)
}

fn split_path(path: &str) -> Result<(&str, &str)> {
    path.split_once('/')
        .ok_or_else(|| StorageError::Corrupt(format!("record path {path:?} has no '/'")))
}

/// Stores a commit all-or-nothing: its new blocks, the record index and
/// record->blob references of its ops, the removal of blocks it made
/// unreachable, the new head, and its sequencer event. Either all of it is
/// in the database afterwards or none of it (a killed process included).
///
/// `output` is what [`crate::repo::Repo::apply_writes`] or
/// [`crate::repo::Repo::create`] returned. The commit must have been built on
/// the stored head (`output.prev_commit` equals it, or both are absent for
/// the first commit); otherwise nothing is stored and
/// [`StorageError::Conflict`] is returned, so a writer holding a stale
/// in-memory `Repo` can never move the head sideways.
///
/// Records must carry `$type` (the server validates this), which keeps
/// record blocks distinct from MST nodes and commits: a record block is
/// deleted once no index row points at it.
pub fn persist_commit(
    db: &dyn Sql,
    output: &CommitOutput,
    blobs: &RecordBlobs,
    event: &NewEvent<'_>,
) -> Result<PersistedCommit> {
    persist_commit_with(db, output, blobs, event, &mut || Ok(()))
}

/// [`persist_commit`], and `also` last in the same transaction (one commit to storage for
/// both): the caller's own rows that belong with the commit. An error from it rolls the
/// commit back.
pub fn persist_commit_with(
    db: &dyn Sql,
    output: &CommitOutput,
    blobs: &RecordBlobs,
    event: &NewEvent<'_>,
    also: &mut dyn FnMut() -> Result<()>,
) -> Result<PersistedCommit> {
    db.transaction(|| {
        let head = load_root(db)?;
        let expected = head.as_ref().map(|h| h.commit_cid);
        if expected != output.prev_commit {
            return Err(StorageError::Conflict(format!(
                "commit built on {} but the stored head is {}",
                describe(output.prev_commit),
                describe(expected)
            )));
        }
        if let Some(head) = &head {
            if head.did != output.commit.did {
                return Err(StorageError::Conflict(format!(
                    "commit for {} but the repository is {}",
                    output.commit.did, head.did
                )));
            }
        }

        put_blocks(db, &output.new_blocks, &output.rev)?;

        let mut dropped_records: BTreeSet<Cid> = BTreeSet::new();
        // Blobs whose references this commit drops and adds (a record's references are
        // rewritten whole), for their garbage-collection state.
        let mut dropped_blobs: BTreeSet<String> = BTreeSet::new();
        let mut added_blobs: BTreeSet<String> = BTreeSet::new();
        // Creates are indexed in batches (a 200-create applyWrites is a few statements, not
        // 400): a created record had no index row and no blob references to drop. A batch is
        // written before any other op, so ops on one path take effect in order.
        let mut created: Vec<(String, Cid)> = Vec::new();
        for op in &output.ops {
            if let (OpAction::Create, Some(cid)) = (op.action, op.cid) {
                for blob in blobs.get(&op.path).into_iter().flatten() {
                    added_blobs.insert(crate::data::cid_string(blob));
                }
                created.push((op.path.clone(), cid));
                continue;
            }
            index_records(db, RecordIndex::Live, &created, blobs, &output.rev)?;
            created.clear();
            let (collection, rkey) = split_path(&op.path)?;
            let key = [SqlValue::from(collection), SqlValue::from(rkey)];
            for row in db.execute(
                "DELETE FROM record_blob WHERE collection = ? AND rkey = ? RETURNING blob_cid",
                &key,
            )? {
                dropped_blobs.insert(row.text(0)?);
            }
            if let Some(prev) = op.prev {
                dropped_records.insert(prev);
            }
            match (op.action, op.cid) {
                (OpAction::Delete, _) => {
                    db.execute("DELETE FROM record WHERE collection = ? AND rkey = ?", &key)?;
                }
                (_, Some(cid)) => {
                    db.execute(
                        // An upsert, not a replace: the repository's counts are kept by
                        // triggers, which a replace's implicit delete does not fire.
                        "INSERT INTO record (collection, rkey, cid, rev) VALUES (?, ?, ?, ?) \
                         ON CONFLICT (collection, rkey) DO UPDATE \
                         SET cid = excluded.cid, rev = excluded.rev",
                        &[
                            key[0].clone(),
                            key[1].clone(),
                            SqlValue::Text(crate::data::cid_string(&cid)),
                            SqlValue::from(output.rev.as_str()),
                        ],
                    )?;
                    for blob in blobs.get(&op.path).into_iter().flatten() {
                        let blob = crate::data::cid_string(blob);
                        db.execute(
                            "INSERT OR IGNORE INTO record_blob (collection, rkey, blob_cid, rev) \
                             VALUES (?, ?, ?, ?)",
                            &[
                                key[0].clone(),
                                key[1].clone(),
                                SqlValue::from(blob.as_str()),
                                SqlValue::from(output.rev.as_str()),
                            ],
                        )?;
                        added_blobs.insert(blob);
                    }
                }
                (_, None) => {
                    return Err(StorageError::Corrupt(format!(
                        "{} of {} without a CID",
                        op.action.as_str(),
                        op.path
                    )))
                }
            }
        }
        index_records(db, RecordIndex::Live, &created, blobs, &output.rev)?;
        note_reference_changes(db, &added_blobs, &dropped_blobs, event.time_ms)?;

        // Unreachable blocks go: old MST nodes and commit (the core's diff),
        // and records no index row points at any more. A block the new
        // commit also wrote is kept whatever the lists say.
        let mut unreachable_cids = output.removed.clone();
        unreachable_cids.extend(&dropped_records);
        let unreachable: Vec<SqlValue> = unreachable_cids
            .iter()
            .filter(|cid| !output.new_blocks.contains_key(cid))
            .map(|cid| SqlValue::Text(crate::data::cid_string(cid)))
            .collect();
        for chunk in unreachable.chunks(MAX_PARAMS) {
            db.execute(
                &format!(
                    "DELETE FROM repo_block WHERE cid IN ({}) \
                     AND NOT EXISTS (SELECT 1 FROM record WHERE record.cid = repo_block.cid)",
                    placeholders(chunk.len())
                ),
                chunk,
            )?;
        }

        db.execute(
            "INSERT OR REPLACE INTO repo_root (id, did, commit_cid, rev, data_cid) \
             VALUES (1, ?, ?, ?, ?)",
            &[
                SqlValue::from(output.commit.did.as_str()),
                SqlValue::Text(crate::data::cid_string(&output.cid)),
                SqlValue::from(output.rev.as_str()),
                SqlValue::Text(crate::data::cid_string(&output.commit.data)),
            ],
        )?;
        let seq = insert_event(db, event)?;
        also()?;
        Ok(PersistedCommit { seq })
    })
}

/// Replaces the whole repository with `blocks` (importRepo, account
/// migration), all-or-nothing: every stored block, the record index and the
/// record->blob references are rebuilt from the repository whose commit is
/// `verified`, and the head moves to it. `verified` must come from
/// [`crate::repo::verify::verify_repo`] over `blocks` (the signature, the
/// tree and every record checked); only the blocks reachable from its commit
/// are kept. `blobs` lists the blobs each record references. An `event`,
/// when given (a `#sync` or `#commit` announcing the new state), is
/// sequenced in the same transaction; its seq is returned. Blobs no record references any
/// more count as unreferenced from `now_ms`.
pub fn replace_repo(
    db: &dyn Sql,
    blocks: &(impl BlockStore + ?Sized),
    verified: &VerifiedRepo,
    blobs: &RecordBlobs,
    event: Option<&NewEvent<'_>>,
    now_ms: i64,
) -> Result<Option<i64>> {
    let reachable = reachable_blocks(blocks, &verified.commit_cid)?;
    let rev = verified.commit.rev.as_str();
    db.transaction(|| {
        if let Some(head) = load_root(db)? {
            if head.did != verified.commit.did {
                return Err(StorageError::Conflict(format!(
                    "repository for {} but the account is {}",
                    verified.commit.did, head.did
                )));
            }
        }
        db.execute("DELETE FROM repo_block", &[])?;
        db.execute("DELETE FROM record", &[])?;
        db.execute("DELETE FROM record_blob", &[])?;
        put_blocks(db, reachable.blocks(), rev)?;
        index_records(db, RecordIndex::Live, &verified.records, blobs, rev)?;
        db.execute(
            "INSERT OR REPLACE INTO repo_root (id, did, commit_cid, rev, data_cid) \
             VALUES (1, ?, ?, ?, ?)",
            &[
                SqlValue::from(verified.commit.did.as_str()),
                SqlValue::Text(crate::data::cid_string(&verified.commit_cid)),
                SqlValue::from(rev),
                SqlValue::Text(crate::data::cid_string(&verified.commit.data)),
            ],
        )?;
        recount_references(db, now_ms)?;
        event.map(|e| insert_event(db, e)).transpose()
    })
}

/// The repository's counts, kept by triggers as it changes (schema version 10).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Blocks of the repository.
    pub blocks: i64,
    /// Records in the index.
    pub records: i64,
    /// Distinct blobs that records reference.
    pub expected_blobs: i64,
    /// How many of those are stored.
    pub imported_blobs: i64,
    /// Blobs stored, referenced or not (schema version 12).
    pub stored_blobs: i64,
    /// Their bytes.
    pub stored_blob_bytes: i64,
}

/// The repository's counts.
pub fn tally(db: &dyn Sql) -> Result<Tally> {
    match db.query_opt(
        "SELECT blocks, records, expected_blobs, imported_blobs, stored_blobs, stored_blob_bytes \
         FROM repo_tally WHERE id = 1",
        &[],
    )? {
        Some(row) => Ok(Tally {
            blocks: row.integer(0)?,
            records: row.integer(1)?,
            expected_blobs: row.integer(2)?,
            imported_blobs: row.integer(3)?,
            stored_blobs: row.integer(4)?,
            stored_blob_bytes: row.integer(5)?,
        }),
        None => Ok(Tally::default()),
    }
}

/// Which record index to fill: the repository's, or an import's stage of it (same columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordIndex {
    /// `record` and `record_blob`.
    Live,
    /// `import_record` and `import_record_blob`, swapped in once an import is verified.
    Import,
}

impl RecordIndex {
    /// The tables: records, then their blob references.
    fn tables(self) -> (&'static str, &'static str) {
        match self {
            RecordIndex::Live => ("record", "record_blob"),
            RecordIndex::Import => ("import_record", "import_record_blob"),
        }
    }
}

/// Adds to the record index `index` the records `records` (`collection/rkey`, CID; a row already
/// there for the path is updated) and the blob references `blobs` lists for them (references of
/// records not in `records` are dropped), all written at `rev`.
pub fn index_records(
    db: &dyn Sql,
    index: RecordIndex,
    records: &[(String, Cid)],
    blobs: &RecordBlobs,
    rev: &str,
) -> Result<()> {
    // persist_commit flushes its pending creates before every other op, most often none.
    if records.is_empty() {
        return Ok(());
    }
    let (record_table, blob_table) = index.tables();
    for chunk in records.chunks(MAX_PARAMS / 4) {
        let mut params = Vec::with_capacity(chunk.len() * 4);
        for (path, cid) in chunk {
            let (collection, rkey) = split_path(path)?;
            params.push(SqlValue::from(collection));
            params.push(SqlValue::from(rkey));
            params.push(SqlValue::Text(crate::data::cid_string(cid)));
            params.push(SqlValue::from(rev));
        }
        db.execute(
            &format!(
                // An upsert, not a replace: the repository's counts are kept by triggers,
                // which a replace's implicit delete does not fire.
                "INSERT INTO {record_table} (collection, rkey, cid, rev) VALUES {} \
                 ON CONFLICT (collection, rkey) DO UPDATE SET cid = excluded.cid, rev = excluded.rev",
                vec!["(?, ?, ?, ?)"; chunk.len()].join(", ")
            ),
            &params,
        )?;
    }
    let mut paths = BTreeSet::new();
    for (path, _) in records {
        paths.insert(path.as_str());
    }
    // References of records the repository does not hold are dropped.
    for (path, cids) in blobs.iter().filter(|(p, _)| paths.contains(p.as_str())) {
        let (collection, rkey) = split_path(path)?;
        for cid in cids {
            db.execute(
                &format!(
                    "INSERT OR IGNORE INTO {blob_table} (collection, rkey, blob_cid, rev) \
                     VALUES (?, ?, ?, ?)"
                ),
                &[
                    SqlValue::from(collection),
                    SqlValue::from(rkey),
                    SqlValue::Text(crate::data::cid_string(cid)),
                    SqlValue::from(rev),
                ],
            )?;
        }
    }
    Ok(())
}

fn describe(cid: Option<Cid>) -> String {
    cid.map_or_else(|| "nothing".to_owned(), |c| crate::data::cid_string(&c))
}

/// One entry of the record index, with the record's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRecord {
    /// The record key.
    pub rkey: String,
    /// The record's CID, as stored (its string form: listRecords answers it as is, with no
    /// decoding and encoding again).
    pub cid: String,
    /// The record's DAG-CBOR block, `None` if the block store lacks it.
    pub bytes: Option<Vec<u8>>,
}

/// A page of a collection's records for `listRecords`, with their bytes (one statement for
/// the page): newest first (rkey descending, TIDs sort by time) unless `reverse`, strictly
/// after `cursor` (the last rkey of the previous page) in that order.
pub fn list_records(
    db: &dyn Sql,
    collection: &str,
    cursor: Option<&str>,
    limit: u32,
    reverse: bool,
) -> Result<Vec<IndexedRecord>> {
    let (cmp, order) = if reverse { (">", "ASC") } else { ("<", "DESC") };
    let limit = SqlValue::Integer(i64::from(limit));
    let rows = match cursor {
        Some(c) => db.execute(
            &format!(
                "SELECT record.rkey, record.cid, repo_block.bytes FROM record \
                 LEFT JOIN repo_block ON repo_block.cid = record.cid \
                 WHERE record.collection = ? AND record.rkey {cmp} ? \
                 ORDER BY record.rkey {order} LIMIT ?"
            ),
            &[SqlValue::from(collection), SqlValue::from(c), limit],
        )?,
        None => db.execute(
            &format!(
                "SELECT record.rkey, record.cid, repo_block.bytes FROM record \
                 LEFT JOIN repo_block ON repo_block.cid = record.cid \
                 WHERE record.collection = ? ORDER BY record.rkey {order} LIMIT ?"
            ),
            &[SqlValue::from(collection), limit],
        )?,
    };
    rows.into_iter()
        .map(|row| {
            let mut e = FirstError::new();
            let v = IndexedRecord {
                rkey: e.keep(row.text(0)),
                cid: e.keep(row.text(1)),
                bytes: e.keep(row.into_opt_blob(2)),
            };
            e.finish(v)
        })
        .collect()
}

/// A record's CID and bytes from the index, if present.
pub fn get_record(db: &dyn Sql, collection: &str, rkey: &str) -> Result<Option<(Cid, Vec<u8>)>> {
    let Some(row) = db.query_opt(
        "SELECT record.cid, repo_block.bytes FROM record \
         JOIN repo_block ON repo_block.cid = record.cid \
         WHERE record.collection = ? AND record.rkey = ?",
        &[SqlValue::from(collection), SqlValue::from(rkey)],
    )?
    else {
        return Ok(None);
    };
    let cid = stored_cid(&row.text(0)?)?;
    Ok(Some((cid, row.into_blob(1)?)))
}

/// The collections that hold at least one record, in order.
pub fn list_collections(db: &dyn Sql) -> Result<Vec<String>> {
    db.execute(
        "SELECT DISTINCT collection FROM record ORDER BY collection",
        &[],
    )?
    .iter()
    .map(|row| row.text(0))
    .collect()
}

/// Every indexed record as (`collection/rkey`, CID), ascending: what the MST
/// must hold (consistency checks).
pub fn all_records(db: &dyn Sql) -> Result<Vec<(String, Cid)>> {
    db.execute(
        "SELECT collection, rkey, cid FROM record ORDER BY collection, rkey",
        &[],
    )?
    .iter()
    .map(|row| {
        Ok((
            format!("{}/{}", row.text(0)?, row.text(1)?),
            stored_cid(&row.text(2)?)?,
        ))
    })
    .collect()
}
