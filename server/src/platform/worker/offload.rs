//! Offloaded work on Workers ([`crate::offload`]): the Worker streams the bytes (into R2 for
//! uploads) and reaches the Durable Object only for the two small steps, through its stub.

use futures_util::future::LocalBoxFuture;
use pds_api::runtime::xrpc::{ByteStream, XrpcError};
use worker::{Env, Method, Request, RequestInit, Response, Result, Stub};

use super::r2::R2BlobStore;
use crate::config::{Config, ConfigError};
use crate::http::{Body, HttpResponse};
use crate::offload::{AccountLink, Offload};
use crate::storage::BlobStore;

/// Runs `work` for `req` in the Worker.
pub async fn run(
    work: Offload,
    mut req: Request,
    env: &Env,
    config: &std::result::Result<Config, ConfigError>,
) -> Result<Response> {
    if let Err(e) = config {
        return super::to_worker_response(crate::routes::with_cors(crate::routes::config_error(e)));
    }
    let head = super::request_head(&req, super::method_name(&req.method()), req.path())?;
    let link = DoLink {
        stub: super::account_stub(env)?,
        origin: req.url()?.origin().ascii_serialization(),
    };
    let blobs: Box<dyn BlobStore> = match env.bucket("BLOBS") {
        Ok(bucket) => Box::new(R2BlobStore::new(bucket)),
        Err(_) => Box::new(super::MissingBlobStore),
    };
    let body = match req.stream() {
        Ok(stream) => {
            use futures_util::StreamExt;
            let stream: ByteStream = Box::pin(
                stream.map(|chunk| chunk.map_err(|e| XrpcError::invalid_request(e.to_string()))),
            );
            Body::Stream(stream)
        }
        // A request without a body is an empty one.
        Err(_) => Body::Bytes(Vec::new()),
    };
    let response = crate::offload::run(work, &link, blobs.as_ref(), &head, body).await;
    super::to_worker_response(crate::lifecycle::conceal_internal_error(response))
}

/// The Worker's way to the account: internal requests to the Durable Object.
struct DoLink {
    stub: Stub,
    /// The client request's origin: the internal URL only needs to parse.
    origin: String,
}

impl AccountLink for DoLink {
    fn call<'a>(
        &'a self,
        path: String,
        headers: &'a [(String, String)],
        body: Option<serde_json::Value>,
    ) -> LocalBoxFuture<'a, HttpResponse> {
        Box::pin(async move {
            match self.send(&path, headers, body).await {
                Ok(res) => res,
                Err(e) => {
                    crate::log::error(&format!("the account object did not answer {path}: {e}"));
                    crate::routes::with_cors(XrpcError::internal().into_response().into())
                }
            }
        })
    }
}

impl DoLink {
    async fn send(
        &self,
        path: &str,
        headers: &[(String, String)],
        body: Option<serde_json::Value>,
    ) -> Result<HttpResponse> {
        let mut init = RequestInit::new();
        init.with_method(Method::Post);
        let out_headers = worker::Headers::new();
        for (name, value) in headers {
            // The client body's framing does not describe the internal one.
            if !matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "content-type" | "content-encoding"
            ) {
                out_headers.append(name, value)?;
            }
        }
        if let Some(body) = body {
            out_headers.set("content-type", "application/json")?;
            init.with_body(Some(body.to_string().into()));
        }
        init.with_headers(out_headers);
        let request = Request::new_with_init(&format!("{}{path}", self.origin), &init)?;
        let mut response = self.stub.fetch_with_request(request).await?;
        Ok(HttpResponse {
            status: response.status_code(),
            headers: response.headers().entries().collect(),
            body: Body::Bytes(response.bytes().await?),
        })
    }
}
