//! `com.atproto.repo`: record writes through the commit pipeline ([`crate::writes`]), record
//! reads from the record index, describeRepo, and blob uploads. Errors follow the reference PDS.

use cid::Cid;
use pds_api::com::atproto::repo::{
    apply_writes, create_record, defs::CommitMeta, delete_record, describe_repo, get_record,
    list_missing_blobs, list_records, put_record, upload_blob, ComAtprotoRepo,
};
use pds_api::runtime::lex::{AtIdentifier, AtUri, BlobRef, CidString, Did, Nsid, RecordKey, Tid};
use pds_api::runtime::xrpc::{BinaryInput, Body, ByteStream, XrpcError};

use super::{Api, RequestContext};
use crate::auth::Permission;
use crate::data::json::{JsonMessage, JsonObject, JsonWriter};
use crate::data::Value;
use crate::oauth::scope::RepoAction;
use crate::rate_limit::Reserved;
use crate::repo::WriteOp;
use crate::storage::account::AccountStatus;
use crate::storage::blobs::{blob_metadata, insert_blob_metadata, BlobMetadata};
use crate::storage::{self, BlobError, ChunkSource, RecordBlobs};
use crate::writes::{self, WriteError};

/// The most writes one applyWrites may carry (the reference's limit).
pub const MAX_WRITES: usize = 200;

/// How a record was validated, as outputs report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Checked against its lexicon.
    Valid,
    /// Its type is not known here; stored unchecked.
    Unknown,
    /// The client asked for no validation.
    Skipped,
}

impl Validation {
    fn status(self) -> Option<&'static str> {
        match self {
            Validation::Valid => Some("valid"),
            Validation::Unknown => Some("unknown"),
            Validation::Skipped => None,
        }
    }
}

/// A record accepted for writing: its DAG-CBOR, the blobs it references, how it was validated.
#[derive(Debug)]
pub struct PreparedRecord {
    /// The record's DAG-CBOR, as it will be stored.
    pub bytes: Vec<u8>,
    /// The blobs it references (each must have been uploaded).
    pub blobs: Vec<BlobRef>,
    /// How it was validated.
    pub validation: Validation,
}

fn key_matches(key_type: &str, rkey: &str) -> bool {
    match key_type {
        "tid" => Tid::new(rkey).is_ok(),
        "nsid" => Nsid::new(rkey).is_ok(),
        "any" => true,
        other => other.strip_prefix("literal:") == Some(rkey),
    }
}

/// Checks a record for `collection/rkey` the way the reference PDS does and encodes it. A
/// record without `$type` gets the collection's. `validate`: `None` validates known types and
/// marks unknown ones; `Some(true)` refuses unknown types; `Some(false)` skips lexicon
/// validation. Legacy blob references are refused whatever `validate` says.
pub fn prepare_record(
    collection: &str,
    rkey: &str,
    record: &Value,
    validate: Option<bool>,
) -> Result<PreparedRecord, XrpcError> {
    let Some(map) = record.as_map() else {
        return Err(XrpcError::invalid_request("Record must be an object"));
    };
    let typed;
    let record = match map.get("$type") {
        None => {
            let mut with_type = map.clone();
            with_type.insert("$type".into(), Value::String(collection.to_owned()));
            typed = Value::Map(with_type);
            &typed
        }
        Some(Value::String(t)) if t == collection => record,
        Some(other) => {
            let got = other
                .as_str()
                .map_or_else(|| other.to_json().to_string(), str::to_owned);
            return Err(XrpcError::invalid_request(format!(
                "Invalid $type: expected {collection}, got {got}"
            )));
        }
    };
    let validation = validate_record(collection, rkey, record, validate)?;
    let mut blobs = Vec::new();
    collect_blobs(record, &mut blobs)?;
    Ok(PreparedRecord {
        bytes: crate::data::encode(record),
        blobs,
        validation,
    })
}

fn validate_record(
    collection: &str,
    rkey: &str,
    record: &Value,
    validate: Option<bool>,
) -> Result<Validation, XrpcError> {
    if validate == Some(false) {
        return Ok(Validation::Skipped);
    }
    if !pds_api::records::is_known_record_type(collection) {
        return if validate == Some(true) {
            Err(XrpcError::invalid_request(format!(
                "Unknown lexicon type: {collection}"
            )))
        } else {
            Ok(Validation::Unknown)
        };
    }
    // The key type comes from the collection's lexicon (generated records table).
    if let Some(key_type) = pds_api::records::record_key_type(collection) {
        if !key_matches(key_type, rkey) {
            return Err(XrpcError::invalid_request(format!(
                "Invalid record key for {collection}: {rkey:?} is not a valid {key_type} key"
            )));
        }
    }
    match pds_api::records::validate_record(collection, record) {
        Some(Err(e)) => Err(XrpcError::invalid_request(format!(
            "Invalid {collection} record: {}",
            e.message
        ))),
        _ => Ok(Validation::Valid),
    }
}

/// A blob reference a record holds.
pub(crate) enum FoundBlob {
    /// The current form (`$type: blob`).
    Current(BlobRef),
    /// The legacy `{cid, mimeType}` form, which old records still carry: its CID.
    Legacy(Cid),
}

/// Calls `found` for each blob reference of a record, in document order.
pub(crate) fn visit_blobs(
    value: &Value,
    found: &mut dyn FnMut(FoundBlob) -> Result<(), XrpcError>,
) -> Result<(), XrpcError> {
    match value {
        Value::Map(m) => {
            if let Some(blob) = value.as_blob_ref() {
                return found(FoundBlob::Current(blob));
            }
            if value.is_legacy_blob() {
                let cid = m.get("cid").and_then(Value::as_str).unwrap_or("");
                let cid = crate::data::parse_cid(cid)
                    .map_err(|e| XrpcError::invalid_request(format!("bad blob CID {cid}: {e}")))?;
                return found(FoundBlob::Legacy(cid));
            }
            m.values().try_for_each(|v| visit_blobs(v, found))
        }
        Value::Array(items) => items.iter().try_for_each(|v| visit_blobs(v, found)),
        _ => Ok(()),
    }
}

/// Collects the blob references of a record written here, refusing legacy ones.
pub(crate) fn collect_blobs(value: &Value, out: &mut Vec<BlobRef>) -> Result<(), XrpcError> {
    visit_blobs(value, &mut |blob| match blob {
        FoundBlob::Current(blob) => {
            out.push(blob);
            Ok(())
        }
        FoundBlob::Legacy(cid) => Err(XrpcError::invalid_request(format!(
            "Legacy blobs are not allowed ({})",
            crate::data::cid_string(&cid)
        ))),
    })
}

fn internal(what: &str, e: impl std::fmt::Display) -> XrpcError {
    XrpcError::internal_message(format!("{what}: {e}"))
}

fn write_error(e: WriteError) -> XrpcError {
    match e {
        WriteError::CommitSwap(_) => XrpcError::declared("InvalidSwap", e.to_string()),
        WriteError::Conflict(m) | WriteError::TooLarge(m) => XrpcError::invalid_request(m),
        WriteError::Internal(m) => XrpcError::internal_message(m),
    }
}

fn parse_cid(s: &CidString) -> Result<Cid, XrpcError> {
    crate::data::parse_cid(s.as_str()).map_err(|e| XrpcError::invalid_request(format!("{e}")))
}

fn cid_string(cid: &Cid) -> Result<CidString, XrpcError> {
    CidString::new(crate::data::cid_string(cid)).map_err(|e| internal("CID", e))
}

/// One write after its record was accepted, before committing.
struct Planned {
    op: WriteOp,
    collection: Nsid,
    rkey: RecordKey,
    blobs: Vec<BlobRef>,
    validation: Validation,
}

/// The outcome of a committed batch, per write in order.
struct BatchResult {
    commit: CommitMeta,
    results: Vec<(AtUri, Option<Cid>, Validation)>,
}

impl Api<'_> {
    /// Whether `repo` names the account (its DID, or its handle in any case).
    fn is_own_repo(&self, repo: &AtIdentifier) -> bool {
        self.config.names_account(repo.as_str())
    }

    /// Whether `repo` names the account and its records are served: as the reference's
    /// `getDidForActor`, a deactivated, taken-down or deleted account's are not.
    fn serves_records_of(&self, repo: &AtIdentifier) -> Result<bool, XrpcError> {
        Ok(self.is_own_repo(repo) && self.account_status()? == AccountStatus::Active)
    }

    /// The account DID if `repo` names it and its records are served, else `Could not find
    /// repo: <repo>` (listRecords).
    fn own_repo(&self, repo: &AtIdentifier) -> Result<Did, XrpcError> {
        if self.serves_records_of(repo)? {
            Ok(self.config.did.clone())
        } else {
            Err(XrpcError::invalid_request(format!(
                "Could not find repo: {}",
                repo.as_str()
            )))
        }
    }

    /// The account's stored status (`active` before the account row exists).
    pub(crate) fn account_status(&self) -> Result<AccountStatus, XrpcError> {
        Ok(storage::account::get_account(self.account.sql.as_ref())?
            .map_or(AccountStatus::Active, |a| a.status))
    }

    /// The account DID for a write: `repo` must name the account, and the account must be
    /// neither taken down nor deactivated (the reference's `findAccount` errors).
    fn writable_repo(&self, repo: &AtIdentifier) -> Result<Did, XrpcError> {
        if !self.is_own_repo(repo) {
            return Err(XrpcError::new(403, "AccountNotFound", "Account not found"));
        }
        // One read of the account row for both checks.
        let status = self.account_status()?;
        refuse_taken_down(status)?;
        if status == AccountStatus::Deactivated {
            return Err(XrpcError::new(
                401,
                "AccountDeactivated",
                "Account is deactivated",
            ));
        }
        Ok(self.config.did.clone())
    }

    pub(crate) fn check_not_taken_down(&self) -> Result<(), XrpcError> {
        refuse_taken_down(self.account_status()?)
    }

    fn current_record(&self, collection: &str, rkey: &str) -> Result<Option<Cid>, XrpcError> {
        Ok(
            storage::get_record(self.account.sql.as_ref(), collection, rkey)
                .map_err(|e| internal("record index", e))?
                .map(|(cid, _)| cid),
        )
    }

    /// Refuses a write whose `swapRecord` does not name the record's current state. `swap`:
    /// `None` = no check, `Some(None)` = the record must not exist (`swapRecord: null`),
    /// `Some(Some(cid))` = the record must be at `cid`.
    fn check_record_swap(
        &self,
        collection: &str,
        rkey: &str,
        swap: Option<Option<&CidString>>,
    ) -> Result<Option<Cid>, XrpcError> {
        let current = self.current_record(collection, rkey)?;
        if let Some(swap) = swap {
            let expected = swap.map(parse_cid).transpose()?;
            if current != expected {
                let at = current.map_or_else(|| "null".to_owned(), |c| crate::data::cid_string(&c));
                return Err(XrpcError::declared(
                    "InvalidSwap",
                    format!("Record was at {at}"),
                ));
            }
        }
        Ok(current)
    }

    /// Checks that every referenced blob was uploaded and matches its reference.
    fn check_blobs(&self, blobs: &[BlobRef]) -> Result<(), XrpcError> {
        for blob in blobs {
            let meta = blob_metadata(self.account.sql.as_ref(), &blob.cid)
                .map_err(|e| internal("blob metadata", e))?;
            let Some(meta) = meta else {
                return Err(XrpcError::declared(
                    "BlobNotFound",
                    format!(
                        "Could not find blob: {}",
                        crate::data::cid_string(&blob.cid)
                    ),
                ));
            };
            if meta.mime_type != blob.mime_type {
                return Err(XrpcError::declared(
                    "InvalidMimeType",
                    format!(
                        "Referenced Mimetype does not match stored blob. Expected: {}, Got: {}",
                        meta.mime_type, blob.mime_type
                    ),
                ));
            }
            if meta.size != blob.size {
                return Err(XrpcError::declared(
                    "InvalidSize",
                    format!(
                        "Referenced Size does not match stored blob. Expected: {}, Got: {}",
                        meta.size, blob.size
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Prepares one create/update: the record accepted, its blobs present.
    fn plan_put(
        &self,
        create: bool,
        collection: Nsid,
        rkey: RecordKey,
        record: &Value,
        validate: Option<bool>,
    ) -> Result<Planned, XrpcError> {
        let prepared = prepare_record(collection.as_str(), rkey.as_str(), record, validate)?;
        self.check_blobs(&prepared.blobs)?;
        let op = if create {
            WriteOp::Create {
                collection: collection.as_str().to_owned(),
                rkey: rkey.as_str().to_owned(),
                record: prepared.bytes,
            }
        } else {
            WriteOp::Update {
                collection: collection.as_str().to_owned(),
                rkey: rkey.as_str().to_owned(),
                record: prepared.bytes,
            }
        };
        Ok(Planned {
            op,
            collection,
            rkey,
            blobs: prepared.blobs,
            validation: prepared.validation,
        })
    }

    fn new_rkey(&self) -> Result<RecordKey, XrpcError> {
        let tid = writes::next_tid(self.account).map_err(write_error)?;
        RecordKey::new(tid.as_str()).map_err(|e| internal("record key", e))
    }

    fn commit(
        &self,
        did: &Did,
        planned: Vec<Planned>,
        swap_commit: Option<&CidString>,
    ) -> Result<BatchResult, XrpcError> {
        let swap = swap_commit.map(parse_cid).transpose()?;
        let mut blobs = RecordBlobs::new();
        let mut ops = Vec::with_capacity(planned.len());
        for p in &planned {
            if !p.blobs.is_empty() {
                blobs.insert(p.op.key(), p.blobs.iter().map(|b| b.cid).collect());
            }
            ops.push(p.op.clone());
        }
        let committed = writes::commit_writes(self.config, self.account, &ops, &blobs, swap)
            .map_err(write_error)?;
        let results = planned
            .into_iter()
            .zip(committed.record_cids)
            .map(|(p, cid)| {
                (
                    AtUri::for_record(did, &p.collection, &p.rkey),
                    cid,
                    p.validation,
                )
            })
            .collect();
        Ok(BatchResult {
            commit: CommitMeta {
                cid: cid_string(&committed.cid)?,
                rev: Tid::new(committed.rev).map_err(|e| internal("rev", e))?,
            },
            results,
        })
    }
}

fn created_cid(cid: Option<Cid>) -> Result<CidString, XrpcError> {
    match cid {
        Some(c) => cid_string(&c),
        None => Err(XrpcError::internal_message("write produced no record CID")),
    }
}

impl ComAtprotoRepo for Api<'_> {
    const SERVES_APPLY_WRITES: bool = true;
    const SERVES_CREATE_RECORD: bool = true;
    const SERVES_PUT_RECORD: bool = true;
    const SERVES_DELETE_RECORD: bool = true;
    const SERVES_DESCRIBE_REPO: bool = true;
    const SERVES_LIST_MISSING_BLOBS: bool = true;
    const SERVES_GET_RECORD: bool = true;
    const SERVES_LIST_RECORDS: bool = true;
    const SERVES_UPLOAD_BLOB: bool = true;

    async fn apply_writes(
        &self,
        cx: &RequestContext,
        _params: apply_writes::Params,
        input: apply_writes::Input,
    ) -> Result<apply_writes::Output, XrpcError> {
        let did = self.writable_repo(&input.repo)?;
        for write in &input.writes {
            let (collection, action) = match write {
                apply_writes::InputWritesItem::Create(c) => {
                    (c.collection.as_str(), RepoAction::Create)
                }
                apply_writes::InputWritesItem::Update(u) => {
                    (u.collection.as_str(), RepoAction::Update)
                }
                apply_writes::InputWritesItem::Delete(d) => {
                    (d.collection.as_str(), RepoAction::Delete)
                }
            };
            cx.caller
                .require(Permission::RepoWrite { collection, action })?;
        }
        if input.writes.len() > MAX_WRITES {
            return Err(XrpcError::invalid_request(format!(
                "Too many writes. Max: {MAX_WRITES}"
            )));
        }
        let mut planned = Vec::with_capacity(input.writes.len());
        for write in &input.writes {
            planned.push(match write {
                apply_writes::InputWritesItem::Create(c) => {
                    let rkey = match &c.rkey {
                        Some(k) => k.clone(),
                        None => self.new_rkey()?,
                    };
                    self.plan_put(true, c.collection.clone(), rkey, &c.value, input.validate)?
                }
                apply_writes::InputWritesItem::Update(u) => self.plan_put(
                    false,
                    u.collection.clone(),
                    u.rkey.clone(),
                    &u.value,
                    input.validate,
                )?,
                apply_writes::InputWritesItem::Delete(d) => Planned {
                    op: WriteOp::Delete {
                        collection: d.collection.as_str().to_owned(),
                        rkey: d.rkey.as_str().to_owned(),
                    },
                    collection: d.collection.clone(),
                    rkey: d.rkey.clone(),
                    blobs: Vec::new(),
                    validation: Validation::Skipped,
                },
            });
        }
        let kinds: Vec<u8> = planned
            .iter()
            .map(|p| match p.op {
                WriteOp::Create { .. } => 0,
                WriteOp::Update { .. } => 1,
                WriteOp::Delete { .. } => 2,
            })
            .collect();
        let batch = self.commit(&did, planned, input.swap_commit.as_ref())?;
        let mut results = Vec::with_capacity(batch.results.len());
        for (kind, (uri, cid, validation)) in kinds.into_iter().zip(batch.results) {
            let status = validation.status().map(|s| s.to_owned());
            results.push(match kind {
                0 => apply_writes::OutputResultsItem::CreateResult(Box::new(
                    apply_writes::CreateResult {
                        cid: created_cid(cid)?,
                        uri,
                        validation_status: status.map(Into::into),
                    },
                )),
                1 => apply_writes::OutputResultsItem::UpdateResult(Box::new(
                    apply_writes::UpdateResult {
                        cid: created_cid(cid)?,
                        uri,
                        validation_status: status.map(Into::into),
                    },
                )),
                _ => apply_writes::OutputResultsItem::DeleteResult(Box::default()),
            });
        }
        Ok(apply_writes::Output {
            commit: Some(batch.commit),
            results: Some(results),
        })
    }

    async fn create_record(
        &self,
        cx: &RequestContext,
        _params: create_record::Params,
        input: create_record::Input,
    ) -> Result<create_record::Output, XrpcError> {
        cx.caller.require(Permission::RepoWrite {
            collection: input.collection.as_str(),
            action: RepoAction::Create,
        })?;
        let did = self.writable_repo(&input.repo)?;
        let rkey = match input.rkey {
            Some(k) => k,
            None => self.new_rkey()?,
        };
        let planned = self.plan_put(true, input.collection, rkey, &input.record, input.validate)?;
        let batch = self.commit(&did, vec![planned], input.swap_commit.as_ref())?;
        let Some((uri, cid, validation)) = batch.results.into_iter().next() else {
            return Err(XrpcError::internal_message("commit reported no write"));
        };
        Ok(create_record::Output {
            cid: created_cid(cid)?,
            commit: Some(batch.commit),
            uri,
            validation_status: validation.status().map(|s| s.to_owned().into()),
        })
    }

    async fn put_record(
        &self,
        cx: &RequestContext,
        _params: put_record::Params,
        input: put_record::Input,
    ) -> Result<put_record::Output, XrpcError> {
        // Whether or not the record exists, a put needs both (the reference's rule).
        for action in [RepoAction::Create, RepoAction::Update] {
            cx.caller.require(Permission::RepoWrite {
                collection: input.collection.as_str(),
                action,
            })?;
        }
        let did = self.writable_repo(&input.repo)?;
        let current = self.check_record_swap(
            input.collection.as_str(),
            input.rkey.as_str(),
            input.swap_record.as_option(),
        )?;
        let planned = self.plan_put(
            current.is_none(),
            input.collection,
            input.rkey,
            &input.record,
            input.validate,
        )?;
        if let (Some(current), WriteOp::Update { record, .. }) = (current, &planned.op) {
            // Rewriting the same record is a no-op without a commit, as in the reference.
            if crate::data::cid_for_cbor(record) == current {
                return Ok(put_record::Output {
                    cid: cid_string(&current)?,
                    commit: None,
                    uri: AtUri::for_record(&did, &planned.collection, &planned.rkey),
                    validation_status: planned.validation.status().map(|s| s.to_owned().into()),
                });
            }
        }
        let batch = self.commit(&did, vec![planned], input.swap_commit.as_ref())?;
        let Some((uri, cid, validation)) = batch.results.into_iter().next() else {
            return Err(XrpcError::internal_message("commit reported no write"));
        };
        Ok(put_record::Output {
            cid: created_cid(cid)?,
            commit: Some(batch.commit),
            uri,
            validation_status: validation.status().map(|s| s.to_owned().into()),
        })
    }

    async fn delete_record(
        &self,
        cx: &RequestContext,
        _params: delete_record::Params,
        input: delete_record::Input,
    ) -> Result<delete_record::Output, XrpcError> {
        cx.caller.require(Permission::RepoWrite {
            collection: input.collection.as_str(),
            action: RepoAction::Delete,
        })?;
        let did = self.writable_repo(&input.repo)?;
        // Deleting a missing record is a no-op ("ensure it doesn't exist"): like the reference,
        // nothing is compared, not even the swaps.
        if self
            .current_record(input.collection.as_str(), input.rkey.as_str())?
            .is_none()
        {
            return Ok(delete_record::Output { commit: None });
        }
        self.check_record_swap(
            input.collection.as_str(),
            input.rkey.as_str(),
            input.swap_record.as_ref().map(Some),
        )?;
        let planned = Planned {
            op: WriteOp::Delete {
                collection: input.collection.as_str().to_owned(),
                rkey: input.rkey.as_str().to_owned(),
            },
            collection: input.collection,
            rkey: input.rkey,
            blobs: Vec::new(),
            validation: Validation::Skipped,
        };
        let batch = self.commit(&did, vec![planned], input.swap_commit.as_ref())?;
        Ok(delete_record::Output {
            commit: Some(batch.commit),
        })
    }

    async fn list_missing_blobs(
        &self,
        _cx: &RequestContext,
        params: list_missing_blobs::Params,
    ) -> Result<list_missing_blobs::Output, XrpcError> {
        let limit = params.limit.clamp(1, 1000) as u32;
        let missing = storage::blobs::list_missing_blobs(
            self.account.sql.as_ref(),
            params.cursor.as_deref(),
            limit,
        )
        .map_err(|e| internal("blob index", e))?;
        let cursor = (missing.len() as u32 == limit)
            .then(|| {
                missing
                    .last()
                    .map(|(cid, _, _)| crate::data::cid_string(cid))
            })
            .flatten();
        let did = self.config.did.clone();
        let blobs = missing
            .into_iter()
            .map(|(cid, collection, rkey)| {
                Ok(list_missing_blobs::RecordBlob {
                    cid: CidString::new(crate::data::cid_string(&cid))
                        .map_err(|e| internal("blob CID", e))?,
                    record_uri: AtUri::new(format!("at://{}/{collection}/{rkey}", did.as_str()))
                        .map_err(|e| internal("record URI", e))?,
                })
            })
            .collect::<Result<_, XrpcError>>()?;
        Ok(list_missing_blobs::Output { blobs, cursor })
    }

    async fn describe_repo(
        &self,
        _cx: &RequestContext,
        params: describe_repo::Params,
    ) -> Result<describe_repo::Output, XrpcError> {
        let repo = params.repo.as_str();
        if !self.is_own_repo(&params.repo) {
            return Err(XrpcError::declared(
                "RepoNotFound",
                format!("Could not find repo for DID: {repo}"),
            ));
        }
        match self.account_status()? {
            AccountStatus::Takendown | AccountStatus::Suspended | AccountStatus::Deleted => {
                return Err(XrpcError::declared(
                    "RepoTakendown",
                    format!("Repo has been takendown: {repo}"),
                ))
            }
            AccountStatus::Deactivated => {
                return Err(XrpcError::declared(
                    "RepoDeactivated",
                    format!("Repo has been deactivated: {repo}"),
                ))
            }
            _ => {}
        }
        let did = self.config.did.clone();
        let collections = storage::list_collections(self.account.sql.as_ref())
            .map_err(|e| internal("record index", e))?
            .into_iter()
            .filter_map(|c| Nsid::new(c).ok())
            .collect();
        let did_doc = self.own_did_document().await?;
        // As the reference: the handle is correct when the document claims it (a new handle is
        // checked to resolve to the DID when it is set).
        let claimed = crate::net::did_doc::DidDocument::from_value(&did_doc)
            .ok()
            .and_then(|doc| doc.handle());
        Ok(describe_repo::Output {
            collections,
            did: did.clone(),
            did_doc: Value::from_json(&did_doc).map_err(|e| internal("DID document", e))?,
            handle_is_correct: claimed
                .is_some_and(|h| h.as_str().eq_ignore_ascii_case(self.config.handle.as_str())),
            handle: self.config.handle.clone(),
        })
    }

    async fn get_record(
        &self,
        _cx: &RequestContext,
        params: get_record::Params,
    ) -> Result<get_record::Output, XrpcError> {
        if !self.serves_records_of(&params.repo)? {
            // The reference proxies other repos (and its own inactive ones) to its AppView;
            // without one it answers this.
            return Err(XrpcError::invalid_request("Could not locate record"));
        }
        let did = self.config.did.clone();
        let uri = AtUri::for_record(&did, &params.collection, &params.rkey);
        let found = storage::get_record(
            self.account.sql.as_ref(),
            params.collection.as_str(),
            params.rkey.as_str(),
        )
        .map_err(|e| internal("record index", e))?;
        let wanted = params.cid.as_ref().map(parse_cid).transpose()?;
        match found {
            Some((cid, bytes)) if wanted.is_none_or(|w| w == cid) => {
                let value =
                    crate::data::decode(&bytes).map_err(|e| internal("stored record", e))?;
                Ok(get_record::Output {
                    cid: Some(cid_string(&cid)?),
                    uri,
                    value,
                })
            }
            _ => Err(get_record::Error::RecordNotFound(format!(
                "Could not locate record: {}",
                uri.as_str()
            ))
            .into()),
        }
    }

    async fn list_records(
        &self,
        _cx: &RequestContext,
        params: list_records::Params,
    ) -> Result<list_records::Output, XrpcError> {
        let did = self.own_repo(&params.repo)?;
        let limit = u32::try_from(params.limit.clamp(1, 100)).unwrap_or(50);
        let rows = storage::list_records(
            self.account.sql.as_ref(),
            params.collection.as_str(),
            params.cursor.as_deref(),
            limit,
            params.reverse.unwrap_or(false),
        )
        .map_err(|e| internal("record index", e))?;
        // A full page may have more after it; the cursor is the last rkey returned.
        let cursor = if rows.len() == limit as usize {
            rows.last().map(|r| r.rkey.clone())
        } else {
            None
        };
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(bytes) = &row.bytes else {
                continue;
            };
            let rkey = RecordKey::new(row.rkey).map_err(|e| internal("record key", e))?;
            records.push(list_records::RecordDef {
                cid: CidString::new(row.cid).map_err(|e| internal("stored CID", e))?,
                uri: AtUri::for_record(&did, &params.collection, &rkey),
                value: crate::data::decode(bytes).map_err(|e| internal("stored record", e))?,
            });
        }
        Ok(list_records::Output { cursor, records })
    }

    /// The in-account upload (in-process callers); the shells offload uploads to the edge
    /// (`crate::offload`), which makes the same checks.
    async fn upload_blob(
        &self,
        cx: &RequestContext,
        _params: upload_blob::Params,
        input: BinaryInput,
    ) -> Result<upload_blob::Output, XrpcError> {
        cx.caller.require(Permission::BlobUpload {
            mime: input.content_type.as_deref().unwrap_or("*/*"),
        })?;
        let grant = self.upload_grant(None)?;
        let mut source = BodySource::new(input.body);
        let stored = self
            .account
            .blobs
            .put(&mut source, grant.max_bytes)
            .await
            .map_err(|e| upload_error(e, &grant))?;
        let mime_type = upload_mime_type(source.head(), input.content_type.as_deref());
        record_uploaded_blob(self, stored.cid, stored.size, mime_type, grant.reserved).await
    }
}

impl Api<'_> {
    /// What the account may upload now, checked before any byte is stored: nothing for a
    /// taken-down account (as the reference), nothing declared (`declared`, its Content-Length)
    /// over the blob size limit, and no more than is left of the day's upload quota, which is
    /// reserved for it at once (all of a declared length, or what is left up to the size limit).
    pub(crate) fn upload_grant(&self, declared: Option<u64>) -> Result<UploadGrant, XrpcError> {
        self.check_not_taken_down()?;
        let limit = self.config.blob_upload_limit;
        if declared.is_some_and(|length| length > limit) {
            return Err(too_large(limit));
        }
        let want = declared.unwrap_or(limit);
        match crate::rate_limit::reserve_upload(self, want, declared.is_none())? {
            Reserved::Unlimited => Ok(UploadGrant {
                max_bytes: limit,
                reserved: 0,
                quota_limited: false,
            }),
            Reserved::Bytes(0) => Err(quota_exceeded()),
            Reserved::Bytes(reserved) => Ok(UploadGrant {
                max_bytes: reserved.min(limit),
                reserved,
                quota_limited: reserved < limit,
            }),
        }
    }
}

/// The most an upload may store, what of the day's quota was reserved for it, and whether the
/// quota (rather than the blob size limit) sets the most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadGrant {
    /// The most bytes that may be stored.
    pub max_bytes: u64,
    /// Bytes of the day's quota reserved for this upload (settled once it is recorded).
    pub reserved: u64,
    /// Whether the day's upload quota, not the blob size limit, is what `max_bytes` is.
    pub quota_limited: bool,
}

impl JsonMessage for UploadGrant {
    fn write(&self) -> serde_json::Value {
        JsonWriter::new()
            .u64("maxBytes", self.max_bytes)
            .u64("reserved", self.reserved)
            .bool("quotaLimited", self.quota_limited)
            .finish()
    }

    fn read(o: &JsonObject) -> Result<UploadGrant, String> {
        Ok(UploadGrant {
            max_bytes: o.u64("maxBytes")?,
            reserved: o.opt_u64("reserved")?.unwrap_or(0),
            quota_limited: o.flag("quotaLimited")?,
        })
    }
}

fn quota_exceeded() -> XrpcError {
    XrpcError::rate_limit_exceeded("Daily upload quota exceeded")
}

/// The reference's error for an account that is taken down (or suspended, or deleted).
fn refuse_taken_down(status: AccountStatus) -> Result<(), XrpcError> {
    if matches!(
        status,
        AccountStatus::Takendown | AccountStatus::Suspended | AccountStatus::Deleted
    ) {
        return Err(XrpcError::new(
            401,
            "AccountTakedown",
            "Account has been taken down",
        ));
    }
    Ok(())
}

/// The uploadBlob error for a blob over the size limit.
fn too_large(limit: u64) -> XrpcError {
    XrpcError::payload_too_large(format!(
        "This file is too large. The maximum size is {limit} bytes."
    ))
}

/// The uploadBlob error for a failed blob-store write under `grant`.
pub(crate) fn upload_error(e: BlobError, grant: &UploadGrant) -> XrpcError {
    match e {
        BlobError::TooLarge { .. } if grant.quota_limited => quota_exceeded(),
        BlobError::TooLarge { .. } => too_large(grant.max_bytes),
        BlobError::Source(m) => XrpcError::invalid_request(m),
        other => internal("blob store", other),
    }
}

/// An uploaded blob's MIME type: the reference trusts the bytes (`head`, the first bytes seen)
/// over the declared `content_type`, which is the fallback.
pub(crate) fn upload_mime_type(head: &[u8], content_type: Option<&str>) -> String {
    let declared = content_type
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|t| !t.is_empty());
    match (sniff_mime(head), declared) {
        (Some(sniffed), _) => sniffed.to_owned(),
        (None, Some(t)) if t != "*/*" => t,
        _ => "application/octet-stream".to_owned(),
    }
}

/// How long after collecting a blob an upload of the same bytes is checked for them: the
/// collection's delete may have landed after the upload stored them.
const RECENTLY_COLLECTED_MS: i64 = 10 * 60 * 1000;

/// Records the metadata of a blob now in the blob store, settles the day's upload quota
/// (`reserved` was taken for it), and answers uploadBlob's output. An upload of bytes already
/// known keeps the first row's type; the output reports what is stored.
pub(crate) async fn record_uploaded_blob(
    api: &Api<'_>,
    cid: Cid,
    size: u64,
    mime_type: String,
    reserved: u64,
) -> Result<upload_blob::Output, XrpcError> {
    let account = api.account;
    crate::rate_limit::settle_upload(api, reserved, size)?;
    let now_ms = crate::maintenance::now_ms(account);
    if account.was_collected_since(&cid, now_ms.saturating_sub(RECENTLY_COLLECTED_MS)) {
        // The bytes were being deleted while this upload stored them: they must still be there.
        let stored = account
            .blobs
            .get(&cid, None)
            .await
            .map_err(|e| internal("blob store", e))?;
        if stored.is_none() {
            return Err(XrpcError::new(
                503,
                "BlobBeingDeleted",
                "These bytes were being deleted as they were uploaded: upload them again",
            ));
        }
    }
    let created_ms = i64::try_from(account.clock.now_millis()).unwrap_or(i64::MAX);
    let meta = BlobMetadata {
        cid,
        mime_type,
        size,
        created_ms,
        unreferenced_since_ms: None,
    };
    insert_blob_metadata(account.sql.as_ref(), &meta).map_err(|e| internal("blob metadata", e))?;
    // No event was stored, but the upload's grace window may need a maintenance wake-up.
    account.maintenance_seen_seq.set(None);
    let stored_meta = blob_metadata(account.sql.as_ref(), &cid)
        .map_err(|e| internal("blob metadata", e))?
        .unwrap_or(meta);
    Ok(upload_blob::Output {
        blob: BlobRef {
            cid,
            mime_type: stored_meta.mime_type,
            size: stored_meta.size,
        },
    })
}

/// MIME types recognised from a blob's first bytes, for uploads declared without a useful type.
pub fn sniff_mime(head: &[u8]) -> Option<&'static str> {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
        (b"\x1a\x45\xdf\xa3", "video/webm"),
    ];
    if let Some((_, mime)) = SIGNATURES.iter().find(|(sig, _)| head.starts_with(sig)) {
        return Some(mime);
    }
    if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return Some(match &head[8..12] {
            b"avif" => "image/avif",
            b"heic" | b"heix" => "image/heic",
            b"qt  " => "video/quicktime",
            _ => "video/mp4",
        });
    }
    None
}

/// An XRPC body as a blob-store chunk source, keeping the first bytes for MIME sniffing.
pub(crate) struct BodySource {
    bytes: Option<Vec<u8>>,
    stream: Option<ByteStream>,
    head: Vec<u8>,
    declared_len: Option<u64>,
}

const SNIFF_BYTES: usize = 64;

impl BodySource {
    /// A source reading `body`.
    pub(crate) fn new(body: Body) -> Self {
        match body {
            Body::Bytes(b) => BodySource {
                bytes: Some(b),
                stream: None,
                head: Vec::new(),
                declared_len: None,
            },
            Body::Stream(s) => BodySource {
                bytes: None,
                stream: Some(s),
                head: Vec::new(),
                declared_len: None,
            },
        }
    }

    /// The same source, with the length its sender declared.
    pub(crate) fn declaring(mut self, length: Option<u64>) -> Self {
        self.declared_len = length;
        self
    }

    /// The first bytes read so far (up to what sniffing needs).
    pub(crate) fn head(&self) -> &[u8] {
        &self.head
    }

    fn keep_head(&mut self, chunk: &[u8]) {
        let room = SNIFF_BYTES.saturating_sub(self.head.len());
        self.head.extend_from_slice(&chunk[..room.min(chunk.len())]);
    }
}

impl ChunkSource for BodySource {
    fn next_chunk(
        &mut self,
    ) -> storage::blobs::LocalBoxFuture<'_, Result<Option<Vec<u8>>, BlobError>> {
        Box::pin(async move {
            let chunk = if let Some(b) = self.bytes.take() {
                Some(b)
            } else if let Some(s) = self.stream.as_mut() {
                match std::future::poll_fn(|cx| s.as_mut().poll_next(cx)).await {
                    Some(Ok(c)) => Some(c),
                    Some(Err(e)) => return Err(BlobError::Source(e.message)),
                    None => None,
                }
            } else {
                None
            };
            if let Some(c) = &chunk {
                self.keep_head(c);
            }
            Ok(chunk)
        })
    }

    fn declared_len(&self) -> Option<u64> {
        self.declared_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ty: &str, text: &str) -> Value {
        Value::from_json(&serde_json::json!({
            "$type": ty,
            "text": text,
            "createdAt": "2024-01-01T00:00:00.000Z",
        }))
        .unwrap()
    }

    #[test]
    fn known_types_are_validated() {
        let ok = prepare_record(
            "app.bsky.feed.post",
            "3jzfcijpj2z2a",
            &record("app.bsky.feed.post", "hi"),
            None,
        )
        .unwrap();
        assert_eq!(ok.validation, Validation::Valid);
        let long = "x".repeat(3001);
        let err = prepare_record(
            "app.bsky.feed.post",
            "3jzfcijpj2z2a",
            &record("app.bsky.feed.post", &long),
            None,
        )
        .unwrap_err();
        assert_eq!(err.error, "InvalidRequest");
        assert!(
            err.message
                .starts_with("Invalid app.bsky.feed.post record:"),
            "{}",
            err.message
        );
        // validate=false skips the lexicon but not the $type check.
        let skipped = prepare_record(
            "app.bsky.feed.post",
            "3jzfcijpj2z2a",
            &record("app.bsky.feed.post", &long),
            Some(false),
        )
        .unwrap();
        assert_eq!(skipped.validation, Validation::Skipped);
        assert!(prepare_record(
            "app.bsky.feed.post",
            "k",
            &record("app.bsky.feed.like", "x"),
            Some(false)
        )
        .is_err());
    }

    #[test]
    fn unknown_types_follow_validate() {
        let r = record("com.example.thing", "x");
        assert_eq!(
            prepare_record("com.example.thing", "a", &r, None)
                .unwrap()
                .validation,
            Validation::Unknown
        );
        let err = prepare_record("com.example.thing", "a", &r, Some(true)).unwrap_err();
        assert_eq!(err.message, "Unknown lexicon type: com.example.thing");
    }

    #[test]
    fn record_key_types_are_enforced() {
        let profile =
            Value::from_json(&serde_json::json!({"$type": "app.bsky.actor.profile"})).unwrap();
        assert!(prepare_record("app.bsky.actor.profile", "self", &profile, None).is_ok());
        assert!(prepare_record("app.bsky.actor.profile", "other", &profile, None).is_err());
        let post = record("app.bsky.feed.post", "hi");
        assert!(prepare_record("app.bsky.feed.post", "not-a-tid", &post, None).is_err());
    }

    #[test]
    fn legacy_blobs_are_refused() {
        let r = Value::from_json(&serde_json::json!({
            "$type": "com.example.thing",
            "img": {"cid": "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy", "mimeType": "image/png"},
        }))
        .unwrap();
        let err = prepare_record("com.example.thing", "a", &r, None).unwrap_err();
        assert_eq!(
            err.message,
            "Legacy blobs are not allowed (bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy)"
        );
    }

    #[test]
    fn mime_types_are_sniffed() {
        assert_eq!(sniff_mime(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff_mime(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
        assert_eq!(sniff_mime(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_mime(b"hello"), None);
    }
}
