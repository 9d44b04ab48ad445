//! Our firehose frames, checked by a consumer that does not use our decoder:
//! a history of commits (creates, updates, deletes) and account events is
//! sequenced into an event log, replayed through a subscriber, and the frames
//! are decoded and verified by @atproto/sync and @atproto/repo from npm
//! (tests/oracle/firehose-verify.mjs): lexicon shapes, commit signatures
//! against the did:key, every op proven by the blocks, ops inverted over the
//! provided blocks back to prevData, prevData chaining.

mod repo_support;

use base64::Engine;
use pds::crypto::{KeyAlgorithm, SigningKey};
use pds::data::{encode, Map, Value};
use pds::firehose::{
    account_event, commit_event, identity_event, sync_event, AccountStatus, EventLog, LogBounds,
    MemoryEventLog, MemoryOutbox, Subscriber, SubscriberConfig,
};
use pds::repo::car::{CarReader, CarWriter};
use pds::repo::commit::Commit;
use pds::repo::repository::OpAction;
use pds::repo::{BlockStore, CommitSigner, MemoryBlockStore, Repo, RepoError, WriteOp};
use pds::syntax::{Did, Handle, Tid};
use repo_support::{node_binary, Rng};
use std::collections::BTreeSet;
use std::path::PathBuf;

struct Signer(SigningKey);

impl CommitSigner for Signer {
    fn sign_commit(&self, message: &[u8]) -> Result<Vec<u8>, RepoError> {
        Ok(self.0.sign(message).to_vec())
    }
}

const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
const COLLECTIONS: &[&str] = &[
    "app.bsky.feed.post",
    "app.bsky.feed.like",
    "com.example.thing",
];
/// 2025-01-01T00:00:00Z
const T0: u64 = 1_735_689_600_000_000;

fn record(collection: &str, n: u64) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("$type".into(), Value::String(collection.into()));
    m.insert("text".into(), Value::String(format!("record {n}")));
    m.insert(
        "createdAt".into(),
        Value::String("2025-01-01T00:00:00.000Z".into()),
    );
    encode(&Value::Map(m))
}

/// A random batch on distinct keys: creates of new keys, updates and deletes
/// of existing ones (never emptying the repository).
fn batch(rng: &mut Rng, live: &mut BTreeSet<(String, String)>, counter: &mut u64) -> Vec<WriteOp> {
    let mut writes = Vec::new();
    let mut touched = BTreeSet::new();
    for _ in 0..1 + rng.below(5) {
        *counter += 1;
        let existing: Vec<_> = live.difference(&touched).cloned().collect();
        let choice = rng.below(3);
        if choice == 0 || existing.len() < 3 {
            let collection = COLLECTIONS[rng.below(COLLECTIONS.len())].to_string();
            let rkey = Tid::from_parts(T0 + *counter * 1000, 0).as_str().to_owned();
            writes.push(WriteOp::Create {
                record: record(&collection, *counter),
                collection: collection.clone(),
                rkey: rkey.clone(),
            });
            live.insert((collection.clone(), rkey.clone()));
            touched.insert((collection, rkey));
        } else {
            let (collection, rkey) = existing[rng.below(existing.len())].clone();
            touched.insert((collection.clone(), rkey.clone()));
            if choice == 1 {
                writes.push(WriteOp::Update {
                    record: record(&collection, *counter),
                    collection,
                    rkey,
                });
            } else {
                live.remove(&(collection.clone(), rkey.clone()));
                writes.push(WriteOp::Delete { collection, rkey });
            }
        }
    }
    writes
}

struct History {
    log: MemoryEventLog,
    did_key: String,
    commits: usize,
    ops: usize,
    /// Ops per action: create, update, delete.
    actions: [usize; 3],
}

fn history(seed: u64, commits: usize) -> History {
    let key = SigningKey::from_bytes(KeyAlgorithm::K256, &[0x42; 32]).unwrap();
    let did_key = key.public_key().to_did_key();
    let signer = Signer(key);
    let did = Did::new(DID).unwrap();
    let handle = Handle::new("alice.example.com").unwrap();
    let mut rng = Rng::new(seed);
    let mut store = MemoryBlockStore::new();
    let mut log = MemoryEventLog::new();
    let mut counter = 0;
    let mut time = T0;
    let mut tick = || {
        time += 1_000_123;
        time
    };
    let rev = |n: usize| {
        Tid::from_parts(T0 + n as u64 * 1_000_000, 0)
            .as_str()
            .to_owned()
    };

    // Account creation: identity, account, first commit.
    log.append(identity_event(&did, Some(&handle), tick()));
    log.append(account_event(&did, None, tick()));
    // 150 records: a tree several layers deep, so proofs span many nodes.
    let first: Vec<WriteOp> = (0..150)
        .map(|_| {
            counter += 1;
            let collection = COLLECTIONS[rng.below(COLLECTIONS.len())];
            WriteOp::Create {
                collection: collection.to_owned(),
                rkey: Tid::from_parts(T0 + counter * 1000, 0).as_str().to_owned(),
                record: record(collection, counter),
            }
        })
        .collect();
    let (mut repo, output) = Repo::create(&store, DID, &first, &signer, &rev(1)).unwrap();
    store.put_many(output.new_blocks.clone()).unwrap();
    log.append(commit_event(&did, &output, tick()).unwrap());
    let mut ops = output.ops.len();
    let mut actions = [0; 3];
    let mut count = |output: &pds::repo::CommitOutput| {
        for op in &output.ops {
            let slot = match op.action {
                OpAction::Create => 0,
                OpAction::Update => 1,
                OpAction::Delete => 2,
            };
            actions[slot] += 1;
        }
    };
    count(&output);
    let mut live: BTreeSet<(String, String)> = first
        .iter()
        .filter_map(|w| match w {
            WriteOp::Create {
                collection, rkey, ..
            } => Some((collection.clone(), rkey.clone())),
            _ => None,
        })
        .collect();

    for n in 2..=commits {
        let writes = batch(&mut rng, &mut live, &mut counter);
        let (next, output) = repo
            .apply_writes(&store, &writes, &signer, &rev(n))
            .unwrap();
        store.put_many(output.new_blocks.clone()).unwrap();
        log.append(commit_event(&did, &output, tick()).unwrap());
        ops += output.ops.len();
        count(&output);
        repo = next;
        if n == commits / 2 {
            // Deactivation and reactivation in the middle: #account, then on
            // activation #account, #identity and #sync.
            log.append(account_event(
                &did,
                Some(AccountStatus::Deactivated),
                tick(),
            ));
            log.append(account_event(&did, None, tick()));
            log.append(identity_event(&did, None, tick()));
            let commit_block = store.get(&repo.commit_cid()).unwrap().unwrap();
            log.append(sync_event(&commit_block, tick()).unwrap());
        }
    }
    History {
        log,
        did_key,
        commits,
        ops,
        actions,
    }
}

/// Every frame a subscriber from cursor 0 receives, then what a subscriber
/// with a future cursor and one with an outdated cursor receive.
fn frames(history: &History) -> Vec<Vec<u8>> {
    let config = SubscriberConfig {
        page_size: 3,
        replay_high_water: 4,
        live_limit: 4,
    };
    let bounds = history.log.bounds().unwrap();
    let mut out = Vec::new();
    let mut outbox = MemoryOutbox::new();
    let mut sub = Subscriber::connect(Some(0), bounds, &mut outbox);
    loop {
        sub.pump(&history.log, &config, &mut outbox).unwrap();
        match outbox.pop() {
            Some(frame) => out.push(frame.to_vec()),
            None => break,
        }
    }
    assert!(sub.is_live());
    let mut outbox = MemoryOutbox::new();
    let future = Subscriber::connect(Some(bounds.newest + 1), bounds, &mut outbox);
    out.extend(outbox.pop().map(|f| f.to_vec()));
    assert!(future.is_closed() && outbox.is_empty());
    // A log whose early events were pruned: the info frame only.
    let pruned = LogBounds {
        oldest: Some(bounds.newest),
        newest: bounds.newest,
    };
    let mut outbox = MemoryOutbox::new();
    Subscriber::connect(Some(1), pruned, &mut outbox);
    out.extend(outbox.pop().map(|f| f.to_vec()));
    out
}

/// Runs the npm verifier over `frames`; fails the test if node or the npm
/// packages are missing.
fn run_verifier(did_key: &str, frames: &[Vec<u8>]) -> std::process::Output {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let node = node_binary();
    for package in [
        "@atproto/sync",
        "@atproto/repo",
        "@atproto/api",
        "@atproto/xrpc-server",
    ] {
        assert!(
            root.join("node_modules").join(package).exists(),
            "node_modules/{package} is missing: run `npm install` (or `npm test`) at the workspace root"
        );
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let input = serde_json::json!({
        "didKey": did_key,
        "frames": frames.iter().map(|f| b64.encode(f)).collect::<Vec<_>>(),
    });
    // Tests run in parallel threads of one process: a counter keeps names apart.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("firehose-frames-{}-{run}.json", std::process::id()));
    std::fs::write(&path, input.to_string()).unwrap();
    let out = std::process::Command::new(node)
        .arg(root.join("server/tests/oracle/firehose-verify.mjs"))
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).ok();
    out
}

#[test]
fn npm_consumer_verifies_every_frame() {
    let history = history(7, 30);
    let frames = frames(&history);
    let events = history.log.bounds().unwrap().newest;
    let out = run_verifier(&history.did_key, &frames);
    assert!(
        out.status.success(),
        "the npm consumer rejected our frames: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("npm consumer: {counts}");
    assert_eq!(counts["frames"], frames.len());
    assert_eq!(counts["commits"], history.commits);
    assert_eq!(counts["ops"], history.ops);
    let [creates, updates, deletes] = history.actions;
    assert!(
        creates > 0 && updates > 0 && deletes > 0,
        "{:?}",
        history.actions
    );
    assert_eq!(
        counts["actions"],
        serde_json::json!({"create": creates, "update": updates, "delete": deletes})
    );
    // Every commit but the first (no prevData) was inverted.
    assert_eq!(counts["inverted"], history.commits - 1);
    assert_eq!(counts["syncs"], 1);
    assert_eq!(counts["identities"], 2);
    assert_eq!(counts["accounts"], 3);
    assert_eq!(counts["infos"], 1);
    assert_eq!(counts["errors"], serde_json::json!(["FutureCursor"]));
    assert_eq!(counts["lastSeq"], events);
    assert_eq!(events as usize, history.commits + 6);
}

#[test]
fn npm_consumer_rejects_a_tampered_commit() {
    // The verifier must be able to fail: the last commit re-encoded with a
    // wrong prevData (the commit's own CID) must be rejected.
    let history = history(11, 4);
    let mut frames = frames(&history);
    let (index, header, mut body) = last_commit(&history, &frames);
    let commit = body["commit"].clone();
    body.insert("prevData".into(), commit);
    let mut tampered = encode(&header);
    tampered.extend(encode(&Value::Map(body)));
    frames[index] = tampered;
    let out = run_verifier(&history.did_key, &frames);
    assert!(!out.status.success(), "tampered prevData was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("prevData"), "{stderr}");
}

/// The frame of the last `#commit` in the log, its index among `frames`, and
/// its decoded header and body.
fn last_commit(history: &History, frames: &[Vec<u8>]) -> (usize, Value, Map) {
    let logged = history
        .log
        .read_after(0, usize::MAX)
        .unwrap()
        .into_iter()
        .rfind(|e| e.event.kind == pds::firehose::EventKind::Commit)
        .unwrap();
    let frame = logged.event.frame(logged.seq).unwrap();
    let index = frames.iter().position(|f| *f == frame).unwrap();
    let (header, used) = pds::data::cbor::decode_prefix(&frame).unwrap();
    let Value::Map(body) = pds::data::decode(&frame[used..]).unwrap() else {
        panic!("body is not a map")
    };
    (index, header, body)
}

#[test]
fn npm_consumer_rejects_a_commit_missing_its_new_root() {
    // Without the new MST root block neither the proofs nor the inversion can
    // be checked: the consumer must refuse the commit.
    let history = history(13, 4);
    let mut frames = frames(&history);
    let (index, header, mut body) = last_commit(&history, &frames);
    let Value::Bytes(car) = &body["blocks"] else {
        panic!("blocks")
    };
    let reader = CarReader::new(&car[..]).unwrap();
    let root = reader.roots()[0];
    let blocks: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let commit = Commit::decode(&blocks[0].1).unwrap();
    let mut writer = CarWriter::new(Vec::new(), &root).unwrap();
    let mut dropped = 0;
    for (cid, bytes) in &blocks {
        if *cid == commit.data {
            dropped += 1;
        } else {
            writer.write_block(cid, bytes).unwrap();
        }
    }
    assert_eq!(dropped, 1);
    body.insert("blocks".into(), Value::Bytes(writer.finish().unwrap()));
    let mut tampered = encode(&header);
    tampered.extend(encode(&Value::Map(body)));
    frames[index] = tampered;
    let out = run_verifier(&history.did_key, &frames);
    assert!(
        !out.status.success(),
        "a commit without its MST root was accepted"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MissingBlockError"), "{stderr}");
}
