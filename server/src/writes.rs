//! The commit pipeline: one batch of record writes becomes one signed commit, stored atomically
//! with its record index, blob references, head and sequencer event. Handlers validate records;
//! this module only turns accepted writes into a durable commit.

use std::fmt;

use cid::Cid;

use crate::account::Account;
use crate::config::Config;
use crate::firehose::FirehoseError;
use crate::repo::{Repo, RepoError, WriteOp};
use crate::storage::{self, RecordBlobs, SqlBlockStore, StorageError};
use crate::syntax::Tid;

/// Why a batch could not be committed.
#[derive(Debug)]
pub enum WriteError {
    /// `swapCommit` did not name the current commit; carries the current one (if any).
    CommitSwap(Option<Cid>),
    /// The batch conflicts with the tree (create of an existing key, update or delete of a
    /// missing one).
    Conflict(String),
    /// The commit is above a firehose limit (ops, bytes of blocks).
    TooLarge(String),
    /// The repository or its storage failed.
    Internal(String),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The reference PDS's message for a failed commit swap.
            WriteError::CommitSwap(cid) => match cid {
                Some(c) => write!(f, "Commit was at {}", crate::data::cid_string(c)),
                None => f.write_str("Commit was at null"),
            },
            WriteError::Conflict(m) | WriteError::TooLarge(m) | WriteError::Internal(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for WriteError {}

impl From<StorageError> for WriteError {
    fn from(e: StorageError) -> Self {
        WriteError::Internal(format!("storage: {e}"))
    }
}

impl From<RepoError> for WriteError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::WriteConflict(m) => WriteError::Conflict(m),
            other => WriteError::Internal(format!("repository: {other}")),
        }
    }
}

/// What a stored commit is known by.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The new commit's CID.
    pub cid: Cid,
    /// Its revision.
    pub rev: String,
    /// The sequence number of its firehose event.
    pub seq: i64,
    /// The record CID each write produced, in batch order (`None` for deletes).
    pub record_cids: Vec<Option<Cid>>,
}

/// A fresh TID that sorts after the stored head's rev (a restarted Durable Object may have a
/// clock behind the last commit). Used for revisions and for generated record keys.
pub fn next_tid(account: &Account) -> Result<Tid, WriteError> {
    let root = storage::load_root(account.sql.as_ref())?;
    let mut tids = account.tids.borrow_mut();
    if let Some(root) = &root {
        if let Ok(rev) = Tid::new(root.rev.clone()) {
            tids.ensure_after(&rev);
        }
    }
    Ok(tids.next(account.clock.as_ref()))
}

/// Commits `writes` as one commit: takes the head (creating the empty repository on first
/// use), checks `swap_commit` against it, builds and signs the commit, and persists blocks,
/// record index, `blobs` references, head and the firehose `#commit` event in one transaction.
pub fn commit_writes(
    config: &Config,
    account: &Account,
    writes: &[WriteOp],
    blobs: &RecordBlobs,
    swap_commit: Option<Cid>,
) -> Result<Committed, WriteError> {
    let db = account.sql.as_ref();
    let root = account
        .head(config)
        .map_err(|e| WriteError::Internal(e.message))?;
    if let Some(expected) = swap_commit {
        if root.commit_cid != expected {
            return Err(WriteError::CommitSwap(Some(root.commit_cid)));
        }
    }
    // `head` has already moved the generator past the stored rev.
    let rev = account.tids.borrow_mut().next(account.clock.as_ref());
    let store = SqlBlockStore::new(db);
    let (_, output) = Repo::open(&store, root.commit_cid)?.apply_writes(
        &store,
        writes,
        &config.signing_key,
        rev.as_str(),
    )?;
    let event = crate::firehose::commit_event(&config.did, &output, account.clock.now_micros())
        .map_err(|e| match e {
            FirehoseError::TooLarge(m) => WriteError::TooLarge(m),
            other => WriteError::Internal(format!("commit event: {other}")),
        })?;
    let time_ms = i64::try_from(account.clock.now_millis())
        .map_err(|_| WriteError::Internal("clock out of range".into()))?;
    let persisted = storage::persist_commit(db, &output, blobs, &event.new_event(time_ms))?;
    Ok(Committed {
        cid: output.cid,
        rev: output.rev.clone(),
        seq: persisted.seq,
        record_cids: output.ops.iter().map(|op| op.cid).collect(),
    })
}
