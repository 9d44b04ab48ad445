//! The native shell: the same core behind a small HTTP/1.1 server, with its storage ports (a
//! SQLite file and a blob directory), for tests and for self-hosting off Cloudflare. Runs on one
//! thread: handler futures are not `Send`, like Durable Object futures.

pub mod blob_dir;
pub mod sqlite;

pub use blob_dir::DirBlobStore;
pub use sqlite::NativeSql;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Limited};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config::{Config, ConfigError};
use crate::http::{HttpRequest, HttpResponse};

/// Largest request body the native shell reads, in bytes.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Serves the PDS on `listener` until the future is dropped.
pub async fn serve(
    listener: TcpListener,
    config: Result<Config, ConfigError>,
) -> std::io::Result<()> {
    let config = Rc::new(config);
    loop {
        let (stream, _) = listener.accept().await?;
        let config = config.clone();
        tokio::task::spawn_local(async move {
            let service = service_fn(move |req| {
                let config = config.clone();
                async move { Ok::<_, Infallible>(to_hyper(answer(&config, req).await)) }
            });
            // A broken connection concerns only its client.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds `addr` and serves on a dedicated thread with its own runtime; returns the bound
/// address. For tests and tools that need a server in the background.
pub fn spawn(addr: SocketAddr, config: Result<Config, ConfigError>) -> std::io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    std::thread::Builder::new()
        .name("pds-native".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(_) => return,
            };
            let local_set = tokio::task::LocalSet::new();
            local_set.block_on(&runtime, async move {
                if let Ok(listener) = TcpListener::from_std(std_listener) {
                    let _ = serve(listener, config).await;
                }
            });
        })?;
    Ok(local)
}

async fn answer(
    config: &Result<Config, ConfigError>,
    req: hyper::Request<Incoming>,
) -> HttpResponse {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => return crate::routes::payload_too_large(),
    };
    let headers = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
        .collect();
    let request = HttpRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers,
        body,
    };
    crate::routes::handle(config, request).await
}

/// A response body for hyper: bytes in memory, or the core's stream passed through chunk by chunk.
enum NativeBody {
    Full(Option<Bytes>),
    Stream(crate::http::Body),
}

impl hyper::body::Body for NativeBody {
    type Data = Bytes;
    type Error = pds_api::runtime::xrpc::XrpcError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            NativeBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            NativeBody::Stream(crate::http::Body::Stream(stream)) => {
                match stream.as_mut().poll_next(cx) {
                    Poll::Ready(Some(chunk)) => {
                        Poll::Ready(Some(chunk.map(|c| Frame::data(Bytes::from(c)))))
                    }
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            }
            NativeBody::Stream(crate::http::Body::Bytes(bytes)) => {
                let bytes = std::mem::take(bytes);
                Poll::Ready((!bytes.is_empty()).then(|| Ok(Frame::data(Bytes::from(bytes)))))
            }
        }
    }
}

fn to_hyper(res: HttpResponse) -> hyper::Response<NativeBody> {
    let body = match res.body {
        crate::http::Body::Bytes(bytes) => NativeBody::Full(Some(Bytes::from(bytes))),
        stream => NativeBody::Stream(stream),
    };
    let mut out = hyper::Response::new(body);
    *out.status_mut() =
        hyper::StatusCode::from_u16(res.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in res.headers {
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(&value),
        ) {
            out.headers_mut().append(n, v);
        }
    }
    out
}
