//! The difference between two stored MSTs: leaf operations and node blocks.
//!
//! Both trees are walked layer by layer from the top; a node whose CID appears
//! on both sides at the same layer is shared (identical subtree) and is not
//! opened. The work is proportional to the changed paths, not to the tree.

use super::blockstore::{get_required, BlockMap, BlockStore};
use super::error::Result;
use super::mst::{Link, Node};
use cid::Cid;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// One changed leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafChange {
    /// Key added with this value.
    Create { key: String, cid: Cid },
    /// Key's value replaced.
    Update { key: String, prev: Cid, cid: Cid },
    /// Key removed; it had this value.
    Delete { key: String, prev: Cid },
}

impl LeafChange {
    /// The key this change is about.
    pub fn key(&self) -> &str {
        match self {
            LeafChange::Create { key, .. }
            | LeafChange::Update { key, .. }
            | LeafChange::Delete { key, .. } => key,
        }
    }
}

/// What changed from one tree to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MstDiff {
    /// Leaf changes, ordered by key.
    pub changes: Vec<LeafChange>,
    /// Nodes of the new tree that are not in the old one.
    pub new_nodes: BlockMap,
    /// Nodes of the old tree that are not in the new one.
    pub removed_nodes: BTreeSet<Cid>,
}

/// Diffs the stored trees at `old` (none: the empty tree) and `new`.
pub fn diff_trees(
    store: &(impl BlockStore + ?Sized),
    old: Option<&Cid>,
    new: &Cid,
) -> Result<MstDiff> {
    // layer -> (old side, new side) node CIDs still to compare.
    let mut pending: BTreeMap<u32, (BTreeSet<Cid>, BTreeSet<Cid>)> = BTreeMap::new();
    let mut diff = MstDiff::default();
    let mut old_leaves: BTreeMap<String, Cid> = BTreeMap::new();
    let mut new_leaves: BTreeMap<String, Cid> = BTreeMap::new();

    let new_root = get_required(store, new)?;
    let new_layer = Node::decode_from(store, &new_root, *new, None)?.layer;
    pending.entry(new_layer).or_default().1.insert(*new);
    if let Some(old) = old {
        let old_root = get_required(store, old)?;
        let old_layer = Node::decode_from(store, &old_root, *old, None)?.layer;
        pending.entry(old_layer).or_default().0.insert(*old);
    }

    while let Some((layer, (olds, news))) = pending.pop_last() {
        for cid in olds.difference(&news) {
            let bytes = get_required(store, cid)?;
            let node = Node::decode_from(store, &bytes, *cid, Some(layer))?;
            collect(&node, &mut old_leaves, |c| {
                pending
                    .entry(layer.saturating_sub(1))
                    .or_default()
                    .0
                    .insert(c);
            });
            diff.removed_nodes.insert(*cid);
        }
        for cid in news.difference(&olds) {
            let bytes = get_required(store, cid)?;
            let node = Node::decode_from(store, &bytes, *cid, Some(layer))?;
            collect(&node, &mut new_leaves, |c| {
                pending
                    .entry(layer.saturating_sub(1))
                    .or_default()
                    .1
                    .insert(c);
            });
            diff.new_nodes.insert(*cid, bytes);
        }
    }

    // Both leaf maps iterate in key order, so merging them yields the changes sorted by key.
    let (mut olds, mut news) = (old_leaves.iter().peekable(), new_leaves.iter().peekable());
    loop {
        let order = match (olds.peek(), news.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((old_key, _)), Some((new_key, _))) => old_key.cmp(new_key),
        };
        let change = match order {
            Ordering::Less => olds.next().map(|(key, prev)| LeafChange::Delete {
                key: key.clone(),
                prev: *prev,
            }),
            Ordering::Greater => news.next().map(|(key, cid)| LeafChange::Create {
                key: key.clone(),
                cid: *cid,
            }),
            Ordering::Equal => match (olds.next(), news.next()) {
                (Some((key, prev)), Some((_, cid))) if prev != cid => Some(LeafChange::Update {
                    key: key.clone(),
                    prev: *prev,
                    cid: *cid,
                }),
                _ => None,
            },
        };
        diff.changes.extend(change);
    }
    Ok(diff)
}

fn collect(node: &Node, leaves: &mut BTreeMap<String, Cid>, mut child: impl FnMut(Cid)) {
    for (key, val) in node.keys.iter().zip(&node.vals) {
        leaves.insert(key.clone(), *val);
    }
    for link in node.gaps.iter().flatten() {
        if let Link::Stored(cid) = link {
            child(*cid);
        }
    }
}
