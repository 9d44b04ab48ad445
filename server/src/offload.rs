//! Byte-heavy work at the edge, authorized by the account: the one mechanism by which large or
//! slow byte streams (blob uploads, proxied calls; repository imports next) stay out of the
//! Durable Object, which is single-threaded and has 128 MB.
//!
//! The rule: a route placed [`crate::routes::Placement::Offload`] runs in the stateless front
//! in up to three steps, the same on both shells:
//! 1. **authorize**: the front sends the account the request's headers on an internal path,
//!    with a small JSON description of the work, never the body (a push registration's
//!    `serviceDid` is the most it carries of one); the account authenticates the caller, checks
//!    the account's state, and answers what the front may do (an upload's [`crate::api::repo::UploadGrant`], a
//!    [`ProxyGrant`]) or the XRPC error the client gets;
//! 2. **move the bytes**: the front streams the body where it goes (R2 on Workers, the blob
//!    directory natively, the service a call is proxied to), enforcing the grant as it counts;
//! 3. **complete**: the front sends the account a small JSON report of what it did and the
//!    account answers: an upload is recorded and its output answered; a proxied answer older
//!    than the repository gets the account's newer writes to patch it with (read-after-write).
//!    A proxied call whose answer needs nothing stops after step 2.
//!
//! The front reaches the account through an [`AccountLink`]: a Durable Object stub on Workers,
//! a direct call natively. Internal paths are never reachable from outside (the edge answers
//! them 404).

use cid::Cid;
use futures_util::future::LocalBoxFuture;
use pds_api::runtime::xrpc::XrpcError;

use crate::data::json::{read_message, JsonMessage, JsonObject, JsonWriter};
use crate::first_error::FirstError;

use crate::account::Account;
use crate::api::import::{ImportDone, ImportGrant, ImportProgress, IMPORT_REPO};
use crate::api::repo::{
    record_uploaded_blob, upload_error, upload_mime_type, BodySource, UploadGrant,
};
use crate::api::sync::{serve_blob, BlobToServe};
use crate::api::{internal, Api};
use crate::auth::verifier::UPLOAD_BLOB;
use crate::auth::{Permission, Presented};
use crate::clock::Clock;
use crate::config::Config;
use crate::http::{Body, HttpRequest, HttpResponse};
use crate::net::http_client::HttpClient;
use crate::proxy::{ProxyAsk, ProxyGrant};
use crate::storage::BlobStore;
use pds_api::com::atproto::sync::get_blob;

/// A kind of offloaded work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// `com.atproto.repo.uploadBlob`: the body goes to the blob store.
    UploadBlob,
    /// An XRPC method this PDS does not serve: the call goes to the service that does.
    Proxy,
    /// `com.atproto.sync.getBlob` (GET): the bytes come from the blob store to the client.
    GetBlob,
    /// `com.atproto.repo.importRepo`: the CAR is read here, its blocks checked and sent to the
    /// account in batches.
    ImportRepo,
}

/// A step the account serves on an internal path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// May the caller do this? Answers an [`crate::api::repo::UploadGrant`] or a [`ProxyGrant`].
    Authorize,
    /// Report what the front did: an upload is recorded and its output answered; for a proxied
    /// answer, the account's writes since its revision; an import is swapped in.
    Complete,
    /// Hand the account a batch of an import's blocks (as a small CAR).
    Stage,
}

impl Offload {
    const ALL: [Offload; 4] = [
        Offload::UploadBlob,
        Offload::Proxy,
        Offload::GetBlob,
        Offload::ImportRepo,
    ];

    /// The offloaded work for an XRPC call, if it is one: a POST to uploadBlob, a GET of
    /// getBlob, or any call of a (well-formed) NSID this PDS does not serve.
    pub fn of(method: &str, nsid: &str) -> Option<Offload> {
        if nsid == UPLOAD_BLOB {
            return (method == "POST").then_some(Offload::UploadBlob);
        }
        if nsid == get_blob::NSID {
            return (method == "GET").then_some(Offload::GetBlob);
        }
        if nsid == IMPORT_REPO {
            return (method == "POST").then_some(Offload::ImportRepo);
        }
        let served = pds_api::methods::serves::<Api<'_>>(nsid);
        (!served && pds_api::runtime::syntax::Nsid::new(nsid.to_owned()).is_ok())
            .then_some(Offload::Proxy)
    }

    fn name(self) -> &'static str {
        match self {
            Offload::UploadBlob => "uploadBlob",
            Offload::Proxy => "proxy",
            Offload::GetBlob => "getBlob",
            Offload::ImportRepo => "importRepo",
        }
    }

    /// The internal path of one of its steps.
    pub fn path(self, step: Step) -> String {
        format!(
            "{}offload/{}/{}",
            crate::routes::INTERNAL_PREFIX,
            self.name(),
            step.name()
        )
    }

    /// The work and step an internal path names.
    pub fn parse_path(path: &str) -> Option<(Offload, Step)> {
        let (name, step) = path
            .strip_prefix(crate::routes::INTERNAL_PREFIX)?
            .strip_prefix("offload/")?
            .split_once('/')?;
        let offload = Offload::ALL.into_iter().find(|o| o.name() == name)?;
        let step = Step::ALL.into_iter().find(|s| s.name() == step)?;
        Some((offload, step))
    }
}

impl Step {
    const ALL: [Step; 3] = [Step::Authorize, Step::Complete, Step::Stage];

    fn name(self) -> &'static str {
        match self {
            Step::Authorize => "authorize",
            Step::Complete => "complete",
            Step::Stage => "stage",
        }
    }
}

/// What the front asks the account to authorize: the client's declared type and length of
/// the bytes.
#[derive(Debug)]
struct AuthorizeRequest {
    mime_type: String,
    length: Option<u64>,
}

impl JsonMessage for AuthorizeRequest {
    fn write(&self) -> serde_json::Value {
        JsonWriter::new()
            .str("mimeType", &self.mime_type)
            .opt_u64("length", self.length)
            .finish()
    }

    fn read(o: &JsonObject) -> Result<AuthorizeRequest, String> {
        Ok(AuthorizeRequest {
            mime_type: o.str("mimeType")?,
            length: o.opt_u64("length")?,
        })
    }
}

/// What the front reports after an upload.
#[derive(Debug)]
struct StoredReport {
    cid: String,
    size: u64,
    mime_type: String,
    /// What the grant reserved of the day's upload quota.
    reserved: u64,
}

impl JsonMessage for StoredReport {
    fn write(&self) -> serde_json::Value {
        JsonWriter::new()
            .str("cid", &self.cid)
            .u64("size", self.size)
            .str("mimeType", &self.mime_type)
            .u64("reserved", self.reserved)
            .finish()
    }

    fn read(o: &JsonObject) -> Result<StoredReport, String> {
        let mut e = FirstError::new();
        let v = StoredReport {
            cid: e.keep(o.str("cid")),
            size: e.keep(o.u64("size")),
            mime_type: e.keep(o.str("mimeType")),
            reserved: e.keep(o.opt_u64("reserved")).unwrap_or(0),
        };
        e.finish(v)
    }
}

/// How the front reaches the account: one small request (built by [`internal_request`]),
/// answered in full.
pub trait AccountLink {
    /// Sends `req` to the account.
    fn call(&self, req: HttpRequest) -> LocalBoxFuture<'_, HttpResponse>;
}

/// The internal request for a step: a POST to `path` with the client's headers (its
/// credentials) but not those describing its body (framing, type, encoding), its address, and
/// an optional small JSON body.
pub fn internal_request(
    path: String,
    client: &HttpRequest,
    body: Option<serde_json::Value>,
) -> HttpRequest {
    use crate::auth::verifier::{CLIENT_METHOD_HEADER, CLIENT_PATH_HEADER};
    let mut headers: Vec<(String, String)> = client
        .headers
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "content-length" | "transfer-encoding" | "content-type" | "content-encoding"
            ) && k != CLIENT_METHOD_HEADER
                && k != CLIENT_PATH_HEADER
        })
        .cloned()
        .collect();
    // What a DPoP proof was made for: the client's method and path, not the internal ones.
    headers.push((CLIENT_METHOD_HEADER.into(), client.method.clone()));
    headers.push((CLIENT_PATH_HEADER.into(), client.path.clone()));
    if body.is_some() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    HttpRequest {
        method: "POST".into(),
        path,
        query: String::new(),
        headers,
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        client_ip: client.client_ip,
    }
}

/// What the front moves bytes with: the blob store and the outbound HTTP port.
pub struct EdgePorts<'a> {
    /// Where uploads go: R2 on Workers, the blob directory natively.
    pub blobs: &'a dyn BlobStore,
    /// How proxied calls are sent: `fetch` on Workers, the native client.
    pub http: &'a dyn HttpClient,
    /// Times the steps of long work for the operator's log.
    pub clock: &'a dyn Clock,
    /// The DPoP nonce key ([`crate::oauth::dpop::nonce_key`]): answers to requests that carried
    /// DPoP get a nonce.
    pub nonce_key: [u8; 32],
}

/// Runs offloaded work at the edge: authorize, move the bytes (into the blob store, or to the
/// service a call is proxied to), complete. `head` is the client's request without its body;
/// `body` streams it.
pub async fn run(
    offload: Offload,
    link: &dyn AccountLink,
    ports: &EdgePorts<'_>,
    head: &HttpRequest,
    body: Body,
) -> HttpResponse {
    let limit = crate::routes::Route::Offload(offload).body_limit();
    if limit.is_some_and(|limit| crate::routes::declares_more_than(head, limit)) {
        return crate::routes::with_cors(crate::routes::payload_too_large());
    }
    let mut res = match offload {
        Offload::UploadBlob => upload(link, ports.blobs, head, body).await,
        Offload::Proxy => proxy(link, ports.http, head, body).await,
        Offload::GetBlob => download(link, ports.blobs, head).await,
        Offload::ImportRepo => import(link, ports.clock, head, body).await,
    };
    if crate::oauth::dpop::carries_dpop(head) {
        crate::oauth::dpop::stamp(&mut res, &ports.nonce_key, ports.clock.now_millis());
    }
    res
}

/// The most bytes an imported CAR may have (Cloudflare's own request cap is lower on most
/// plans).
pub const MAX_IMPORT_BYTES: u64 = 512 * 1024 * 1024;

/// The most steps an import's check and swap may take: far more than the largest CAR accepted
/// needs (a block takes at least a few dozen bytes), so only a livelock reaches it.
const MAX_IMPORT_STEPS: usize = 100_000;

/// An import: authorized by the account, read here block by block (each checked against its
/// CID), handed to the account in batches, then swapped in by it. Only one batch is ever held.
async fn import(
    link: &dyn AccountLink,
    clock: &dyn Clock,
    head: &HttpRequest,
    body: Body,
) -> HttpResponse {
    let offload = Offload::ImportRepo;
    let authorized = link
        .call(internal_request(offload.path(Step::Authorize), head, None))
        .await;
    if authorized.status != 200 {
        return authorized;
    }
    let Some(grant) = json_body::<ImportGrant>(authorized.body).await else {
        return error(XrpcError::internal());
    };
    let mut source = BodySource::new(body);
    let mut decoder = crate::repo::car::CarDecoder::default();
    let mut root: Option<Cid> = None;
    let mut batch: Vec<u8> = Vec::new();
    let mut read: u64 = 0;
    let bad = |e: crate::repo::error::RepoError| {
        error(XrpcError::invalid_request(format!("Invalid CAR: {e}")))
    };
    loop {
        let chunk = match crate::storage::ChunkSource::next_chunk(&mut source).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return error(XrpcError::invalid_request(format!("reading the body: {e}"))),
        };
        read += chunk.len() as u64;
        if read > MAX_IMPORT_BYTES {
            return crate::routes::with_cors(crate::routes::payload_too_large());
        }
        decoder.feed(&chunk);
        loop {
            let block = match decoder.next_block() {
                Ok(Some(block)) => block,
                Ok(None) => break,
                Err(e) => return bad(e),
            };
            let car_root = match (root, decoder.roots()) {
                (Some(r), _) => r,
                (None, Some([r])) => *r,
                (None, roots) => {
                    let n = roots.map_or(0, <[Cid]>::len);
                    return error(XrpcError::invalid_request(format!(
                        "Invalid CAR: {n} roots (want 1)"
                    )));
                }
            };
            root = Some(car_root);
            if batch.is_empty() {
                match crate::repo::car::header_bytes(&car_root) {
                    Ok(header) => batch = header,
                    Err(e) => return bad(e),
                }
            }
            batch.extend_from_slice(&crate::repo::car::block_bytes(&block.0, &block.1));
            if batch.len() >= grant.batch_bytes {
                if let Some(refused) = stage(link, head, std::mem::take(&mut batch)).await {
                    return refused;
                }
            }
        }
    }
    if let Err(e) = decoder.finish() {
        return bad(e);
    }
    let root = match (root, decoder.roots()) {
        (Some(r), _) => r,
        (None, Some([r])) => *r,
        _ => {
            return error(XrpcError::invalid_request(
                "Invalid CAR: want exactly one root",
            ))
        }
    };
    if !batch.is_empty() {
        if let Some(refused) = stage(link, head, batch).await {
            return refused;
        }
    }
    // The account checks and swaps the repository in steps, each its own call, so that no
    // call holds it for long; each step's time is logged (an upper bound on its CPU time).
    let mut done = ImportDone {
        root: crate::data::cid_string(&root),
        walk: None,
    };
    let mut finished = false;
    for step in 0..MAX_IMPORT_STEPS {
        let started_us = clock.now_micros();
        let answer = link
            .call(internal_request(
                offload.path(Step::Complete),
                head,
                Some(done.write()),
            ))
            .await;
        if answer.status != 200 {
            return answer;
        }
        let Some(progress) = json_body::<ImportProgress>(answer.body).await else {
            return error(XrpcError::internal());
        };
        crate::log::info(&format!(
            "import step {step}: {} visits so far{}, {} ms",
            progress.visited,
            if progress.done { ", swapped in" } else { "" },
            clock.now_micros().saturating_sub(started_us) / 1000
        ));
        if progress.done {
            finished = true;
            break;
        }
        done.walk = Some(progress.walk);
    }
    if !finished {
        return error(XrpcError::internal_message("the import did not finish"));
    }
    // importRepo has no output.
    crate::routes::with_cors(HttpResponse::bytes(200, "application/json", Vec::new()))
}

/// Sends one batch (a CAR) to the account; its answer when it refused.
async fn stage(link: &dyn AccountLink, head: &HttpRequest, car: Vec<u8>) -> Option<HttpResponse> {
    let mut req = internal_request(Offload::ImportRepo.path(Step::Stage), head, None);
    req.headers
        .push(("content-type".into(), "application/vnd.ipld.car".into()));
    req.body = car;
    let answer = link.call(req).await;
    (answer.status != 200).then_some(answer)
}

/// What the front asks the account to authorize for getBlob: the client's query string.
#[derive(Debug)]
struct BlobAsk {
    query: String,
}

impl JsonMessage for BlobAsk {
    fn write(&self) -> serde_json::Value {
        JsonWriter::new().str("query", &self.query).finish()
    }

    fn read(o: &JsonObject) -> Result<BlobAsk, String> {
        Ok(BlobAsk {
            query: o.str("query")?,
        })
    }
}

/// A blob download: decided by the account, read from the blob store here.
async fn download(
    link: &dyn AccountLink,
    blobs: &dyn BlobStore,
    head: &HttpRequest,
) -> HttpResponse {
    let ask = BlobAsk {
        query: head.query.clone(),
    };
    let authorized = link
        .call(internal_request(
            Offload::GetBlob.path(Step::Authorize),
            head,
            Some(ask.write()),
        ))
        .await;
    if authorized.status != 200 {
        return authorized;
    }
    let Some(blob) = json_body::<BlobToServe>(authorized.body).await else {
        return error(XrpcError::internal());
    };
    let answer = serve_blob(blobs, &blob)
        .await
        .and_then(pds_api::runtime::dispatch::binary_output);
    match answer {
        Ok(res) => crate::routes::with_cors(res.into()),
        Err(e) => error(e),
    }
}

/// A proxied call: checked here, authorized and signed by the account, sent from here.
async fn proxy(
    link: &dyn AccountLink,
    http: &dyn HttpClient,
    head: &HttpRequest,
    body: Body,
) -> HttpResponse {
    let nsid = head.path.strip_prefix("/xrpc/").unwrap_or_default();
    if let Err(e) = crate::proxy::check_request(&head.method, nsid) {
        return error(e);
    }
    // A call whose target is in its body is read first (small JSON, capped); the account is
    // told only the target.
    let (body, service_did) = if crate::proxy::needs_body(nsid) {
        match body.collect(crate::proxy::MAX_PUSH_BODY_BYTES).await {
            Ok(bytes) => {
                let did = crate::proxy::service_did_of(&bytes);
                (Body::Bytes(bytes), did)
            }
            Err(_) => return crate::routes::with_cors(crate::routes::payload_too_large()),
        }
    } else {
        (body, None)
    };
    let ask = ProxyAsk {
        nsid: nsid.to_owned(),
        query: head.query.clone(),
        service_did,
    };
    let authorized = link
        .call(internal_request(
            Offload::Proxy.path(Step::Authorize),
            head,
            Some(ask.write()),
        ))
        .await;
    if authorized.status != 200 {
        return authorized;
    }
    match json_body::<ProxyGrant>(authorized.body).await {
        Some(grant) => crate::routes::with_cors(
            crate::proxy::forward(http, Some(link), &grant, head, body).await,
        ),
        None => error(XrpcError::internal()),
    }
}

/// Carries out a grant an account answer carried ([`crate::proxy::GRANT_HEADER`]) instead of
/// the client's answer; any other answer is returned as it is.
pub async fn carry_out_grant(
    http: &dyn HttpClient,
    answer: HttpResponse,
    head: &HttpRequest,
) -> HttpResponse {
    if !answer
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case(crate::proxy::GRANT_HEADER))
    {
        return answer;
    }
    // The account stamped its answer for a DPoP request; the answer that replaces it keeps
    // the nonce.
    let nonce = answer
        .headers
        .iter()
        .find(|(k, _)| k == crate::oauth::dpop::NONCE_HEADER)
        .cloned();
    let mut res = match json_body::<ProxyGrant>(answer.body).await {
        Some(grant) => crate::routes::with_cors(
            crate::proxy::forward(http, None, &grant, head, Body::empty()).await,
        ),
        None => error(XrpcError::internal()),
    };
    res.headers.extend(nonce);
    res
}

/// An upload: authorized by the account, stored here, recorded by the account.
async fn upload(
    link: &dyn AccountLink,
    blobs: &dyn BlobStore,
    head: &HttpRequest,
    body: Body,
) -> HttpResponse {
    let offload = Offload::UploadBlob;
    // The client's declared type goes along: the headers sent drop `content-type` (the
    // internal request's own body is JSON), and permissions may depend on it.
    let declared = AuthorizeRequest {
        mime_type: head.header("content-type").unwrap_or("*/*").to_owned(),
        length: head
            .header("content-length")
            .and_then(|v| v.trim().parse().ok()),
    };
    let authorized = link
        .call(internal_request(
            offload.path(Step::Authorize),
            head,
            Some(declared.write()),
        ))
        .await;
    if authorized.status != 200 {
        return authorized;
    }
    let grant: UploadGrant = match json_body(authorized.body).await {
        Some(grant) => grant,
        None => return error(XrpcError::internal()),
    };
    // A declared length over the grant is refused before a byte is stored.
    if crate::routes::declares_more_than(head, grant.max_bytes) {
        return error(upload_error(
            crate::storage::BlobError::TooLarge {
                limit: grant.max_bytes,
            },
            &grant,
        ));
    }
    let mut source = BodySource::new(body).declaring(declared.length);
    let stored = match blobs.put(&mut source, grant.max_bytes).await {
        Ok(stored) => stored,
        Err(e) => return error(upload_error(e, &grant)),
    };
    let report = StoredReport {
        cid: crate::data::cid_string(&stored.cid),
        size: stored.size,
        mime_type: upload_mime_type(source.head(), head.header("content-type")),
        reserved: grant.reserved,
    };
    let report = report.write();
    link.call(internal_request(
        offload.path(Step::Complete),
        head,
        Some(report),
    ))
    .await
}

/// Serves an internal request in the account, under the effective configuration: `req.path`
/// names the work and the step.
pub async fn serve_internal(config: &Config, account: &Account, req: &HttpRequest) -> HttpResponse {
    let Some((offload, step)) = Offload::parse_path(&req.path) else {
        return crate::routes::not_found();
    };
    if step == Step::Authorize {
        account.precheck_dpop(req).await;
    }
    let result = match (offload, step) {
        (Offload::UploadBlob, Step::Authorize) => {
            authorize_upload(config, account, req).map(|grant| grant.write())
        }
        (Offload::UploadBlob, Step::Complete) => complete_upload(config, account, &req.body).await,
        (Offload::Proxy, Step::Authorize) => authorize_proxy(config, account, req)
            .await
            .map(|grant| grant.write()),
        (Offload::Proxy, Step::Complete) => local_writes(config, account, &req.body).await,
        (Offload::GetBlob, Step::Authorize) => {
            authorize_download(config, account, req).map(|blob| blob.write())
        }
        // A download is complete once its bytes are sent.
        (Offload::GetBlob, Step::Complete) => return crate::routes::not_found(),
        (Offload::ImportRepo, Step::Authorize) => {
            importing(config, account, req).map(|api_grant| api_grant.write())
        }
        (Offload::ImportRepo, Step::Stage) => {
            let api = Api { config, account };
            api.authenticate(IMPORT_REPO, &Presented::of(req).continuing())
                .and_then(|_| api.stage_import(&req.body))
                .map(|()| serde_json::Value::Null)
        }
        (Offload::ImportRepo, Step::Complete) => {
            let api = Api { config, account };
            api.authenticate(IMPORT_REPO, &Presented::of(req).continuing())
                .and_then(|_| read_message::<ImportDone>(&req.body).map_err(internal))
                .and_then(|done| api.import_step(&done))
                .map(|progress| progress.write())
        }
        (_, Step::Stage) => return crate::routes::not_found(),
    };
    match result {
        Ok(value) => crate::routes::with_cors(HttpResponse::json(200, &value)),
        Err(e) => error(e),
    }
}

/// The checks importRepo gets before any byte is read: a full session, a deactivated account.
fn importing(
    config: &Config,
    account: &Account,
    req: &HttpRequest,
) -> Result<ImportGrant, XrpcError> {
    let api = Api { config, account };
    api.authenticate(IMPORT_REPO, &Presented::of(req))?;
    api.import_grant()
}

/// The checks uploadBlob gets before any byte is stored: the method's auth requirement, the
/// permission to upload the declared type, then the account's state.
fn authorize_upload(
    config: &Config,
    account: &Account,
    req: &HttpRequest,
) -> Result<UploadGrant, XrpcError> {
    let api = Api { config, account };
    let caller = api.authenticate(UPLOAD_BLOB, &Presented::of(req))?;
    let declared: AuthorizeRequest = read_message(&req.body).map_err(internal)?;
    caller.require(Permission::BlobUpload {
        mime: &declared.mime_type,
    })?;
    api.upload_grant(declared.length)
}

/// The account's decision on a getBlob call: the caller (credentials are optional, and let the
/// owner read a deactivated repository's blobs), the client's query and `Range`, then
/// [`Api::blob_to_serve`].
fn authorize_download(
    config: &Config,
    account: &Account,
    req: &HttpRequest,
) -> Result<BlobToServe, XrpcError> {
    let api = Api { config, account };
    let caller = api.authenticate(get_blob::NSID, &Presented::of(req))?;
    let ask: BlobAsk = read_message(&req.body).map_err(internal)?;
    let params: get_blob::Params = pds_api::runtime::dispatch::params(&get_blob::META, &ask.query)?;
    let cx = crate::api::RequestContext {
        range: req.header("range").map(str::to_owned),
        caller,
        authorization: req.header("authorization").map(str::to_owned),
        subscribers: None,
    };
    api.blob_to_serve(&cx, &params)
}

/// The account's decision on a proxied call (see [`crate::proxy::authorize`]).
async fn authorize_proxy(
    config: &Config,
    account: &Account,
    req: &HttpRequest,
) -> Result<ProxyGrant, XrpcError> {
    let ask: ProxyAsk = read_message(&req.body).map_err(internal)?;
    crate::proxy::authorize(
        config,
        account,
        &ask,
        &Presented::of(req),
        req.header(crate::proxy::PROXY_HEADER),
    )
    .await
}

/// The account's writes a proxied answer is patched with (see [`crate::read_after_write`]).
async fn local_writes(
    config: &Config,
    account: &Account,
    body: &[u8],
) -> Result<serde_json::Value, XrpcError> {
    let ask: crate::read_after_write::LocalWritesAsk = read_message(body).map_err(internal)?;
    let writes = crate::read_after_write::local_writes(config, account, &ask).await?;
    Ok(writes.write())
}

/// Records a blob the front stored and answers uploadBlob's output.
async fn complete_upload(
    config: &Config,
    account: &Account,
    body: &[u8],
) -> Result<serde_json::Value, XrpcError> {
    let report: StoredReport = read_message(body).map_err(internal)?;
    let cid = crate::data::parse_cid(&report.cid).map_err(internal)?;
    let api = Api { config, account };
    let output =
        record_uploaded_blob(&api, cid, report.size, report.mime_type, report.reserved).await?;
    serde_json::to_value(&output).map_err(internal)
}

async fn json_body<T: JsonMessage>(body: Body) -> Option<T> {
    let bytes = body.collect(64 * 1024).await.ok()?;
    read_message(&bytes).ok()
}

fn error(e: XrpcError) -> HttpResponse {
    crate::routes::with_cors(e.into_response().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_paths_round_trip() {
        for o in Offload::ALL {
            for s in Step::ALL {
                let path = o.path(s);
                assert!(path.starts_with(crate::routes::INTERNAL_PREFIX), "{path}");
                assert_eq!(Offload::parse_path(&path), Some((o, s)));
            }
        }
        assert_eq!(Offload::of("POST", UPLOAD_BLOB), Some(Offload::UploadBlob));
        assert_eq!(
            Offload::of("GET", "app.bsky.actor.getProfile"),
            Some(Offload::Proxy)
        );
        assert_eq!(
            Offload::of("POST", "com.example.unknown.method"),
            Some(Offload::Proxy)
        );
        // Served here, or not an NSID: the dispatcher's.
        assert_eq!(Offload::of("GET", "com.atproto.repo.getRecord"), None);
        assert_eq!(Offload::of("GET", "app.bsky.actor.getPreferences"), None);
        assert_eq!(Offload::of("GET", "nonsense"), None);
        for path in [
            "/_internal/offload/uploadBlob/other",
            "/_internal/offload/uploadBlob/authorize/more",
            "/_internal/offload/other/authorize",
            "/xrpc/offload/uploadBlob/authorize",
        ] {
            assert_eq!(Offload::parse_path(path), None, "{path}");
        }
        // uploadBlob is a procedure: a GET is the dispatcher's to refuse.
        assert_eq!(Offload::of("GET", "com.atproto.repo.uploadBlob"), None);
    }
}
