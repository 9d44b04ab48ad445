//! The sequenced events of `com.atproto.sync.subscribeRepos`, built as
//! [`EventBody`]s (canonical DAG-CBOR bodies without `seq`) exactly per the
//! lexicon: required-nullable fields are written as null, optional ones are
//! omitted when absent, deprecated ones get their fixed values.

use super::frame::{EventBody, EventKind};
use super::FirehoseError;
use crate::data::{encode, Map, Value};
use crate::repo::blockstore::BlockMap;
use crate::repo::car::CarWriter;
use crate::repo::commit::Commit;
use crate::repo::{CommitOutput, RepoOp};
use crate::syntax::{Datetime, Did, Handle};
use cid::Cid;

/// Lexicon cap on `#commit.ops`.
pub const MAX_COMMIT_OPS: usize = 200;
/// Lexicon cap on `#commit.blocks` (bytes of the CAR).
pub const MAX_COMMIT_BLOCKS_BYTES: usize = 2_000_000;
/// Lexicon cap on `#sync.blocks`.
pub const MAX_SYNC_BLOCKS_BYTES: usize = 10_000;

/// An account's hosting status for `#account` when it is not active (the
/// lexicon's known values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    /// Taken down by the host.
    Takendown,
    /// Temporarily suspended.
    Suspended,
    /// Deleted.
    Deleted,
    /// Deactivated by its owner.
    Deactivated,
    /// The host's copy of the repository is out of sync.
    Desynchronized,
    /// Rate-limited.
    Throttled,
}

impl AccountStatus {
    /// The lexicon spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Takendown => "takendown",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Deleted => "deleted",
            AccountStatus::Deactivated => "deactivated",
            AccountStatus::Desynchronized => "desynchronized",
            AccountStatus::Throttled => "throttled",
        }
    }
}

/// The `time` field: the moment the event was sequenced, from the clock port.
fn time_value(time_micros: u64) -> Value {
    Value::String(Datetime::from_unix_micros(time_micros).as_str().to_owned())
}

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// A CAR whose single root (and first block) is `root`, then `blocks`.
fn car(root: &Cid, root_bytes: &[u8], blocks: &BlockMap) -> Result<Vec<u8>, FirehoseError> {
    let size: usize = blocks.values().map(|b| b.len() + 40).sum();
    let mut writer = CarWriter::new(Vec::with_capacity(size + root_bytes.len() + 64), root)?;
    writer.write_block(root, root_bytes)?;
    for (cid, bytes) in blocks {
        if cid != root {
            writer.write_block(cid, bytes)?;
        }
    }
    Ok(writer.finish()?)
}

fn op_value(op: &RepoOp) -> Value {
    let mut m = Map::new();
    m.insert("action".into(), text(op.action.as_str()));
    m.insert("path".into(), text(&op.path));
    // `cid` is required and nullable (null on delete); `prev` is optional
    // and present on update and delete only.
    m.insert("cid".into(), op.cid.map_or(Value::Null, Value::Link));
    if let Some(prev) = op.prev {
        m.insert("prev".into(), Value::Link(prev));
    }
    Value::Map(m)
}

/// The `#commit` event for a commit the core produced.
///
/// `blocks` is a CAR rooted at the commit holding the commit block, the new
/// blocks (MST nodes and records) and the covering proofs of every op (so a
/// consumer can invert the ops and reach `prevData`). `since` is null and
/// `prevData` absent on a repository's first commit. `rebase` and `tooBig`
/// are false and `blobs` is empty (all deprecated). A commit with more than
/// [`MAX_COMMIT_OPS`] ops or a CAR above [`MAX_COMMIT_BLOCKS_BYTES`] is refused:
/// the write path must cap its batches, since `tooBig` is no longer an option.
pub fn commit_event(
    did: &Did,
    output: &CommitOutput,
    time_micros: u64,
) -> Result<EventBody, FirehoseError> {
    if output.commit.did != did.as_str() {
        return Err(FirehoseError::Invalid(format!(
            "commit is for {}, not {did}",
            output.commit.did
        )));
    }
    if output.ops.len() > MAX_COMMIT_OPS {
        return Err(FirehoseError::TooLarge(format!(
            "{} ops (at most {MAX_COMMIT_OPS})",
            output.ops.len()
        )));
    }
    let (commit_cid, commit_bytes) = output.commit.to_block()?;
    if commit_cid != output.cid {
        return Err(FirehoseError::Invalid(
            "commit block does not match the output's CID".into(),
        ));
    }
    let mut blocks = output.new_blocks.clone();
    for (cid, bytes) in &output.relevant_blocks {
        blocks.entry(*cid).or_insert_with(|| bytes.clone());
    }
    let car = car(&commit_cid, &commit_bytes, &blocks)?;
    if car.len() > MAX_COMMIT_BLOCKS_BYTES {
        return Err(FirehoseError::TooLarge(format!(
            "blocks CAR of {} bytes (at most {MAX_COMMIT_BLOCKS_BYTES})",
            car.len()
        )));
    }

    let mut m = Map::new();
    m.insert("repo".into(), text(did.as_str()));
    m.insert("commit".into(), Value::Link(commit_cid));
    m.insert("rev".into(), text(&output.rev));
    m.insert(
        "since".into(),
        output.since.as_deref().map_or(Value::Null, text),
    );
    m.insert("blocks".into(), Value::Bytes(car));
    m.insert(
        "ops".into(),
        Value::Array(output.ops.iter().map(op_value).collect()),
    );
    if let Some(prev_data) = output.prev_data {
        m.insert("prevData".into(), Value::Link(prev_data));
    }
    m.insert("rebase".into(), Value::Bool(false));
    m.insert("tooBig".into(), Value::Bool(false));
    m.insert("blobs".into(), Value::Array(Vec::new()));
    m.insert("time".into(), time_value(time_micros));
    Ok(EventBody {
        kind: EventKind::Commit,
        body: encode(&Value::Map(m)),
    })
}

/// The `#sync` event: "the repository is now at this commit", with a CAR
/// holding only the signed commit block. The DID and rev come from the commit
/// itself, so they cannot disagree with it.
pub fn sync_event(commit_block: &[u8], time_micros: u64) -> Result<EventBody, FirehoseError> {
    let commit = Commit::decode(commit_block)?;
    let (commit_cid, bytes) = commit.to_block()?;
    let car = car(&commit_cid, &bytes, &BlockMap::new())?;
    if car.len() > MAX_SYNC_BLOCKS_BYTES {
        return Err(FirehoseError::TooLarge(format!(
            "sync CAR of {} bytes (at most {MAX_SYNC_BLOCKS_BYTES})",
            car.len()
        )));
    }
    let mut m = Map::new();
    m.insert("did".into(), text(&commit.did));
    m.insert("rev".into(), text(&commit.rev));
    m.insert("blocks".into(), Value::Bytes(car));
    m.insert("time".into(), time_value(time_micros));
    Ok(EventBody {
        kind: EventKind::Sync,
        body: encode(&Value::Map(m)),
    })
}

/// The `#identity` event (on activation and handle change); `handle` is
/// omitted when not given.
pub fn identity_event(did: &Did, handle: Option<&Handle>, time_micros: u64) -> EventBody {
    let mut m = Map::new();
    m.insert("did".into(), text(did.as_str()));
    if let Some(handle) = handle {
        m.insert("handle".into(), text(handle.as_str()));
    }
    m.insert("time".into(), time_value(time_micros));
    EventBody {
        kind: EventKind::Identity,
        body: encode(&Value::Map(m)),
    }
}

/// The `#account` event: `active` with no status, or inactive with the reason.
pub fn account_event(did: &Did, status: Option<AccountStatus>, time_micros: u64) -> EventBody {
    let mut m = Map::new();
    m.insert("did".into(), text(did.as_str()));
    m.insert("active".into(), Value::Bool(status.is_none()));
    if let Some(status) = status {
        m.insert("status".into(), text(status.as_str()));
    }
    m.insert("time".into(), time_value(time_micros));
    EventBody {
        kind: EventKind::Account,
        body: encode(&Value::Map(m)),
    }
}
