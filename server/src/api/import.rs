//! `com.atproto.repo.importRepo`, the account's side (the edge streams the CAR, see
//! [`crate::offload`]): who may import, staging the checked blocks batch by batch, then
//! verifying the imported tree and swapping it in under a new commit signed with this PDS's key,
//! at a revision newer than the imported one.

use crate::data::json::{read_message, JsonMessage, JsonObject, JsonWriter};
use crate::first_error::FirstError;
use cid::Cid;
use pds_api::runtime::xrpc::XrpcError;

use super::repo::FoundBlob;
use super::{internal, Api};
use crate::repo::blockstore::BlockStore;
use crate::repo::car::CarReader;
use crate::repo::commit::UnsignedCommit;
use crate::repo::error::RepoError;
use crate::repo::verify::{decode_commit, TreeWalk, Visit, WalkState};
use crate::storage::account::AccountStatus;
use crate::storage::import::{self, ImportWalk, ImportedHead, RecordIndex, StagedBlocks};
use crate::storage::{load_root, RecordBlobs, Sql, SqlExt};
use pds_api::runtime::syntax::Tid;

/// The NSID.
pub const IMPORT_REPO: &str = "com.atproto.repo.importRepo";
/// How many bytes of blocks the edge sends the account at once: small next to the Durable
/// Object's memory, large enough that a 100 MB repository takes a hundred or so calls.
pub const BATCH_BYTES: usize = 1024 * 1024;

/// What the account lets the edge do: send batches of at most `batch_bytes`.
#[derive(Debug, Clone)]
pub struct ImportGrant {
    /// The most bytes of blocks per staging call.
    pub batch_bytes: usize,
}

impl JsonMessage for ImportGrant {
    fn write(&self) -> serde_json::Value {
        JsonWriter::new()
            .u64("batchBytes", self.batch_bytes as u64)
            .finish()
    }

    fn read(o: &JsonObject) -> Result<ImportGrant, String> {
        Ok(ImportGrant {
            batch_bytes: usize::try_from(o.u64("batchBytes")?).map_err(|e| e.to_string())?,
        })
    }
}

/// The edge's report once the whole CAR went through (its one root), sent again after each
/// step of the import's walk until the import is swapped in.
#[derive(Debug, Clone)]
pub struct ImportDone {
    /// The CAR's root: the imported commit.
    pub root: String,
    /// The walk this import started (its [`ImportProgress::walk`]), once it has one.
    pub walk: Option<String>,
}

impl JsonMessage for ImportDone {
    fn write(&self) -> serde_json::Value {
        JsonWriter::new()
            .str("root", &self.root)
            .opt_str("walk", self.walk.as_deref())
            .finish()
    }

    fn read(o: &JsonObject) -> Result<ImportDone, String> {
        let mut e = FirstError::new();
        let v = ImportDone {
            root: e.keep(o.str("root")),
            walk: e.keep(o.opt_str("walk")),
        };
        e.finish(v)
    }
}

/// Where an import stands after one step.
#[derive(Debug, Clone)]
pub struct ImportProgress {
    /// Names the import's walk: to send back in the next [`ImportDone`].
    pub walk: String,
    /// Nodes and records the walk has visited so far.
    pub visited: i64,
    /// Whether the imported repository is now the account's.
    pub done: bool,
}

impl JsonMessage for ImportProgress {
    fn write(&self) -> serde_json::Value {
        JsonWriter::new()
            .str("walk", &self.walk)
            .i64("visited", self.visited)
            .bool("done", self.done)
            .finish()
    }

    fn read(o: &JsonObject) -> Result<ImportProgress, String> {
        Ok(ImportProgress {
            walk: o.str("walk")?,
            visited: o.i64("visited")?,
            done: o.flag("done")?,
        })
    }
}

/// How many nodes and records one step of an import's walk visits. Each visit reads a staged
/// block, decodes it and indexes it, so a step is bounded work, a small fraction of the
/// Durable Object's CPU limit per call (the README gives the measured figures).
pub const WALK_VISITS_PER_STEP: usize = 20_000;

impl Api<'_> {
    /// Whether the account takes an import now: only while deactivated (an inbound migration),
    /// so a live repository is never replaced under its readers.
    pub fn import_grant(&self) -> Result<ImportGrant, XrpcError> {
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
    pub fn stage_import(&self, car: &[u8]) -> Result<(), XrpcError> {
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

    /// One step of an import whose blocks are staged: the first call starts a walk of the tree
    /// whose commit is `done.root`; each call then walks [`WALK_VISITS_PER_STEP`] more of it,
    /// checking and indexing what it meets, holding one path of the tree; once the walk is over,
    /// the next call swaps the imported repository in, signed anew. A step that fails drops
    /// the walk (the staged blocks stay): the import is then tried again from the start.
    pub fn import_step(&self, done: &ImportDone) -> Result<ImportProgress, XrpcError> {
        self.check_importable()?;
        let db = self.account.sql.as_ref();
        let walk = match (import::load_walk(db)?, &done.walk) {
            (Some(walk), Some(id)) if &walk.rev == id => walk,
            // The same import again (a retry): it goes on where the last one stopped.
            (Some(walk), None) if walk.root == done.root => walk,
            (_, None) => self.begin_walk(&done.root)?,
            (_, Some(_)) => {
                return Err(XrpcError::invalid_request(
                    "Another import replaced this one before it finished",
                ))
            }
        };
        let result = self.walk_or_swap(walk);
        if result.is_err() {
            // The next try starts afresh; failing to drop the walk only costs it a restart.
            let _ = import::forget_walk(db);
        }
        result
    }

    /// Starts walking the staged tree whose commit is `root`, which must be this account's
    /// (the old host's signature is not checked, its key may be gone: this PDS signs anew).
    fn begin_walk(&self, root: &str) -> Result<ImportWalk, XrpcError> {
        let db = self.account.sql.as_ref();
        let cid = crate::data::parse_cid(root)
            .map_err(|e| XrpcError::invalid_request(format!("bad root CID: {e}")))?;
        let imported = decode_commit(&StagedBlocks::new(db), cid, Some(self.config.did.as_str()))
            .map_err(invalid_repo)?;
        let walk = ImportWalk {
            root: root.to_owned(),
            rev: self.rev_after(&imported.rev)?.as_str().to_owned(),
            state: TreeWalk::new(imported.data).state().write().to_string(),
            visited: 0,
        };
        db.transaction(|| import::begin_walk(db, &walk))?;
        Ok(walk)
    }

    fn walk_or_swap(&self, mut walk: ImportWalk) -> Result<ImportProgress, XrpcError> {
        let db = self.account.sql.as_ref();
        let state: WalkState = read_message(walk.state.as_bytes()).map_err(internal)?;
        if state.is_finished() {
            self.swap_import(&walk)?;
            return Ok(ImportProgress {
                walk: walk.rev,
                visited: walk.visited,
                done: true,
            });
        }
        let staged = StagedBlocks::new(db);
        db.transaction(|| -> Result<(), XrpcError> {
            let mut tree = TreeWalk::resume(&staged, &state).map_err(invalid_repo)?;
            let mut batch = Batch::default();
            let mut visits = 0;
            tree.step(
                &staged,
                &mut |visit| {
                    visits += 1;
                    batch.add(&staged, visit)?;
                    if batch.is_full() {
                        batch.flush(db, &walk.rev)?;
                    }
                    Ok(())
                },
                WALK_VISITS_PER_STEP,
            )
            .map_err(invalid_repo)?;
            batch.flush(db, &walk.rev).map_err(invalid_repo)?;
            walk.state = tree.state().write().to_string();
            walk.visited += visits;
            import::save_walk(db, &walk)?;
            Ok(())
        })?;
        Ok(ImportProgress {
            walk: walk.rev,
            visited: walk.visited,
            done: false,
        })
    }

    /// Swaps in the repository a finished walk checked and indexed, under a new commit at the
    /// walk's revision, which must still be newer than the account's head.
    fn swap_import(&self, walk: &ImportWalk) -> Result<(), XrpcError> {
        let db = self.account.sql.as_ref();
        let did = self.config.did.as_str();
        let root = crate::data::parse_cid(&walk.root).map_err(internal)?;
        let imported =
            decode_commit(&StagedBlocks::new(db), root, Some(did)).map_err(invalid_repo)?;
        if load_root(db)
            .map_err(internal)?
            .is_some_and(|head| head.rev >= walk.rev)
        {
            return Err(XrpcError::invalid_request(
                "The repository changed during the import: import it again",
            ));
        }
        let rev = Tid::new(walk.rev.clone()).map_err(internal)?;
        self.account.tids.borrow_mut().ensure_after(&rev);
        let commit = UnsignedCommit::new(did, imported.data, rev.as_str())
            .sign(&self.config.signing_key)
            .and_then(|c| c.to_block())
            .map_err(internal)?;
        let now_ms = i64::try_from(self.account.clock.now_millis()).unwrap_or(i64::MAX);
        let head = ImportedHead {
            did,
            commit,
            rev: rev.as_str(),
            data: imported.data,
        };
        db.transaction(|| import::swap_in(db, &head, now_ms))?;
        Ok(())
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
        import::index_records(db, RecordIndex::Import, &self.records, &self.blobs, rev)?;
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
