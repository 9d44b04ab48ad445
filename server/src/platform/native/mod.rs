//! The native shell: the same core behind a small HTTP/1.1 server, with its storage ports (a
//! SQLite file and a blob directory), for tests and for self-hosting off Cloudflare. Runs on one
//! thread: handler futures are not `Send`, like Durable Object futures.

pub mod blob_dir;
mod connections;
pub mod firehose;
pub mod http_client;
pub mod maintenance;
pub mod relay;
pub mod sqlite;
pub mod verify;

pub use blob_dir::DirBlobStore;
pub use relay::NativeRelayClient;
pub use sqlite::NativeSql;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::account::Account;
use crate::clock::SystemClock;
use crate::config::{Config, ConfigError};
use crate::http::{Body, HttpRequest, HttpResponse};
use crate::offload::{AccountLink, Offload};
use crate::routes::{Placement, Route};

/// Opens the account stored in `dir`: `pds.sqlite` and `blobs/` (both created if missing).
pub fn open_account(dir: &Path) -> std::io::Result<Account> {
    let io = |e: String| std::io::Error::other(e);
    std::fs::create_dir_all(dir)?;
    let sql = NativeSql::open(&dir.join("pds.sqlite")).map_err(|e| io(e.to_string()))?;
    let blobs = DirBlobStore::open(&dir.join("blobs")).map_err(|e| io(e.to_string()))?;
    // Uploads interrupted by a previous crash are never referenced; drop them.
    blobs
        .remove_stale_uploads()
        .map_err(|e| io(e.to_string()))?;
    let http = http_client::NativeHttpClient::new().map_err(|e| io(e.to_string()))?;
    Ok(
        Account::open(Box::new(sql), Box::new(blobs), Box::new(SystemClock))
            .with_http(std::rc::Rc::new(http))
            .with_fast_verify(std::rc::Rc::new(verify::NativeVerify)),
    )
}

/// Connections served at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections one client address may hold at once, so that one client cannot take them all.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 64;
/// How long a client may take to send a request's headers, counted from when the server is
/// ready for them (so also how long a kept-alive connection may sit idle).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may go without a byte read or written while a request is under way (a
/// stalled body, a peer that stopped reading its answer) before it is closed.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The pause after a failed accept (out of file descriptors, typically), before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serves the PDS on `listener` until the future is dropped. A failed accept (out of file
/// descriptors) never ends it: it is logged and retried.
pub async fn serve(
    listener: TcpListener,
    config: Result<Config, ConfigError>,
    account: Account,
) -> std::io::Result<()> {
    let shared = Rc::new(Shared {
        config,
        account: Rc::new(account),
        firehose: Rc::new(firehose::NativeFirehose::default()),
        wakeup: Rc::new(maintenance::Wakeup::default()),
        expensive_reads: Default::default(),
    });
    let effective =
        (shared.config.as_ref().ok()).and_then(|c| shared.account.effective_config(c).ok());
    crate::lifecycle::after_request(effective.as_deref(), &shared.account, shared.as_ref()).await;
    tokio::task::spawn_local(maintenance::run_forever(shared.clone()));
    let connections = Rc::new(connections::Connections::default());
    let mut logged_accept_error = false;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Logged once per run of failures: they come ten times a second.
                if !logged_accept_error {
                    crate::log::error(&format!("native server: accept failed: {e}"));
                    logged_accept_error = true;
                }
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        logged_accept_error = false;
        // Over a cap the connection is closed at once: dropping the stream closes it.
        let Some(slot) = connections.admit(peer.ip()) else {
            continue;
        };
        let shared = shared.clone();
        tokio::task::spawn_local(async move {
            let _slot = slot;
            let (stream, progress) = connections::Watched::new(stream);
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(shared.respond(req, peer.ip()).await) }
            });
            let connection = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            // A broken or stalled connection concerns only its client.
            connections::until_stalled(connection, &progress, STALL_TIMEOUT).await;
        });
    }
}

/// What every connection of the server shares.
pub(crate) struct Shared {
    pub(crate) config: Result<Config, ConfigError>,
    pub(crate) account: Rc<Account>,
    firehose: Rc<firehose::NativeFirehose>,
    /// When background maintenance runs next (the native Durable Object alarm).
    pub(crate) wakeup: Rc<maintenance::Wakeup>,
    /// Expensive reads per client address, as Cloudflare's binding counts them on Workers.
    expensive_reads: crate::rate_limit::WindowCounter,
}

impl Shared {
    async fn respond(
        &self,
        req: hyper::Request<Incoming>,
        client: IpAddr,
    ) -> hyper::Response<NativeBody> {
        let route = Route::of_request(req.method().as_str(), req.uri().path(), || {
            req.headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        if route.is_expensive_read() {
            let key = crate::rate_limit::address_key(Some(client));
            let now_ms = crate::clock::Clock::now_millis(self.account.clock.as_ref());
            let limit = crate::rate_limit::EXPENSIVE_READS;
            if !self.expensive_reads.allow(&limit, &key, now_ms) {
                return to_hyper(crate::rate_limit::expensive_read_refused());
            }
        }
        match route {
            Route::SubscribeRepos => {
                let head = http_request(req.method(), req.uri(), req.headers(), client);
                let address = crate::lifecycle::subscriber_address(&head);
                let open = self.firehose.open_subscribers(&address);
                match crate::lifecycle::subscribe_repos(&self.config, &self.account, &head, open) {
                    Ok(cursor) => self
                        .firehose
                        .upgrade(&self.account, req, cursor, address)
                        .map(|()| NativeBody::Full(None)),
                    Err(res) => to_hyper(res),
                }
            }
            Route::Offload(work) => to_hyper(self.offload(work, req, client).await),
            _ if route.placement() == Placement::Account => {
                let limit = route.body_limit().unwrap_or(crate::routes::JSON_BODY_LIMIT);
                let (parts, body) = req.into_parts();
                let head = http_request(&parts.method, &parts.uri, &parts.headers, client);
                // Refused from its declared length, before a byte of it is read.
                if crate::routes::declares_more_than(&head, limit) {
                    return to_hyper(crate::routes::with_cors(crate::routes::payload_too_large()));
                }
                let limit = usize::try_from(limit).unwrap_or(usize::MAX);
                let body = match Limited::new(body, limit).collect().await {
                    Ok(collected) => collected.to_bytes().to_vec(),
                    Err(e) => {
                        let res = if e.is::<http_body_util::LengthLimitError>() {
                            crate::routes::payload_too_large()
                        } else {
                            pds_api::runtime::xrpc::XrpcError::invalid_request(format!(
                                "could not read the request body: {e}"
                            ))
                            .into_response()
                            .into()
                        };
                        return to_hyper(crate::routes::with_cors(res));
                    }
                };
                let request = HttpRequest { body, ..head };
                // A read of a repository hosted elsewhere comes back as a grant to carry out.
                let head =
                    crate::proxy::may_answer_grant(&request.method, &request.path).then(|| {
                        HttpRequest {
                            body: Vec::new(),
                            ..request.clone()
                        }
                    });
                let answer =
                    crate::lifecycle::account(&self.config, &self.account, self, request).await;
                to_hyper(match head {
                    Some(head) => {
                        crate::offload::carry_out_grant(self.account.http.as_ref(), answer, &head)
                            .await
                    }
                    None => answer,
                })
            }
            _ => {
                let head = http_request(req.method(), req.uri(), req.headers(), client);
                to_hyper(crate::routes::edge(
                    &self.config,
                    &head,
                    self.account.clock.now_millis(),
                ))
            }
        }
    }

    /// Offloaded work natively: the same steps as on Workers, the body streamed into the blob
    /// directory, the account reached by a direct call.
    async fn offload(
        &self,
        work: Offload,
        req: hyper::Request<Incoming>,
        client: IpAddr,
    ) -> HttpResponse {
        let (parts, body) = req.into_parts();
        let head = http_request(&parts.method, &parts.uri, &parts.headers, client);
        use futures_util::StreamExt;
        let stream: pds_api::runtime::xrpc::ByteStream =
            Box::pin(body.into_data_stream().map(|chunk| {
                chunk
                    .map(|bytes| bytes.to_vec())
                    .map_err(|e| pds_api::runtime::xrpc::XrpcError::invalid_request(e.to_string()))
            }));
        let nonce_key = match &self.config {
            Ok(c) => crate::oauth::dpop::nonce_key(&c.jwt_secret),
            Err(_) => [0; 32],
        };
        let ports = crate::offload::EdgePorts {
            blobs: self.account.blobs.as_ref(),
            http: self.account.http.as_ref(),
            clock: self.account.clock.as_ref(),
            nonce_key,
        };
        let response = crate::offload::run(work, self, &ports, &head, Body::Stream(stream)).await;
        crate::lifecycle::conceal_internal_error(response)
    }
}

impl crate::lifecycle::AccountShell for Shared {
    fn schedule_maintenance(&self, at_ms: i64) -> LocalBoxFuture<'_, ()> {
        self.wakeup.schedule(Some(at_ms));
        Box::pin(std::future::ready(()))
    }

    fn broadcast(&self) {
        self.firehose.broadcast(&self.account);
    }

    fn subscribers(&self) -> usize {
        self.firehose.open_subscribers("").total
    }
}

/// Natively the front reaches the account by calling its lifecycle directly.
impl AccountLink for Shared {
    fn call(&self, req: HttpRequest) -> LocalBoxFuture<'_, HttpResponse> {
        Box::pin(crate::lifecycle::account(
            &self.config,
            &self.account,
            self,
            req,
        ))
    }
}

/// Binds `addr` and serves the account stored in `data_dir` on a dedicated thread with its own
/// runtime; returns the bound address once the account is open. For `pds serve`, tests and
/// tools that need a server in the background.
pub fn spawn(
    addr: SocketAddr,
    config: Result<Config, ConfigError>,
    data_dir: PathBuf,
) -> std::io::Result<SocketAddr> {
    // Serves for the rest of the process: the handle is dropped without stopping.
    spawn_stoppable(addr, config, data_dir).map(|server| server.addr)
}

/// A server started by [`spawn_stoppable`].
pub struct SpawnedServer {
    /// The bound address.
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl SpawnedServer {
    /// Stops serving and waits until the server's thread ended: its connections are closed,
    /// its background tasks dropped and the account's SQLite file closed (a restart on the same
    /// folder then starts from what is stored, like a new process).
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }

    /// Blocks until the server's thread ends, which it does only when it could not serve (its
    /// runtime or listener failed); the stop handle is kept, so nothing else stops it.
    pub fn wait(self) {
        let _ = self.thread.join();
    }
}

/// [`spawn`], keeping the means to stop the server.
pub fn spawn_stoppable(
    addr: SocketAddr,
    config: Result<Config, ConfigError>,
    data_dir: PathBuf,
) -> std::io::Result<SpawnedServer> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("pds-native".into())
        .spawn(move || {
            // SQLite handles stay on the thread that opened them.
            let account = match open_account(&data_dir) {
                Ok(a) => a,
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                    return;
                }
            };
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                    return;
                }
            };
            let _ = opened_tx.send(Ok(()));
            let local_set = tokio::task::LocalSet::new();
            local_set.block_on(&runtime, async move {
                if let Ok(listener) = TcpListener::from_std(std_listener) {
                    tokio::select! {
                        _ = serve(listener, config, account) => {}
                        // A dropped sender (the handle dropped by `spawn`) is not a stop.
                        Ok(()) = stop_rx => {}
                    }
                }
            });
            // Dropping the LocalSet and the runtime here ends every connection and task.
        })?;
    opened_rx.recv().map_err(|_| {
        std::io::Error::other("the server thread ended before opening the account")
    })??;
    Ok(SpawnedServer {
        addr: local,
        stop: stop_tx,
        thread,
    })
}

/// A request's head (no body), from `client`.
fn http_request(
    method: &hyper::Method,
    uri: &hyper::Uri,
    headers: &hyper::HeaderMap,
    client: IpAddr,
) -> HttpRequest {
    HttpRequest {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| {
                Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned()))
            })
            .collect(),
        body: Vec::new(),
        client_ip: Some(client),
    }
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
