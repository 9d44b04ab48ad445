//! uploadBlob on Workers: the bytes go from the Worker straight to R2, never through the Durable
//! Object (a large body through the DO stalls it and drops firehose sockets). The DO is asked
//! twice, each time with a bodiless or tiny internal request: first whether the caller may upload
//! (the session store and account status live in its SQL), then to record the stored blob's
//! metadata. Sniffing, metadata and the output are the same code the native handler runs.

use cid::Cid;
use pds_api::runtime::xrpc::{Body, ByteStream, HttpMethod, XrpcError};
use worker::{Env, Method, Request, RequestInit, Response, Result, Stub};

use super::r2::R2BlobStore;
use crate::account::Account;
use crate::api::repo::{record_uploaded_blob, upload_error, upload_mime_type, BodySource};
use crate::api::Api;
use crate::auth::{Auth, SqlAuthStore};
use crate::config::{Config, ConfigError};
use crate::http::{HttpRequest, HttpResponse};
use crate::storage::BlobStore;

/// The uploadBlob method this module serves.
const UPLOAD_NSID: &str = "com.atproto.repo.uploadBlob";
/// Paths under this prefix are the Worker's requests to the DO; the outside world gets 404.
pub const INTERNAL_PREFIX: &str = "/_internal/";
const AUTHORIZE_PATH: &str = "/_internal/upload/authorize";
const RECORD_PATH: &str = "/_internal/upload/record";

/// Whether the Worker serves this request itself with [`upload`].
pub fn is_upload(req: &Request) -> bool {
    req.method() == Method::Post && req.path() == format!("/xrpc/{UPLOAD_NSID}")
}

/// Serves uploadBlob in the Worker: authorize through the DO, stream the body into R2, have the
/// DO record the metadata and answer the lexicon output.
pub async fn upload(mut req: Request, env: &Env, stub: &Stub) -> Result<Response> {
    let Ok(bucket) = env.bucket("BLOBS") else {
        // Without the binding the DO path reports the misconfiguration.
        return stub.fetch_with_request(req).await;
    };
    // Only the headers go to the DO; the body stays unread until the caller is accepted.
    let authorized = stub
        .fetch_with_request(internal_request(AUTHORIZE_PATH, &req, None)?)
        .await?;
    if authorized.status_code() != 200 {
        return Ok(authorized);
    }
    let body = match req.stream() {
        Ok(stream) => {
            use futures_util::StreamExt;
            let stream: ByteStream = Box::pin(
                stream.map(|chunk| chunk.map_err(|e| XrpcError::invalid_request(e.to_string()))),
            );
            Body::Stream(stream)
        }
        // A request without a body is an empty blob, as on the DO path.
        Err(_) => Body::Bytes(Vec::new()),
    };
    // The DO already refused a misconfigured deployment, so the configuration reads here.
    let limit = super::read_config(env)
        .map(|c| c.blob_upload_limit)
        .unwrap_or(crate::config::DEFAULT_BLOB_UPLOAD_LIMIT);
    let mut source = BodySource::new(body);
    let stored = match R2BlobStore::new(bucket).put(&mut source, limit).await {
        Ok(stored) => stored,
        Err(e) => return super::to_worker_response(error_response(upload_error(e, limit))),
    };
    let content_type = req.headers().get("content-type")?;
    let record = serde_json::json!({
        "cid": stored.cid.to_string(),
        "size": stored.size,
        "mimeType": upload_mime_type(source.head(), content_type.as_deref()),
    });
    stub.fetch_with_request(internal_request(RECORD_PATH, &req, Some(record))?)
        .await
}

/// A request from the Worker to the DO on `path`, carrying `req`'s headers and a small JSON body.
fn internal_request(path: &str, req: &Request, body: Option<serde_json::Value>) -> Result<Request> {
    let url = req.url()?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post);
    let headers = worker::Headers::new();
    for (name, value) in req.headers().entries() {
        // The original body's framing does not describe the internal one.
        if !matches!(
            name.to_ascii_lowercase().as_str(),
            "content-length" | "transfer-encoding" | "content-type"
        ) {
            headers.append(&name, &value)?;
        }
    }
    if let Some(body) = body {
        headers.set("content-type", "application/json")?;
        init.with_body(Some(body.to_string().into()));
    }
    init.with_headers(headers);
    Request::new_with_init(
        &format!("{}{path}", url.origin().ascii_serialization()),
        &init,
    )
}

/// Answers the Worker's internal requests inside the DO (`req.path` under [`INTERNAL_PREFIX`]).
pub async fn internal(
    config: &std::result::Result<Config, ConfigError>,
    account: &Account,
    req: HttpRequest,
) -> HttpResponse {
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            return error_response(XrpcError::new(
                500,
                "InternalServerError",
                format!("The server is misconfigured: {e}"),
            ))
        }
    };
    if let Err(e) = account.check_schema() {
        return error_response(e);
    }
    let result = match req.path.as_str() {
        AUTHORIZE_PATH => authorize(config, account, &req).map(|()| serde_json::json!({})),
        RECORD_PATH => record(account, &req.body),
        _ => return crate::routes::not_found(),
    };
    match result {
        Ok(value) => crate::routes::with_cors(HttpResponse::json(200, &value)),
        Err(e) => error_response(e),
    }
}

/// The checks uploadBlob gets on the DO path, before any byte is stored: the generated auth
/// requirement against the session store, then the account's status.
fn authorize(
    config: &Config,
    account: &Account,
    req: &HttpRequest,
) -> std::result::Result<(), XrpcError> {
    let meta = pds_api::methods::lookup(UPLOAD_NSID, HttpMethod::Post)?;
    let store = SqlAuthStore::new(account.sql.as_ref(), config.did.as_str());
    let auth = Auth::new(config, &store, account.clock.as_ref());
    let requirement = crate::auth::policy::requirement(meta.nsid);
    auth.authenticate(requirement, req.header("authorization"), meta.nsid)?;
    Api { config, account }.check_upload_allowed()
}

/// Records a blob the Worker stored and answers uploadBlob's output.
fn record(account: &Account, body: &[u8]) -> std::result::Result<serde_json::Value, XrpcError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Stored {
        cid: String,
        size: u64,
        mime_type: String,
    }
    let bad = |e: &dyn std::fmt::Display| XrpcError::new(500, "InternalServerError", e.to_string());
    let stored: Stored = serde_json::from_slice(body).map_err(|e| bad(&e))?;
    let cid: Cid = stored.cid.parse().map_err(|e| bad(&e))?;
    let output = record_uploaded_blob(account, cid, stored.size, stored.mime_type)?;
    serde_json::to_value(&output).map_err(|e| bad(&e))
}

fn error_response(e: XrpcError) -> HttpResponse {
    crate::routes::with_cors(e.into_response().into())
}
