//! Full verification of a repository CAR: every block matches its CID, the
//! commit is signed by the expected key, and the MST is well formed (canonical
//! nodes, keys in order, every key at its height, no empty or misplaced nodes).

use super::blockstore::{get_required, BlockStore, MemoryBlockStore};
use super::car::CarReader;
use super::commit::{Commit, CommitVerifier};
use super::error::{RepoError, Result};
use super::mst::{Link, Node};
use cid::Cid;
use std::io::Read;

/// What a verified repository holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRepo {
    /// CID of the commit (the CAR root).
    pub commit_cid: Cid,
    /// The verified commit.
    pub commit: Commit,
    /// Every record: (`collection/rkey`, CID), ascending.
    pub records: Vec<(String, Cid)>,
    /// Number of MST nodes.
    pub mst_nodes: usize,
}

/// What a walk of a repository's tree meets, in key order ([`walk_tree`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit<'a> {
    /// An MST node, by CID.
    Node(Cid),
    /// A record: its path (`collection/rkey`) and CID.
    Record(&'a str, Cid),
}

/// Reads a CAR from `source` into `store` (every block checked against its
/// CID) and returns the single root.
pub fn import_car(source: impl Read, store: &mut (impl BlockStore + ?Sized)) -> Result<Cid> {
    let mut reader = CarReader::new(source)?;
    let root = match reader.roots() {
        [root] => *root,
        roots => return Err(RepoError::Car(format!("{} roots (want 1)", roots.len()))),
    };
    while let Some((cid, bytes)) = reader.next_block()? {
        store.put(cid, bytes)?;
    }
    Ok(root)
}

/// Verifies a repository CAR against the account's key: see the module doc.
/// `did`, when given, must match the commit's.
pub fn verify_car(
    source: impl Read,
    verifier: &dyn CommitVerifier,
    did: Option<&str>,
) -> Result<VerifiedRepo> {
    let mut store = MemoryBlockStore::new();
    let root = import_car(source, &mut store)?;
    verify_repo(&store, root, verifier, did)
}

/// Verifies a repository CAR against the account's `did:key` (the
/// `#atproto` verification method of its DID document).
pub fn verify_car_with_did_key(
    source: impl Read,
    did_key: &str,
    did: Option<&str>,
) -> Result<VerifiedRepo> {
    let key = crate::crypto::PublicKey::from_did_key(did_key)
        .map_err(|e| RepoError::InvalidCommit(format!("bad did:key: {e}")))?;
    verify_car(source, &key, did)
}

/// Verifies the repository at `commit_cid` in `store` (see [`verify_car`]).
pub fn verify_repo(
    store: &(impl BlockStore + ?Sized),
    commit_cid: Cid,
    verifier: &dyn CommitVerifier,
    did: Option<&str>,
) -> Result<VerifiedRepo> {
    check_repo(store, commit_cid, Some(verifier), did)
}

/// The commit block at `commit_cid`, which must name `did` when one is given.
pub fn decode_commit(
    store: &(impl BlockStore + ?Sized),
    commit_cid: Cid,
    did: Option<&str>,
) -> Result<Commit> {
    let commit = Commit::decode(&get_required(store, &commit_cid)?)?;
    if let Some(did) = did {
        if commit.did != did {
            return Err(RepoError::InvalidCommit(format!(
                "commit for {} (want {did})",
                commit.did
            )));
        }
    }
    Ok(commit)
}

fn check_repo(
    store: &(impl BlockStore + ?Sized),
    commit_cid: Cid,
    verifier: Option<&dyn CommitVerifier>,
    did: Option<&str>,
) -> Result<VerifiedRepo> {
    let commit = decode_commit(store, commit_cid, did)?;
    if let Some(verifier) = verifier {
        commit.verify(verifier)?;
    }
    let mut records = Vec::new();
    let mut mst_nodes = 0;
    walk_tree(store, &commit, &mut |visit| {
        match visit {
            Visit::Node(_) => mst_nodes += 1,
            Visit::Record(path, cid) => records.push((path.to_owned(), cid)),
        }
        Ok(())
    })?;
    for (_, cid) in &records {
        if !store.has(cid)? {
            return Err(RepoError::MissingBlock(*cid));
        }
    }
    Ok(VerifiedRepo {
        commit_cid,
        commit,
        records,
        mst_nodes,
    })
}

/// Walks the tree of `commit`, checking it as [`verify_repo`] does (canonical nodes, keys in
/// order and at their heights, no empty or misplaced nodes), and calls `visit` for every node
/// and record in key order, holding no more than one path of the tree. Whether record blocks
/// exist is the visitor's to check.
pub fn walk_tree(
    store: &(impl BlockStore + ?Sized),
    commit: &Commit,
    visit: &mut dyn FnMut(Visit<'_>) -> Result<()>,
) -> Result<()> {
    let mut walk = TreeWalk::new(commit.data);
    while !walk.step(store, visit, usize::MAX)? {}
    Ok(())
}

/// A walk of a tree ([`walk_tree`]) that can stop after any number of visits and go on later,
/// even in another process: its [`WalkState`] is a path of the tree and the last key met.
pub struct TreeWalk {
    /// The root, until it is entered.
    root: Option<Cid>,
    /// The path from the root to the node being walked.
    frames: Vec<Frame>,
    last_key: Option<String>,
}

/// A node on the walk's path, and how far into it the walk is.
struct Frame {
    node: Node,
    /// The layer its parent said it is at (`None` for the root).
    layer: Option<u32>,
    /// `2i` is the subtree left of key `i`, `2i + 1` is key `i`.
    pos: usize,
}

/// Where a [`TreeWalk`] stands, to store between steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkState {
    /// The root, if the walk has not entered it yet.
    root: Option<String>,
    /// The path: each node's CID, expected layer and position.
    path: Vec<(String, Option<u32>, usize)>,
    last_key: Option<String>,
}

/// Stored as `{"root", "path": [[cid, layer, pos], ...], "last_key"}`, absent values null.
impl crate::data::json::JsonMessage for WalkState {
    fn write(&self) -> serde_json::Value {
        let path = self
            .path
            .iter()
            .map(|(cid, layer, pos)| serde_json::json!([cid, layer, pos]))
            .collect();
        crate::data::json::JsonWriter::new()
            .value("root", self.root.clone().into())
            .value("path", serde_json::Value::Array(path))
            .value("last_key", self.last_key.clone().into())
            .finish()
    }

    fn read(o: &crate::data::json::JsonObject) -> std::result::Result<WalkState, String> {
        let frame = |v: &serde_json::Value| {
            let cid = v.get(0)?.as_str()?.to_owned();
            let layer = match v.get(1)? {
                serde_json::Value::Null => None,
                l => Some(u32::try_from(l.as_u64()?).ok()?),
            };
            let pos = usize::try_from(v.get(2)?.as_u64()?).ok()?;
            Some((cid, layer, pos))
        };
        Ok(WalkState {
            root: o.opt_str("root")?,
            path: o
                .array("path")?
                .iter()
                .map(|v| frame(v).ok_or_else(|| "malformed walk path".to_owned()))
                .collect::<std::result::Result<_, _>>()?,
            last_key: o.opt_str("last_key")?,
        })
    }
}

impl WalkState {
    /// Whether the walk that stood here is over.
    pub fn is_finished(&self) -> bool {
        self.root.is_none() && self.path.is_empty()
    }
}

impl TreeWalk {
    /// A walk of the tree whose root is `data`, not yet started.
    pub fn new(data: Cid) -> TreeWalk {
        TreeWalk {
            root: Some(data),
            frames: Vec::new(),
            last_key: None,
        }
    }

    /// Where the walk stands.
    pub fn state(&self) -> WalkState {
        WalkState {
            root: self.root.map(|c| crate::data::cid_string(&c)),
            path: self
                .frames
                .iter()
                .map(|f| (describe_node(&f.node), f.layer, f.pos))
                .collect(),
            last_key: self.last_key.clone(),
        }
    }

    /// The walk that stood at `state`, its path read again from `store`.
    pub fn resume(store: &(impl BlockStore + ?Sized), state: &WalkState) -> Result<TreeWalk> {
        let cid = |s: &str| {
            crate::data::parse_cid(s)
                .map_err(|e| RepoError::InvalidMst(format!("bad CID in a walk's state: {e}")))
        };
        let root = state.root.as_deref().map(cid).transpose()?;
        let mut frames = Vec::with_capacity(state.path.len());
        for (node, layer, pos) in &state.path {
            let node = cid(node)?;
            frames.push(Frame {
                node: Node::decode(&get_required(store, &node)?, node, *layer)?,
                layer: *layer,
                pos: *pos,
            });
        }
        Ok(TreeWalk {
            root,
            frames,
            last_key: state.last_key.clone(),
        })
    }

    /// Makes up to `budget` visits (at least one); whether the walk is over.
    pub fn step(
        &mut self,
        store: &(impl BlockStore + ?Sized),
        visit: &mut dyn FnMut(Visit<'_>) -> Result<()>,
        budget: usize,
    ) -> Result<bool> {
        let mut spent = 0;
        if let Some(root) = self.root {
            let node = Node::decode(&get_required(store, &root)?, root, None)?;
            if node.keys.is_empty() && node.gaps.iter().any(Option::is_some) {
                return Err(RepoError::InvalidMst(
                    "root has no keys but a subtree".into(),
                ));
            }
            self.enter(node, None, visit)?;
            self.root = None;
            spent += 1;
        }
        while spent < budget {
            let Some(frame) = self.frames.last_mut() else {
                break;
            };
            let i = frame.pos / 2;
            if frame.pos % 2 == 0 {
                let Some(gap) = frame.node.gaps.get(i) else {
                    self.frames.pop();
                    continue;
                };
                frame.pos += 1;
                let Some(link) = gap else { continue };
                let Link::Stored(cid) = *link else {
                    return Err(RepoError::InvalidMst("unexpected in-memory node".into()));
                };
                let Some(layer) = frame.node.layer.checked_sub(1) else {
                    return Err(RepoError::InvalidMst(format!(
                        "subtree below layer 0 at {}",
                        crate::data::cid_string(&cid)
                    )));
                };
                let child = Node::decode(&get_required(store, &cid)?, cid, Some(layer))?;
                self.enter(child, Some(layer), visit)?;
                spent += 1;
            } else {
                frame.pos += 1;
                let (Some(key), Some(val)) = (frame.node.keys.get(i), frame.node.vals.get(i))
                else {
                    continue;
                };
                if self.last_key.as_ref().is_some_and(|last| last >= key) {
                    return Err(RepoError::InvalidMst(format!("key {key} out of order")));
                }
                visit(Visit::Record(key, *val))?;
                self.last_key = Some(key.clone());
                spent += 1;
            }
        }
        Ok(self.root.is_none() && self.frames.is_empty())
    }

    /// Visits `node` and puts it on the path; `Node::decode` already checked canonical form,
    /// key syntax, in-node order and heights (order across nodes is checked as keys are met).
    fn enter(
        &mut self,
        node: Node,
        layer: Option<u32>,
        visit: &mut dyn FnMut(Visit<'_>) -> Result<()>,
    ) -> Result<()> {
        if let Some(cid) = node.cid {
            visit(Visit::Node(cid))?;
        }
        let is_root = layer.is_none();
        if !is_root && node.keys.is_empty() && node.gaps.iter().all(Option::is_none) {
            let cid = node
                .cid
                .as_ref()
                .map_or_else(String::new, crate::data::cid_string);
            return Err(RepoError::InvalidMst(format!("empty node {cid}")));
        }
        self.frames.push(Frame {
            node,
            layer,
            pos: 0,
        });
        Ok(())
    }
}

/// A decoded node's CID as text (nodes on a walk's path were read from a store, so they have
/// one).
fn describe_node(node: &Node) -> String {
    node.cid
        .map(|c| crate::data::cid_string(&c))
        .unwrap_or_default()
}
