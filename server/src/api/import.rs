//! `com.atproto.repo.importRepo`, the account's side (the edge streams the CAR, see
//! [`crate::offload`]): who may import, staging the checked blocks batch by batch, then
//! verifying the imported tree and swapping it in under a new commit signed with this PDS's key,
//! at a revision newer than the imported one.

use cid::Cid;
use pds_api::runtime::xrpc::XrpcError;
use serde::{Deserialize, Serialize};

use super::{internal, Api};
use crate::repo::blockstore::BlockStore;
use crate::repo::car::CarReader;
use crate::repo::commit::UnsignedCommit;
use crate::repo::error::RepoError;
use crate::storage::account::AccountStatus;
use crate::storage::import::{self, ImportedRepo, StagedBlocks};
use crate::storage::{load_root, RecordBlobs};

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
        import::stage_blocks(self.account.sql.as_ref(), &blocks)?;
        Ok(())
    }

    /// Verifies the staged repository whose commit is `done.root` and swaps it in, signed anew.
    pub(crate) fn finish_import(&self, done: &ImportDone) -> Result<(), XrpcError> {
        self.check_importable()?;
        let db = self.account.sql.as_ref();
        let root: Cid = done
            .root
            .parse()
            .map_err(|e| XrpcError::invalid_request(format!("bad root CID: {e}")))?;
        let staged = StagedBlocks::new(db);
        let did = self.config.did.as_str();
        // The tree must be complete and canonical and the commit this account's; the old
        // host's signature is not checked (its key may be gone): this PDS signs anew.
        let verified = crate::repo::verify::verify_tree(&staged, root, did)
            .map_err(|e| XrpcError::invalid_request(format!("Invalid repository: {e}")))?;
        let mut blobs = RecordBlobs::new();
        for (path, cid) in &verified.records {
            let bytes = staged
                .get(cid)
                .map_err(internal)?
                .ok_or_else(|| XrpcError::invalid_request(format!("missing record block {cid}")))?;
            let value = crate::data::cbor::decode(&bytes).map_err(|e| {
                XrpcError::invalid_request(format!("record {path} is not valid DAG-CBOR: {e}"))
            })?;
            let mut refs = Vec::new();
            super::repo::collect_blobs(&value, &mut refs)?;
            if !refs.is_empty() {
                blobs.insert(path.clone(), refs.into_iter().map(|b| b.cid).collect());
            }
        }
        // A revision after the imported one and after anything this PDS signed before.
        let rev = {
            let mut tids = self.account.tids.borrow_mut();
            let imported = pds_api::runtime::syntax::Tid::new(verified.commit.rev.clone())
                .map_err(|e| XrpcError::invalid_request(format!("bad commit rev: {e}")))?;
            tids.ensure_after(&imported);
            if let Some(head) = load_root(db).map_err(internal)? {
                if let Ok(rev) = pds_api::runtime::syntax::Tid::new(head.rev) {
                    tids.ensure_after(&rev);
                }
            }
            tids.next(self.account.clock.as_ref())
        };
        let commit = UnsignedCommit::new(did, verified.commit.data, rev.as_str())
            .sign(&self.config.signing_key)
            .and_then(|c| c.to_block())
            .map_err(internal)?;
        let mut reachable = verified.node_cids.clone();
        reachable.extend(verified.records.iter().map(|(_, cid)| *cid));
        let now_ms = i64::try_from(self.account.clock.now_millis()).unwrap_or(i64::MAX);
        import::swap_in(
            db,
            &ImportedRepo {
                did,
                reachable,
                records: &verified.records,
                blobs: &blobs,
                commit,
                rev: rev.as_str(),
                data: verified.commit.data,
            },
            now_ms,
        )?;
        Ok(())
    }
}

fn bad_car(e: RepoError) -> XrpcError {
    XrpcError::invalid_request(format!("Invalid CAR: {e}"))
}
