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
    let root = Node::decode(&get_required(store, &commit.data)?, commit.data, None)?;
    if root.keys.is_empty() && root.gaps.iter().any(Option::is_some) {
        return Err(RepoError::InvalidMst(
            "root has no keys but a subtree".into(),
        ));
    }
    let mut walk = Walk {
        store,
        last_key: None,
        visit,
    };
    walk.node(&root, true)
}

struct Walk<'a, S: BlockStore + ?Sized> {
    store: &'a S,
    last_key: Option<String>,
    visit: &'a mut dyn FnMut(Visit<'_>) -> Result<()>,
}

impl<S: BlockStore + ?Sized> Walk<'_, S> {
    /// In-order walk; `Node::decode` already checked canonical form, key
    /// syntax, in-node order and heights. Order across nodes is checked here.
    fn node(&mut self, node: &Node, is_root: bool) -> Result<()> {
        if let Some(cid) = node.cid {
            (self.visit)(Visit::Node(cid))?;
        }
        if !is_root && node.keys.is_empty() && node.gaps.iter().all(Option::is_none) {
            return Err(RepoError::InvalidMst(format!("empty node {:?}", node.cid)));
        }
        for (i, gap) in node.gaps.iter().enumerate() {
            if let Some(link) = gap {
                let Link::Stored(cid) = link else {
                    return Err(RepoError::InvalidMst("unexpected in-memory node".into()));
                };
                if node.layer == 0 {
                    return Err(RepoError::InvalidMst(format!(
                        "subtree below layer 0 at {cid}"
                    )));
                }
                let child =
                    Node::decode(&get_required(self.store, cid)?, *cid, Some(node.layer - 1))?;
                self.node(&child, false)?;
            }
            if let Some(key) = node.keys.get(i) {
                if self.last_key.as_ref().is_some_and(|last| last >= key) {
                    return Err(RepoError::InvalidMst(format!("key {key} out of order")));
                }
                (self.visit)(Visit::Record(key, node.vals[i]))?;
                self.last_key = Some(key.clone());
            }
        }
        Ok(())
    }
}
