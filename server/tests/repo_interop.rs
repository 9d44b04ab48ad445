//! The repository core against the official interop vectors (mst/ and firehose/).

mod support;

use cid::Cid;
use pds::repo::blockstore::{BlockMap, MemoryBlockStore};
use pds::repo::mst::{common_prefix_len, is_valid_key, key_height, Mst};
use pds::repo::proof::covering_proof;
use pds::repo::BlockStore;
use serde_json::Value as Json;
use std::collections::BTreeSet;

fn json(rel: &str) -> Json {
    serde_json::from_str(&support::interop_file(rel)).unwrap()
}

#[test]
fn key_heights() {
    let cases = json("mst/key_heights.json");
    let cases = cases.as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let key = case["key"].as_str().unwrap();
        assert_eq!(
            key_height(key),
            case["height"].as_u64().unwrap() as u32,
            "key {key:?}"
        );
    }
}

#[test]
fn common_prefixes() {
    let cases = json("mst/common_prefix.json");
    let cases = cases.as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let (l, r) = (
            case["left"].as_str().unwrap(),
            case["right"].as_str().unwrap(),
        );
        assert_eq!(
            common_prefix_len(l, r),
            case["len"].as_u64().unwrap() as usize,
            "{l:?} {r:?}"
        );
    }
}

/// example_keys.txt names each key by the height it has: `C2/...` sits at height 2.
#[test]
fn example_keys_have_their_named_height() {
    let text = support::interop_file("mst/example_keys.txt");
    let keys: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert!(keys.len() > 100);
    for key in keys {
        assert!(is_valid_key(key), "{key}");
        let named: u32 = key[1..2].parse().unwrap();
        assert_eq!(key_height(key), named, "{key}");
    }
}

fn cid(s: &str) -> Cid {
    Cid::try_from(s).unwrap()
}

fn strings(v: &Json) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn commit_proof_fixtures() {
    let fixtures = json("firehose/commit-proof-fixtures.json");
    let fixtures = fixtures.as_array().unwrap();
    assert_eq!(fixtures.len(), 6);
    for fixture in fixtures {
        let name = fixture["comment"].as_str().unwrap();
        let leaf = cid(fixture["leafValue"].as_str().unwrap());
        let (keys, adds, dels) = (
            strings(&fixture["keys"]),
            strings(&fixture["adds"]),
            strings(&fixture["dels"]),
        );

        let mut store = MemoryBlockStore::new();
        let mut tree = Mst::new();
        for key in &keys {
            tree.insert(&store, key, leaf).unwrap();
        }
        let mut blocks = BlockMap::new();
        let before = tree.flush(&mut blocks).unwrap();
        assert_eq!(
            before,
            cid(fixture["rootBeforeCommit"].as_str().unwrap()),
            "{name}: root before"
        );
        store.put_many(blocks).unwrap();

        // Apply the commit to the tree as loaded from storage (lazy loading path).
        let mut tree = Mst::load(&store, before).unwrap();
        for key in &adds {
            assert_eq!(tree.insert(&store, key, leaf).unwrap(), None);
        }
        for key in &dels {
            assert_eq!(
                tree.remove(&store, key).unwrap(),
                Some(leaf),
                "{name}: delete {key}"
            );
        }
        let mut blocks = BlockMap::new();
        let after = tree.flush(&mut blocks).unwrap();
        assert_eq!(
            after,
            cid(fixture["rootAfterCommit"].as_str().unwrap()),
            "{name}: root after"
        );
        store.put_many(blocks).unwrap();

        let mut proof = BlockMap::new();
        for key in adds.iter().chain(&dels) {
            proof.append(&mut covering_proof(&store, &after, key).unwrap());
        }
        let expected: BTreeSet<Cid> = strings(&fixture["blocksInProof"])
            .iter()
            .map(|s| cid(s))
            .collect();
        let got: BTreeSet<Cid> = proof.keys().copied().collect();
        assert_eq!(got, expected, "{name}: proof blocks");

        // Invert the ops over the new tree with the proof blocks alone, in
        // every order: each must reproduce the previous root.
        let proof_store = MemoryBlockStore::from_blocks(proof);
        let inverses: Vec<(bool, &String)> = adds
            .iter()
            .map(|k| (true, k))
            .chain(dels.iter().map(|k| (false, k)))
            .collect();
        for order in permutations(inverses.len()) {
            let mut inverted = Mst::load(&proof_store, after).unwrap();
            for &i in &order {
                let (was_add, key) = inverses[i];
                if was_add {
                    assert_eq!(
                        inverted.remove(&proof_store, key).unwrap(),
                        Some(leaf),
                        "{name}"
                    );
                } else {
                    assert_eq!(
                        inverted.insert(&proof_store, key, leaf).unwrap(),
                        None,
                        "{name}"
                    );
                }
            }
            assert_eq!(
                inverted.root_cid().unwrap(),
                before,
                "{name}: inverted in order {order:?}"
            );
        }
    }
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for rest in permutations(n - 1) {
        for pos in 0..=rest.len() {
            let mut p = rest.clone();
            p.insert(pos, n - 1);
            out.push(p);
        }
    }
    out
}
