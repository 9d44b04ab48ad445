//! `com.atproto.repo.importRepo`, the account's side (the edge streams the CAR, see
//! [`crate::offload`]): who may import, staging the checked blocks batch by batch, then
//! verifying the imported tree and swapping it in under a new commit signed with this PDS's key,
//! at a revision newer than the imported one.

use cid::Cid;
use pds_api::runtime::xrpc::XrpcError;
use serde::{Deserialize, Serialize};

use super::repo::FoundBlob;
use super::{internal, Api};
use crate::repo::blockstore::BlockStore;
use crate::repo::car::CarReader;
use crate::repo::commit::UnsignedCommit;
use crate::repo::error::RepoError;
use crate::repo::verify::{decode_commit, walk_tree, Visit};
use crate::storage::account::AccountStatus;
use crate::storage::import::{self, ImportedHead, StagedBlocks};
use crate::storage::{load_root, RecordBlobs, Sql, SqlExt};
use pds_api::runtime::syntax::Tid;

/// The NSID.
pub const IMPORT_REPO: &str = "com.atproto.repo.importRepo";
/// How many bytes of blocks the edge sends the account at once: small next to the Durable
/// Object's memory, large enough that a 100 MB repository takes a hundred or so calls.
pub const BATCH_BYTES: usize = 1024 * 1024;

/// What the account lets the edge do: send batches of at most `batch_bytes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportGrant {
    /// The most bytes of blocks per staging call.
    pub batch_bytes: usize,
}

/// The edge's report once the whole CAR went through: its one root.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportDone {
    /// The CAR's root: the imported commit.
    pub root: String,
}

impl Api<'_> {
    /// Whether the account takes an import now: only while deactivated (an inbound migration),
    /// so a live repository is never replaced under its readers.
    pub(crate) fn import_grant(&self) -> Result<ImportGrant, XrpcError> {
        self.check_importable()?;
        Ok(ImportGrant {
            batch_bytes: BATCH_BYTES,
        })
    }

    fn check_importable(&self) -> Result<(), XrpcError> {
        match self.account_status()? {
            AccountStatus::Deactivated => Ok(()),
            AccountStatus::Active => Err(XrpcError::invalid_request(
                "The account is active: deactivate it before importing a repository",
            )),
            _ => Err(XrpcError::new(
                401,
                "AccountTakedown",
                "Account has been taken down",
            )),
        }
    }

    /// Stages one batch: a CAR of some of the import's blocks (each checked against its CID
    /// again, as every CAR read is).
    pub(crate) fn stage_import(&self, car: &[u8]) -> Result<(), XrpcError> {
        self.check_importable()?;
        let mut reader = CarReader::new(car).map_err(bad_car)?;
        let mut blocks = Vec::new();
        while let Some(block) = reader.next_block().map_err(bad_car)? {
            blocks.push(block);
        }
        let now_ms = i64::try_from(self.account.clock.now_millis()).unwrap_or(i64::MAX);
        import::stage_blocks(self.account.sql.as_ref(), &blocks, now_ms)?;
        // No event was stored, but the stage's expiry needs a maintenance wake-up.
        self.account.maintenance_seen_seq.set(None);
        Ok(())
    }

    /// Verifies the staged repository whose commit is `done.root` and swaps it in, signed anew,
    /// in one transaction that walks the tree: memory holds one path of the tree and a few
    /// hundred records at a time, whatever the repository's size.
    pub(crate) fn finish_import(&self, done: &ImportDone) -> Result<(), XrpcError> {
        self.check_importable()?;
        let db = self.account.sql.as_ref();
        let root: Cid = done
            .root
            .parse()
            .map_err(|e| XrpcError::invalid_request(format!("bad root CID: {e}")))?;
        let staged = StagedBlocks::new(db);
        let did = self.config.did.as_str();
        // The commit must be this account's; the old host's signature is not checked (its key
        // may be gone): this PDS signs anew.
        let imported = decode_commit(&staged, root, Some(did)).map_err(invalid_repo)?;
        let rev = self.rev_after(&imported.rev)?;
        let commit = UnsignedCommit::new(did, imported.data, rev.as_str())
            .sign(&self.config.signing_key)
            .and_then(|c| c.to_block())
            .map_err(internal)?;
        let now_ms = i64::try_from(self.account.clock.now_millis()).unwrap_or(i64::MAX);
        db.transaction(|| -> Result<(), XrpcError> {
            import::begin_swap(db)?;
            let mut batch = Batch::default();
            walk_tree(&staged, &imported, &mut |visit| {
                batch.add(&staged, visit)?;
                if batch.is_full() {
                    batch.flush(db, rev.as_str())?;
                }
                Ok(())
            })
            .map_err(invalid_repo)?;
            batch.flush(db, rev.as_str()).map_err(invalid_repo)?;
            let head = ImportedHead {
                did,
                commit,
                rev: rev.as_str(),
                data: imported.data,
            };
            import::finish_swap(db, &head, now_ms)?;
            Ok(())
        })
    }

    /// A revision after `imported` and after anything this PDS signed before.
    fn rev_after(&self, imported: &str) -> Result<Tid, XrpcError> {
        let mut tids = self.account.tids.borrow_mut();
        let imported = Tid::new(imported.to_owned())
            .map_err(|e| XrpcError::invalid_request(format!("bad commit rev: {e}")))?;
        tids.ensure_after(&imported);
        if let Some(head) = load_root(self.account.sql.as_ref()).map_err(internal)? {
            if let Ok(rev) = Tid::new(head.rev) {
                tids.ensure_after(&rev);
            }
        }
        Ok(tids.next(self.account.clock.as_ref()))
    }
}

/// What a walk of an imported tree has met and not yet written.
#[derive(Default)]
struct Batch {
    /// Blocks to keep: nodes and records.
    keep: Vec<Cid>,
    /// Records: (`collection/rkey`, CID).
    records: Vec<(String, Cid)>,
    /// The blobs they reference.
    blobs: RecordBlobs,
}

impl Batch {
    /// Takes a node or a record (whose block must be staged and valid DAG-CBOR: its blob
    /// references are read from it).
    fn add(&mut self, staged: &StagedBlocks<'_>, visit: Visit<'_>) -> Result<(), RepoError> {
        match visit {
            Visit::Node(cid) => self.keep.push(cid),
            Visit::Record(path, cid) => {
                let bytes = staged.get(&cid)?.ok_or(RepoError::MissingBlock(cid))?;
                let value = crate::data::cbor::decode(&bytes).map_err(|e| {
                    RepoError::InvalidMst(format!("record {path} is not valid DAG-CBOR: {e}"))
                })?;
                // Old records' legacy references count too: their blobs move with them.
                let mut refs = Vec::new();
                super::repo::visit_blobs(&value, &mut |blob| {
                    refs.push(match blob {
                        FoundBlob::Current(blob) => blob.cid,
                        FoundBlob::Legacy(cid) => cid,
                    });
                    Ok(())
                })
                .map_err(|e| RepoError::InvalidMst(format!("record {path}: {}", e.message)))?;
                if !refs.is_empty() {
                    self.blobs.insert(path.to_owned(), refs);
                }
                self.keep.push(cid);
                self.records.push((path.to_owned(), cid));
            }
        }
        Ok(())
    }

    fn is_full(&self) -> bool {
        self.keep.len() >= 500
    }

    /// Writes what it holds (kept blocks, index rows) and empties.
    fn flush(&mut self, db: &dyn Sql, rev: &str) -> Result<(), RepoError> {
        import::keep_blocks(db, &self.keep)?;
        import::index_records(db, &self.records, &self.blobs, rev)?;
        *self = Batch::default();
        Ok(())
    }
}

/// A repository that fails its checks: the client's fault, unless the store failed.
fn invalid_repo(e: RepoError) -> XrpcError {
    match e {
        RepoError::Storage(_) => internal(e),
        e => XrpcError::invalid_request(format!("Invalid repository: {e}")),
    }
}

fn bad_car(e: RepoError) -> XrpcError {
    XrpcError::invalid_request(format!("Invalid CAR: {e}"))
}
