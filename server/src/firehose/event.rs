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

/// An account's hosting status: `#account` carries it (as the lexicon's known values) when it
/// is not active.
pub use crate::storage::account::AccountStatus;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyAlgorithm, SigningKey};
    use crate::data::{cbor::decode_prefix, decode};
    use crate::repo::car::CarReader;
    use crate::repo::{BlockStore, CommitSigner, MemoryBlockStore, Repo, RepoError, WriteOp};

    struct Signer(SigningKey);
    impl CommitSigner for Signer {
        fn sign_commit(&self, message: &[u8]) -> Result<Vec<u8>, RepoError> {
            Ok(self.0.sign(message).to_vec())
        }
    }

    const DID: &str = "did:plc:firehosetest000000000000";
    // 2024-01-02T03:04:05.678Z
    const TIME: u64 = 1_704_164_645_678_901;

    fn record(n: u64) -> Vec<u8> {
        let mut m = Map::new();
        m.insert("$type".into(), text("com.example.record"));
        m.insert("n".into(), Value::Integer(n as i64));
        encode(&Value::Map(m))
    }

    fn body_of(event: &EventBody, seq: u64) -> Map {
        let frame = event.frame(seq).unwrap();
        let (_, used) = decode_prefix(&frame).unwrap();
        match decode(&frame[used..]).unwrap() {
            Value::Map(m) => m,
            other => panic!("{other:?}"),
        }
    }

    /// Two commits: create a and b, then update a, delete b, create c.
    fn two_commits() -> (CommitOutput, CommitOutput) {
        let signer = Signer(SigningKey::from_bytes(KeyAlgorithm::K256, &[7; 32]).unwrap());
        let mut store = MemoryBlockStore::new();
        let create = |rkey: &str, n| WriteOp::Create {
            collection: "com.example.record".into(),
            rkey: rkey.into(),
            record: record(n),
        };
        let (repo, first) = Repo::create(
            &store,
            DID,
            &[create("a", 1), create("b", 2)],
            &signer,
            "3kaaaaaaaaaa2",
        )
        .unwrap();
        store.put_many(first.new_blocks.clone()).unwrap();
        let (_, second) = repo
            .apply_writes(
                &store,
                &[
                    WriteOp::Update {
                        collection: "com.example.record".into(),
                        rkey: "a".into(),
                        record: record(3),
                    },
                    WriteOp::Delete {
                        collection: "com.example.record".into(),
                        rkey: "b".into(),
                    },
                    create("c", 4),
                ],
                &signer,
                "3kaaaaaaaaab2",
            )
            .unwrap();
        (first, second)
    }

    fn did() -> Did {
        Did::new(DID).unwrap()
    }

    #[test]
    fn commit_body_follows_the_lexicon() {
        let (first, second) = two_commits();
        let b = body_of(&commit_event(&did(), &first, TIME).unwrap(), 1);
        assert_eq!(b["seq"], Value::Integer(1));
        assert_eq!(b["repo"], text(DID));
        assert_eq!(b["commit"], Value::Link(first.cid));
        assert_eq!(b["rev"], text("3kaaaaaaaaaa2"));
        assert_eq!(
            b["since"],
            Value::Null,
            "required and nullable: null on the first commit"
        );
        assert!(!b.contains_key("prevData"));
        assert_eq!(b["rebase"], Value::Bool(false));
        assert_eq!(b["tooBig"], Value::Bool(false));
        assert_eq!(b["blobs"], Value::Array(vec![]));
        assert_eq!(b["time"], text("2024-01-02T03:04:05.678Z"));
        assert_eq!(b.len(), 11);

        let b = body_of(&commit_event(&did(), &second, TIME).unwrap(), 2);
        assert_eq!(b["since"], text("3kaaaaaaaaaa2"));
        assert_eq!(b["prevData"], Value::Link(first.commit.data));
        assert_eq!(b.len(), 12);
        let Value::Array(ops) = &b["ops"] else {
            panic!()
        };
        let op = |i: usize| match &ops[i] {
            Value::Map(m) => m.clone(),
            other => panic!("{other:?}"),
        };
        let (update, delete, create) = (op(0), op(1), op(2));
        assert_eq!(update["action"], text("update"));
        assert_eq!(update["path"], text("com.example.record/a"));
        assert_eq!(update["cid"], Value::Link(second.ops[0].cid.unwrap()));
        assert_eq!(update["prev"], Value::Link(first.ops[0].cid.unwrap()));
        assert_eq!(delete["action"], text("delete"));
        assert_eq!(
            delete["cid"],
            Value::Null,
            "required and nullable: null on delete"
        );
        assert_eq!(delete["prev"], Value::Link(first.ops[1].cid.unwrap()));
        assert_eq!(create["action"], text("create"));
        assert!(!create.contains_key("prev"), "no prev on create");

        // blocks: a CAR rooted at the commit, the commit first, holding the
        // new blocks and the covering proofs.
        let Value::Bytes(car) = &b["blocks"] else {
            panic!()
        };
        let mut reader = CarReader::new(&car[..]).unwrap();
        assert_eq!(reader.roots(), &[second.cid]);
        let blocks: Vec<(Cid, Vec<u8>)> = reader.by_ref().map(|b| b.unwrap()).collect();
        assert_eq!(blocks[0].0, second.cid);
        let cids: std::collections::BTreeSet<Cid> = blocks.iter().map(|b| b.0).collect();
        assert_eq!(cids.len(), blocks.len(), "no block twice");
        for cid in second
            .new_blocks
            .keys()
            .chain(second.relevant_blocks.keys())
        {
            assert!(cids.contains(cid), "{cid} missing");
        }
    }

    #[test]
    fn commit_event_refuses_inconsistent_or_oversized_output() {
        let (first, mut second) = two_commits();
        let other = Did::new("did:plc:someoneelse").unwrap();
        assert!(matches!(
            commit_event(&other, &first, TIME),
            Err(FirehoseError::Invalid(_))
        ));
        let mut wrong_cid = first.clone();
        wrong_cid.cid = second.cid;
        assert!(matches!(
            commit_event(&did(), &wrong_cid, TIME),
            Err(FirehoseError::Invalid(_))
        ));
        let op = second.ops[0].clone();
        second.ops = vec![op; MAX_COMMIT_OPS + 1];
        assert!(matches!(
            commit_event(&did(), &second, TIME),
            Err(FirehoseError::TooLarge(_))
        ));
        let mut big = first.clone();
        big.new_blocks.insert(
            crate::data::cid_for_raw(&[0; 8]),
            vec![0; MAX_COMMIT_BLOCKS_BYTES],
        );
        assert!(matches!(
            commit_event(&did(), &big, TIME),
            Err(FirehoseError::TooLarge(_))
        ));
    }

    #[test]
    fn sync_body_holds_only_the_commit() {
        let (_, second) = two_commits();
        let (_, commit_bytes) = second.commit.to_block().unwrap();
        let b = body_of(&sync_event(&commit_bytes, TIME).unwrap(), 9);
        assert_eq!(b["did"], text(DID));
        assert_eq!(b["rev"], text("3kaaaaaaaaab2"));
        assert_eq!(b["seq"], Value::Integer(9));
        assert_eq!(b["time"], text("2024-01-02T03:04:05.678Z"));
        assert_eq!(b.len(), 5);
        let Value::Bytes(car) = &b["blocks"] else {
            panic!()
        };
        let reader = CarReader::new(&car[..]).unwrap();
        assert_eq!(reader.roots(), &[second.cid]);
        let blocks: Vec<_> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(blocks, vec![(second.cid, commit_bytes)]);
        assert!(sync_event(&record(1), TIME).is_err(), "not a commit");
    }

    #[test]
    fn identity_and_account_bodies() {
        let handle = Handle::new("alice.example.com").unwrap();
        let b = body_of(&identity_event(&did(), Some(&handle), TIME), 3);
        assert_eq!(b["did"], text(DID));
        assert_eq!(b["handle"], text("alice.example.com"));
        assert_eq!(b.len(), 4);
        let b = body_of(&identity_event(&did(), None, TIME), 3);
        assert!(!b.contains_key("handle"));

        let b = body_of(&account_event(&did(), None, TIME), 4);
        assert_eq!(b["active"], Value::Bool(true));
        assert!(!b.contains_key("status"));
        assert_eq!(b.len(), 4);
        let b = body_of(
            &account_event(&did(), Some(AccountStatus::Deactivated), TIME),
            5,
        );
        assert_eq!(b["active"], Value::Bool(false));
        assert_eq!(b["status"], text("deactivated"));
        assert_eq!(b["seq"], Value::Integer(5));
    }

    /// Checks a body against a def of the lexicon file: every field is a
    /// declared property of the right type, every required field is present,
    /// null only where nullable; `repoOp` items recursively.
    fn conforms(defs: &serde_json::Value, def: &str, body: &Map) {
        let def_json = &defs[def];
        let props = def_json["properties"].as_object().unwrap();
        let list = |k: &str| -> Vec<String> {
            def_json[k]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default()
        };
        for required in list("required") {
            assert!(body.contains_key(&required), "{def}: {required} missing");
        }
        let nullable = list("nullable");
        for (key, value) in body {
            let prop = props
                .get(key)
                .unwrap_or_else(|| panic!("{def}: {key} is not in the lexicon"));
            let ok = match (prop["type"].as_str().unwrap(), value) {
                (_, Value::Null) => nullable.contains(key),
                ("integer", Value::Integer(_))
                | ("string", Value::String(_))
                | ("boolean", Value::Bool(_))
                | ("bytes", Value::Bytes(_))
                | ("cid-link", Value::Link(_)) => true,
                ("array", Value::Array(items)) => {
                    if prop["items"]["type"] == "ref" {
                        for item in items {
                            let Value::Map(item) = item else {
                                panic!("{def}.{key}")
                            };
                            conforms(defs, "repoOp", item);
                        }
                    }
                    true
                }
                _ => false,
            };
            assert!(ok, "{def}: {key} = {value:?} does not match {prop}");
        }
    }

    #[test]
    fn bodies_conform_to_the_lexicon_file() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../lexicons/com/atproto/sync/subscribeRepos.json"
        );
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let defs = &doc["defs"];
        let (first, second) = two_commits();
        let handle = Handle::new("alice.example.com").unwrap();
        let (_, commit_bytes) = second.commit.to_block().unwrap();
        let cases = [
            ("commit", commit_event(&did(), &first, TIME).unwrap()),
            ("commit", commit_event(&did(), &second, TIME).unwrap()),
            ("sync", sync_event(&commit_bytes, TIME).unwrap()),
            ("identity", identity_event(&did(), Some(&handle), TIME)),
            ("identity", identity_event(&did(), None, TIME)),
            ("account", account_event(&did(), None, TIME)),
            (
                "account",
                account_event(&did(), Some(AccountStatus::Takendown), TIME),
            ),
        ];
        for (def, event) in cases {
            assert_eq!(event.kind.tag(), format!("#{def}"));
            conforms(defs, def, &body_of(&event, 42));
        }
    }
}
