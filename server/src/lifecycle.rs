//! The one request lifecycle in the account, called by both shells: route -> admission ->
//! handler -> after-request work (maintenance bookkeeping, firehose broadcast), and the
//! firehose upgrade's admission. The shells adapt requests, responses, sockets and timers
//! ([`AccountShell`]); they decide nothing.

use futures_util::future::LocalBoxFuture;
use pds_api::runtime::xrpc::{HttpMethod, Request, XrpcError};

use crate::account::Account;
use crate::api::{Api, RequestContext};
use crate::config::{Config, ConfigError};
use crate::http::{Body, HttpRequest, HttpResponse};
use crate::routes::{config_error, not_found, with_cors, Route};

/// What the account's host (the Durable Object, or the native server) does for the lifecycle.
pub trait AccountShell {
    /// Makes sure background maintenance runs no later than `at_ms` (ms since the epoch).
    fn schedule_maintenance(&self, at_ms: i64) -> LocalBoxFuture<'_, ()>;
    /// Sends whatever events requests stored to the firehose's subscribers.
    fn broadcast(&self);
    /// How many firehose subscribers are connected.
    fn subscribers(&self) -> usize;
}

/// Runs an account-placed request (everything but the firehose upgrade, which the shell takes
/// aside through [`subscribe_repos`], including the edge's internal calls), then the
/// after-request work.
pub async fn account(
    config: &Result<Config, ConfigError>,
    account: &Account,
    shell: &dyn AccountShell,
    req: HttpRequest,
) -> HttpResponse {
    let route = Route::of(&req.method, &req.path);
    let internal = matches!(route, Route::Internal(_));
    // The sign-in and passkey pages are for browsers on this origin only: no CORS there.
    let cors = !matches!(
        route,
        Route::OAuth("/oauth/authorize" | crate::oauth::passkey_pages::REGISTER_PATH)
    );
    let carries_dpop = crate::oauth::dpop::carries_dpop(&req);
    let req_path = if internal {
        req.path.clone()
    } else {
        String::new()
    };
    // The deployment's configuration over the stored identity, once per request.
    let effective = match config {
        Ok(c) => account
            .effective_config(c)
            .map_err(|e| e.into_response().into()),
        Err(e) => Err(config_error(e)),
    };
    let (effective, response) = match effective {
        Err(res) => (None, with_cors(res)),
        Ok(c) => {
            let mut res = if internal {
                crate::offload::serve_internal(&c, account, &req).await
            } else if cors {
                with_cors(account_route(&c, account, shell, req).await)
            } else {
                account_route(&c, account, shell, req).await
            };
            if carries_dpop {
                crate::oauth::dpop::stamp(
                    &mut res,
                    &crate::oauth::dpop::nonce_key(&c.jwt_secret),
                    account.clock.now_millis(),
                );
            }
            // A handler that changed the stored identity (a new handle) dropped the cached
            // configuration: what comes after the request sees the new one.
            let after = config
                .as_ref()
                .ok()
                .and_then(|deployed| account.effective_config(deployed).ok())
                .unwrap_or(c);
            (Some(after), res)
        }
    };
    // The edge's internal steps store no commit or event, so nothing is due after them, except
    // a recorded upload (its grace window) and a staged import (its expiry), which may need a
    // maintenance wake-up.
    let stores_something = !internal
        || matches!(
            crate::offload::Offload::parse_path(&req_path),
            Some((
                crate::offload::Offload::UploadBlob,
                crate::offload::Step::Complete
            )) | Some((
                crate::offload::Offload::ImportRepo,
                crate::offload::Step::Stage
            ))
        );
    if stores_something {
        after_request(effective.as_deref(), account, shell).await;
    }
    conceal_internal_error(response)
}

/// The work after every account request, given the effective configuration (none when it
/// could not be established): maintenance bookkeeping and the firehose broadcast. The native
/// shell also runs it when it starts.
pub async fn after_request(config: Option<&Config>, account: &Account, shell: &dyn AccountShell) {
    // Announcements use the stored identity; before any request could reconcile it (or when
    // it cannot be), there is nothing to announce.
    let next = config.and_then(|c| crate::maintenance::after_account_request(c, account));
    if let Some(at) = next {
        shell.schedule_maintenance(at).await;
    }
    // Whatever the request stored (commits, account and identity events) goes out.
    shell.broadcast();
}

async fn account_route(
    config: &Config,
    account: &Account,
    shell: &dyn AccountShell,
    req: HttpRequest,
) -> HttpResponse {
    let is_read = matches!(req.method.as_str(), "GET" | "HEAD");
    let nsid = match Route::of_request(&req.method, &req.path, || {
        req.header("accept").map(str::to_owned)
    }) {
        Route::StatusPage => {
            let now_ms = crate::maintenance::now_ms(account);
            return match crate::status::page::snapshot(config, account, shell.subscribers(), now_ms)
            {
                Ok(status) => crate::status::page::page_response(&status, now_ms),
                Err(e) => e.into_response().into(),
            };
        }
        Route::Health => {
            return HttpResponse::json(
                200,
                &serde_json::json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "wasmMemoryBytes": wasm_memory_bytes(),
                }),
            )
        }
        Route::DidDocument if is_read && is_own_did_web(config) => {
            return HttpResponse::json(200, &did_document(config));
        }
        Route::OAuth(_) => return crate::oauth::server::serve(config, account, &req).await,
        // The shells upgrade subscribeRepos themselves; a request reaching here is served by
        // the dispatcher like any other (which refuses it as a subscription).
        Route::Xrpc(nsid) => nsid,
        Route::SubscribeRepos | Route::Offload(_) => &req.path["/xrpc/".len()..],
        _ => return not_found(),
    };
    // A read about someone else goes to the AppView, through the front.
    if crate::proxy::may_answer_grant(&req.method, &req.path) {
        if let Some(grant) = crate::proxy::read_about_someone_else(config, nsid, &req.query) {
            return crate::proxy::grant_response(&grant);
        }
    }
    let method = HttpMethod::parse(&req.method);
    let meta = match pds_api::methods::lookup(nsid, method) {
        Ok(meta) => meta,
        Err(e) => return e.into_response().into(),
    };
    // A DPoP proof's signature, checked by the platform's faster verifier where it has one.
    account.precheck_dpop(&req).await;
    let api = Api { config, account };
    let (caller, limited) = match crate::rate_limit::admit_call(&api, meta.nsid, &req) {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let cx = RequestContext {
        // Asked of the shell only for the one method that shows it.
        subscribers: (meta.nsid == pds_api::dev::rustpds::server::get_status::NSID)
            .then(|| shell.subscribers()),
        range: req.header("range").map(str::to_owned),
        caller,
        authorization: req.header("authorization").map(str::to_owned),
    };
    let request = Request {
        nsid: nsid.to_owned(),
        method,
        query: req.query,
        headers: req.headers,
        body: Body::Bytes(req.body),
    };
    let mut res: HttpResponse = pds_api::methods::dispatch(&api, &cx, request).await.into();
    // What the call's commit did not store (it made none), stored now.
    crate::rate_limit::store_held_writes(&api);
    if let Some(status) = limited {
        status.apply(&mut res);
    }
    res
}

/// The firehose subscribers a shell holds, as admission counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenSubscribers {
    /// All of them.
    pub total: usize,
    /// Those from the new request's client address (by [`subscriber_address`]).
    pub from_address: usize,
}

/// What subscribers are counted by per address: the client address as the rate limits key it
/// (an IPv6 address by its /64).
pub fn subscriber_address(req: &HttpRequest) -> String {
    crate::rate_limit::address_key(req.client_ip)
}

/// Admits a `subscribeRepos` request, given the subscribers already `open`: the requested
/// cursor (none: live only) when the shell should upgrade to a WebSocket, or the XRPC error to
/// answer instead (429 `RateLimitExceeded` over a subscriber cap).
pub fn subscribe_repos(
    config: &Result<Config, ConfigError>,
    account: &Account,
    req: &HttpRequest,
    open: OpenSubscribers,
) -> Result<Option<u64>, HttpResponse> {
    use pds_api::com::atproto::sync::subscribe_repos::{Params, NSID};
    if let Err(e) = config {
        return Err(with_cors(config_error(e)));
    }
    let fail = |e: XrpcError| conceal_internal_error(with_cors(e.into_response().into()));
    // The same identity check as every other route (a deployment whose DID differs from the
    // stored account's is refused).
    if let Ok(c) = config {
        account.effective_config(c).map_err(fail)?;
    }
    if req.method != "GET" {
        return Err(fail(XrpcError::invalid_request(format!(
            "Incorrect HTTP method ({}) expected GET",
            req.method
        ))));
    }
    let meta = pds_api::methods::lookup(NSID, HttpMethod::Get).map_err(fail)?;
    let params: Params = pds_api::runtime::dispatch::params(meta, &req.query).map_err(fail)?;
    let upgrade = req
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return Err(fail(XrpcError::invalid_request(
            "com.atproto.sync.subscribeRepos is a WebSocket subscription: connect with Upgrade: websocket",
        )));
    }
    if req.header("sec-websocket-key").is_none() {
        return Err(fail(XrpcError::invalid_request(
            "a WebSocket upgrade needs a Sec-WebSocket-Key header",
        )));
    }
    if let Ok(c) = config {
        let limits = c.firehose;
        let over = |n: usize, cap: u64| u64::try_from(n).unwrap_or(u64::MAX) >= cap;
        if over(open.from_address, limits.subscribers_per_address) {
            return Err(fail(XrpcError::rate_limit_exceeded(format!(
                "Too many firehose subscriptions from this address (at most {})",
                limits.subscribers_per_address
            ))));
        }
        if over(open.total, limits.subscribers) {
            return Err(fail(XrpcError::rate_limit_exceeded(format!(
                "Too many firehose subscriptions (at most {})",
                limits.subscribers
            ))));
        }
    }
    match params.cursor {
        None => Ok(None),
        Some(cursor) => u64::try_from(cursor).map(Some).map_err(|_| {
            fail(XrpcError::invalid_request(
                "cursor must be a non-negative integer",
            ))
        }),
    }
}

/// The size of the account's wasm linear memory (it never shrinks; the isolate has 128 MB), for
/// benchmarks and operators. `null` natively.
fn wasm_memory_bytes() -> Option<usize> {
    #[cfg(target_arch = "wasm32")]
    return Some(core::arch::wasm32::memory_size(0) * 65536);
    #[cfg(not(target_arch = "wasm32"))]
    None
}

/// The message every client sees for a server fault.
pub const INTERNAL_ERROR_MESSAGE: &str = "Internal Server Error";

/// Keeps internal details out of responses: a 500 `InternalServerError` carrying anything but
/// the generic message (SQL text, storage errors) is logged and answered generically. A
/// misconfiguration keeps its message: it names the variable to fix and nothing secret.
pub fn conceal_internal_error(res: HttpResponse) -> HttpResponse {
    if res.status != 500 {
        return res;
    }
    let Body::Bytes(bytes) = &res.body else {
        return res;
    };
    let message = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned));
    match message.as_deref() {
        Some(INTERNAL_ERROR_MESSAGE) => res,
        Some(m) if m.starts_with(crate::routes::MISCONFIGURED) => res,
        detail => {
            crate::log::error(&format!(
                "internal error: {}",
                detail.unwrap_or("(a 500 without an XRPC body)")
            ));
            let mut out: HttpResponse = XrpcError::internal().into_response().into();
            // Keep the CORS headers the original carried.
            out.headers.extend(
                res.headers
                    .into_iter()
                    .filter(|(k, _)| k.starts_with("access-control-")),
            );
            out
        }
    }
}

/// A did:web DID document is ours to serve only when the account is `did:web` of this host.
pub fn is_own_did_web(config: &Config) -> bool {
    config.did.as_str() == config.service_did()
}

/// The account's DID document (for did:web accounts): its handle, signing key and PDS endpoint.
pub fn did_document(config: &Config) -> serde_json::Value {
    use crate::net::did_doc::{DidDocument, Service, VerificationMethod};
    DidDocument {
        id: config.did.clone(),
        also_known_as: vec![format!("at://{}", config.handle.as_str())],
        verification_methods: vec![VerificationMethod {
            id: format!("{}#atproto", config.did.as_str()),
            kind: "Multikey".into(),
            public_key_multibase: Some(config.signing_key.public_key().to_multibase()),
        }],
        services: vec![Service {
            id: "#atproto_pds".into(),
            kind: crate::net::did_doc::PDS_SERVICE_TYPE.into(),
            endpoint: config.public_url(),
        }],
    }
    .to_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(res: &HttpResponse) -> serde_json::Value {
        match &res.body {
            Body::Bytes(b) => serde_json::from_slice(b).unwrap(),
            Body::Stream(_) => panic!("streamed"),
        }
    }

    #[test]
    fn internal_details_are_concealed() {
        let leaky = with_cors(
            XrpcError::internal_message("no such table: record (SELECT * FROM record)")
                .into_response()
                .into(),
        );
        let out = conceal_internal_error(leaky);
        assert_eq!(out.status, 500);
        let body = body_json(&out);
        assert_eq!(body["error"], "InternalServerError");
        assert_eq!(body["message"], INTERNAL_ERROR_MESSAGE);
        assert!(out
            .headers
            .iter()
            .any(|(k, v)| k == "access-control-allow-origin" && v == "*"));

        let misconfigured = config_error(&ConfigError {
            variable: "PDS_DID",
            problem: "is not set".into(),
        });
        let out = conceal_internal_error(misconfigured);
        assert!(body_json(&out)["message"]
            .as_str()
            .unwrap()
            .contains("PDS_DID"));

        let client_error = XrpcError::invalid_request("bad cursor")
            .into_response()
            .into();
        let out = conceal_internal_error(client_error);
        assert_eq!(body_json(&out)["message"], "bad cursor");
    }
}
