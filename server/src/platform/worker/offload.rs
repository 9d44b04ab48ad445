//! Offloaded work on Workers ([`crate::offload`]): the Worker streams the bytes (into R2 for
//! uploads) and reaches the Durable Object only for the two small steps, through its stub.

use futures_util::future::LocalBoxFuture;
use pds_api::runtime::xrpc::{ByteStream, XrpcError};
use worker::{Env, Request, Response, Result, Stub};

use super::r2::R2BlobStore;
use crate::config::{Config, ConfigError};
use crate::http::{Body, HttpRequest, HttpResponse};
use crate::offload::{AccountLink, Offload};
use crate::storage::BlobStore;

/// Runs `work` for `req` in the Worker.
pub async fn run(
    work: Offload,
    mut req: Request,
    url: &str,
    env: &Env,
    config: &std::result::Result<Config, ConfigError>,
) -> Result<Response> {
    if let Err(e) = config {
        return super::to_worker_response(crate::routes::with_cors(crate::routes::config_error(e)));
    }
    let head = super::request_head(&req, super::method_name(&req.method()), url);
    let link = DoLink {
        stub: super::account_stub(env)?,
        origin: crate::http::url_origin(url).unwrap_or_default().to_owned(),
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
    let http = super::http_client::FetchHttpClient::default();
    let nonce_key = match config {
        Ok(c) => crate::oauth::dpop::nonce_key(&c.jwt_secret),
        Err(_) => [0; 32],
    };
    let ports = crate::offload::EdgePorts {
        blobs: blobs.as_ref(),
        http: &http,
        clock: &super::WorkerClock,
        nonce_key,
    };
    let response = crate::offload::run(work, &link, &ports, &head, body).await;
    super::to_worker_response(crate::lifecycle::conceal_internal_error(response))
}

/// The Worker's way to the account: internal requests to the Durable Object.
struct DoLink {
    stub: Stub,
    /// The client request's origin: the internal URL only needs to parse.
    origin: String,
}

impl AccountLink for DoLink {
    fn call(&self, req: HttpRequest) -> LocalBoxFuture<'_, HttpResponse> {
        Box::pin(async move {
            let path = req.path.clone();
            match self.send(req).await {
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
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse> {
        let headers = worker::Headers::new();
        for (name, value) in &req.headers {
            headers.append(name, value)?;
        }
        let body = (!req.body.is_empty())
            .then(|| worker::js_sys::Uint8Array::from(req.body.as_slice()).into());
        let request = super::js::request(
            &format!("{}{}", self.origin, req.path),
            "POST",
            &headers,
            body.as_ref(),
            true,
        )?;
        let mut response = self.stub.fetch_with_request(request).await?;
        Ok(HttpResponse {
            status: response.status_code(),
            headers: response.headers().entries().collect(),
            body: Body::Bytes(response.bytes().await?),
        })
    }
}
