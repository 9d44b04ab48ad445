//! Conformance and property tests of the repository core: MST against a
//! BTreeMap model, commits and their diffs, proofs, CAR round trips, the verifier.

mod repo_support;

use cid::Cid;
use pds::crypto::KeyAlgorithm;
use pds::repo::blockstore::{BlockMap, MemoryBlockStore};
use pds::repo::car::{block_bytes, header_bytes, CarDecoder, CarReader, CarWriter};
use pds::repo::cbor::{cid_for_cbor, encode};
use pds::repo::diff::{diff_trees, LeafChange};
use pds::repo::mst::{self, get_stored, key_height, list_all, list_range};
use pds::repo::repository::OpAction;
use pds::repo::verify::{import_car, verify_car, verify_car_with_did_key};
use pds::repo::{BlockStore, Mst, Repo, RepoError, TrackingStore, UnsignedCommit, WriteOp};
use repo_support::{random_key, test_key, value_cid, Rng};
use std::collections::BTreeMap;
use std::ops::Bound;

fn flush(tree: &mut Mst, store: &mut MemoryBlockStore) -> Cid {
    let mut blocks = BlockMap::new();
    let root = tree.flush(&mut blocks).unwrap();
    store.put_many(blocks).unwrap();
    root
}

/// The canonical root of a key set, built fresh in a shuffled order.
fn fresh_root(model: &BTreeMap<String, Cid>, rng: &mut Rng) -> Cid {
    let mut entries: Vec<(&String, &Cid)> = model.iter().collect();
    for i in (1..entries.len()).rev() {
        entries.swap(i, rng.below(i + 1));
    }
    let store = MemoryBlockStore::new();
    let mut tree = Mst::new();
    for (k, v) in entries {
        tree.insert(&store, k, *v).unwrap();
    }
    tree.root_cid().unwrap()
}

fn bound(b: &Bound<String>) -> Bound<&str> {
    match b {
        Bound::Included(s) => Bound::Included(s.as_str()),
        Bound::Excluded(s) => Bound::Excluded(s.as_str()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

#[test]
fn mst_matches_btreemap_model_under_random_ops() {
    let mut rng = Rng::new(0x5EED);
    let mut store = MemoryBlockStore::new();
    let mut tree = Mst::new();
    let mut model: BTreeMap<String, Cid> = BTreeMap::new();
    let mut keys: Vec<String> = Vec::new();
    for round in 0..40 {
        for _ in 0..60 {
            let roll = rng.below(10);
            if roll < 3 && !keys.is_empty() {
                let key = keys.swap_remove(rng.below(keys.len()));
                assert_eq!(tree.remove(&store, &key).unwrap(), model.remove(&key));
            } else if roll < 4 {
                // Deleting an absent key changes nothing.
                let key = random_key(&mut rng);
                if !model.contains_key(&key) {
                    assert_eq!(tree.remove(&store, &key).unwrap(), None);
                }
            } else {
                let key = if roll == 9 && !keys.is_empty() {
                    keys[rng.below(keys.len())].clone()
                } else {
                    random_key(&mut rng)
                };
                let value = value_cid(rng.next_u64());
                let prev = model.insert(key.clone(), value);
                if prev.is_none() {
                    keys.push(key.clone());
                }
                assert_eq!(tree.insert(&store, &key, value).unwrap(), prev);
            }
        }
        let root = flush(&mut tree, &mut store);
        assert_eq!(
            root,
            fresh_root(&model, &mut rng),
            "round {round}: shape depends on history"
        );
        let listed = list_all(&store, &root).unwrap();
        assert_eq!(
            listed,
            model
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect::<Vec<_>>()
        );
        for key in keys.iter().take(20) {
            assert_eq!(
                get_stored(&store, &root, key).unwrap(),
                model.get(key).copied()
            );
            assert_eq!(tree.get(&store, key).unwrap(), model.get(key).copied());
        }
        assert_eq!(get_stored(&store, &root, "zzz/absent").unwrap(), None);

        // Ranges in both directions, with every kind of bound.
        for _ in 0..10 {
            let pick = |rng: &mut Rng| -> Bound<String> {
                let key = if rng.below(2) == 0 && !keys.is_empty() {
                    keys[rng.below(keys.len())].clone()
                } else {
                    random_key(rng)
                };
                match rng.below(3) {
                    0 => Bound::Included(key),
                    1 => Bound::Excluded(key),
                    _ => Bound::Unbounded,
                }
            };
            let (lo, hi) = (pick(&mut rng), pick(&mut rng));
            let limit = 1 + rng.below(50);
            let expected: Vec<(String, Cid)> = model
                .iter()
                .filter(|(k, _)| {
                    (match &lo {
                        Bound::Included(b) => *k >= b,
                        Bound::Excluded(b) => *k > b,
                        Bound::Unbounded => true,
                    }) && (match &hi {
                        Bound::Included(b) => *k <= b,
                        Bound::Excluded(b) => *k < b,
                        Bound::Unbounded => true,
                    })
                })
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            let asc = list_range(&store, &root, bound(&lo), bound(&hi), false, limit).unwrap();
            assert_eq!(
                asc,
                expected.iter().take(limit).cloned().collect::<Vec<_>>()
            );
            let desc = list_range(&store, &root, bound(&lo), bound(&hi), true, limit).unwrap();
            assert_eq!(
                desc,
                expected
                    .iter()
                    .rev()
                    .take(limit)
                    .cloned()
                    .collect::<Vec<_>>()
            );
        }
        // Continue from storage: later rounds exercise lazy loading.
        if round % 3 == 0 {
            tree = Mst::load(&store, root).unwrap();
        }
    }
    assert!(
        model.len() > 500,
        "model too small to mean much: {}",
        model.len()
    );
}

#[test]
fn mst_rejects_invalid_keys() {
    let store = MemoryBlockStore::new();
    let mut tree = Mst::new();
    for bad in [
        "",
        "nocollection",
        "/rkey",
        "coll/",
        "a/b/c",
        "coll/sp ace",
        "coll/é",
        &format!("c/{}", "a".repeat(1100)),
    ] {
        assert!(
            matches!(
                tree.insert(&store, bad, value_cid(1)),
                Err(RepoError::InvalidKey(_))
            ),
            "{bad:?}"
        );
    }
    assert!(tree.is_empty());
}

#[test]
fn mst_load_reports_missing_blocks() {
    let mut store = MemoryBlockStore::new();
    let mut tree = Mst::new();
    let mut rng = Rng::new(9);
    for i in 0..300 {
        tree.insert(&store, &random_key(&mut rng), value_cid(i))
            .unwrap();
    }
    let root = flush(&mut tree, &mut store);
    // Only the root: any descent needs a block that is not there.
    let partial =
        MemoryBlockStore::from_blocks(BlockMap::from([(root, store.get(&root).unwrap().unwrap())]));
    let err = list_all(&partial, &root).unwrap_err();
    assert!(matches!(err, RepoError::MissingBlock(_)), "{err}");
}

fn record(n: u64) -> Vec<u8> {
    // A small, valid DAG-CBOR map: {"n": n, "$type": "com.example.record"}.
    #[derive(serde::Serialize)]
    struct R {
        #[serde(rename = "$type")]
        t: &'static str,
        n: u64,
    }
    encode(&R {
        t: "com.example.record",
        n,
    })
    .unwrap()
}

fn tid(n: u64) -> String {
    // A TID-shaped rev that grows with n.
    let alphabet = b"234567abcdefghijklmnopqrstuvwxyz";
    let mut v = (1u64 << 60) + n * 1024;
    let mut s = vec![b'2'; 13];
    for i in (0..13).rev() {
        s[i] = alphabet[(v & 31) as usize];
        v >>= 5;
    }
    String::from_utf8(s).unwrap()
}

/// Net effect of a batch per key: (before, after).
fn apply_model(model: &mut BTreeMap<String, Cid>, writes: &[WriteOp]) {
    for w in writes {
        match w {
            WriteOp::Create { record, .. } | WriteOp::Update { record, .. } => {
                model.insert(w.key(), cid_for_cbor(record));
            }
            WriteOp::Delete { .. } => {
                model.remove(&w.key());
            }
        }
    }
}

#[test]
fn commits_diffs_proofs_and_car_round_trip() {
    let key = test_key(KeyAlgorithm::K256, 7);
    let did = "did:plc:testaccount00000000000";
    let mut store = MemoryBlockStore::new();
    let mut rng = Rng::new(77);
    let mut model: BTreeMap<String, Cid> = BTreeMap::new();

    let initial: Vec<WriteOp> = (0..200)
        .map(|i| {
            let k = random_key(&mut rng);
            let (collection, rkey) = k.split_once('/').unwrap();
            (
                k.clone(),
                WriteOp::Create {
                    collection: collection.into(),
                    rkey: rkey.into(),
                    record: record(i),
                },
            )
        })
        .collect::<BTreeMap<String, WriteOp>>()
        .into_values()
        .collect();
    let (mut repo, out) = Repo::create(&store, did, &initial, &key, &tid(1)).unwrap();
    assert_eq!(out.prev_data, None);
    assert_eq!(out.since, None);
    store.put_many(out.new_blocks.clone()).unwrap();
    apply_model(&mut model, &initial);
    repo.commit().verify(&key.public_key()).unwrap();

    for n in 2..30u64 {
        let mut writes = Vec::new();
        let mut touched = std::collections::BTreeSet::new();
        for _ in 0..1 + rng.below(6) {
            let existing: Vec<&String> = model.keys().collect();
            let w = match rng.below(3) {
                0 => {
                    let k = random_key(&mut rng);
                    let (c, r) = k.split_once('/').unwrap();
                    WriteOp::Create {
                        collection: c.into(),
                        rkey: r.into(),
                        record: record(rng.next_u64()),
                    }
                }
                1 => {
                    let k = existing[rng.below(existing.len())];
                    let (c, r) = k.split_once('/').unwrap();
                    WriteOp::Update {
                        collection: c.into(),
                        rkey: r.into(),
                        record: record(rng.next_u64()),
                    }
                }
                _ => {
                    let k = existing[rng.below(existing.len())];
                    let (c, r) = k.split_once('/').unwrap();
                    WriteOp::Delete {
                        collection: c.into(),
                        rkey: r.into(),
                    }
                }
            };
            if touched.insert(w.key()) {
                writes.push(w);
            }
        }
        let before = model.clone();
        let (next, out) = repo.apply_writes(&store, &writes, &key, &tid(n)).unwrap();
        apply_model(&mut model, &writes);

        // Ops: one per write, with the previous CIDs.
        assert_eq!(out.ops.len(), writes.len());
        for (op, w) in out.ops.iter().zip(&writes) {
            assert_eq!(op.path, w.key());
            assert_eq!(op.prev, before.get(&op.path).copied());
            assert_eq!(op.cid, model.get(&op.path).copied());
            let expected = match w {
                WriteOp::Create { .. } => OpAction::Create,
                WriteOp::Update { .. } => OpAction::Update,
                WriteOp::Delete { .. } => OpAction::Delete,
            };
            assert_eq!(op.action, expected);
        }
        assert_eq!(out.prev_data, Some(repo.data()));
        assert_eq!(out.since.as_deref(), Some(repo.rev()));
        assert_eq!(out.prev_commit, Some(repo.commit_cid()));
        assert!(out.removed.contains(&repo.commit_cid()));
        let replaced: std::collections::BTreeSet<Cid> = out
            .ops
            .iter()
            .filter(|o| o.prev != o.cid)
            .filter_map(|o| o.prev)
            .collect();
        assert_eq!(out.removed_records, replaced);
        assert!(
            out.new_blocks.contains_key(&out.cid) && out.relevant_blocks.contains_key(&out.cid)
        );

        // The tree diff between the two roots reproduces the ops.
        let mut with_new = store.clone();
        with_new.put_many(out.new_blocks.clone()).unwrap();
        let diff = diff_trees(&with_new, Some(&repo.data()), &next.data()).unwrap();
        assert!(
            diff.changes.windows(2).all(|w| w[0].key() < w[1].key()),
            "commit {n}: changes in key order"
        );
        let mut from_diff: Vec<(String, Option<Cid>, Option<Cid>)> = diff
            .changes
            .iter()
            .map(|c| match c {
                LeafChange::Create { key, cid } => (key.clone(), None, Some(*cid)),
                LeafChange::Update { key, prev, cid } => (key.clone(), Some(*prev), Some(*cid)),
                LeafChange::Delete { key, prev } => (key.clone(), Some(*prev), None),
            })
            .collect();
        from_diff.sort();
        let mut from_ops: Vec<(String, Option<Cid>, Option<Cid>)> = out
            .ops
            .iter()
            .filter(|o| o.prev != o.cid)
            .map(|o| (o.path.clone(), o.prev, o.cid))
            .collect();
        from_ops.sort();
        assert_eq!(from_diff, from_ops, "commit {n}");
        // New blocks: the new nodes, new records and the commit; nothing stored before.
        for cid in diff.new_nodes.keys() {
            assert!(out.new_blocks.contains_key(cid));
        }

        // Sync v1.1: inverting the ops over the new tree with the relevant blocks alone gives prevData.
        let proof_store = MemoryBlockStore::from_blocks(out.relevant_blocks.clone());
        let mut inverted = Mst::load(&proof_store, next.data()).unwrap();
        for op in out.ops.iter().rev() {
            match op.prev {
                Some(prev) => {
                    inverted.insert(&proof_store, &op.path, prev).unwrap();
                }
                None => {
                    inverted.remove(&proof_store, &op.path).unwrap();
                }
            }
        }
        assert_eq!(
            inverted.root_cid().unwrap(),
            repo.data(),
            "commit {n}: inversion"
        );

        store.put_many(out.new_blocks).unwrap();
        next.commit().verify(&key.public_key()).unwrap();
        assert_eq!(Repo::open(&store, next.commit_cid()).unwrap().rev(), tid(n));
        repo = next;
    }

    // Reads.
    let all: Vec<(String, Cid)> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(list_all(&store, &repo.data()).unwrap(), all);
    let collections: Vec<String> = {
        let mut c: Vec<String> = model
            .keys()
            .map(|k| k.split_once('/').unwrap().0.to_owned())
            .collect();
        c.dedup();
        c
    };
    assert_eq!(repo.list_collections(&store).unwrap(), collections);
    let coll = &collections[1];
    let in_coll: Vec<(String, Cid)> = model
        .iter()
        .filter_map(|(k, v)| {
            k.split_once('/')
                .filter(|(c, _)| c == coll)
                .map(|(_, r)| (r.to_owned(), *v))
        })
        .collect();
    let page1 = repo.list_records(&store, coll, None, 5, false).unwrap();
    assert_eq!(page1, in_coll[..5]);
    let page2 = repo
        .list_records(&store, coll, Some(&page1[4].0), 5, false)
        .unwrap();
    assert_eq!(page2, in_coll[5..10]);
    let rev_page = repo.list_records(&store, coll, None, 3, true).unwrap();
    assert_eq!(
        rev_page,
        in_coll.iter().rev().take(3).cloned().collect::<Vec<_>>()
    );
    let rev_page2 = repo
        .list_records(&store, coll, Some(&rev_page[2].0), 3, true)
        .unwrap();
    assert_eq!(
        rev_page2,
        in_coll
            .iter()
            .rev()
            .skip(3)
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
    );
    let everything = repo
        .list_records(&store, coll, None, usize::MAX, false)
        .unwrap();
    assert_eq!(everything, in_coll);

    let (path, cid) = model.iter().nth(17).unwrap();
    let (c, r) = path.split_once('/').unwrap();
    let (got_cid, bytes) = repo.get_record(&store, c, r).unwrap().unwrap();
    assert_eq!((got_cid, cid_for_cbor(&bytes)), (*cid, *cid));
    assert_eq!(repo.get_record(&store, c, "nope").unwrap(), None);

    // getRecord proofs: presence and absence, checkable with the proof blocks alone.
    let proof = MemoryBlockStore::from_blocks(repo.record_proof(&store, c, r).unwrap());
    let from_proof = Repo::open(&proof, repo.commit_cid()).unwrap();
    assert_eq!(
        from_proof.get_record(&proof, c, r).unwrap().map(|(c, _)| c),
        Some(*cid)
    );
    let absent =
        MemoryBlockStore::from_blocks(repo.record_proof(&store, c, "zzzzzzzzzzzzz").unwrap());
    assert_eq!(
        Repo::open(&absent, repo.commit_cid())
            .unwrap()
            .record_cid(&absent, c, "zzzzzzzzzzzzz")
            .unwrap(),
        None
    );

    // Rev must grow; conflicting writes fail.
    let again = repo.apply_writes(&store, &[], &key, repo.rev());
    assert!(matches!(again, Err(RepoError::InvalidCommit(_))));
    let create_existing = WriteOp::Create {
        collection: c.into(),
        rkey: r.into(),
        record: record(1),
    };
    assert!(matches!(
        repo.apply_writes(&store, &[create_existing], &key, &tid(99)),
        Err(RepoError::WriteConflict(_))
    ));
    let delete_missing = WriteOp::Delete {
        collection: c.into(),
        rkey: "missing".into(),
    };
    assert!(matches!(
        repo.apply_writes(&store, &[delete_missing], &key, &tid(99)),
        Err(RepoError::WriteConflict(_))
    ));
    let update_missing = WriteOp::Update {
        collection: c.into(),
        rkey: "missing".into(),
        record: record(2),
    };
    assert!(matches!(
        repo.apply_writes(&store, &[update_missing], &key, &tid(99)),
        Err(RepoError::WriteConflict(_))
    ));

    // CAR export -> import + verify round trip.
    let mut car = Vec::new();
    let written = repo.write_car(&store, &mut car).unwrap();
    assert_eq!(written as usize, car.len());
    let did_key = key.public_key().to_did_key();
    let verified = verify_car_with_did_key(car.as_slice(), &did_key, Some(did)).unwrap();
    assert_eq!(verified.records, all);
    assert_eq!(verified.commit_cid, repo.commit_cid());
    let mut imported = MemoryBlockStore::new();
    let root = import_car(car.as_slice(), &mut imported).unwrap();
    assert_eq!(root, repo.commit_cid());
    assert_eq!(
        Repo::open(&imported, root)
            .unwrap()
            .list_records(&imported, coll, None, 1000, false)
            .unwrap(),
        in_coll
    );

    // Wrong key, wrong DID, tampered bytes, truncation: all rejected.
    let other = test_key(KeyAlgorithm::P256, 3).public_key().to_did_key();
    assert!(matches!(
        verify_car_with_did_key(car.as_slice(), &other, None),
        Err(RepoError::InvalidCommit(_))
    ));
    assert!(
        verify_car_with_did_key(car.as_slice(), &did_key, Some("did:plc:someoneelse")).is_err()
    );
    let mut tampered = car.clone();
    let at = tampered.len() - 3;
    tampered[at] ^= 1;
    let err = verify_car(tampered.as_slice(), &key.public_key(), None).unwrap_err();
    assert!(err.to_string().contains("do not match"), "{err}");
    let err = verify_car(&car[..car.len() - 1], &key.public_key(), None).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn tracking_store_collects_writes_and_records_reads() {
    let mut store = MemoryBlockStore::new();
    let mut tree = Mst::new();
    let mut rng = Rng::new(3);
    let keys: Vec<String> = (0..500).map(|_| random_key(&mut rng)).collect();
    for (i, k) in keys.iter().enumerate() {
        tree.insert(&store, k, value_cid(i as u64)).unwrap();
    }
    let root = flush(&mut tree, &mut store);
    // Reads: exactly the path blocks of a lookup.
    let tracking = TrackingStore::new(&store);
    assert!(get_stored(&tracking, &root, &keys[7]).unwrap().is_some());
    let (path, _) = pds::repo::proof::path_blocks(&store, &root, &keys[7]).unwrap();
    assert_eq!(tracking.read_blocks(), path);
    // Writes: collected in the overlay, visible to reads, absent from the base.
    let mut tracking = TrackingStore::new(&store);
    let mut tree = Mst::load(&tracking, root).unwrap();
    tree.insert(&tracking, "com.example.record/new", value_cid(9999))
        .unwrap();
    let mut blocks = BlockMap::new();
    let new_root = tree.flush(&mut blocks).unwrap();
    tracking.put_many(blocks.clone()).unwrap();
    assert_eq!(tracking.written(), &blocks);
    assert!(tracking.has(&new_root).unwrap() && !store.has(&new_root).unwrap());
    assert_eq!(
        get_stored(&tracking, &new_root, "com.example.record/new").unwrap(),
        Some(value_cid(9999))
    );
}

#[test]
fn empty_repository_round_trip() {
    let key = test_key(KeyAlgorithm::P256, 5);
    let store = MemoryBlockStore::new();
    let (repo, out) = Repo::create(&store, "did:web:example.com", &[], &key, &tid(1)).unwrap();
    // The empty tree's root is the well-known empty node.
    assert_eq!(
        repo.data().to_string(),
        "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
    );
    let mut store = store;
    store.put_many(out.new_blocks).unwrap();
    let mut car = Vec::new();
    repo.write_car(&store, &mut car).unwrap();
    let verified = verify_car(car.as_slice(), &key.public_key(), None).unwrap();
    assert!(verified.records.is_empty());
    assert_eq!(verified.mst_nodes, 1);
}

#[derive(serde::Serialize)]
struct RawNode {
    l: Option<Cid>,
    e: Vec<RawEntry>,
}

#[derive(serde::Serialize)]
struct RawEntry {
    p: u64,
    #[serde(with = "serde_bytes")]
    k: Vec<u8>,
    v: Cid,
    t: Option<Cid>,
}

/// A CAR of a repository whose single MST node holds `keys` as given.
fn car_with_root_node(keys: &[&str], key: &pds::crypto::SigningKey) -> Vec<u8> {
    let entries = keys
        .iter()
        .map(|k| RawEntry {
            p: 0,
            k: k.as_bytes().to_vec(),
            v: cid_for_cbor(&record(1)),
            t: None,
        })
        .collect();
    let node = encode(&RawNode {
        l: None,
        e: entries,
    })
    .unwrap();
    let node_cid = cid_for_cbor(&node);
    let commit = UnsignedCommit::new("did:web:example.com", node_cid, &tid(1))
        .sign(key)
        .unwrap();
    let (commit_cid, commit_bytes) = commit.to_block().unwrap();
    let mut w = CarWriter::new(Vec::new(), &commit_cid).unwrap();
    w.write_block(&commit_cid, &commit_bytes).unwrap();
    w.write_block(&node_cid, &node).unwrap();
    let rec = record(1);
    w.write_block(&cid_for_cbor(&rec), &rec).unwrap();
    w.finish().unwrap()
}

#[test]
fn verifier_rejects_malformed_trees() {
    let key = test_key(KeyAlgorithm::K256, 11);
    // Two height-0 keys in order: a valid one-node tree.
    let zeros: Vec<String> = (0..1000)
        .map(|i| format!("com.example.record/k{i}"))
        .filter(|k| key_height(k) == 0)
        .take(2)
        .collect();
    let tall = (0..1000)
        .map(|i| format!("com.example.record/k{i}"))
        .find(|k| key_height(k) > 0)
        .unwrap();
    let good = car_with_root_node(&[&zeros[0], &zeros[1]], &key);
    assert_eq!(
        verify_car(good.as_slice(), &key.public_key(), None)
            .unwrap()
            .records
            .len(),
        2
    );

    let unordered = car_with_root_node(&[&zeros[1], &zeros[0]], &key);
    let err = verify_car(unordered.as_slice(), &key.public_key(), None).unwrap_err();
    assert!(matches!(err, RepoError::InvalidMst(_)), "{err}");

    let mut mixed = [zeros[0].as_str(), tall.as_str()];
    mixed.sort();
    let wrong_layer = car_with_root_node(&mixed, &key);
    let err = verify_car(wrong_layer.as_slice(), &key.public_key(), None).unwrap_err();
    assert!(matches!(err, RepoError::InvalidMst(_)), "{err}");

    let bad_key = car_with_root_node(&["no-slash"], &key);
    let err = verify_car(bad_key.as_slice(), &key.public_key(), None).unwrap_err();
    assert!(matches!(err, RepoError::InvalidKey(_)), "{err}");
}

#[test]
fn car_decoder_streams_and_rejects_bad_input() {
    let blocks: Vec<(Cid, Vec<u8>)> = (0..50)
        .map(|i| (cid_for_cbor(&record(i)), record(i)))
        .collect();
    let root = blocks[0].0;
    let mut car = header_bytes(&root).unwrap();
    for (cid, bytes) in &blocks {
        car.extend(block_bytes(cid, bytes));
    }
    // Whole, and one byte at a time: same blocks.
    let read: Vec<(Cid, Vec<u8>)> = CarReader::new(car.as_slice())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(read, blocks);
    let mut dec = CarDecoder::default();
    let mut trickled = Vec::new();
    for byte in &car {
        dec.feed(std::slice::from_ref(byte));
        while let Some(b) = dec.next_block().unwrap() {
            trickled.push(b);
        }
    }
    dec.finish().unwrap();
    assert_eq!(dec.roots().unwrap(), &[root]);
    assert_eq!(trickled, blocks);

    let read_err = |bytes: &[u8]| -> String {
        match CarReader::new(bytes) {
            Err(e) => e.to_string(),
            Ok(r) => r
                .map(|b| b.map(|_| ()))
                .collect::<Result<Vec<()>, _>>()
                .unwrap_err()
                .to_string(),
        }
    };
    let header = header_bytes(&root).unwrap();
    // Overlong varint.
    let mut bad = header.clone();
    bad.extend([0xff; 11]);
    assert!(read_err(&bad).contains("varint"), "{}", read_err(&bad));
    // Non-minimal varint.
    let mut bad = header.clone();
    bad.extend([0x85, 0x00]);
    assert!(read_err(&bad).contains("varint"), "{}", read_err(&bad));
    // Oversize length.
    let mut bad = header.clone();
    bad.extend([0x80, 0x80, 0x80, 0x10]);
    assert!(read_err(&bad).contains("exceeds"), "{}", read_err(&bad));
    // Bad CID.
    let mut bad = header.clone();
    bad.extend([5, 0x07, 1, 2, 3, 4]);
    assert!(read_err(&bad).contains("bad CID"), "{}", read_err(&bad));
    // Bytes that don't match the CID.
    let mut bad = header.clone();
    bad.extend(block_bytes(&blocks[0].0, &blocks[1].1));
    assert!(
        read_err(&bad).contains("do not match"),
        "{}",
        read_err(&bad)
    );
    // Truncated block, truncated header, garbage header.
    assert!(read_err(&car[..car.len() - 2]).contains("truncated"));
    assert!(read_err(&header[..header.len() - 1]).contains("truncated"));
    assert!(
        read_err(&[3, 0xa1, 0x61, 0x78]).contains("header"),
        "{}",
        read_err(&[3, 0xa1, 0x61, 0x78])
    );
    // A small block limit is enforced.
    let mut limited = pds::repo::car::CarReader::with_limit(car.as_slice(), 8).unwrap();
    assert!(limited
        .next_block()
        .unwrap_err()
        .to_string()
        .contains("exceeds"));
}

#[test]
fn mst_key_height_distribution_is_sane() {
    // About 3 in 4 keys sit at height 0 (fanout 4).
    let zeros = (0..4000)
        .filter(|i| key_height(&format!("com.example.record/{i}")) == 0)
        .count();
    assert!((2700..3300).contains(&zeros), "{zeros}");
    assert!(mst::is_valid_key("app.bsky.feed.post/3jqfcqzm3fo2j"));
}

#[test]
fn one_write_reads_a_few_paths_not_the_tree() {
    let key = test_key(KeyAlgorithm::K256, 2);
    let mut rng = Rng::new(5000);
    let writes: Vec<WriteOp> = (0..5000)
        .map(|i| WriteOp::Create {
            collection: "app.bsky.feed.post".into(),
            rkey: format!("r{i:05}{}", rng.below(1000)),
            record: record(i),
        })
        .collect();
    let mut store = MemoryBlockStore::new();
    let (repo, out) = Repo::create(&store, "did:web:example.com", &writes, &key, &tid(1)).unwrap();
    store.put_many(out.new_blocks).unwrap();
    assert_eq!(list_all(&store, &repo.data()).unwrap().len(), 5000);
    let tracking = TrackingStore::new(&store);
    let repo = Repo::open(&tracking, repo.commit_cid()).unwrap();
    let write = WriteOp::Create {
        collection: "app.bsky.feed.post".into(),
        rkey: "r02500x".into(),
        record: record(1),
    };
    let (_, out) = repo
        .apply_writes(&tracking, &[write], &key, &tid(2))
        .unwrap();
    let read = tracking.read_blocks().len();
    // The commit, then the key's path and its neighbours' paths (depth ~6).
    assert!(
        read <= 25,
        "{read} blocks read for one write on a 5000-record tree"
    );
    assert!(
        out.new_blocks.len() <= 12,
        "{} blocks written",
        out.new_blocks.len()
    );
}

/// A walk stopped after every few visits, its state written out as JSON and read back each
/// time, meets what one whole walk meets, in the same order, and reports the end only there.
#[test]
fn a_walk_resumed_from_its_stored_state_meets_what_a_whole_walk_meets() {
    use pds::data::json::{read_message, JsonMessage};
    use pds::repo::verify::{walk_tree, TreeWalk, Visit, WalkState};

    // A walk's state goes through the JSON it is stored as between steps.
    fn through_json(state: &WalkState) -> WalkState {
        read_message(state.write().to_string().as_bytes()).unwrap()
    }

    // The stored form is the one serde's derive wrote before: a walk stored by an earlier
    // version resumes.
    let stored = r#"{"root":null,"path":[["bafyreib2rxk3rh6kzwq",null,3],["bafyreic",4,0]],"last_key":"app.bsky.feed.post/3l2"}"#;
    let state: WalkState = read_message(stored.as_bytes()).unwrap();
    assert_eq!(
        state.write(),
        serde_json::from_str::<serde_json::Value>(stored).unwrap()
    );
    assert!(read_message::<WalkState>(br#"{"root":null,"path":[["x","layer",0]]}"#).is_err());
    let key = test_key(KeyAlgorithm::K256, 9);
    let mut rng = Rng::new(91);
    let writes: Vec<WriteOp> = (0..600)
        .map(|i| {
            let k = random_key(&mut rng);
            let (collection, rkey) = k.split_once('/').unwrap();
            (
                k.clone(),
                WriteOp::Create {
                    collection: collection.into(),
                    rkey: rkey.into(),
                    record: record(i),
                },
            )
        })
        .collect::<BTreeMap<String, WriteOp>>()
        .into_values()
        .collect();
    let mut store = MemoryBlockStore::new();
    let (repo, out) = Repo::create(&store, "did:web:example.com", &writes, &key, &tid(1)).unwrap();
    store.put_many(out.new_blocks).unwrap();
    let commit = pds::repo::verify::decode_commit(&store, repo.commit_cid(), None).unwrap();

    let describe = |v: Visit<'_>| match v {
        Visit::Node(cid) => format!("node {cid}"),
        Visit::Record(path, cid) => format!("record {path} {cid}"),
    };
    let mut whole = Vec::new();
    walk_tree(&store, &commit, &mut |v| {
        whole.push(describe(v));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        whole.iter().filter(|v| v.starts_with("record")).count(),
        writes.len()
    );
    assert!(whole.iter().filter(|v| v.starts_with("node")).count() > 5);

    for budget in [1, 3, 64] {
        let mut state = through_json(&TreeWalk::new(commit.data).state());
        let mut met = Vec::new();
        let mut steps = 0;
        loop {
            let mut walk = TreeWalk::resume(&store, &state).unwrap();
            let before = met.len();
            let done = walk
                .step(
                    &store,
                    &mut |v| {
                        met.push(describe(v));
                        Ok(())
                    },
                    budget,
                )
                .unwrap();
            assert!(met.len() - before <= budget, "a step keeps to its budget");
            steps += 1;
            if done {
                break;
            }
            state = through_json(&walk.state());
        }
        assert_eq!(met, whole, "budget {budget}");
        assert!(
            steps >= whole.len() / budget,
            "budget {budget}: {steps} steps"
        );
    }
}
