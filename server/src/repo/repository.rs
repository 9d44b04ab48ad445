//! The repository as the server uses it: open at a commit, apply a batch of
//! writes as one signed commit with its sync v1.1 diff, read and list records,
//! export a CAR stream. Storage is the [`BlockStore`] port; new blocks are
//! returned, not written, so the caller can persist them atomically with its
//! own bookkeeping (record index, sequencer).

use super::blockstore::{get_required, BlockMap, BlockStore, TrackingStore};
use super::car::{block_bytes, header_bytes};
use super::cbor::cid_for_cbor;
use super::commit::{is_tid, Commit, CommitSigner, UnsignedCommit};
use super::diff::{diff_trees, LeafChange};
use super::error::{RepoError, Result};
use super::mst::{self, list_range, Link, Mst, Node};
use super::proof::{covering_proofs, path_blocks};
use cid::Cid;
use std::collections::BTreeSet;
use std::ops::Bound;

/// One write of a batch. `record` is the record's DAG-CBOR, stored as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Add a record; fails if the key exists.
    Create {
        collection: String,
        rkey: String,
        record: Vec<u8>,
    },
    /// Replace a record; fails if the key is missing.
    Update {
        collection: String,
        rkey: String,
        record: Vec<u8>,
    },
    /// Remove a record; fails if the key is missing.
    Delete { collection: String, rkey: String },
}

impl WriteOp {
    /// The MST key `collection/rkey`.
    pub fn key(&self) -> String {
        match self {
            WriteOp::Create {
                collection, rkey, ..
            }
            | WriteOp::Update {
                collection, rkey, ..
            }
            | WriteOp::Delete { collection, rkey } => format!("{collection}/{rkey}"),
        }
    }
}

/// The kind of a committed operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpAction {
    /// `create`
    Create,
    /// `update`
    Update,
    /// `delete`
    Delete,
}

impl OpAction {
    /// The firehose spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OpAction::Create => "create",
            OpAction::Update => "update",
            OpAction::Delete => "delete",
        }
    }
}

/// A committed operation as the firehose reports it (`#repoOp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoOp {
    /// create, update or delete.
    pub action: OpAction,
    /// `collection/rkey`.
    pub path: String,
    /// New record CID (none for deletes).
    pub cid: Option<Cid>,
    /// Previous record CID (none for creates).
    pub prev: Option<Cid>,
}

/// Everything a commit produced: what to store and what to announce.
#[derive(Debug, Clone)]
pub struct CommitOutput {
    /// CID of the new commit block.
    pub cid: Cid,
    /// The new commit.
    pub commit: Commit,
    /// Its revision.
    pub rev: String,
    /// The previous commit's revision (none for the first commit).
    pub since: Option<String>,
    /// The previous commit's CID.
    pub prev_commit: Option<Cid>,
    /// The previous commit's MST root (`prevData` on the firehose).
    pub prev_data: Option<Cid>,
    /// The operations, in batch order.
    pub ops: Vec<RepoOp>,
    /// Blocks to store: new MST nodes, new records, the commit.
    pub new_blocks: BlockMap,
    /// Blocks for the firehose (sync v1.1): covering proofs of every op in
    /// the new tree, new records, the commit.
    pub relevant_blocks: BlockMap,
    /// Blocks no longer reachable: old MST nodes and the old commit.
    pub removed: BTreeSet<Cid>,
    /// Records replaced or deleted by this commit. Unlike `removed`, another
    /// key may still hold an identical record (same CID): check before
    /// deleting these blocks.
    pub removed_records: BTreeSet<Cid>,
}

/// A repository at one commit. Holds no blocks: every method takes the store.
#[derive(Debug, Clone)]
pub struct Repo {
    commit_cid: Cid,
    commit: Commit,
}

impl Repo {
    /// Opens the repository whose commit block is `commit_cid`.
    pub fn open(store: &(impl BlockStore + ?Sized), commit_cid: Cid) -> Result<Repo> {
        let commit = Commit::decode(&get_required(store, &commit_cid)?)?;
        Ok(Repo { commit_cid, commit })
    }

    /// Creates a repository for `did` holding `writes` (all creates), signed
    /// at `rev`. Nothing is stored: persist `new_blocks` of the output.
    pub fn create(
        store: &(impl BlockStore + ?Sized),
        did: &str,
        writes: &[WriteOp],
        signer: &dyn CommitSigner,
        rev: &str,
    ) -> Result<(Repo, CommitOutput)> {
        build_commit(store, did, None, writes, signer, rev)
    }

    /// The current commit's CID.
    pub fn commit_cid(&self) -> Cid {
        self.commit_cid
    }
    /// The current commit.
    pub fn commit(&self) -> &Commit {
        &self.commit
    }
    /// The account DID.
    pub fn did(&self) -> &str {
        &self.commit.did
    }
    /// The current revision.
    pub fn rev(&self) -> &str {
        &self.commit.rev
    }
    /// The MST root.
    pub fn data(&self) -> Cid {
        self.commit.data
    }

    /// Applies a batch as one commit signed at `rev` (must be above the
    /// current rev). Nothing is stored: persist `new_blocks`, then use the
    /// returned `Repo`.
    pub fn apply_writes(
        &self,
        store: &(impl BlockStore + ?Sized),
        writes: &[WriteOp],
        signer: &dyn CommitSigner,
        rev: &str,
    ) -> Result<(Repo, CommitOutput)> {
        build_commit(store, &self.commit.did, Some(self), writes, signer, rev)
    }

    /// The CID of a record, if present.
    pub fn record_cid(
        &self,
        store: &(impl BlockStore + ?Sized),
        collection: &str,
        rkey: &str,
    ) -> Result<Option<Cid>> {
        mst::get_stored(store, &self.commit.data, &format!("{collection}/{rkey}"))
    }

    /// A record's CID and DAG-CBOR bytes, if present.
    pub fn get_record(
        &self,
        store: &(impl BlockStore + ?Sized),
        collection: &str,
        rkey: &str,
    ) -> Result<Option<(Cid, Vec<u8>)>> {
        match self.record_cid(store, collection, rkey)? {
            Some(cid) => Ok(Some((cid, get_required(store, &cid)?))),
            None => Ok(None),
        }
    }

    /// Up to `limit` (rkey, CID) of a collection, after the exclusive `cursor`
    /// rkey, ascending or descending by rkey.
    pub fn list_records(
        &self,
        store: &(impl BlockStore + ?Sized),
        collection: &str,
        cursor: Option<&str>,
        limit: usize,
        descending: bool,
    ) -> Result<Vec<(String, Cid)>> {
        let prefix = format!("{collection}/");
        // '0' is the byte after '/': the end of the collection's key range.
        let end = format!("{collection}0");
        let at_cursor = cursor.map(|c| format!("{prefix}{c}"));
        let (lower, upper) = match (&at_cursor, descending) {
            (Some(c), false) => (Bound::Excluded(c.as_str()), Bound::Excluded(end.as_str())),
            (Some(c), true) => (
                Bound::Excluded(prefix.as_str()),
                Bound::Excluded(c.as_str()),
            ),
            (None, _) => (
                Bound::Excluded(prefix.as_str()),
                Bound::Excluded(end.as_str()),
            ),
        };
        let entries = list_range(store, &self.commit.data, lower, upper, descending, limit)?;
        Ok(entries
            .into_iter()
            .map(|(k, c)| (k[prefix.len()..].to_owned(), c))
            .collect())
    }

    /// The collections present, in order (one range query per collection).
    pub fn list_collections(&self, store: &(impl BlockStore + ?Sized)) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        let mut lower = String::new();
        loop {
            let bound = if lower.is_empty() {
                Bound::Unbounded
            } else {
                Bound::Included(lower.as_str())
            };
            let next = list_range(store, &self.commit.data, bound, Bound::Unbounded, false, 1)?;
            let Some((key, _)) = next.first() else {
                return Ok(out);
            };
            let Some((collection, _)) = key.split_once('/') else {
                return Ok(out);
            };
            out.push(collection.to_owned());
            lower = format!("{collection}0");
        }
    }

    /// The blocks `com.atproto.sync.getRecord` returns: the commit, the MST
    /// path to the key (or to where it would be), and the record if present.
    pub fn record_proof(
        &self,
        store: &(impl BlockStore + ?Sized),
        collection: &str,
        rkey: &str,
    ) -> Result<BlockMap> {
        let (mut blocks, found) =
            path_blocks(store, &self.commit.data, &format!("{collection}/{rkey}"))?;
        if let Some(cid) = found {
            blocks.insert(cid, get_required(store, &cid)?);
        }
        blocks.insert(self.commit_cid, get_required(store, &self.commit_cid)?);
        Ok(blocks)
    }

    /// Streams the whole repository as a CAR (see [`CarExport`]).
    pub fn export<'s, S: BlockStore + ?Sized>(&self, store: &'s S) -> CarExport<'s, S> {
        CarExport::new(store, self.commit_cid)
    }

    /// Writes the whole repository as a CAR into `sink`; returns bytes written.
    pub fn write_car(
        &self,
        store: &(impl BlockStore + ?Sized),
        mut sink: impl std::io::Write,
    ) -> Result<u64> {
        let mut total = 0u64;
        for chunk in self.export(store) {
            let chunk = chunk?;
            sink.write_all(&chunk)
                .map_err(|e| RepoError::Car(format!("I/O: {e}")))?;
            total += chunk.len() as u64;
        }
        Ok(total)
    }
}

fn build_commit(
    store: &(impl BlockStore + ?Sized),
    did: &str,
    previous: Option<&Repo>,
    writes: &[WriteOp],
    signer: &dyn CommitSigner,
    rev: &str,
) -> Result<(Repo, CommitOutput)> {
    if !is_tid(rev) {
        return Err(RepoError::InvalidCommit(format!(
            "rev {rev:?} is not a TID"
        )));
    }
    if let Some(prev) = previous {
        if rev <= prev.rev() {
            return Err(RepoError::InvalidCommit(format!(
                "rev {rev} does not follow {}",
                prev.rev()
            )));
        }
    }
    let mut tree = match previous {
        Some(prev) => Mst::load(store, prev.data())?,
        None => Mst::new(),
    };
    let mut records = BlockMap::new();
    let mut ops = Vec::with_capacity(writes.len());
    for write in writes {
        let key = write.key();
        let (action, cid, prev) = match write {
            WriteOp::Create { record, .. } | WriteOp::Update { record, .. } => {
                let cid = cid_for_cbor(record);
                records.insert(cid, record.clone());
                let prev = tree.insert(store, &key, cid)?;
                let action = if matches!(write, WriteOp::Create { .. }) {
                    if prev.is_some() {
                        return Err(RepoError::WriteConflict(format!(
                            "create of existing record {key}"
                        )));
                    }
                    OpAction::Create
                } else {
                    if prev.is_none() {
                        return Err(RepoError::WriteConflict(format!(
                            "update of missing record {key}"
                        )));
                    }
                    OpAction::Update
                };
                (action, Some(cid), prev)
            }
            WriteOp::Delete { .. } => match tree.remove(store, &key)? {
                Some(prev) => (OpAction::Delete, None, Some(prev)),
                None => {
                    return Err(RepoError::WriteConflict(format!(
                        "delete of missing record {key}"
                    )))
                }
            },
        };
        ops.push(RepoOp {
            action,
            path: key,
            cid,
            prev,
        });
    }

    let mut overlay = TrackingStore::new(store);
    let mut nodes = BlockMap::new();
    let data = tree.flush(&mut nodes)?;
    overlay.put_many(nodes)?;
    let old_data = previous.map(Repo::data);
    let diff = diff_trees(&overlay, old_data.as_ref(), &data)?;

    let mut relevant = covering_proofs(&overlay, &data, ops.iter().map(|op| op.path.as_str()))?;
    let mut new_blocks = diff.new_nodes;
    for change in &diff.changes {
        if let LeafChange::Create { cid, .. } | LeafChange::Update { cid, .. } = change {
            if let Some(bytes) = records.get(cid) {
                new_blocks.insert(*cid, bytes.clone());
                relevant.insert(*cid, bytes.clone());
            }
        }
    }

    let commit = UnsignedCommit::new(did, data, rev).sign(signer)?;
    let (commit_cid, commit_bytes) = commit.to_block()?;
    new_blocks.insert(commit_cid, commit_bytes.clone());
    relevant.insert(commit_cid, commit_bytes);
    // Inserted one by one: collecting into a B-tree links a stable sort for its element type.
    let mut removed_records = BTreeSet::new();
    for change in &diff.changes {
        if let LeafChange::Update { prev, .. } | LeafChange::Delete { prev, .. } = change {
            removed_records.insert(*prev);
        }
    }
    let mut removed = diff.removed_nodes;
    if let Some(prev) = previous {
        removed.insert(prev.commit_cid);
    }
    let output = CommitOutput {
        cid: commit_cid,
        commit: commit.clone(),
        rev: rev.to_owned(),
        since: previous.map(|p| p.rev().to_owned()),
        prev_commit: previous.map(Repo::commit_cid),
        prev_data: old_data,
        ops,
        new_blocks,
        relevant_blocks: relevant,
        removed,
        removed_records,
    };
    Ok((Repo { commit_cid, commit }, output))
}

/// A CAR of a whole repository as an iterator of byte chunks: the header,
/// the commit, then every MST node and record in depth-first key order. Holds
/// one node per tree level, never the whole repository.
pub struct CarExport<'s, S: BlockStore + ?Sized> {
    store: &'s S,
    commit_cid: Cid,
    started: bool,
    /// Nodes being walked, with the next gap/key position to visit.
    stack: Vec<(Node, usize)>,
    failed: bool,
}

impl<'s, S: BlockStore + ?Sized> CarExport<'s, S> {
    fn new(store: &'s S, commit_cid: Cid) -> Self {
        Self {
            store,
            commit_cid,
            started: false,
            stack: Vec::new(),
            failed: false,
        }
    }

    fn start(&mut self) -> Result<Vec<u8>> {
        let commit_bytes = get_required(self.store, &self.commit_cid)?;
        let commit = Commit::decode(&commit_bytes)?;
        let mut out = header_bytes(&self.commit_cid)?;
        out.extend_from_slice(&block_bytes(&self.commit_cid, &commit_bytes));
        let root_bytes = get_required(self.store, &commit.data)?;
        let root = Node::decode_from(self.store, &root_bytes, commit.data, None)?;
        out.extend_from_slice(&block_bytes(&commit.data, &root_bytes));
        self.stack.push((root, 0));
        Ok(out)
    }

    /// The next chunk: one node or one record (with its section prefix).
    fn step(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            let Some((node, pos)) = self.stack.last_mut() else {
                return Ok(None);
            };
            // Positions: 2*i is gap i, 2*i+1 is key i.
            let n = node.keys.len();
            if *pos > 2 * n {
                self.stack.pop();
                continue;
            }
            let at = *pos;
            *pos += 1;
            if at % 2 == 0 {
                if let Some(Link::Stored(cid)) = &node.gaps[at / 2] {
                    let cid = *cid;
                    let layer = node.layer.saturating_sub(1);
                    let bytes = get_required(self.store, &cid)?;
                    let child = Node::decode_from(self.store, &bytes, cid, Some(layer))?;
                    self.stack.push((child, 0));
                    return Ok(Some(block_bytes(&cid, &bytes)));
                }
            } else {
                let cid = node.vals[at / 2];
                let bytes = get_required(self.store, &cid)?;
                return Ok(Some(block_bytes(&cid, &bytes)));
            }
        }
    }
}

impl<S: BlockStore + ?Sized> Iterator for CarExport<'_, S> {
    type Item = Result<Vec<u8>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let result = if self.started {
            self.step().transpose()?
        } else {
            self.started = true;
            self.start()
        };
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}
