//! Byte-heavy work at the edge, authorized by the account: the one mechanism by which large or
//! slow byte streams (blob uploads now; proxied calls and repository imports next) stay out of
//! the Durable Object, which is single-threaded and has 128 MB.
//!
//! The rule: a route placed [`crate::routes::Placement::Offload`] runs in the stateless front
//! in three steps, the same on both shells:
//! 1. **authorize**: the front sends the account the request's headers only (no body) on an
//!    internal path; the account authenticates the caller, checks the account's state, and
//!    answers a [`Grant`] (what the front may do, e.g. how many bytes it may store) or the
//!    XRPC error the client gets;
//! 2. **move the bytes**: the front streams the body where it goes (R2 on Workers, the blob
//!    directory natively), enforcing the grant as it counts;
//! 3. **complete**: the front sends the account a small JSON report of what it did, and the
//!    account records it and answers the client's output.
//!
//! The front reaches the account through an [`AccountLink`]: a Durable Object stub on Workers,
//! a direct call natively. Internal paths are never reachable from outside (the edge answers
//! them 404).

use cid::Cid;
use futures_util::future::LocalBoxFuture;
use pds_api::runtime::xrpc::XrpcError;
use serde::{Deserialize, Serialize};

use crate::account::Account;
use crate::api::repo::{record_uploaded_blob, upload_error, upload_mime_type, BodySource};
use crate::api::{internal, Api};
use crate::auth::Permission;
use crate::config::Config;
use crate::http::{Body, HttpRequest, HttpResponse};
use crate::storage::BlobStore;

/// A kind of offloaded work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// `com.atproto.repo.uploadBlob`: the body goes to the blob store.
    UploadBlob,
}

/// A step the account serves on an internal path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// May the caller do this? Answers a [`Grant`].
    Authorize,
    /// Record what the front did; answers the client's output.
    Complete,
}

impl Offload {
    const ALL: [Offload; 1] = [Offload::UploadBlob];

    /// The offloaded work for an XRPC call, if it is one.
    pub fn of(method: &str, nsid: &str) -> Option<Offload> {
        Offload::ALL
            .into_iter()
            .find(|o| o.nsid() == nsid && o.method() == method)
    }

    /// The XRPC method it serves.
    pub fn nsid(self) -> &'static str {
        match self {
            Offload::UploadBlob => "com.atproto.repo.uploadBlob",
        }
    }

    fn method(self) -> &'static str {
        match self {
            Offload::UploadBlob => "POST",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Offload::UploadBlob => "uploadBlob",
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
    const ALL: [Step; 2] = [Step::Authorize, Step::Complete];

    fn name(self) -> &'static str {
        match self {
            Step::Authorize => "authorize",
            Step::Complete => "complete",
        }
    }
}

/// What the account allows the front to do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// The most bytes the front may store.
    pub max_bytes: u64,
}

/// What the front asks the account to authorize: the client's declared type of the bytes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizeRequest {
    mime_type: String,
}

/// What the front reports after an upload.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredReport {
    cid: String,
    size: u64,
    mime_type: String,
}

/// How the front reaches the account: one small request (built by [`internal_request`]),
/// answered in full.
pub trait AccountLink {
    /// Sends `req` to the account.
    fn call(&self, req: HttpRequest) -> LocalBoxFuture<'_, HttpResponse>;
}

/// The internal request for a step: a POST to `path` with the client's headers (its
/// credentials) but not those describing its body (framing, type, encoding), and an optional
/// small JSON body.
pub fn internal_request(
    path: String,
    client_headers: &[(String, String)],
    body: Option<serde_json::Value>,
) -> HttpRequest {
    let mut headers: Vec<(String, String)> = client_headers
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "content-length" | "transfer-encoding" | "content-type" | "content-encoding"
            )
        })
        .cloned()
        .collect();
    if body.is_some() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    HttpRequest {
        method: "POST".into(),
        path,
        query: String::new(),
        headers,
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    }
}

/// Runs offloaded work at the edge: authorize, move the bytes into `blobs`, complete. `head`
/// is the client's request without its body; `body` streams it.
pub async fn run(
    offload: Offload,
    link: &dyn AccountLink,
    blobs: &dyn BlobStore,
    head: &HttpRequest,
    body: Body,
) -> HttpResponse {
    // The client's declared type goes along: the headers sent drop `content-type` (the
    // internal request's own body is JSON), and permissions may depend on it.
    let declared = AuthorizeRequest {
        mime_type: head.header("content-type").unwrap_or("*/*").to_owned(),
    };
    let authorized = link
        .call(internal_request(
            offload.path(Step::Authorize),
            &head.headers,
            serde_json::to_value(&declared).ok(),
        ))
        .await;
    if authorized.status != 200 {
        return authorized;
    }
    let grant: Grant = match json_body(authorized.body).await {
        Some(grant) => grant,
        None => return error(XrpcError::internal()),
    };
    match offload {
        Offload::UploadBlob => {
            let mut source = BodySource::new(body);
            let stored = match blobs.put(&mut source, grant.max_bytes).await {
                Ok(stored) => stored,
                Err(e) => return error(upload_error(e, grant.max_bytes)),
            };
            let report = StoredReport {
                cid: stored.cid.to_string(),
                size: stored.size,
                mime_type: upload_mime_type(source.head(), head.header("content-type")),
            };
            let report = match serde_json::to_value(&report) {
                Ok(v) => v,
                Err(_) => return error(XrpcError::internal()),
            };
            link.call(internal_request(
                offload.path(Step::Complete),
                &head.headers,
                Some(report),
            ))
            .await
        }
    }
}

/// Serves an internal request in the account, under the effective configuration: `req.path`
/// names the work and the step.
pub async fn serve_internal(config: &Config, account: &Account, req: &HttpRequest) -> HttpResponse {
    let Some((offload, step)) = Offload::parse_path(&req.path) else {
        return crate::routes::not_found();
    };
    let result = match (offload, step) {
        (Offload::UploadBlob, Step::Authorize) => authorize_upload(config, account, req)
            .and_then(|grant| serde_json::to_value(grant).map_err(internal)),
        (Offload::UploadBlob, Step::Complete) => complete_upload(account, &req.body),
    };
    match result {
        Ok(value) => crate::routes::with_cors(HttpResponse::json(200, &value)),
        Err(e) => error(e),
    }
}

/// The checks uploadBlob gets before any byte is stored: the method's auth requirement, the
/// permission to upload the declared type, then the account's state.
fn authorize_upload(
    config: &Config,
    account: &Account,
    req: &HttpRequest,
) -> Result<Grant, XrpcError> {
    let api = Api { config, account };
    let caller = api.authenticate(Offload::UploadBlob.nsid(), req.header("authorization"))?;
    let declared: AuthorizeRequest = serde_json::from_slice(&req.body).map_err(internal)?;
    caller.require(Permission::BlobUpload {
        mime: &declared.mime_type,
    })?;
    api.check_upload_allowed()?;
    Ok(Grant {
        max_bytes: config.blob_upload_limit,
    })
}

/// Records a blob the front stored and answers uploadBlob's output.
fn complete_upload(account: &Account, body: &[u8]) -> Result<serde_json::Value, XrpcError> {
    let report: StoredReport = serde_json::from_slice(body).map_err(internal)?;
    let cid: Cid = report.cid.parse().map_err(internal)?;
    let output = record_uploaded_blob(account, cid, report.size, report.mime_type)?;
    serde_json::to_value(&output).map_err(internal)
}

async fn json_body<T: serde::de::DeserializeOwned>(body: Body) -> Option<T> {
    let bytes = body.collect(64 * 1024).await.ok()?;
    serde_json::from_slice(&bytes).ok()
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
            assert_eq!(Offload::of("POST", o.nsid()), Some(o));
        }
        for path in [
            "/_internal/offload/uploadBlob/other",
            "/_internal/offload/uploadBlob/authorize/more",
            "/_internal/offload/other/authorize",
            "/xrpc/offload/uploadBlob/authorize",
        ] {
            assert_eq!(Offload::parse_path(path), None, "{path}");
        }
        assert_eq!(Offload::of("GET", "com.atproto.repo.uploadBlob"), None);
    }
}
