//! The MST root for any key set must equal the reference implementation's:
//! random op sequences are replayed on @atproto/repo (tests/oracle/mst-oracle.mjs)
//! and on ours, and the roots compared at checkpoints.

mod repo_support;

use cid::Cid;
use pds::repo::blockstore::{BlockMap, MemoryBlockStore};
use pds::repo::{BlockStore, Mst};
use repo_support::{node_binary, random_key, value_cid, Rng};
use serde_json::json;
use std::collections::BTreeMap;

enum Op {
    Add(String, Cid),
    Del(String),
}

/// `adds` inserts (some overwriting), with deletes of present keys mixed in at `delete_rate` percent.
fn generate(seed: u64, adds: usize, delete_rate: usize) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    let mut present: Vec<String> = Vec::new();
    let mut model: BTreeMap<String, Cid> = BTreeMap::new();
    let mut ops = Vec::new();
    let mut n = 0;
    while n < adds {
        if !present.is_empty() && rng.below(100) < delete_rate {
            let key = present.swap_remove(rng.below(present.len()));
            model.remove(&key);
            ops.push(Op::Del(key));
        } else {
            let key = if !present.is_empty() && rng.below(20) == 0 {
                present[rng.below(present.len())].clone() // overwrite
            } else {
                random_key(&mut rng)
            };
            let value = value_cid(rng.next_u64());
            if model.insert(key.clone(), value).is_none() {
                present.push(key.clone());
            }
            ops.push(Op::Add(key, value));
            n += 1;
        }
    }
    ops
}

fn oracle_roots(seed: u64, ops: &[Op], checkpoints: &[usize]) -> Vec<String> {
    let wire: Vec<serde_json::Value> = ops
        .iter()
        .map(|op| match op {
            Op::Add(k, v) => json!(["a", k, v.to_string()]),
            Op::Del(k) => json!(["d", k]),
        })
        .collect();
    let input = json!({"ops": wire, "checkpoints": checkpoints});
    let path = std::env::temp_dir().join(format!(
        "mst-oracle-{}-{seed}-{}.json",
        std::process::id(),
        ops.len()
    ));
    std::fs::write(&path, input.to_string()).unwrap();
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/mst-oracle.mjs");
    let out = std::process::Command::new(node_binary())
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).ok();
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Our roots at the checkpoints. Every `reload_every` ops the tree is flushed
/// to the store and reopened from its root, so later ops go through lazy loading.
fn our_roots(ops: &[Op], checkpoints: &[usize], reload_every: usize) -> Vec<String> {
    let mut store = MemoryBlockStore::new();
    let mut tree = Mst::new();
    let mut roots = Vec::new();
    let flush = |tree: &mut Mst, store: &mut MemoryBlockStore| {
        let mut blocks = BlockMap::new();
        let root = tree.flush(&mut blocks).unwrap();
        store.put_many(blocks).unwrap();
        root
    };
    for i in 0..=ops.len() {
        if checkpoints.contains(&i) {
            roots.push(flush(&mut tree, &mut store).to_string());
        }
        if i == ops.len() {
            break;
        }
        if i > 0 && i % reload_every == 0 {
            let root = flush(&mut tree, &mut store);
            tree = Mst::load(&store, root).unwrap();
        }
        match &ops[i] {
            Op::Add(k, v) => {
                tree.insert(&store, k, *v).unwrap();
            }
            Op::Del(k) => {
                assert!(tree.remove(&store, k).unwrap().is_some(), "delete of {k}");
            }
        }
    }
    roots
}

fn compare(seed: u64, adds: usize, delete_rate: usize, reload_every: usize) {
    let ops = generate(seed, adds, delete_rate);
    let mut checkpoints: Vec<usize> =
        vec![0, 1, 2, 3, 5, 8, 13, 50, 100, 333, 1000, 2500, 5000, 7500];
    checkpoints.retain(|&c| c < ops.len());
    checkpoints.push(ops.len());
    let expected = oracle_roots(seed, &ops, &checkpoints);
    let got = our_roots(&ops, &checkpoints, reload_every);
    assert_eq!(got.len(), checkpoints.len());
    for ((c, e), g) in checkpoints.iter().zip(&expected).zip(&got) {
        assert_eq!(
            g, e,
            "seed {seed}: root after {c} ops differs from @atproto/repo"
        );
    }
}

#[test]
fn roots_match_reference_small_sets() {
    for seed in 1..=8 {
        compare(seed, 40, 30, 7);
    }
}

#[test]
fn roots_match_reference_10k_adds_and_deletes() {
    compare(0xC0FFEE, 10_000, 25, 997);
}

#[test]
fn roots_match_reference_10k_adds_only() {
    compare(42, 10_000, 0, 2_000);
}

#[test]
fn roots_match_reference_delete_heavy() {
    compare(7, 3_000, 45, 101);
}
