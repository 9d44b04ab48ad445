//! The commit pipeline: one batch of record writes becomes one signed commit, stored atomically
//! with its record index, blob references, head and sequencer event. Handlers validate records;
//! this module only turns accepted writes into a durable commit.

use std::fmt;

use cid::Cid;

use crate::account::Account;
use crate::config::Config;
use crate::data::{Map, Value};
use crate::repo::car::CarWriter;
use crate::repo::{CommitOutput, Repo, RepoError, WriteOp};
use crate::storage::{self, NewEvent, RecordBlobs, SqlBlockStore, StorageError};
use crate::syntax::Tid;

/// Why a batch could not be committed.
#[derive(Debug)]
pub enum WriteError {
    /// `swapCommit` did not name the current commit; carries the current one (if any).
    CommitSwap(Option<Cid>),
    /// The batch conflicts with the tree (create of an existing key, update or delete of a
    /// missing one).
    Conflict(String),
    /// The repository or its storage failed.
    Internal(String),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The reference PDS's message for a failed commit swap.
            WriteError::CommitSwap(cid) => match cid {
                Some(c) => write!(f, "Commit was at {c}"),
                None => f.write_str("Commit was at null"),
            },
            WriteError::Conflict(m) | WriteError::Internal(m) => f.write_str(m),
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

/// The current commit CID, or `None` before the first commit.
pub fn current_commit(account: &Account) -> Result<Option<Cid>, WriteError> {
    Ok(storage::load_root(account.sql.as_ref())?.map(|r| r.commit_cid))
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

/// Commits `writes` as one commit: loads the head, checks `swap_commit` against it, builds and
/// signs the commit (the repository's first commit if there is no head), and persists blocks,
/// record index, `blobs` references, head and the `#commit` event in one transaction.
pub fn commit_writes(
    config: &Config,
    account: &Account,
    writes: &[WriteOp],
    blobs: &RecordBlobs,
    swap_commit: Option<Cid>,
) -> Result<Committed, WriteError> {
    let db = account.sql.as_ref();
    let root = storage::load_root(db)?;
    let head = root.as_ref().map(|r| r.commit_cid);
    if let Some(expected) = swap_commit {
        if head != Some(expected) {
            return Err(WriteError::CommitSwap(head));
        }
    }
    let rev = next_tid(account)?;
    let store = SqlBlockStore::new(db);
    let (_, output) = match &root {
        Some(root) => Repo::open(&store, root.commit_cid)?.apply_writes(
            &store,
            writes,
            &config.signing_key,
            rev.as_str(),
        )?,
        None => Repo::create(
            &store,
            config.did.as_str(),
            writes,
            &config.signing_key,
            rev.as_str(),
        )?,
    };
    let event = commit_event_body(&output, account.clock.now_micros())?;
    let time_ms = i64::try_from(account.clock.now_millis())
        .map_err(|_| WriteError::Internal("clock out of range".into()))?;
    let persisted = storage::persist_commit(
        db,
        &output,
        blobs,
        &NewEvent {
            kind: "commit",
            event: &event,
            time_ms,
        },
    )?;
    Ok(Committed {
        cid: output.cid,
        rev: output.rev.clone(),
        seq: persisted.seq,
        record_cids: output.ops.iter().map(|op| op.cid).collect(),
    })
}

/// The `#commit` event body (DAG-CBOR, without `seq`) per the subscribeRepos lexicon: the
/// commit, its ops, and a CAR of the new blocks plus the covering proofs (sync v1.1).
/// Kept to one function so the firehose's own `commit_event` can replace it.
pub fn commit_event_body(output: &CommitOutput, time_micros: u64) -> Result<Vec<u8>, WriteError> {
    let text = |s: &str| Value::String(s.to_owned());
    let car_err = |e: RepoError| WriteError::Internal(format!("event CAR: {e}"));
    let mut car = CarWriter::new(Vec::new(), &output.cid).map_err(car_err)?;
    let mut blocks = output.new_blocks.clone();
    for (cid, bytes) in &output.relevant_blocks {
        blocks.entry(*cid).or_insert_with(|| bytes.clone());
    }
    if let Some(bytes) = blocks.get(&output.cid) {
        car.write_block(&output.cid, bytes).map_err(car_err)?;
    }
    for (cid, bytes) in blocks.iter().filter(|(c, _)| **c != output.cid) {
        car.write_block(cid, bytes).map_err(car_err)?;
    }
    let car = car.finish().map_err(car_err)?;
    let ops = output
        .ops
        .iter()
        .map(|op| {
            let mut m = Map::new();
            m.insert("action".into(), text(op.action.as_str()));
            m.insert("path".into(), text(&op.path));
            m.insert("cid".into(), op.cid.map_or(Value::Null, Value::Link));
            if let Some(prev) = op.prev {
                m.insert("prev".into(), Value::Link(prev));
            }
            Value::Map(m)
        })
        .collect();
    let time = crate::syntax::Datetime::from_unix_micros(time_micros);
    let mut m = Map::new();
    m.insert("repo".into(), text(&output.commit.did));
    m.insert("commit".into(), Value::Link(output.cid));
    m.insert("rev".into(), text(&output.rev));
    m.insert(
        "since".into(),
        output.since.as_deref().map_or(Value::Null, text),
    );
    m.insert("blocks".into(), Value::Bytes(car));
    m.insert("ops".into(), Value::Array(ops));
    if let Some(prev_data) = output.prev_data {
        m.insert("prevData".into(), Value::Link(prev_data));
    }
    m.insert("rebase".into(), Value::Bool(false));
    m.insert("tooBig".into(), Value::Bool(false));
    m.insert("blobs".into(), Value::Array(Vec::new()));
    m.insert("time".into(), text(time.as_str()));
    Ok(crate::data::encode(&Value::Map(m)))
}
