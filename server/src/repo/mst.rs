//! The Merkle Search Tree of the atproto repository spec.
//!
//! Each key's height is the number of leading zero bits of its sha-256, counted
//! in 2-bit steps. A node at layer `L` holds, in order, the keys of height `L` in
//! its range, with subtrees at layer `L - 1` in the gaps between them. The root
//! sits at the height of the highest key; empty intermediate nodes (no keys, one
//! link down) keep layers implicit. The shape depends only on the key set, so
//! the root CID is a function of the (key -> CID) map.
//!
//! Nodes load lazily from the block store and are cached once touched: a write
//! reads and rewrites one path, never the whole tree.

use super::blockstore::{get_required, BlockMap, BlockStore};
use super::cbor::{cid_for_cbor, decode_canonical, encode};
use super::error::{RepoError, Result};
use cid::Cid;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::ops::Bound;

/// Longest MST key the reference implementation accepts.
pub const MAX_KEY_LEN: usize = 1024;

/// The height of a key: leading zero bits of sha-256(key), divided by two.
pub fn key_height(key: &str) -> u32 {
    let hash = Sha256::digest(key.as_bytes());
    let mut zeros = 0;
    for byte in hash {
        if byte == 0 {
            zeros += 8;
            continue;
        }
        zeros += byte.leading_zeros();
        break;
    }
    zeros / 2
}

/// Length in bytes of the common prefix of two keys.
pub fn common_prefix_len(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

/// Whether `key` is a valid repository path: `collection/rkey`, both parts
/// non-empty, characters from `[a-zA-Z0-9_~\-:.]`, at most 1024 bytes.
pub fn is_valid_key(key: &str) -> bool {
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_~-:.".contains(&b))
    };
    key.len() <= MAX_KEY_LEN
        && match key.split_once('/') {
            Some((collection, rkey)) => valid(collection) && valid(rkey),
            None => false,
        }
}

fn check_key(key: &str) -> Result<()> {
    if is_valid_key(key) {
        Ok(())
    } else {
        Err(RepoError::InvalidKey(key.to_owned()))
    }
}

/// The wire form of a node: `{l, e: [{p, k, v, t}]}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeData {
    pub l: Option<Cid>,
    pub e: Vec<EntryData>,
}

/// One wire entry: prefix length shared with the previous key, the rest of the
/// key, the value and the subtree to its right.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntryData {
    pub p: u64,
    #[serde(with = "serde_bytes")]
    pub k: Vec<u8>,
    pub v: Cid,
    pub t: Option<Cid>,
}

/// A pointer to a subtree: stored (by CID) or loaded into memory.
#[derive(Debug, Clone)]
pub(crate) enum Link {
    Stored(Cid),
    Loaded(Box<Node>),
}

/// A node in memory. `gaps[i]` is the subtree left of `keys[i]`;
/// `gaps[keys.len()]` is the rightmost one.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub layer: u32,
    pub keys: Vec<String>,
    pub vals: Vec<Cid>,
    pub gaps: Vec<Option<Link>>,
    /// CID of the node as stored; `None` once modified.
    pub cid: Option<Cid>,
}

impl Node {
    fn empty(layer: u32) -> Node {
        Node {
            layer,
            keys: Vec::new(),
            vals: Vec::new(),
            gaps: vec![None],
            cid: None,
        }
    }

    /// No keys and no subtrees: holds nothing.
    fn is_void(&self) -> bool {
        self.keys.is_empty() && self.gaps.iter().all(Option::is_none)
    }

    fn into_link(self) -> Option<Link> {
        if self.is_void() {
            None
        } else {
            Some(Link::Loaded(Box::new(self)))
        }
    }

    /// Decodes a stored node whose layer is known from its parent (or from its
    /// own keys for a root: pass `None`). Checks key syntax, strict ordering,
    /// that every key has the node's height, and the canonical encoding.
    pub(crate) fn decode(bytes: &[u8], cid: Cid, layer: Option<u32>) -> Result<Node> {
        Node::decode_with(bytes, cid, layer, false)
    }

    /// [`Node::decode`] for a node read from `store`: when the store's nodes were fully
    /// checked before they were stored ([`BlockStore::checked`]), the canonical encoding
    /// (a second encoding and a comparison) and the keys' heights (a hash each) are not
    /// checked again. On a write these were most of the time spent decoding.
    pub(crate) fn decode_from(
        store: &(impl BlockStore + ?Sized),
        bytes: &[u8],
        cid: Cid,
        layer: Option<u32>,
    ) -> Result<Node> {
        Node::decode_with(bytes, cid, layer, store.checked())
    }

    fn decode_with(bytes: &[u8], cid: Cid, layer: Option<u32>, checked: bool) -> Result<Node> {
        let data: NodeData = if checked {
            serde_ipld_dagcbor::from_slice(bytes)
                .map_err(|e| RepoError::Decode(format!("MST node: {e}")))?
        } else {
            decode_canonical(bytes, "MST node")?
        };
        let mut keys = Vec::with_capacity(data.e.len());
        let mut vals = Vec::with_capacity(data.e.len());
        let mut gaps = Vec::with_capacity(data.e.len() + 1);
        gaps.push(data.l.map(Link::Stored));
        let mut last: Option<String> = None;
        for entry in data.e {
            let prev = last.as_deref().unwrap_or("");
            let p = usize::try_from(entry.p).unwrap_or(usize::MAX);
            if p > prev.len() {
                return Err(RepoError::InvalidMst(format!(
                    "prefix {p} longer than previous key in {}",
                    crate::data::cid_string(&cid)
                )));
            }
            let suffix = std::str::from_utf8(&entry.k).map_err(|_| {
                RepoError::InvalidMst(format!(
                    "non-UTF-8 key in {}",
                    crate::data::cid_string(&cid)
                ))
            })?;
            let key = format!("{}{}", &prev[..p], suffix);
            check_key(&key)?;
            if last.as_deref().is_some_and(|l| l >= key.as_str()) {
                return Err(RepoError::InvalidMst(format!(
                    "keys out of order in {}",
                    crate::data::cid_string(&cid)
                )));
            }
            keys.push(key.clone());
            vals.push(entry.v);
            gaps.push(entry.t.map(Link::Stored));
            last = Some(key);
        }
        let layer = match (layer, keys.first()) {
            (Some(l), _) => l,
            (None, Some(k)) => key_height(k),
            (None, None) => 0,
        };
        // A checked store's keys were hashed to their layer when they were stored.
        let misplaced = match checked {
            true => None,
            false => keys.iter().find(|key| key_height(key) != layer),
        };
        if let Some(key) = misplaced {
            return Err(RepoError::InvalidMst(format!(
                "key {key} at wrong layer {layer} in {}",
                crate::data::cid_string(&cid)
            )));
        }
        if layer == 0 && gaps.iter().any(Option::is_some) {
            return Err(RepoError::InvalidMst(format!(
                "subtree below layer 0 in {}",
                crate::data::cid_string(&cid)
            )));
        }
        Ok(Node {
            layer,
            keys,
            vals,
            gaps,
            cid: Some(cid),
        })
    }

    /// The wire form, with the CIDs of loaded children (which must be flushed).
    fn to_data(&self) -> Result<NodeData> {
        let link_cid = |link: &Option<Link>| -> Result<Option<Cid>> {
            match link {
                None => Ok(None),
                Some(Link::Stored(cid)) => Ok(Some(*cid)),
                Some(Link::Loaded(node)) => node
                    .cid
                    .map(Some)
                    .ok_or_else(|| RepoError::InvalidMst("child not flushed".into())),
            }
        };
        let mut e = Vec::with_capacity(self.keys.len());
        let mut prev = "";
        for (i, key) in self.keys.iter().enumerate() {
            let p = common_prefix_len(prev, key);
            e.push(EntryData {
                p: p as u64,
                k: key.as_bytes()[p..].to_vec(),
                v: self.vals[i],
                t: link_cid(&self.gaps[i + 1])?,
            });
            prev = key;
        }
        Ok(NodeData {
            l: link_cid(&self.gaps[0])?,
            e,
        })
    }

    /// Index of the first key `>= key`.
    pub(crate) fn position(&self, key: &str) -> usize {
        self.keys.partition_point(|k| k.as_str() < key)
    }

    /// Whether `keys[i]` is `key`.
    pub(crate) fn key_at(&self, i: usize, key: &str) -> bool {
        self.keys.get(i).is_some_and(|k| k == key)
    }
}

/// Loads a node from the store.
pub(crate) fn load_node(
    store: &(impl BlockStore + ?Sized),
    cid: &Cid,
    layer: Option<u32>,
) -> Result<Node> {
    let bytes = get_required(store, cid)?;
    Node::decode_from(store, &bytes, *cid, layer)
}

/// Makes sure a link is loaded and returns the node.
fn load_link<'n>(
    store: &(impl BlockStore + ?Sized),
    link: &'n mut Link,
    layer: u32,
) -> Result<&'n mut Node> {
    if let Link::Stored(cid) = link {
        let node = load_node(store, cid, Some(layer))?;
        *link = Link::Loaded(Box::new(node));
    }
    match link {
        Link::Loaded(node) => Ok(node),
        // Just replaced above.
        Link::Stored(cid) => Err(RepoError::MissingBlock(*cid)),
    }
}

fn take_node(store: &(impl BlockStore + ?Sized), link: Link, layer: u32) -> Result<Node> {
    match link {
        Link::Stored(cid) => load_node(store, &cid, Some(layer)),
        Link::Loaded(node) => Ok(*node),
    }
}

/// Splits a subtree at `layer` around a key it does not hold: (keys below, keys above).
fn split(
    store: &(impl BlockStore + ?Sized),
    link: Option<Link>,
    layer: u32,
    key: &str,
) -> Result<(Option<Link>, Option<Link>)> {
    let Some(link) = link else {
        return Ok((None, None));
    };
    let mut node = take_node(store, link, layer)?;
    let i = node.position(key);
    if node.key_at(i, key) {
        return Err(RepoError::InvalidMst(format!("split on present key {key}")));
    }
    let middle = node.gaps[i].take();
    let (mid_left, mid_right) = if layer == 0 {
        (None, None)
    } else {
        split(store, middle, layer - 1, key)?
    };
    let right_keys = node.keys.split_off(i);
    let right_vals = node.vals.split_off(i);
    let mut right_gaps = node.gaps.split_off(i + 1);
    node.gaps[i] = mid_left;
    right_gaps.insert(0, mid_right);
    let left = Node {
        layer,
        keys: node.keys,
        vals: node.vals,
        gaps: node.gaps,
        cid: None,
    };
    let right = Node {
        layer,
        keys: right_keys,
        vals: right_vals,
        gaps: right_gaps,
        cid: None,
    };
    Ok((left.into_link(), right.into_link()))
}

/// Joins two adjacent subtrees at `layer` (every key of `left` below every key of `right`).
fn merge(
    store: &(impl BlockStore + ?Sized),
    left: Option<Link>,
    right: Option<Link>,
    layer: u32,
) -> Result<Option<Link>> {
    let (left, right) = match (left, right) {
        (None, other) | (other, None) => return Ok(other),
        (Some(l), Some(r)) => (take_node(store, l, layer)?, take_node(store, r, layer)?),
    };
    let mut node = left;
    let mut right = right;
    let left_edge = node.gaps.pop().flatten();
    let right_edge = right.gaps.remove(0);
    let middle = if layer == 0 {
        None
    } else {
        merge(store, left_edge, right_edge, layer - 1)?
    };
    node.gaps.push(middle);
    node.keys.append(&mut right.keys);
    node.vals.append(&mut right.vals);
    node.gaps.append(&mut right.gaps);
    node.cid = None;
    Ok(node.into_link())
}

/// Wraps a subtree at `from` in empty nodes until it sits at layer `to`.
fn raise(mut link: Option<Link>, from: u32, to: u32) -> Option<Link> {
    for layer in from + 1..=to {
        let inner = link?;
        let mut node = Node::empty(layer);
        node.gaps[0] = Some(inner);
        link = Some(Link::Loaded(Box::new(node)));
    }
    link
}

/// A Merkle Search Tree being read or modified. The root node is always in
/// memory; the rest loads on demand.
#[derive(Debug, Clone)]
pub struct Mst {
    root: Node,
}

impl Default for Mst {
    fn default() -> Self {
        Self::new()
    }
}

impl Mst {
    /// The empty tree.
    pub fn new() -> Mst {
        Mst {
            root: Node::empty(0),
        }
    }

    /// Opens the tree rooted at `root` (loads the root node only).
    pub fn load(store: &(impl BlockStore + ?Sized), root: Cid) -> Result<Mst> {
        let node = load_node(store, &root, None)?;
        if node.keys.is_empty() && !node.is_void() {
            return Err(RepoError::InvalidMst(format!(
                "root {} has no keys but a subtree",
                crate::data::cid_string(&root)
            )));
        }
        Ok(Mst { root: node })
    }

    /// Whether the tree holds no keys.
    pub fn is_empty(&self) -> bool {
        self.root.is_void()
    }

    /// The value of `key`, if present.
    pub fn get(&mut self, store: &(impl BlockStore + ?Sized), key: &str) -> Result<Option<Cid>> {
        let mut node = &mut self.root;
        loop {
            let i = node.position(key);
            if node.key_at(i, key) {
                return Ok(Some(node.vals[i]));
            }
            if node.layer == 0 {
                return Ok(None);
            }
            let layer = node.layer - 1;
            match node.gaps[i].as_mut() {
                None => return Ok(None),
                Some(link) => node = load_link(store, link, layer)?,
            }
        }
    }

    /// Sets `key` to `value`; returns the previous value.
    pub fn insert(
        &mut self,
        store: &(impl BlockStore + ?Sized),
        key: &str,
        value: Cid,
    ) -> Result<Option<Cid>> {
        check_key(key)?;
        let height = key_height(key);
        if self.root.is_void() {
            self.root = Node {
                layer: height,
                keys: vec![key.to_owned()],
                vals: vec![value],
                gaps: vec![None, None],
                cid: None,
            };
            return Ok(None);
        }
        let root_layer = self.root.layer;
        if height > root_layer {
            // The key becomes the only key of a new, higher root.
            let old = std::mem::replace(&mut self.root, Node::empty(0));
            let (left, right) = split(store, old.into_link(), root_layer, key)?;
            self.root = Node {
                layer: height,
                keys: vec![key.to_owned()],
                vals: vec![value],
                gaps: vec![
                    raise(left, root_layer, height - 1),
                    raise(right, root_layer, height - 1),
                ],
                cid: None,
            };
            return Ok(None);
        }
        insert_into(store, &mut self.root, key, height, value)
    }

    /// Removes `key`; returns its value if it was present.
    pub fn remove(&mut self, store: &(impl BlockStore + ?Sized), key: &str) -> Result<Option<Cid>> {
        check_key(key)?;
        let height = key_height(key);
        if self.root.is_void() || height > self.root.layer {
            return Ok(None);
        }
        let removed = remove_from(store, &mut self.root, key, height)?;
        if removed.is_some() {
            // A root left with no keys gives way to its only subtree.
            while self.root.keys.is_empty() {
                match self.root.gaps[0].take() {
                    Some(link) => {
                        let layer = self.root.layer.saturating_sub(1);
                        self.root = take_node(store, link, layer)?;
                    }
                    None => {
                        self.root = Node::empty(0);
                        break;
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Encodes every modified node, adds the new blocks to `out`, and returns
    /// the root CID. Unmodified subtrees are neither read nor written.
    pub fn flush(&mut self, out: &mut BlockMap) -> Result<Cid> {
        flush_node(&mut self.root, out)
    }

    /// The root CID, computing it if needed (new blocks are discarded).
    pub fn root_cid(&mut self) -> Result<Cid> {
        self.flush(&mut BlockMap::new())
    }
}

fn insert_into(
    store: &(impl BlockStore + ?Sized),
    node: &mut Node,
    key: &str,
    height: u32,
    value: Cid,
) -> Result<Option<Cid>> {
    let i = node.position(key);
    if node.key_at(i, key) {
        let old = node.vals[i];
        if old != value {
            node.vals[i] = value;
            node.cid = None;
        }
        return Ok(Some(old));
    }
    if height == node.layer {
        let (left, right) = if node.layer == 0 {
            (None, None)
        } else {
            split(store, node.gaps[i].take(), node.layer - 1, key)?
        };
        node.keys.insert(i, key.to_owned());
        node.vals.insert(i, value);
        node.gaps[i] = left;
        node.gaps.insert(i + 1, right);
        node.cid = None;
        return Ok(None);
    }
    // height < layer, so layer >= 1.
    let child_layer = node.layer - 1;
    let previous = match node.gaps[i].as_mut() {
        Some(link) => {
            let child = load_link(store, link, child_layer)?;
            insert_into(store, child, key, height, value)?
        }
        None => {
            let leaf = Node {
                layer: height,
                keys: vec![key.to_owned()],
                vals: vec![value],
                gaps: vec![None, None],
                cid: None,
            };
            node.gaps[i] = raise(leaf.into_link(), height, child_layer);
            None
        }
    };
    // An update to the same value leaves the child clean; anything else dirties the path.
    if let Some(Link::Loaded(child)) = &node.gaps[i] {
        if child.cid.is_none() {
            node.cid = None;
        }
    }
    Ok(previous)
}

fn remove_from(
    store: &(impl BlockStore + ?Sized),
    node: &mut Node,
    key: &str,
    height: u32,
) -> Result<Option<Cid>> {
    let i = node.position(key);
    if height == node.layer {
        if !node.key_at(i, key) {
            return Ok(None);
        }
        node.keys.remove(i);
        let old = node.vals.remove(i);
        let left = node.gaps.remove(i);
        let right = node.gaps[i].take();
        node.gaps[i] = if node.layer == 0 {
            None
        } else {
            merge(store, left, right, node.layer - 1)?
        };
        node.cid = None;
        return Ok(Some(old));
    }
    if height > node.layer {
        return Ok(None);
    }
    let child_layer = node.layer - 1;
    let Some(link) = node.gaps[i].as_mut() else {
        return Ok(None);
    };
    let child = load_link(store, link, child_layer)?;
    let removed = remove_from(store, child, key, height)?;
    if removed.is_some() {
        if child.is_void() {
            node.gaps[i] = None;
        }
        node.cid = None;
    }
    Ok(removed)
}

fn flush_node(node: &mut Node, out: &mut BlockMap) -> Result<Cid> {
    if let Some(cid) = node.cid {
        return Ok(cid);
    }
    for link in node.gaps.iter_mut().flatten() {
        if let Link::Loaded(child) = link {
            flush_node(child, out)?;
        }
    }
    let bytes = encode(&node.to_data()?)?;
    let cid = cid_for_cbor(&bytes);
    out.insert(cid, bytes);
    node.cid = Some(cid);
    Ok(cid)
}

/// Calls `f` on every (key, value) of the stored tree at `root` within the
/// bounds, ascending or descending, until `f` returns `false`.
pub fn walk_range(
    store: &(impl BlockStore + ?Sized),
    root: &Cid,
    lower: Bound<&str>,
    upper: Bound<&str>,
    descending: bool,
    f: &mut dyn FnMut(&str, &Cid) -> Result<bool>,
) -> Result<()> {
    let node = load_node(store, root, None)?;
    walk_node(store, &node, lower, upper, descending, f)?;
    Ok(())
}

fn above_lower(key: &str, lower: Bound<&str>) -> bool {
    match lower {
        Bound::Unbounded => true,
        Bound::Included(b) => key >= b,
        Bound::Excluded(b) => key > b,
    }
}

fn below_upper(key: &str, upper: Bound<&str>) -> bool {
    match upper {
        Bound::Unbounded => true,
        Bound::Included(b) => key <= b,
        Bound::Excluded(b) => key < b,
    }
}

/// Returns `false` once `f` asked to stop.
fn walk_node(
    store: &(impl BlockStore + ?Sized),
    node: &Node,
    lower: Bound<&str>,
    upper: Bound<&str>,
    descending: bool,
    f: &mut dyn FnMut(&str, &Cid) -> Result<bool>,
) -> Result<bool> {
    let n = node.keys.len();
    // Gap `i` holds keys strictly between keys[i-1] and keys[i]: skip it when
    // keys[i] is at or below the lower bound, or keys[i-1] at or above the upper.
    let gap_may_match = |i: usize| {
        let below_all = i < n
            && match lower {
                Bound::Unbounded => false,
                Bound::Included(b) | Bound::Excluded(b) => node.keys[i].as_str() <= b,
            };
        let above_all = i > 0
            && match upper {
                Bound::Unbounded => false,
                Bound::Included(b) | Bound::Excluded(b) => node.keys[i - 1].as_str() >= b,
            };
        !below_all && !above_all
    };
    let visit_gap = |i: usize, f: &mut dyn FnMut(&str, &Cid) -> Result<bool>| -> Result<bool> {
        if !gap_may_match(i) {
            return Ok(true);
        }
        match &node.gaps[i] {
            None => Ok(true),
            Some(Link::Loaded(child)) => walk_node(store, child, lower, upper, descending, f),
            Some(Link::Stored(cid)) => {
                let child = load_node(store, cid, Some(node.layer.saturating_sub(1)))?;
                walk_node(store, &child, lower, upper, descending, f)
            }
        }
    };
    let visit_key = |i: usize, f: &mut dyn FnMut(&str, &Cid) -> Result<bool>| -> Result<bool> {
        let key = &node.keys[i];
        if above_lower(key, lower) && below_upper(key, upper) {
            f(key, &node.vals[i])
        } else {
            Ok(true)
        }
    };
    if descending {
        if !visit_gap(n, f)? {
            return Ok(false);
        }
        for i in (0..n).rev() {
            if !visit_key(i, f)? || !visit_gap(i, f)? {
                return Ok(false);
            }
        }
    } else {
        for i in 0..n {
            if !visit_gap(i, f)? || !visit_key(i, f)? {
                return Ok(false);
            }
        }
        if !visit_gap(n, f)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Every (key, value) of the stored tree at `root`, ascending.
pub fn list_all(store: &(impl BlockStore + ?Sized), root: &Cid) -> Result<Vec<(String, Cid)>> {
    let mut out = Vec::new();
    walk_range(
        store,
        root,
        Bound::Unbounded,
        Bound::Unbounded,
        false,
        &mut |k, v| {
            out.push((k.to_owned(), *v));
            Ok(true)
        },
    )?;
    Ok(out)
}

/// Up to `limit` entries of the stored tree within the bounds, in the given direction.
pub fn list_range(
    store: &(impl BlockStore + ?Sized),
    root: &Cid,
    lower: Bound<&str>,
    upper: Bound<&str>,
    descending: bool,
    limit: usize,
) -> Result<Vec<(String, Cid)>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    walk_range(store, root, lower, upper, descending, &mut |k, v| {
        out.push((k.to_owned(), *v));
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// The value of `key` in the stored tree at `root`, reading only its path.
pub fn get_stored(
    store: &(impl BlockStore + ?Sized),
    root: &Cid,
    key: &str,
) -> Result<Option<Cid>> {
    let mut node = load_node(store, root, None)?;
    loop {
        let i = node.position(key);
        if node.key_at(i, key) {
            return Ok(Some(node.vals[i]));
        }
        match &node.gaps[i] {
            Some(Link::Stored(cid)) => {
                let layer = node.layer.saturating_sub(1);
                node = load_node(store, cid, Some(layer))?;
            }
            _ => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::blockstore::MemoryBlockStore;

    /// Blocks in memory, vouched for as the repository's table vouches for its own.
    struct Vouching(MemoryBlockStore);

    impl BlockStore for Vouching {
        fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>> {
            self.0.get(cid)
        }
        fn put(&mut self, cid: Cid, bytes: Vec<u8>) -> Result<()> {
            self.0.put(cid, bytes)
        }
        fn checked(&self) -> bool {
            true
        }
    }

    #[test]
    fn nodes_read_from_a_checked_store_are_the_nodes_a_full_decode_reads() {
        let mut tree = Mst::new();
        let store = MemoryBlockStore::new();
        let value = cid_for_cbor(b"\xa0");
        for i in 0..400 {
            tree.insert(&store, &format!("com.example.record/k{i:04}"), value)
                .unwrap();
        }
        let mut blocks = BlockMap::new();
        let root = tree.flush(&mut blocks).unwrap();
        let checked = Vouching(MemoryBlockStore::from_blocks(blocks.clone()));
        assert!(checked.checked() && !MemoryBlockStore::new().checked());
        // Every node with the layer its parent gives it (the root's from its keys).
        let mut pending = vec![(root, None)];
        let mut read = 0;
        while let Some((cid, layer)) = pending.pop() {
            let bytes = &blocks[&cid];
            let full = Node::decode(bytes, cid, layer).unwrap();
            let quick = Node::decode_from(&checked, bytes, cid, layer).unwrap();
            assert_eq!(
                (quick.layer, &quick.keys, &quick.vals),
                (full.layer, &full.keys, &full.vals)
            );
            assert_eq!(encode(&quick.to_data().unwrap()).unwrap(), *bytes);
            for gap in full.gaps.iter().flatten() {
                if let Link::Stored(child) = gap {
                    pending.push((*child, Some(full.layer - 1)));
                }
            }
            if full.layer > 0 {
                // An unchecked store still gets every check: keys at the wrong layer.
                let err = Node::decode_from(&MemoryBlockStore::new(), bytes, cid, Some(0));
                assert!(matches!(err, Err(RepoError::InvalidMst(_))));
            }
            read += 1;
        }
        assert!(
            read > 10 && read == blocks.len(),
            "{read} of {} nodes",
            blocks.len()
        );
    }
}
