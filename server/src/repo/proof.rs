//! Inclusion and exclusion proofs over a stored MST.
//!
//! Proofs are sets of blocks: whoever holds them can walk from the root to the
//! key (or to where it would be) without the rest of the tree.

use super::blockstore::{get_required, BlockMap, BlockStore};
use super::error::Result;
use super::mst::{Link, Node};
use cid::Cid;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A stored node with its bytes, for proofs.
struct Loaded {
    cid: Cid,
    bytes: Vec<u8>,
    node: Node,
}

/// Decoded nodes shared by the proofs of one batch: the upper levels of the
/// tree are on every path, so each node is read and decoded once.
type Cache = RefCell<HashMap<Cid, Rc<Loaded>>>;

fn load(
    store: &(impl BlockStore + ?Sized),
    cache: &Cache,
    cid: &Cid,
    layer: Option<u32>,
) -> Result<Rc<Loaded>> {
    if let Some(hit) = cache.borrow().get(cid) {
        return Ok(hit.clone());
    }
    let bytes = get_required(store, cid)?;
    let node = Node::decode_from(store, &bytes, *cid, layer)?;
    let loaded = Rc::new(Loaded {
        cid: *cid,
        bytes,
        node,
    });
    cache.borrow_mut().insert(*cid, loaded.clone());
    Ok(loaded)
}

fn child(
    store: &(impl BlockStore + ?Sized),
    cache: &Cache,
    parent: &Node,
    gap: usize,
) -> Result<Option<Rc<Loaded>>> {
    match parent.gaps.get(gap) {
        Some(Some(Link::Stored(cid))) => Ok(Some(load(
            store,
            cache,
            cid,
            Some(parent.layer.saturating_sub(1)),
        )?)),
        // Nodes decoded from the store only hold stored links.
        _ => Ok(None),
    }
}

fn position(node: &Node, key: &str) -> usize {
    node.position(key)
}

/// The MST nodes from the root down to `key`, or down to where it would be:
/// what `com.atproto.sync.getRecord` sends besides the commit and the record.
/// Returns the blocks and the key's value if present.
pub fn path_blocks(
    store: &(impl BlockStore + ?Sized),
    root: &Cid,
    key: &str,
) -> Result<(BlockMap, Option<Cid>)> {
    let cache = Cache::default();
    let mut blocks = BlockMap::new();
    let mut current = load(store, &cache, root, None)?;
    loop {
        let i = position(&current.node, key);
        let found = current
            .node
            .keys
            .get(i)
            .is_some_and(|k| k == key)
            .then(|| current.node.vals[i]);
        let next = if found.is_none() {
            child(store, &cache, &current.node, i)?
        } else {
            None
        };
        blocks.insert(current.cid, current.bytes.clone());
        if found.is_some() {
            return Ok((blocks, found));
        }
        match next {
            Some(n) => current = n,
            None => return Ok((blocks, None)),
        }
    }
}

/// The covering proof of `key` (sync v1.1): the nodes that prove its presence
/// or absence and those of its immediate left and right neighbours, so that a
/// relay can invert an operation on `key` with these blocks alone. Same block
/// set as the reference implementation's `getCoveringProof`.
pub fn covering_proof(
    store: &(impl BlockStore + ?Sized),
    root: &Cid,
    key: &str,
) -> Result<BlockMap> {
    covering_proofs(store, root, [key])
}

/// The union of the covering proofs of several keys (one commit's ops),
/// decoding each node once.
pub fn covering_proofs<'k>(
    store: &(impl BlockStore + ?Sized),
    root: &Cid,
    keys: impl IntoIterator<Item = &'k str>,
) -> Result<BlockMap> {
    let cache = Cache::default();
    let root = load(store, &cache, root, None)?;
    let mut blocks = BlockMap::new();
    for key in keys {
        proof_for_key(store, &cache, &root, key, &mut blocks)?;
        proof_for_left(store, &cache, &root, key, &mut blocks)?;
        proof_for_right(store, &cache, &root, key, &mut blocks)?;
    }
    Ok(blocks)
}

/// Path to the key; stops (without the node) where the key is absent and
/// there is no subtree to descend into, as the reference does.
fn proof_for_key(
    store: &(impl BlockStore + ?Sized),
    cache: &Cache,
    at: &Loaded,
    key: &str,
    out: &mut BlockMap,
) -> Result<bool> {
    let i = position(&at.node, key);
    if !at.node.key_at(i, key) {
        match child(store, cache, &at.node, i)? {
            Some(next) => {
                proof_for_key(store, cache, &next, key, out)?;
            }
            None => return Ok(false),
        }
    }
    if !out.contains_key(&at.cid) {
        out.entry(at.cid).or_insert_with(|| at.bytes.clone());
    }
    Ok(true)
}

/// Path to the nearest key below `key`.
fn proof_for_left(
    store: &(impl BlockStore + ?Sized),
    cache: &Cache,
    at: &Loaded,
    key: &str,
    out: &mut BlockMap,
) -> Result<()> {
    let i = position(&at.node, key);
    if let Some(next) = child(store, cache, &at.node, i)? {
        proof_for_left(store, cache, &next, key, out)?;
    }
    if !out.contains_key(&at.cid) {
        out.entry(at.cid).or_insert_with(|| at.bytes.clone());
    }
    Ok(())
}

/// Path to the nearest key above `key`.
fn proof_for_right(
    store: &(impl BlockStore + ?Sized),
    cache: &Cache,
    at: &Loaded,
    key: &str,
    out: &mut BlockMap,
) -> Result<()> {
    let node = &at.node;
    let n = node.keys.len();
    let i = position(node, key);
    let next = if i < n {
        // Present: the subtree right of it holds the neighbour's path;
        // absent: the gap where it would be.
        let gap = if node.keys[i] == key { i + 1 } else { i };
        child(store, cache, node, gap)?
    } else {
        // Above every key here: only a trailing subtree can hold the neighbour.
        child(store, cache, node, n)?
    };
    if let Some(next) = next {
        proof_for_right(store, cache, &next, key, out)?;
    }
    if !out.contains_key(&at.cid) {
        out.entry(at.cid).or_insert_with(|| at.bytes.clone());
    }
    Ok(())
}
