//! The top of the shared request path. The Worker answers `stateless` routes itself and sends
//! the rest to the account's Durable Object, which runs `account`; the native shell runs both.

use pds_api::runtime::xrpc::{HttpMethod, Request, XrpcError};

use crate::account::Account;
use crate::api::{Api, RequestContext};
use crate::auth::{Auth, SqlAuthStore};
use crate::config::{Config, ConfigError};
use crate::http::{Body, HttpRequest, HttpResponse};

/// Handles one request in one place (the native shell).
pub async fn handle(
    config: &Result<Config, ConfigError>,
    account: &Account,
    req: HttpRequest,
) -> HttpResponse {
    match stateless(config, &req) {
        Some(res) => res,
        None => self::account(config, account, req).await,
    }
}

/// Answers what needs no account state (well-known documents, the front page, 404s), or
/// `None` for requests that belong to the account's Durable Object.
pub fn stateless(config: &Result<Config, ConfigError>, req: &HttpRequest) -> Option<HttpResponse> {
    if req.method == "OPTIONS" {
        return Some(preflight(req));
    }
    if req.path.starts_with("/xrpc/") {
        return None;
    }
    stateless_route(config, req).map(with_cors)
}

fn stateless_route(
    config: &Result<Config, ConfigError>,
    req: &HttpRequest,
) -> Option<HttpResponse> {
    let config = match config {
        Ok(c) => c,
        Err(e) => return Some(config_error(e)),
    };
    Some(match (req.method.as_str(), req.path.as_str()) {
        ("GET" | "HEAD", "/.well-known/atproto-did") => HttpResponse::bytes(
            200,
            "text/plain; charset=utf-8",
            config.did.as_str().as_bytes().to_vec(),
        ),
        ("GET" | "HEAD", "/.well-known/did.json") if is_own_did_web(config) => {
            HttpResponse::json(200, &did_document(config))
        }
        ("GET" | "HEAD", "/") => HttpResponse::bytes(
            200,
            "text/plain; charset=utf-8",
            format!(
                "This is an AT Protocol Personal Data Server (rust-pds {}) hosting {}.\n",
                env!("CARGO_PKG_VERSION"),
                config.handle.as_str()
            )
            .into_bytes(),
        ),
        _ => not_found(),
    })
}

/// Handles an account request (`/xrpc/...`): runs inside the Durable Object on Workers.
pub async fn account(
    config: &Result<Config, ConfigError>,
    account: &Account,
    req: HttpRequest,
) -> HttpResponse {
    with_cors(account_route(config, account, req).await)
}

async fn account_route(
    config: &Result<Config, ConfigError>,
    account: &Account,
    req: HttpRequest,
) -> HttpResponse {
    let config = match config {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    if let Err(e) = account.check_schema() {
        return e.into_response().into();
    }
    if req.path == "/xrpc/_health" {
        return HttpResponse::json(
            200,
            &serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }),
        );
    }
    let Some(nsid) = req.path.strip_prefix("/xrpc/") else {
        return not_found();
    };
    let method = HttpMethod::parse(&req.method);
    let meta = match pds_api::methods::lookup(nsid, method) {
        Ok(meta) => meta,
        Err(e) => return e.into_response().into(),
    };
    // The one auth check, from the requirement the policy table gives the method.
    let store = SqlAuthStore::new(account.sql.as_ref(), config.did.as_str());
    let auth = Auth::new(config, &store, account.clock.as_ref());
    let requirement = crate::auth::policy::requirement(meta.nsid);
    let caller = match auth.authenticate(requirement, req.header("authorization"), meta.nsid) {
        Ok(caller) => caller,
        Err(e) => return e.into_response().into(),
    };
    let request = Request {
        nsid: nsid.to_owned(),
        method,
        query: req.query,
        headers: req.headers.clone(),
        body: Body::Bytes(req.body),
    };
    let api = Api { config, account };
    let cx = RequestContext {
        headers: req.headers,
        caller,
    };
    pds_api::methods::dispatch(&api, &cx, request).await.into()
}

/// The path of the firehose subscription, which both shells upgrade to a WebSocket.
pub const SUBSCRIBE_REPOS_PATH: &str = "/xrpc/com.atproto.sync.subscribeRepos";

/// Whether `req` is for `com.atproto.sync.subscribeRepos`: the shells take these aside
/// (the upgrade needs the platform's socket) and ask [`subscribe_repos`] what to do.
pub fn is_subscribe_repos(req: &HttpRequest) -> bool {
    req.path == SUBSCRIBE_REPOS_PATH && req.method != "OPTIONS"
}

/// Admits a `subscribeRepos` request: the requested cursor (none: live only) when the shell
/// should upgrade to a WebSocket, or the XRPC error to answer instead.
pub fn subscribe_repos(
    config: &Result<Config, ConfigError>,
    account: &Account,
    req: &HttpRequest,
) -> Result<Option<u64>, HttpResponse> {
    use pds_api::com::atproto::sync::subscribe_repos::{Params, NSID};
    if let Err(e) = config {
        return Err(with_cors(config_error(e)));
    }
    let fail = |e: XrpcError| with_cors(e.into_response().into());
    account.check_schema().map_err(fail)?;
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
    match params.cursor {
        None => Ok(None),
        Some(cursor) => u64::try_from(cursor).map(Some).map_err(|_| {
            fail(XrpcError::invalid_request(
                "cursor must be a non-negative integer",
            ))
        }),
    }
}

/// Response headers browsers may read: OAuth/DPoP and rate-limit headers.
const EXPOSED_HEADERS: &str =
    "WWW-Authenticate, DPoP-Nonce, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy";

/// Any origin may call the PDS: authorization is by token, never by cookie.
pub(crate) fn with_cors(mut res: HttpResponse) -> HttpResponse {
    res.headers
        .push(("access-control-allow-origin".into(), "*".into()));
    res.headers.push((
        "access-control-expose-headers".into(),
        EXPOSED_HEADERS.into(),
    ));
    res
}

/// The answer to a CORS preflight: the methods XRPC uses and whatever headers the client asks for.
fn preflight(req: &HttpRequest) -> HttpResponse {
    let asked = req.header("access-control-request-headers").unwrap_or("");
    let allow_headers = if asked.is_empty() {
        "Authorization, Content-Type, DPoP, atproto-proxy, atproto-accept-labelers"
    } else {
        asked
    };
    with_cors(HttpResponse {
        status: 204,
        headers: vec![
            (
                "access-control-allow-methods".into(),
                "GET, HEAD, POST, PUT, DELETE, OPTIONS".into(),
            ),
            ("access-control-allow-headers".into(), allow_headers.into()),
            ("access-control-max-age".into(), "86400".into()),
        ],
        body: Body::empty(),
    })
}

/// A did:web DID document is ours to serve only when the account is `did:web` of this host.
fn is_own_did_web(config: &Config) -> bool {
    config.did.as_str() == config.service_did()
}

/// The account's DID document (for did:web accounts): its handle, signing key and PDS endpoint.
pub fn did_document(config: &Config) -> serde_json::Value {
    let did = config.did.as_str();
    serde_json::json!({
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/multikey/v1",
            "https://w3id.org/security/suites/secp256k1-2019/v1"
        ],
        "id": did,
        "alsoKnownAs": [format!("at://{}", config.handle.as_str())],
        "verificationMethod": [{
            "id": format!("{did}#atproto"),
            "type": "Multikey",
            "controller": did,
            "publicKeyMultibase": config.signing_key.public_key().to_multibase(),
        }],
        "service": [{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": config.public_url(),
        }]
    })
}

/// The answer for a path the PDS does not serve.
pub fn not_found() -> HttpResponse {
    xrpc_error(404, "NotFound", "Not Found")
}

/// The answer for a body over the shell's limit.
pub fn payload_too_large() -> HttpResponse {
    xrpc_error(413, "PayloadTooLarge", "request entity too large")
}

fn config_error(e: &ConfigError) -> HttpResponse {
    xrpc_error(
        500,
        "InternalServerError",
        &format!("The server is misconfigured: {e}"),
    )
}

fn xrpc_error(status: u16, error: &str, message: &str) -> HttpResponse {
    HttpResponse::json(
        status,
        &serde_json::json!({ "error": error, "message": message }),
    )
}
