//! Inclusion and exclusion proofs over a stored MST.
//!
//! Proofs are sets of blocks: whoever holds them can walk from the root to the
//! key (or to where it would be) without the rest of the tree.

use super::blockstore::{get_required, BlockMap, BlockStore};
use super::error::Result;
use super::mst::{Link, Node};
use cid::Cid;

/// A stored node with its bytes, for proofs.
struct Loaded {
    cid: Cid,
    bytes: Vec<u8>,
    node: Node,
}

fn load(store: &(impl BlockStore + ?Sized), cid: &Cid, layer: Option<u32>) -> Result<Loaded> {
    let bytes = get_required(store, cid)?;
    let node = Node::decode(&bytes, *cid, layer)?;
    Ok(Loaded {
        cid: *cid,
        bytes,
        node,
    })
}

fn child(store: &(impl BlockStore + ?Sized), parent: &Node, gap: usize) -> Result<Option<Loaded>> {
    match parent.gaps.get(gap) {
        Some(Some(Link::Stored(cid))) => Ok(Some(load(
            store,
            cid,
            Some(parent.layer.saturating_sub(1)),
        )?)),
        // Nodes decoded from the store only hold stored links.
        _ => Ok(None),
    }
}

fn position(node: &Node, key: &str) -> usize {
    node.keys.partition_point(|k| k.as_str() < key)
}

/// The MST nodes from the root down to `key`, or down to where it would be:
/// what `com.atproto.sync.getRecord` sends besides the commit and the record.
/// Returns the blocks and the key's value if present.
pub fn path_blocks(
    store: &(impl BlockStore + ?Sized),
    root: &Cid,
    key: &str,
) -> Result<(BlockMap, Option<Cid>)> {
    let mut blocks = BlockMap::new();
    let mut current = load(store, root, None)?;
    loop {
        let i = position(&current.node, key);
        let found = current
            .node
            .keys
            .get(i)
            .is_some_and(|k| k == key)
            .then(|| current.node.vals[i]);
        let next = if found.is_none() {
            child(store, &current.node, i)?
        } else {
            None
        };
        blocks.insert(current.cid, current.bytes);
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
    let root = load(store, root, None)?;
    let mut blocks = BlockMap::new();
    proof_for_key(store, &root, key, &mut blocks)?;
    proof_for_left(store, &root, key, &mut blocks)?;
    proof_for_right(store, &root, key, &mut blocks)?;
    Ok(blocks)
}

/// Path to the key; stops (without the node) where the key is absent and
/// there is no subtree to descend into, as the reference does.
fn proof_for_key(
    store: &(impl BlockStore + ?Sized),
    at: &Loaded,
    key: &str,
    out: &mut BlockMap,
) -> Result<bool> {
    let i = position(&at.node, key);
    if !at.node.keys.get(i).is_some_and(|k| k == key) {
        match child(store, &at.node, i)? {
            Some(next) => {
                proof_for_key(store, &next, key, out)?;
            }
            None => return Ok(false),
        }
    }
    out.insert(at.cid, at.bytes.clone());
    Ok(true)
}

/// Path to the nearest key below `key`.
fn proof_for_left(
    store: &(impl BlockStore + ?Sized),
    at: &Loaded,
    key: &str,
    out: &mut BlockMap,
) -> Result<()> {
    let i = position(&at.node, key);
    if let Some(next) = child(store, &at.node, i)? {
        proof_for_left(store, &next, key, out)?;
    }
    out.insert(at.cid, at.bytes.clone());
    Ok(())
}

/// Path to the nearest key above `key`.
fn proof_for_right(
    store: &(impl BlockStore + ?Sized),
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
        child(store, node, gap)?
    } else {
        // Above every key here: only a trailing subtree can hold the neighbour.
        child(store, node, n)?
    };
    if let Some(next) = next {
        proof_for_right(store, &next, key, out)?;
    }
    out.insert(at.cid, at.bytes.clone());
    Ok(())
}
