//! The Cloudflare Workers shell: a stateless fetch entry that forwards account work to the one
//! SQLite-backed Durable Object, which runs the shared core.

pub mod edge_cache;
pub mod firehose;
pub mod http_client;
pub mod js;
pub mod offload;
pub mod r2;
pub mod sql;
pub mod webcrypto;

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::future::LocalBoxFuture;
use worker::{
    durable_object, event, Context, DurableObject, Env, Method, Request, Response, Result, State,
    WebSocket, WebSocketIncomingMessage,
};

use crate::account::Account;
use crate::config::{Config, ConfigError};
use crate::http::{Body, HttpRequest, HttpResponse};
use crate::routes::{Placement, Route};

/// The Durable Object instance name: one account per deployment, so one object.
const ACCOUNT_OBJECT: &str = "account";

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    or_internal_error(cached_at_edge(req, &env, &ctx).await)
}

/// Serves reads by CID from Cloudflare's cache when it has them ([`edge_cache`]), and keeps
/// what the account answers to them; everything else goes to [`route_at_edge`].
async fn cached_at_edge(req: Request, env: &Env, ctx: &Context) -> Result<Response> {
    let ttl = match config(env).as_ref() {
        Ok(config) => config.edge_cache_seconds,
        Err(_) => 0,
    };
    let url = req.inner().url();
    let cache = edge_cache::EdgeCache::of(&req, method_name(&req.method()), &url, ttl);
    let Some(cache) = cache else {
        return route_at_edge(req, env, &url).await;
    };
    if let Some(hit) = cache.lookup().await {
        return Ok(hit);
    }
    let response = route_at_edge(req, env, &url).await?;
    cache.store(response, ctx)
}

/// A runtime error (a binding, a stub, a request that cannot be read) as the generic XRPC 500
/// with CORS headers, logged; never the runtime's bare 500.
fn or_internal_error(result: Result<Response>) -> Result<Response> {
    result.or_else(|e| {
        crate::log::error(&format!("worker: {e}"));
        to_worker_response(crate::routes::with_cors(
            pds_api::runtime::xrpc::XrpcError::internal()
                .into_response()
                .into(),
        ))
    })
}

async fn route_at_edge(req: Request, env: &Env, url: &str) -> Result<Response> {
    let (path, _) = crate::http::url_path_query(url);
    let method = method_name(&req.method());
    let route = Route::of_request(method, path, || req.headers().get("accept").ok().flatten());
    if route.is_expensive_read() && !expensive_read_allowed(&req, env).await {
        return to_worker_response(crate::rate_limit::expensive_read_refused());
    }
    match route {
        Route::Offload(work) => {
            let config = config(env);
            offload::run(work, req, url, env, &config).await
        }
        route if route.placement() == Placement::Account => {
            if crate::proxy::may_answer_grant(method, path) {
                return repo_read(req, env, method, url).await;
            }
            let limit = route.body_limit().unwrap_or(crate::routes::JSON_BODY_LIMIT);
            match bounded(req, url, limit).await? {
                Ok(req) => account_stub(env)?.fetch_with_request(req).await,
                Err(too_large) => Ok(too_large),
            }
        }
        _ => {
            let head = request_head(&req, method, url);
            to_worker_response(crate::routes::edge(
                &config(env),
                &head,
                crate::clock::Clock::now_millis(&WorkerClock),
            ))
        }
    }
}

/// Whether Cloudflare's rate-limiting binding (`READ_LIMITER`) lets one more expensive read
/// from this client address through. Without the binding, or when it fails, the read goes
/// through: the limit protects the bill, and must not take the PDS down with it.
async fn expensive_read_allowed(req: &Request, env: &Env) -> bool {
    let Ok(limiter) = env.rate_limiter("READ_LIMITER") else {
        return true;
    };
    let key = crate::rate_limit::address_key(client_ip(req));
    limiter
        .limit(key)
        .await
        .map_or(true, |outcome| outcome.success)
}

/// The request with a body the account may read: one that declares a length within `limit`
/// passes untouched (the runtime frames it by that length); one that does not is read here, up
/// to `limit`. Over the limit: the 413 to answer, before the account sees a byte.
async fn bounded(
    mut req: Request,
    url: &str,
    limit: u64,
) -> Result<std::result::Result<Request, Response>> {
    let too_large =
        || to_worker_response(crate::routes::with_cors(crate::routes::payload_too_large()));
    if let Some(length) = req.headers().get("content-length")? {
        return match crate::routes::length_within(&length, limit) {
            true => Ok(Ok(req)),
            false => Ok(Err(too_large()?)),
        };
    }
    if req.inner().body().is_none() {
        return Ok(Ok(req));
    }
    use futures_util::StreamExt;
    let mut stream = req.stream()?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit as usize {
            return Ok(Err(too_large()?));
        }
        body.extend_from_slice(&chunk);
    }
    let body = worker::js_sys::Uint8Array::from(body.as_slice()).into();
    Ok(Ok(js::request(
        url,
        req.inner().method().as_str(),
        req.headers(),
        Some(&body),
        true,
    )?))
}

/// A repository read: the account's answer, or, for a repository hosted elsewhere, the call
/// it granted, carried out here.
async fn repo_read(req: Request, env: &Env, method: &str, url: &str) -> Result<Response> {
    // The request's head is read only for a grant, which is rare: copying every header into
    // the wasm was 3.3% of a getRecord loop's samples under workerd, against 5.5% for the
    // account's whole answer. The headers stay readable after the request was sent. (This is
    // a handle to the same request: the method named `clone` would copy it, body and all.)
    let sent = Clone::clone(req.inner());
    let mut answer = account_stub(env)?.fetch_with_request(req).await?;
    if !answer.headers().has(crate::proxy::GRANT_HEADER)? {
        return Ok(answer);
    }
    let head = request_head(&Request::from(sent), method, url);
    let grant = HttpResponse {
        status: answer.status_code(),
        headers: answer.headers().entries().collect(),
        body: Body::Bytes(answer.bytes().await?),
    };
    let http = http_client::FetchHttpClient::default();
    to_worker_response(crate::lifecycle::conceal_internal_error(
        crate::offload::carry_out_grant(&http, grant, &head).await,
    ))
}

/// The account's Durable Object.
fn account_stub(env: &Env) -> Result<worker::Stub> {
    env.durable_object("ACCOUNT")?.get_by_name(ACCOUNT_OBJECT)
}

thread_local! {
    /// The configuration, read once per isolate: variables and secrets only change with a
    /// deployment, which starts new isolates.
    static CONFIG: RefCell<Option<Rc<std::result::Result<Config, ConfigError>>>> =
        const { RefCell::new(None) };
}

/// The deployment's configuration, parsed on first use in this isolate.
fn config(env: &Env) -> Rc<std::result::Result<Config, ConfigError>> {
    CONFIG.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| Rc::new(read_config(env)))
            .clone()
    })
}

/// Reads the configuration from the Worker's variables and secrets.
fn read_config(env: &Env) -> std::result::Result<Config, ConfigError> {
    Config::from_lookup(|name| {
        env.secret(name)
            .or_else(|_| env.var(name))
            .ok()
            .map(|v| v.to_string())
    })
}

/// The account's Durable Object: owns SQLite, runs XRPC methods and holds the firehose's
/// hibernatable WebSockets.
#[durable_object]
pub struct AccountDurableObject {
    inner: Rc<AccountObject>,
}

/// The Durable Object's state, shared with the tasks it spawns (replay of paused subscribers).
pub(crate) struct AccountObject {
    pub(crate) state: State,
    config: Rc<std::result::Result<Config, ConfigError>>,
    pub(crate) account: Account,
    pub(crate) firehose: firehose::DoFirehose,
    /// The alarm this instance last set (ms), so most requests need not read it back.
    alarm_at: std::cell::Cell<Option<i64>>,
}

impl AccountDurableObject {
    /// One request to the account: the firehose upgrade, or the lifecycle.
    async fn serve(&self, mut req: Request) -> Result<Response> {
        let inner = &self.inner;
        let request = from_worker_request(&mut req).await?;
        if Route::of(&request.method, &request.path) == Route::SubscribeRepos {
            let address = crate::lifecycle::subscriber_address(&request);
            let open = crate::lifecycle::OpenSubscribers {
                total: inner.state.get_websockets().len(),
                from_address: inner.state.get_websockets_with_tag(&address).len(),
            };
            return match crate::lifecycle::subscribe_repos(
                &inner.config,
                &inner.account,
                &request,
                open,
            ) {
                Ok(cursor) => firehose::subscribe(inner, cursor, &address),
                Err(res) => to_worker_response(res),
            };
        }
        let response =
            crate::lifecycle::account(&inner.config, &inner.account, &DoShell(inner), request)
                .await;
        to_worker_response(response)
    }
}

impl DurableObject for AccountDurableObject {
    fn new(state: State, env: Env) -> Self {
        let sql = Box::new(sql::DurableSql::new(&state));
        // Without the binding every blob operation fails; the rest of the account still works.
        let blobs: Box<dyn crate::storage::BlobStore> = match env.bucket("BLOBS") {
            Ok(bucket) => Box::new(r2::R2BlobStore::new(bucket)),
            Err(_) => Box::new(MissingBlobStore),
        };
        let account = Account::open(sql, blobs, Box::new(WorkerClock))
            .with_http(Rc::new(http_client::FetchHttpClient::default()))
            .with_fast_verify(Rc::new(webcrypto::WebCryptoVerify));
        // Tests watch for this line to see the object evicted and started again.
        worker::console_log!(
            "pds: account object started ({} firehose sockets held)",
            state.get_websockets().len()
        );
        Self {
            inner: Rc::new(AccountObject {
                state,
                config: config(&env),
                account,
                firehose: firehose::DoFirehose::default(),
                alarm_at: std::cell::Cell::new(None),
            }),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        or_internal_error(self.serve(req).await)
    }

    async fn alarm(&self) -> Result<Response> {
        let inner = &self.inner;
        inner.alarm_at.set(None);
        if let Ok(config) = inner.config.as_ref() {
            let now = crate::maintenance::now_ms(&inner.account);
            let next = crate::maintenance::run(
                config,
                &inner.account,
                now,
                &http_client::FetchHttpClient::default(),
            )
            .await;
            inner.schedule(next).await;
        }
        Response::empty()
    }

    async fn websocket_message(
        &self,
        _ws: WebSocket,
        _message: WebSocketIncomingMessage,
    ) -> Result<()> {
        // Subscribers have nothing to say; pings are answered by the runtime.
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        reason: String,
        _was_clean: bool,
    ) -> Result<()> {
        firehose::closed(&ws, code, &reason);
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, _error: worker::Error) -> Result<()> {
        Ok(())
    }
}

/// The Durable Object as the lifecycle's [`crate::lifecycle::AccountShell`].
struct DoShell<'a>(&'a Rc<AccountObject>);

impl crate::lifecycle::AccountShell for DoShell<'_> {
    fn schedule_maintenance(&self, at_ms: i64) -> LocalBoxFuture<'_, ()> {
        Box::pin(self.0.schedule(Some(at_ms)))
    }

    fn broadcast(&self) {
        firehose::broadcast(self.0);
    }

    fn subscribers(&self) -> usize {
        self.0.state.get_websockets().len()
    }
}

impl AccountObject {
    /// Sets the alarm to `at` unless one is already set no later.
    async fn schedule(&self, at: Option<i64>) {
        let Some(at) = at else { return };
        if self.alarm_at.get().is_some_and(|current| current <= at) {
            return;
        }
        let storage = self.state.storage();
        // After an eviction the cached value is gone: ask the runtime.
        if let Ok(Some(current)) = storage.get_alarm().await {
            if current <= at {
                self.alarm_at.set(Some(current));
                return;
            }
        }
        // `set_alarm` takes an offset from now for integers.
        let offset = at
            .saturating_sub(crate::maintenance::now_ms(&self.account))
            .max(0);
        if storage.set_alarm(offset).await.is_ok() {
            self.alarm_at.set(Some(at));
        }
    }
}

/// Stands in when the `BLOBS` R2 binding is missing: every blob operation fails, naming it.
struct MissingBlobStore;

impl MissingBlobStore {
    fn error() -> crate::storage::BlobError {
        crate::storage::BlobError::Store(
            "the BLOBS R2 bucket binding is missing (wrangler.toml)".into(),
        )
    }
}

impl crate::storage::BlobStore for MissingBlobStore {
    fn put<'a>(
        &'a self,
        _source: &'a mut dyn crate::storage::ChunkSource,
        _max_size: u64,
    ) -> futures_util::future::LocalBoxFuture<
        'a,
        std::result::Result<crate::storage::StoredBlob, crate::storage::BlobError>,
    > {
        Box::pin(async { Err(Self::error()) })
    }
    fn get<'a>(
        &'a self,
        _cid: &'a cid::Cid,
        _range: Option<crate::storage::ByteRange>,
    ) -> futures_util::future::LocalBoxFuture<
        'a,
        std::result::Result<Option<crate::storage::BlobBody>, crate::storage::BlobError>,
    > {
        Box::pin(async { Err(Self::error()) })
    }
    fn delete<'a>(
        &'a self,
        _cid: &'a cid::Cid,
    ) -> futures_util::future::LocalBoxFuture<
        'a,
        std::result::Result<bool, crate::storage::BlobError>,
    > {
        Box::pin(async { Err(Self::error()) })
    }
    fn remove_leftovers<'a>(
        &'a self,
        _before_ms: i64,
        _is_known: &'a dyn Fn(&cid::Cid) -> bool,
    ) -> futures_util::future::LocalBoxFuture<
        'a,
        std::result::Result<usize, crate::storage::BlobError>,
    > {
        Box::pin(async { Err(Self::error()) })
    }
    fn list<'a>(
        &'a self,
        _after: Option<&'a cid::Cid>,
        _limit: usize,
    ) -> futures_util::future::LocalBoxFuture<
        'a,
        std::result::Result<Vec<cid::Cid>, crate::storage::BlobError>,
    > {
        Box::pin(async { Err(Self::error()) })
    }
}

/// Time from the JavaScript clock (milliseconds; TIDs stay monotonic through their generator).
pub(crate) struct WorkerClock;

impl crate::clock::Clock for WorkerClock {
    fn now_micros(&self) -> u64 {
        worker::Date::now().as_millis() * 1000
    }
}

/// The method's name as the core spells it.
fn method_name(method: &Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        _ => "OTHER",
    }
}

/// The client's address, as Cloudflare gives it (`CF-Connecting-IP`).
fn client_ip(req: &Request) -> Option<std::net::IpAddr> {
    let header = req.headers().get("cf-connecting-ip").ok().flatten()?;
    header.trim().parse().ok()
}

/// The request without its body. `url` is the request's own (`req.inner().url()`), read once
/// by the caller: worker's `Request::url` and `path` parse it again on each call, with the
/// `url` crate, whose IDNA tables were the only reason that crate was in the wasm.
fn request_head(req: &Request, method: &str, url: &str) -> HttpRequest {
    let (path, query) = crate::http::url_path_query(url);
    HttpRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers: req
            .headers()
            .entries()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        body: Vec::new(),
        client_ip: client_ip(req),
    }
}

async fn from_worker_request(req: &mut Request) -> Result<HttpRequest> {
    let method = method_name(&req.method());
    let mut request = request_head(req, method, &req.inner().url());
    if !matches!(method, "GET" | "HEAD") {
        request.body = req.bytes().await?;
    }
    Ok(request)
}

fn to_worker_response(res: HttpResponse) -> Result<Response> {
    let headers = worker::Headers::new();
    for (name, value) in &res.headers {
        headers.append(name, value)?;
    }
    let response = match res.body {
        Body::Bytes(bytes) => Response::from_bytes(bytes)?,
        // Streamed through without buffering (CAR exports, blobs).
        Body::Stream(stream) => {
            use futures_util::TryStreamExt;
            Response::from_stream(stream.map_err(|e| worker::Error::RustError(e.to_string())))?
        }
    };
    Ok(response.with_status(res.status).with_headers(headers))
}
