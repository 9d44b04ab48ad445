//! The Cloudflare Workers shell: a stateless fetch entry that forwards account work to the one
//! SQLite-backed Durable Object, which runs the shared core.

pub mod firehose;
pub mod http_client;
pub mod r2;
pub mod relay;
pub mod sql;
pub mod upload;

use std::rc::Rc;

use worker::{
    durable_object, event, Context, DurableObject, Env, Method, Request, Response, Result, State,
    WebSocket, WebSocketIncomingMessage,
};

use crate::account::Account;
use crate::http::{Body, HttpRequest, HttpResponse};

/// The Durable Object instance name: one account per deployment, so one object.
const ACCOUNT_OBJECT: &str = "account";

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    // Account requests go to the Durable Object with their body untouched; preflights and
    // everything outside /xrpc/ are answered here.
    if req.method() == Method::Options || !req.path().starts_with("/xrpc/") {
        let request = from_worker_request(&mut req).await?;
        if let Some(res) = crate::routes::stateless(&read_config(&env), &request) {
            return to_worker_response(res);
        }
    }
    if req.path().starts_with(upload::INTERNAL_PREFIX) {
        // Only the Worker itself may ask the DO on these paths.
        return to_worker_response(crate::routes::not_found());
    }
    let stub = env.durable_object("ACCOUNT")?.get_by_name(ACCOUNT_OBJECT)?;
    if upload::is_upload(&req) {
        return upload::upload(req, &env, &stub).await;
    }
    stub.fetch_with_request(req).await
}

/// Reads the configuration from the Worker's variables and secrets.
fn read_config(
    env: &Env,
) -> std::result::Result<crate::config::Config, crate::config::ConfigError> {
    crate::config::Config::from_lookup(|name| {
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
    env: Env,
    pub(crate) account: Account,
    pub(crate) firehose: firehose::DoFirehose,
    /// The alarm this instance last set (ms), so most requests need not read it back.
    alarm_at: std::cell::Cell<Option<i64>>,
}

impl DurableObject for AccountDurableObject {
    fn new(state: State, env: Env) -> Self {
        let sql = Box::new(sql::DurableSql::new(&state));
        // Without the binding every blob operation fails; the rest of the account still works.
        let blobs: Box<dyn crate::storage::BlobStore> = match env.bucket("BLOBS") {
            Ok(bucket) => Box::new(r2::R2BlobStore::new(bucket)),
            Err(_) => Box::new(MissingBlobStore),
        };
        let account = Account::open(sql, blobs, Box::new(WorkerClock));
        // Tests watch for this line to see the object evicted and started again.
        worker::console_log!(
            "pds: account object started ({} firehose sockets held)",
            state.get_websockets().len()
        );
        Self {
            inner: Rc::new(AccountObject {
                state,
                env,
                account,
                firehose: firehose::DoFirehose::default(),
                alarm_at: std::cell::Cell::new(None),
            }),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let inner = &self.inner;
        let request = from_worker_request(&mut req).await?;
        let config = read_config(&inner.env);
        if crate::routes::is_subscribe_repos(&request) {
            return match crate::routes::subscribe_repos(&config, &inner.account, &request) {
                Ok(cursor) => firehose::subscribe(&self.inner, cursor),
                Err(res) => to_worker_response(res),
            };
        }
        let response = if request.path.starts_with(upload::INTERNAL_PREFIX) {
            upload::internal(&config, &inner.account, request).await
        } else {
            crate::routes::account(&config, &inner.account, request).await
        };
        inner.after_request(&config).await;
        // Whatever the request stored (commits, account and identity events) goes out to
        // subscribers.
        firehose::broadcast(&self.inner);
        to_worker_response(response)
    }

    async fn alarm(&self) -> Result<Response> {
        let inner = &self.inner;
        inner.alarm_at.set(None);
        if let Ok(config) = read_config(&inner.env) {
            let now = crate::maintenance::now_ms(&inner.account);
            let next =
                crate::maintenance::run(&config, &inner.account, now, &relay::WorkerRelayClient)
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

impl AccountObject {
    /// Maintenance bookkeeping after a request (handle announcements, crawl requests), and the
    /// alarm that runs the rest.
    async fn after_request(
        &self,
        config: &std::result::Result<crate::config::Config, crate::config::ConfigError>,
    ) {
        let next = crate::maintenance::after_account_request(config, &self.account);
        self.schedule(next).await;
    }

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
struct WorkerClock;

impl crate::clock::Clock for WorkerClock {
    fn now_micros(&self) -> u64 {
        worker::Date::now().as_millis() * 1000
    }
}

async fn from_worker_request(req: &mut Request) -> Result<HttpRequest> {
    let url = req.url()?;
    let method = match req.method() {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        _ => "OTHER",
    };
    let headers = req
        .headers()
        .entries()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let body = if matches!(method, "GET" | "HEAD") {
        Vec::new()
    } else {
        req.bytes().await?
    };
    Ok(HttpRequest {
        method: method.to_owned(),
        path: url.path().to_owned(),
        query: url.query().unwrap_or("").to_owned(),
        headers,
        body,
    })
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
