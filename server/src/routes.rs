//! The route table: everything the PDS serves, and where each route runs.
//!
//! One rule places every route ([`Route::placement`]):
//! - [`Placement::Edge`]: answered by the stateless front (the Worker) from configuration
//!   alone: CORS preflights, `/.well-known/atproto-did` (the DID never changes), the root
//!   page, the OAuth discovery documents and 404s;
//! - [`Placement::Account`]: needs the account's state: it runs in the Durable Object
//!   (XRPC methods, the firehose upgrade, the DID document, which carries the stored handle,
//!   the OAuth authorization server);
//! - [`Placement::Offload`]: byte-heavy work the edge does itself after the account
//!   authorized it (see [`crate::offload`]): uploads, and calls of methods served elsewhere
//!   ([`crate::proxy`]); the bytes never pass through the Durable Object.
//!
//! The lifecycle that runs a route is in [`crate::lifecycle`].

use crate::config::Config;
use crate::http::{Body, HttpRequest, HttpResponse};
use crate::offload::Offload;

/// The path of the firehose subscription, which both shells upgrade to a WebSocket.
pub const SUBSCRIBE_REPOS_PATH: &str = "/xrpc/com.atproto.sync.subscribeRepos";
/// Paths under this prefix are the edge's requests to the account; from outside they are 404.
pub const INTERNAL_PREFIX: &str = "/_internal/";
/// The health check: answered by the account, so it shows the Durable Object is up.
pub const HEALTH_PATH: &str = "/xrpc/_health";

/// Something the PDS serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// A CORS preflight (`OPTIONS`, any path).
    Preflight,
    /// `com.atproto.sync.subscribeRepos`: admitted by the account, upgraded by the shell.
    SubscribeRepos,
    /// An XRPC method whose bytes the edge moves after the account authorized it.
    Offload(Offload),
    /// Any other `/xrpc/<nsid>` (the dispatcher answers unknown NSIDs).
    Xrpc(&'a str),
    /// `/xrpc/_health`.
    Health,
    /// `/.well-known/atproto-did`: the account's DID as plain text.
    AtprotoDid,
    /// `/.well-known/did.json`: the DID document of a did:web account of this host.
    DidDocument,
    /// The OAuth discovery documents and the (empty) key set, from configuration.
    OAuthDocument(&'a str),
    /// The authorization server's endpoints (`/oauth/par`, `/oauth/authorize`, `/oauth/token`,
    /// `/oauth/revoke`) and the passkey registration page: they need the account's state.
    OAuth(&'a str),
    /// `/`: what this server is, as one line of text.
    Root,
    /// `/` asked for by a browser (`Accept: text/html`): the status page, from the account.
    StatusPage,
    /// The edge's own requests to the account ([`INTERNAL_PREFIX`]).
    Internal(&'a str),
    /// Anything else.
    NotFound,
}

/// Where a route runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In the stateless front, from configuration alone.
    Edge,
    /// In the account (the Durable Object on Workers).
    Account,
    /// In the stateless front, between two short calls to the account.
    Offload,
}

impl<'a> Route<'a> {
    /// The route of a request, from its method and path.
    pub fn of(method: &str, path: &'a str) -> Route<'a> {
        if method == "OPTIONS" {
            return Route::Preflight;
        }
        if let Some(nsid) = path.strip_prefix("/xrpc/") {
            if path == SUBSCRIBE_REPOS_PATH {
                return Route::SubscribeRepos;
            }
            if path == HEALTH_PATH {
                return Route::Health;
            }
            if let Some(offload) = Offload::of(method, nsid) {
                return Route::Offload(offload);
            }
            return Route::Xrpc(nsid);
        }
        if path.starts_with(INTERNAL_PREFIX) {
            return Route::Internal(path);
        }
        match path {
            "/" => Route::Root,
            "/.well-known/atproto-did" => Route::AtprotoDid,
            "/.well-known/did.json" => Route::DidDocument,
            crate::oauth::metadata::PROTECTED_RESOURCE
            | crate::oauth::metadata::AUTHORIZATION_SERVER
            | crate::oauth::metadata::JWKS => Route::OAuthDocument(path),
            _ if path.starts_with("/oauth/") => Route::OAuth(path),
            crate::oauth::passkey_pages::REGISTER_PATH => Route::OAuth(path),
            _ => Route::NotFound,
        }
    }

    /// The route of a request from its method, path and `Accept` header: [`Route::of`], except
    /// that a read of `/` that accepts HTML is the status page. Other readers of `/` (health
    /// probes, `curl`) get the one-line answer at the edge, without waking the account. `accept`
    /// is asked for only on `/`, so other requests read no extra header.
    pub fn of_request(
        method: &str,
        path: &'a str,
        accept: impl FnOnce() -> Option<String>,
    ) -> Route<'a> {
        match Route::of(method, path) {
            Route::Root
                if matches!(method, "GET" | "HEAD")
                    && accept().is_some_and(|a| a.contains("text/html")) =>
            {
                Route::StatusPage
            }
            route => route,
        }
    }

    /// Where this route runs.
    pub fn placement(&self) -> Placement {
        match self {
            Route::Preflight
            | Route::AtprotoDid
            | Route::OAuthDocument(_)
            | Route::Root
            | Route::NotFound
            // Never forwarded for an outside caller: the edge answers 404.
            | Route::Internal(_) => Placement::Edge,
            Route::SubscribeRepos
            | Route::Xrpc(_)
            | Route::Health
            | Route::DidDocument
            | Route::OAuth(_)
            | Route::StatusPage => Placement::Account,
            Route::Offload(_) => Placement::Offload,
        }
    }
}

/// The reference's limit on a JSON request body, in bytes (its `jsonLimit`, 150 KiB).
pub const JSON_BODY_LIMIT: u64 = 150 * 1024;
/// The reference's larger JSON limit for the methods that carry whole records.
pub const RECORD_BODY_LIMIT: u64 = 1_000_000;
/// Methods that carry records in their body.
const RECORD_WRITES: [&str; 3] = [
    "com.atproto.repo.createRecord",
    "com.atproto.repo.putRecord",
    "com.atproto.repo.applyWrites",
];

impl Route<'_> {
    /// The largest body this route takes from a client, in bytes; `None` for uploads, whose
    /// limit is the account's grant (the configured blob limit). The front refuses a longer body
    /// before reading it: from its declared `Content-Length`, or by counting a streamed one.
    pub fn body_limit(&self) -> Option<u64> {
        match self {
            Route::Offload(Offload::UploadBlob) => None,
            Route::Offload(Offload::Proxy) => Some(crate::proxy::MAX_REQUEST_BYTES),
            Route::Offload(Offload::ImportRepo) => Some(crate::offload::MAX_IMPORT_BYTES),
            Route::Xrpc(nsid) if RECORD_WRITES.contains(nsid) => Some(RECORD_BODY_LIMIT),
            _ => Some(JSON_BODY_LIMIT),
        }
    }
}

/// Reads that cost the account most (whole repositories, blobs, record pages, firehose
/// connects), limited per client address at the edge ([`crate::rate_limit::EXPENSIVE_READS`]);
/// pushed authorization requests count with them.
const EXPENSIVE_READS: [&str; 4] = [
    "com.atproto.sync.getRepo",
    "com.atproto.sync.getBlob",
    "com.atproto.repo.listRecords",
    "dev.rustpds.server.getStatus",
];

impl Route<'_> {
    /// Whether this route is one of the expensive reads limited per client address at the edge,
    /// before the account is asked.
    pub fn is_expensive_read(&self) -> bool {
        match self {
            Route::SubscribeRepos | Route::Offload(Offload::GetBlob) | Route::StatusPage => true,
            // Anyone may push an authorization request, and each may make the PDS fetch a
            // client's metadata and permission sets.
            Route::OAuth("/oauth/par") => true,
            Route::Xrpc(nsid) => EXPENSIVE_READS.contains(nsid),
            _ => false,
        }
    }
}

/// Whether a request declares (`Content-Length`) a body longer than `limit`. An unparsable
/// length counts as too long: the runtimes refuse it anyway.
pub fn declares_more_than(req: &HttpRequest, limit: u64) -> bool {
    req.header("content-length")
        .is_some_and(|v| !length_within(v, limit))
}

/// Whether a `Content-Length` value declares at most `limit` bytes (an unparsable one does
/// not).
pub fn length_within(content_length: &str, limit: u64) -> bool {
    content_length
        .trim()
        .parse::<u64>()
        .is_ok_and(|n| n <= limit)
}

/// Answers an [`Placement::Edge`] route from the configuration, at `now_ms` (the DPoP nonce of
/// an answer to a request that carried DPoP).
pub fn edge(
    config: &Result<Config, crate::config::ConfigError>,
    req: &HttpRequest,
    now_ms: u64,
) -> HttpResponse {
    let mut res = edge_answer(config, req);
    if let Ok(c) = config {
        if crate::oauth::dpop::carries_dpop(req) {
            crate::oauth::dpop::stamp(
                &mut res,
                &crate::oauth::dpop::nonce_key(&c.jwt_secret),
                now_ms,
            );
        }
    }
    res
}

fn edge_answer(
    config: &Result<Config, crate::config::ConfigError>,
    req: &HttpRequest,
) -> HttpResponse {
    let route = Route::of(&req.method, &req.path);
    if route == Route::Preflight {
        return preflight(req);
    }
    let config = match config {
        Ok(c) => c,
        Err(e) => return with_cors(config_error(e)),
    };
    let is_read = matches!(req.method.as_str(), "GET" | "HEAD");
    with_cors(match route {
        Route::OAuthDocument(path) if is_read => {
            crate::oauth::metadata::document(config, path).unwrap_or_else(not_found)
        }
        Route::AtprotoDid if is_read => HttpResponse::bytes(
            200,
            "text/plain; charset=utf-8",
            config.did.as_str().as_bytes().to_vec(),
        ),
        Route::Root if is_read => HttpResponse::bytes(
            200,
            "text/plain; charset=utf-8",
            format!(
                "This is an AT Protocol Personal Data Server (rust-pds {}) hosting {}.\n",
                env!("CARGO_PKG_VERSION"),
                config.did.as_str()
            )
            .into_bytes(),
        ),
        _ => not_found(),
    })
}

/// Response headers browsers may read: OAuth/DPoP and rate-limit headers.
const EXPOSED_HEADERS: &str =
    "WWW-Authenticate, DPoP-Nonce, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy";

/// Any origin may call the PDS: authorization is by token, never by cookie. Adds the headers
/// once (a browser refuses `Access-Control-Allow-Origin: *, *`).
pub(crate) fn with_cors(mut res: HttpResponse) -> HttpResponse {
    if res
        .headers
        .iter()
        .any(|(k, _)| k == "access-control-allow-origin")
    {
        return res;
    }
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

/// The answer for a path the PDS does not serve.
pub fn not_found() -> HttpResponse {
    xrpc_error(404, "NotFound", "Not Found")
}

/// The answer for a body over the shell's limit.
pub fn payload_too_large() -> HttpResponse {
    xrpc_error(413, "PayloadTooLarge", "request entity too large")
}

/// A misconfigured deployment: the variable is named (it is the operator's problem, and names
/// no secret), and every route answers it until the configuration is fixed.
pub(crate) fn config_error(e: &crate::config::ConfigError) -> HttpResponse {
    xrpc_error(500, "InternalServerError", &format!("{MISCONFIGURED}{e}"))
}

/// How the message of a configuration error starts.
pub(crate) const MISCONFIGURED: &str = "The server is misconfigured: ";

pub(crate) fn xrpc_error(status: u16, error: &str, message: &str) -> HttpResponse {
    HttpResponse::json(
        status,
        &serde_json::json!({ "error": error, "message": message }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_has_one_route_and_placement() {
        const OAUTH_METADATA: &str = "/.well-known/oauth-authorization-server";
        const AUTHORIZE_UPLOAD: &str = "/_internal/offload/uploadBlob/authorize";
        const UPLOAD_BLOB: &str = "com.atproto.repo.uploadBlob";
        const GET_RECORD: &str = "com.atproto.repo.getRecord";
        type Cases<'a> = &'a [(&'a str, &'a str, Route<'a>)];
        let by_placement: &[(Placement, Cases)] = &[
            (
                Placement::Edge,
                &[
                    (
                        "OPTIONS",
                        "/xrpc/com.atproto.repo.getRecord",
                        Route::Preflight,
                    ),
                    ("GET", "/", Route::Root),
                    ("GET", "/.well-known/atproto-did", Route::AtprotoDid),
                    ("GET", OAUTH_METADATA, Route::OAuthDocument(OAUTH_METADATA)),
                    ("GET", "/oauth/jwks", Route::OAuthDocument("/oauth/jwks")),
                    ("POST", AUTHORIZE_UPLOAD, Route::Internal(AUTHORIZE_UPLOAD)),
                    ("GET", "/favicon.ico", Route::NotFound),
                    ("GET", "/xrpcfoo", Route::NotFound),
                ],
            ),
            (
                Placement::Account,
                &[
                    ("GET", "/.well-known/did.json", Route::DidDocument),
                    ("POST", "/oauth/par", Route::OAuth("/oauth/par")),
                    ("GET", "/oauth/authorize", Route::OAuth("/oauth/authorize")),
                    ("GET", SUBSCRIBE_REPOS_PATH, Route::SubscribeRepos),
                    ("GET", HEALTH_PATH, Route::Health),
                    // uploadBlob is a procedure: a GET is the dispatcher's to refuse.
                    (
                        "GET",
                        "/xrpc/com.atproto.repo.uploadBlob",
                        Route::Xrpc(UPLOAD_BLOB),
                    ),
                    (
                        "GET",
                        "/xrpc/com.atproto.repo.getRecord",
                        Route::Xrpc(GET_RECORD),
                    ),
                    // Preferences are the account's, though app.bsky.
                    (
                        "GET",
                        "/xrpc/app.bsky.actor.getPreferences",
                        Route::Xrpc("app.bsky.actor.getPreferences"),
                    ),
                    // Not an NSID: the dispatcher answers it.
                    ("GET", "/xrpc/nonsense", Route::Xrpc("nonsense")),
                ],
            ),
            (
                Placement::Offload,
                &[
                    (
                        "POST",
                        "/xrpc/com.atproto.repo.uploadBlob",
                        Route::Offload(Offload::UploadBlob),
                    ),
                    (
                        "GET",
                        "/xrpc/com.atproto.sync.getBlob",
                        Route::Offload(Offload::GetBlob),
                    ),
                    // Served elsewhere: proxied, whatever the HTTP method (the front refuses a
                    // wrong one before asking the account).
                    (
                        "GET",
                        "/xrpc/app.bsky.feed.getTimeline",
                        Route::Offload(Offload::Proxy),
                    ),
                    (
                        "POST",
                        "/xrpc/chat.bsky.convo.sendMessage",
                        Route::Offload(Offload::Proxy),
                    ),
                    (
                        "GET",
                        "/xrpc/com.example.unknown",
                        Route::Offload(Offload::Proxy),
                    ),
                ],
            ),
        ];
        for (placement, cases) in by_placement {
            for (method, path, route) in *cases {
                let got = Route::of(method, path);
                assert_eq!(got, *route, "{method} {path}");
                assert_eq!(got.placement(), *placement, "{method} {path}");
            }
        }
    }
}
