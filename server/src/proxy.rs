//! Service proxying: XRPC calls this PDS does not serve itself go to the service that does (the
//! AppView, chat, the moderation service, or any service an `atproto-proxy` header names),
//! with a service token signed by the account's key. As the reference PDS does
//! (bluesky-social/atproto `packages/pds/src/pipethrough.ts`).
//!
//! It is offloaded work ([`crate::offload`]): the account decides and signs
//! ([`authorize`]: credentials, target, token) and answers a [`ProxyGrant`]; the front then
//! moves the bytes ([`forward`]), so proxied answers stream through the stateless Worker and
//! never through the Durable Object. Reads about someone else (`com.atproto.repo.getRecord`,
//! `listRecords`, `describeRepo` of a repository hosted elsewhere, `resolveHandle` of another
//! handle) are decided by the account while it serves them, and come back to the front as a
//! grant too ([`GRANT_HEADER`]).

use std::time::Duration;

use futures_util::StreamExt;
use pds_api::runtime::xrpc::{ByteStream, XrpcError};
use serde_json::Value;

use crate::account::Account;
use crate::api::internal;
use crate::auth::policy::AuthRequirement;
use crate::auth::service::{mint, ServiceTokenRequest, DEFAULT_SERVICE_TOKEN_TTL_SECS};
use crate::auth::session::is_protected_method;
use crate::auth::Permission;
use crate::config::{Config, ServiceRef};
use crate::data::json::{read_message, JsonMessage, JsonObject, JsonWriter};
use crate::first_error::FirstError;
use crate::http::{Body, HttpRequest, HttpResponse};
use crate::net::http_client::ClientResponse;
use crate::net::http_client::{ClientRequest, HttpClient, HttpError, Method, RequestBody};
use crate::offload::{internal_request, AccountLink, Offload, Step};
use crate::read_after_write::{LocalWrites, LocalWritesAsk};

/// The header that names the service a call goes to: `<did>#<service id>`.
pub const PROXY_HEADER: &str = "atproto-proxy";
/// Marks an account's answer that is a [`ProxyGrant`] for the front to carry out, not the
/// client's answer. The front always consumes it; clients never see it.
pub const GRANT_HEADER: &str = "x-pds-proxy-grant";
/// The largest request body a proxied call may carry (reports, chat messages: small JSON).
pub const MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// The largest answer passed through, counted as it streams.
pub const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
/// Request headers passed on to the service, as the reference forwards them.
const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "accept-language",
    "atproto-accept-labelers",
    "x-bsky-topics",
];
/// Headers of a request body passed on with it.
const FORWARDED_BODY_HEADERS: &[&str] = &["content-type", "content-encoding"];
/// Answer headers passed back to the client, as the reference passes them (`content-length`
/// is left to the shell, which may re-frame the stream).
const FORWARDED_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "content-language",
    "atproto-repo-rev",
    "atproto-content-labelers",
    "retry-after",
];
/// Reads the account answers about itself and the AppView about anyone else: the method and
/// the parameter naming whom it is about (a DID or handle; a handle only for resolveHandle).
const READS_ABOUT: &[(&str, &str)] = &[
    ("com.atproto.repo.getRecord", "repo"),
    ("com.atproto.repo.listRecords", "repo"),
    ("com.atproto.repo.describeRepo", "repo"),
    ("com.atproto.identity.resolveHandle", "handle"),
];
const GET_FEED: &str = "app.bsky.feed.getFeed";
const GET_FEED_SKELETON: &str = "app.bsky.feed.getFeedSkeleton";

/// What the account allows the front to send, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyGrant {
    /// The whole URL: the service's origin, the XRPC path and the client's query.
    pub url: String,
    /// The `Authorization` header to send (a service token), if any.
    pub authorization: Option<String>,
    /// The exchange's time limit.
    pub timeout_seconds: u64,
    /// For the read-after-write methods: the repository's head revision. An answer older than
    /// it is patched with the account's newer writes ([`crate::read_after_write`]).
    pub read_after_write: Option<String>,
}

impl JsonMessage for ProxyGrant {
    fn write(&self) -> Value {
        JsonWriter::new()
            .str("url", &self.url)
            .opt_str("authorization", self.authorization.as_deref())
            .u64("timeoutSeconds", self.timeout_seconds)
            .opt_str("readAfterWrite", self.read_after_write.as_deref())
            .finish()
    }

    fn read(o: &JsonObject) -> Result<ProxyGrant, String> {
        let mut e = FirstError::new();
        let v = ProxyGrant {
            url: e.keep(o.str("url")),
            authorization: e.keep(o.opt_str("authorization")),
            timeout_seconds: e.keep(o.u64("timeoutSeconds")),
            read_after_write: e.keep(o.opt_str("readAfterWrite")),
        };
        e.finish(v)
    }
}

/// What the front tells the account about a call to proxy (its headers go along as they came).
#[derive(Debug, Clone)]
pub struct ProxyAsk {
    /// The XRPC method.
    pub nsid: String,
    /// The raw query string.
    pub query: String,
    /// For push registrations: the body's `serviceDid` ([`service_did_of`]).
    pub service_did: Option<String>,
}

impl JsonMessage for ProxyAsk {
    fn write(&self) -> Value {
        JsonWriter::new()
            .str("nsid", &self.nsid)
            .str("query", &self.query)
            .opt_str("serviceDid", self.service_did.as_deref())
            .finish()
    }

    fn read(o: &JsonObject) -> Result<ProxyAsk, String> {
        let mut e = FirstError::new();
        let v = ProxyAsk {
            nsid: e.keep(o.str("nsid")),
            query: e.keep(o.str("query")),
            service_did: e.keep(o.opt_str("serviceDid")),
        };
        e.finish(v)
    }
}

/// Push registrations: the body's `serviceDid` names the service, and the token's audience.
const PUSH_METHODS: &[&str] = &[
    "app.bsky.notification.registerPush",
    "app.bsky.notification.unregisterPush",
];

/// The largest body of a call whose target is in its body.
pub const MAX_PUSH_BODY_BYTES: usize = 16 * 1024;

/// Whether the front must read the call's body before asking the account (push registrations,
/// whose target is in the body: at most [`MAX_PUSH_BODY_BYTES`]).
pub fn needs_body(nsid: &str) -> bool {
    PUSH_METHODS.contains(&nsid)
}

/// The `serviceDid` of a push registration's body, if it has a well-formed one: all the account
/// is told of the body.
pub fn service_did_of(body: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let did = json.get("serviceDid")?.as_str()?;
    pds_api::runtime::syntax::Did::new(did.to_owned())
        .ok()
        .map(|d| d.as_str().to_owned())
}

/// The reference's refusal of a method that cannot be proxied for this caller.
fn bad_token_method() -> XrpcError {
    XrpcError::declared("InvalidToken", "Bad token method")
}

/// A service that could not be reached or failed: 502 `UpstreamFailure`.
fn upstream_failure(message: &str) -> XrpcError {
    XrpcError::new(502, "UpstreamFailure", message)
}

/// The checks the front makes before asking the account: only GET, HEAD and POST are XRPC, and
/// a method the lexicons know must be called with its own HTTP method.
pub fn check_request(method: &str, nsid: &str) -> Result<(), XrpcError> {
    if !matches!(method, "GET" | "HEAD" | "POST") {
        return Err(XrpcError::invalid_request(
            "XRPC requests only supports GET and POST",
        ));
    }
    if let Some(meta) = pds_api::methods::METHODS.iter().find(|m| m.nsid == nsid) {
        let http = pds_api::runtime::xrpc::HttpMethod::parse(method);
        pds_api::methods::lookup(meta.nsid, http)?;
    }
    Ok(())
}

/// Splits an `atproto-proxy` header into the DID and the service id (with its `#`), with the
/// reference's messages for malformed ones.
pub fn parse_proxy_header(value: &str) -> Result<(&str, &str), XrpcError> {
    let bad = |m: &str| Err(XrpcError::invalid_request(m));
    let Some(hash) = value.find('#') else {
        return bad("no service id specified in proxy header");
    };
    if hash == 0 {
        return bad("no did specified in proxy header");
    }
    if hash == value.len() - 1 {
        return bad("no service id specified in proxy header");
    }
    if value[hash + 1..].contains('#') {
        return bad("invalid proxy header format");
    }
    if value.contains(' ') {
        return bad("proxy header cannot contain spaces");
    }
    Ok((&value[..hash], &value[hash..]))
}

/// The service a call goes to when no header names one, and the id it has there: reports to
/// the moderation service, chat to the chat service, everything else to the AppView.
pub fn default_service<'c>(config: &'c Config, nsid: &str) -> (&'c ServiceRef, &'static str) {
    if nsid == "com.atproto.moderation.createReport" {
        (&config.proxy.report, "#atproto_labeler")
    } else if nsid.starts_with("chat.bsky.") {
        (&config.proxy.chat, "#bsky_chat")
    } else {
        (&config.proxy.appview, "#bsky_appview")
    }
}

/// Where a call goes: the service's DID, its id there (`#bsky_appview`) and its base URL, once
/// resolved.
struct Target<'h> {
    did: &'h str,
    service_id: &'h str,
    /// Known up front for configured services; else read from the DID document.
    url: Option<String>,
}

impl Target<'_> {
    /// `did#id`: the audience permissions are judged on (OAuth's `rpc:` scopes name it).
    fn scope_aud(&self) -> String {
        format!("{}{}", self.did, self.service_id)
    }
}

/// The target a header names (only its syntax is checked here), or the default one.
fn target<'a>(
    config: &'a Config,
    nsid: &str,
    header: Option<&'a str>,
) -> Result<Target<'a>, XrpcError> {
    let Some(header) = header else {
        let (service, service_id) = default_service(config, nsid);
        return Ok(Target {
            did: &service.did,
            service_id,
            url: Some(service.url.clone()),
        });
    };
    let (did, service_id) = parse_proxy_header(header)?;
    // The configured AppView and chat service under the ids the apps send (the app sends the
    // AppView's on every call): their configured URLs, with no lookup.
    let configured = [
        (&config.proxy.appview, "#bsky_appview"),
        (&config.proxy.chat, "#bsky_chat"),
    ];
    let url = configured
        .iter()
        .find(|(s, id)| s.did == did && *id == service_id)
        .map(|(s, _)| s.url.clone());
    Ok(Target {
        did,
        service_id,
        url,
    })
}

/// The base URL of a target, from its DID document when not configured.
async fn target_url(
    config: &Config,
    account: &Account,
    target: &Target<'_>,
) -> Result<String, XrpcError> {
    if let Some(url) = &target.url {
        return Ok(url.clone());
    }
    let doc = account
        .resolver(config)
        .resolve_did(target.did)
        .await
        .map_err(|_| XrpcError::invalid_request("could not resolve proxy did"))?;
    doc.service(target.service_id)
        .map(|s| s.endpoint.trim_end_matches('/').to_owned())
        .filter(|url| is_service_url(config, url))
        .ok_or_else(|| XrpcError::invalid_request("could not resolve proxy did service url"))
}

/// Where a push registration goes, as the reference sends it: to the AppView when `serviceDid`
/// is the AppView's, else to the `#bsky_notif` service of `serviceDid`'s DID document.
async fn push_url(config: &Config, account: &Account, did: &str) -> Result<String, XrpcError> {
    if did == config.proxy.appview.did {
        return Ok(config.proxy.appview.url.clone());
    }
    let doc = account
        .resolver(config)
        .resolve_did(did)
        .await
        .map_err(|_| {
            XrpcError::invalid_request(format!("could not resolve did document: {did}"))
        })?;
    doc.service_endpoint("#bsky_notif", "BskyNotificationService")
        .map(|url| url.trim_end_matches('/').to_owned())
        .filter(|url| is_service_url(config, url))
        .ok_or_else(|| {
            XrpcError::invalid_request(format!(
                "invalid notification service details in did document: {did}"
            ))
        })
}

/// A service endpoint from a DID document: https to a host name, with nothing after the
/// authority but a path. A local development deployment also accepts plain http and loopback
/// hosts; no other deployment sends its tokens to loopback or to bare IP addresses.
fn is_service_url(config: &Config, url: &str) -> bool {
    let local = config.is_local_development();
    let (secure, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_ascii_lowercase();
    let loopback = host == "localhost" || host.ends_with(".localhost");
    // The last label of a host name is never all digits: that is an IP address.
    let ip = host
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    crate::config::is_hostname(authority)
        && !rest.contains(['?', '#', '@'])
        && if local {
            secure || loopback || host == "127.0.0.1"
        } else {
            secure && !loopback && !ip
        }
}

/// Decides a proxied call in the account, in the reference's order: a method never proxied is
/// refused, the header's syntax checked, the caller authenticated (with the account's
/// credentials; admin methods need admin), privileged methods (chat) refused to credentials
/// without the privilege; then the target's URL is resolved and a service token signed.
/// `presented` is what the client's request presents; `proxy_header` its `atproto-proxy`.
///
/// The token's audience is the service's bare DID, as the current reference sends it
/// (bluesky-social/atproto, Aug 2026); permissions are judged on `did#id`.
pub async fn authorize(
    config: &Config,
    account: &Account,
    ask: &ProxyAsk,
    presented: &crate::auth::Presented<'_>,
    proxy_header: Option<&str>,
) -> Result<ProxyGrant, XrpcError> {
    let nsid = ask.nsid.as_str();
    if is_protected_method(nsid) {
        return Err(bad_token_method());
    }
    let target = match (&ask.service_did, PUSH_METHODS.contains(&nsid)) {
        (Some(did), true) => Target {
            did,
            service_id: "#bsky_notif",
            url: None,
        },
        (None, true) => {
            return Err(XrpcError::invalid_request(
                "Input must have the property \"serviceDid\"",
            ))
        }
        _ => target(config, nsid, proxy_header)?,
    };
    // NSID authorities are case-insensitive: `Com.Atproto.Admin.x` is an admin method too.
    let requirement = if nsid.to_ascii_lowercase().starts_with("com.atproto.admin.") {
        AuthRequirement::Admin
    } else {
        AuthRequirement::Access
    };
    let api = crate::api::Api { config, account };
    let caller = api.with_auth(|auth| auth.authenticate_presented(requirement, presented, nsid))?;
    let permission = Permission::ServiceToken {
        lxm: Some(nsid),
        aud: &target.scope_aud(),
    };
    if matches!(caller, crate::auth::Caller::OAuth(_)) {
        // An OAuth token calls a service with an `rpc:` scope for it (403 without).
        caller.require(permission)?;
    } else if !caller.can(permission) {
        return Err(bad_token_method());
    }
    let url = if PUSH_METHODS.contains(&nsid) {
        push_url(config, account, target.did).await?
    } else {
        target_url(config, account, &target).await?
    };
    let (aud, lxm) = if nsid == GET_FEED {
        (
            feed_generator_did(config, account, &ask.query).await?,
            GET_FEED_SKELETON,
        )
    } else {
        (target.did.to_owned(), nsid)
    };
    let token = sign_token(config, account, &aud, lxm)?;
    let read_after_write = if crate::read_after_write::METHODS.contains(&nsid) {
        crate::storage::load_root(account.sql.as_ref())
            .map_err(internal)?
            .map(|root| root.rev)
    } else {
        None
    };
    Ok(ProxyGrant {
        url: xrpc_url(&url, nsid, &ask.query),
        authorization: Some(format!("Bearer {token}")),
        timeout_seconds: config.proxy.timeout_seconds,
        read_after_write,
    })
}

/// `<base>/xrpc/<nsid>[?<query>]`.
pub(crate) fn xrpc_url(base: &str, nsid: &str, query: &str) -> String {
    if query.is_empty() {
        format!("{base}/xrpc/{nsid}")
    } else {
        format!("{base}/xrpc/{nsid}?{query}")
    }
}

/// A service token from the account to `aud` for `lxm`, valid for a minute.
pub(crate) fn sign_token(
    config: &Config,
    account: &Account,
    aud: &str,
    lxm: &str,
) -> Result<String, XrpcError> {
    let iat = account.clock.now_millis() / 1000;
    let jti = crate::hex::encode(&crate::auth::random_bytes::<16>()?);
    Ok(mint(
        &ServiceTokenRequest {
            iss: config.did.as_str(),
            aud,
            lxm: Some(lxm),
            iat,
            exp: iat + DEFAULT_SERVICE_TOKEN_TTL_SECS,
            jti: &jti,
        },
        &config.signing_key,
    ))
}

/// The DID of the feed generator behind `getFeed`'s `feed` (an `app.bsky.feed.generator`
/// record's URI): read from the AppView, as the reference does, and refused as 400
/// `UnknownFeed` when the record names none.
async fn feed_generator_did(
    config: &Config,
    account: &Account,
    query: &str,
) -> Result<String, XrpcError> {
    let feed = query_param(query, "feed").ok_or_else(|| {
        XrpcError::invalid_request("Error: Params must have the property \"feed\"")
    })?;
    let rest = feed
        .strip_prefix("at://")
        .ok_or_else(|| XrpcError::invalid_request("feed must be an at-uri"))?;
    let mut parts = rest.splitn(3, '/');
    let (Some(repo), Some(collection), Some(rkey)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(XrpcError::invalid_request("feed must be an at-uri"));
    };
    let query = format!(
        "repo={}&collection={}&rkey={}",
        encode_component(repo),
        encode_component(collection),
        encode_component(rkey),
    );
    let url = xrpc_url(
        &config.proxy.appview.url,
        "com.atproto.repo.getRecord",
        &query,
    );
    let timeout = Duration::from_secs(config.proxy.timeout_seconds);
    let (status, json) = get_json(account.http.as_ref(), url, None, timeout)
        .await
        .map_err(|e| unreachable_upstream(&e))?;
    if status >= 500 {
        return Err(upstream_failure("Upstream Failure"));
    }
    if status >= 400 {
        // The AppView's refusal (RecordNotFound, ...) is the client's answer, as in the reference.
        let text = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        return Err(XrpcError::new(
            status,
            text("error").unwrap_or_else(|| "InvalidRequest".into()),
            text("message").unwrap_or_else(|| "could not read the feed's record".into()),
        ));
    }
    json.pointer("/value/did")
        .and_then(|d| d.as_str())
        .map(str::to_owned)
        .ok_or_else(|| XrpcError::declared("UnknownFeed", "could not resolve feed did"))
}

/// A service that did not answer (refused, timed out, broken body): logged, and 502
/// `UpstreamFailure` "Upstream service unreachable" as the reference answers it.
fn unreachable_upstream(e: &HttpError) -> XrpcError {
    crate::log::error(&format!("proxy: upstream unreachable: {e}"));
    upstream_failure("Upstream service unreachable")
}

/// The largest JSON document the PDS reads from a service for itself (a record, a post, a
/// thread's parent).
const MAX_LOOKUP_BYTES: u64 = 1024 * 1024;

/// A GET of a small JSON document from a service, for the PDS itself (not passed through):
/// the status and the body (`Null` when it is not JSON).
pub(crate) async fn get_json(
    http: &dyn HttpClient,
    url: String,
    authorization: Option<&str>,
    timeout: Duration,
) -> Result<(u16, serde_json::Value), HttpError> {
    let mut request = ClientRequest::get(url)
        .timeout(timeout)
        .max_response_bytes(MAX_LOOKUP_BYTES);
    if let Some(auth) = authorization {
        request = request.header("authorization", auth);
    }
    let response = http.send(request).await?;
    let status = response.status;
    let bytes = response.bytes().await?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
}

/// The grant for a read about someone else: `getRecord`, `listRecords` or `describeRepo` of a
/// repository not hosted here, or `resolveHandle` of another handle (`repo` or `handle` neither
/// the account's DID nor its handle). The AppView answers it, without credentials, as the
/// reference does. `None`: the account serves it.
pub fn read_about_someone_else(config: &Config, nsid: &str, query: &str) -> Option<ProxyGrant> {
    let (_, param) = READS_ABOUT.iter().find(|(n, _)| *n == nsid)?;
    let subject = query_param(query, param)?;
    let ours =
        subject == config.did.as_str() || subject.eq_ignore_ascii_case(config.handle.as_str());
    let is_handle = pds_api::runtime::syntax::Handle::new(subject.clone()).is_ok();
    let is_did = *param == "repo" && pds_api::runtime::syntax::Did::new(subject.clone()).is_ok();
    // A value that is neither is the dispatcher's to refuse.
    if ours || !(is_handle || is_did) {
        return None;
    }
    Some(ProxyGrant {
        url: xrpc_url(&config.proxy.appview.url, nsid, query),
        authorization: None,
        timeout_seconds: config.proxy.timeout_seconds,
        read_after_write: None,
    })
}

/// Whether the account's answer to a request may be a grant the front must carry out (reads
/// about someone else): both shells check it, so a grant never reaches a client.
pub fn may_answer_grant(method: &str, path: &str) -> bool {
    matches!(method, "GET" | "HEAD")
        && path
            .strip_prefix("/xrpc/")
            .is_some_and(|nsid| READS_ABOUT.iter().any(|(n, _)| *n == nsid))
}

/// The account's answer carrying `grant` for the front ([`GRANT_HEADER`]).
pub fn grant_response(grant: &ProxyGrant) -> HttpResponse {
    let mut res = HttpResponse::json(200, &grant.write());
    res.headers.push((GRANT_HEADER.into(), "1".into()));
    res
}

/// The first value of `name` in a raw query string, percent-decoded (`None` also when it does
/// not decode: the dispatcher refuses that).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != name {
            return None;
        }
        pds_api::runtime::schema::percent_decode(v).ok()
    })
}

/// Percent-encodes a query parameter value, keeping `:` (DIDs and AT URIs read as they are).
pub(crate) fn encode_component(s: &str) -> String {
    crate::http::percent_encode(s, b":")
}

/// Carries out a grant at the front: sends the client's call to the service with the
/// forwarded headers and the grant's token, and passes the answer back as it streams. `head`
/// is the client's request; `body` its body (read here, up to [`MAX_REQUEST_BYTES`]). `link`
/// reaches the account for read-after-write.
pub async fn forward(
    http: &dyn HttpClient,
    link: Option<&dyn AccountLink>,
    grant: &ProxyGrant,
    head: &HttpRequest,
    body: Body,
) -> HttpResponse {
    match exchange(http, link, grant, head, body).await {
        Ok(res) => res,
        Err(e) => e.into_response().into(),
    }
}

/// Answers up to this long (declared) are passed on as one buffer rather than streamed.
const SMALL_RESPONSE_BYTES: u64 = 64 * 1024;

async fn exchange(
    http: &dyn HttpClient,
    link: Option<&dyn AccountLink>,
    grant: &ProxyGrant,
    head: &HttpRequest,
    body: Body,
) -> Result<HttpResponse, XrpcError> {
    let method = Method::parse(&head.method)
        .ok_or_else(|| XrpcError::invalid_request("XRPC requests only supports GET and POST"))?;
    let mut request = ClientRequest::new(method, grant.url.clone())
        .timeout(Duration::from_secs(grant.timeout_seconds))
        .max_response_bytes(MAX_RESPONSE_BYTES)
        // What the client accepts, or else the bytes as they are (the reference's default).
        // Answers that may be patched are asked for as they are.
        .header(
            "accept-encoding",
            match grant.read_after_write {
                Some(_) => "identity",
                None => head.header("accept-encoding").unwrap_or("identity"),
            },
        );
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(v) = head.header(name) {
            request = request.header(*name, v);
        }
    }
    if let Some(auth) = &grant.authorization {
        request = request.header("authorization", auth.as_str());
    }
    if method == Method::Post {
        for name in FORWARDED_BODY_HEADERS {
            if let Some(v) = head.header(name) {
                request = request.header(*name, v);
            }
        }
        let bytes = body
            .collect(MAX_REQUEST_BYTES as usize)
            .await
            .map_err(|_| XrpcError::new(413, "PayloadTooLarge", "request entity too large"))?;
        request = request.body(RequestBody::Bytes(bytes));
    }
    let mut response = http
        .send(request)
        .await
        .map_err(|e| unreachable_upstream(&e))?;
    if let (Some(local_rev), Some(link)) = (grant.read_after_write.as_deref(), link) {
        response = match read_after_write(http, link, head, local_rev, response).await {
            Ok(patched) => return Ok(patched),
            Err(untouched) => untouched,
        };
    }
    if response.status == 500 {
        let message = response
            .bytes_up_to(64 * 1024)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned));
        return Err(upstream_failure(
            message.as_deref().unwrap_or("Upstream Failure"),
        ));
    }
    let headers = forwarded_response_headers(&response.headers);
    let status = response.status;
    // A small answer of declared length is read whole: handing the client one buffer costs the
    // Worker less than a stream adapter does.
    let declared = response
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n <= SMALL_RESPONSE_BYTES) {
        let bytes = response.bytes().await.map_err(|e| {
            crate::log::error(&format!("proxy: upstream body failed: {e}"));
            upstream_failure("Upstream Failure")
        })?;
        return Ok(HttpResponse {
            status,
            headers,
            body: Body::Bytes(bytes),
        });
    }
    let stream: ByteStream = Box::pin(response.into_stream().map(|chunk| {
        chunk.map_err(|e| {
            crate::log::error(&format!("proxy: upstream body failed: {e}"));
            upstream_failure("Upstream Failure")
        })
    }));
    Ok(HttpResponse {
        status,
        headers,
        body: Body::Stream(stream),
    })
}

/// Patches an answer older than the account's head with the account's newer writes: the
/// patched answer, or the answer untouched (`Err`) when there is nothing to patch.
async fn read_after_write(
    http: &dyn HttpClient,
    link: &dyn AccountLink,
    head: &HttpRequest,
    local_rev: &str,
    response: ClientResponse,
) -> Result<HttpResponse, ClientResponse> {
    let nsid = head.path.strip_prefix("/xrpc/").unwrap_or_default();
    let Some(rev) = response.header("atproto-repo-rev").map(str::to_owned) else {
        return Err(response);
    };
    let json = response.header("content-type").is_none_or(is_json)
        && response
            .header("content-encoding")
            .is_none_or(|e| e.trim().eq_ignore_ascii_case("identity"));
    // getPostThread of a post the AppView does not have yet is built from the account's writes.
    let thread_uri = (nsid == "app.bsky.feed.getPostThread" && response.status == 400)
        .then(|| query_param(&head.query, "uri"))
        .flatten();
    if rev.as_str() >= local_rev || !json || !(response.is_success() || thread_uri.is_some()) {
        return Err(response);
    }
    let status = response.status;
    let headers = response.headers.clone();
    // Buffered from here: an answer that cannot be patched goes back as it came.
    let buffered = |bytes: Vec<u8>| {
        let mut res = HttpResponse::bytes(status, "application/json", bytes);
        let forwarded = forwarded_response_headers(&headers);
        if forwarded.iter().any(|(k, _)| k == "content-type") {
            res.headers = forwarded;
        } else {
            res.headers.extend(forwarded);
        }
        res
    };
    let bytes = match response.bytes_up_to(MAX_RESPONSE_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => return Ok(unreachable_upstream(&e).into_response().into()),
    };
    let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Ok(buffered(bytes));
    };
    if thread_uri.is_some() && body["error"] != "NotFound" {
        return Ok(buffered(bytes));
    }
    let ask = LocalWritesAsk {
        nsid: nsid.to_owned(),
        rev,
        thread_uri: thread_uri.clone(),
        parent_height: query_param(&head.query, "parentHeight"),
    };
    let answer = link
        .call(internal_request(
            Offload::Proxy.path(Step::Complete),
            head,
            Some(ask.write()),
        ))
        .await;
    let writes: Option<LocalWrites> = match answer.body {
        Body::Bytes(b) if answer.status == 200 => read_message(&b).ok(),
        _ => None,
    };
    let Some(writes) = writes.filter(|w| w.count > 0) else {
        return Ok(buffered(bytes));
    };
    let patched = match &thread_uri {
        None => {
            crate::read_after_write::patch(nsid, &mut body, &writes);
            body
        }
        Some(_) => {
            let parent = match &writes.parent {
                Some(grant) => parent_thread(http, grant).await,
                None => None,
            };
            match crate::read_after_write::thread_fallback(&writes, parent) {
                Some(thread) => thread,
                None => return Ok(buffered(bytes)),
            }
        }
    };
    let mut res = HttpResponse::json(200, &patched);
    if let Some(lag) = writes.lag_ms {
        res.headers
            .push((crate::read_after_write::LAG_HEADER.into(), lag.to_string()));
    }
    Ok(res)
}

/// The thread of a locally built thread's parent, read from the AppView; `None` on any failure
/// (the thread is then shown without it, as the reference does).
async fn parent_thread(http: &dyn HttpClient, grant: &ProxyGrant) -> Option<serde_json::Value> {
    let timeout = Duration::from_secs(grant.timeout_seconds);
    let (status, body) = get_json(
        http,
        grant.url.clone(),
        grant.authorization.as_deref(),
        timeout,
    )
    .await
    .ok()?;
    (200..300)
        .contains(&status)
        .then(|| body.get("thread").cloned())?
}

/// The headers of a service's answer that are passed back to the client.
fn forwarded_response_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| FORWARDED_RESPONSE_HEADERS.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// Whether a content type is JSON (`application/json`, `application/*+json`).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence
        .strip_prefix("application/")
        .is_some_and(|sub| sub == "json" || sub.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_headers_parse_as_the_reference_does() {
        assert_eq!(
            parse_proxy_header("did:web:api.bsky.chat#bsky_chat").unwrap(),
            ("did:web:api.bsky.chat", "#bsky_chat")
        );
        for (header, message) in [
            ("#bsky_appview", "no did specified in proxy header"),
            (
                "did:web:api.bsky.app",
                "no service id specified in proxy header",
            ),
            (
                "did:web:api.bsky.app#",
                "no service id specified in proxy header",
            ),
            ("did:web:x#a#b", "invalid proxy header format"),
            ("did:web:x #a", "proxy header cannot contain spaces"),
        ] {
            let e = parse_proxy_header(header).unwrap_err();
            assert_eq!(
                (e.status, e.error.as_str()),
                (400, "InvalidRequest"),
                "{header}"
            );
            assert_eq!(e.message, message, "{header}");
        }
    }

    #[test]
    fn service_urls_from_documents() {
        let config = |hostname: &str| {
            let account = crate::dev_account::DevAccount::generate(1, None, None).unwrap();
            let mut config = account.config().unwrap();
            config.hostname = hostname.into();
            config
        };
        let production = config("pds.example.com");
        let local = config("localhost:2583");
        let everywhere = ["https://api.bsky.app", "https://example.com:8443/base"];
        let local_only = [
            "http://localhost:2584",
            "http://127.0.0.1:9",
            "https://localhost",
        ];
        let nowhere = [
            "http://api.bsky.app",
            "ftp://x.test",
            "https://user@x.test",
            "https://x.test?q",
            "https://",
            "http://10.0.0.1",
        ];
        for url in everywhere {
            assert!(is_service_url(&production, url), "{url}");
            assert!(is_service_url(&local, url), "{url}");
        }
        for url in local_only {
            assert!(!is_service_url(&production, url), "{url}");
            assert!(is_service_url(&local, url), "{url}");
        }
        for url in nowhere.iter().chain(&[
            "https://10.0.0.1",
            "https://169.254.169.254/x",
            "https://a.localhost",
        ]) {
            assert!(!is_service_url(&production, url), "{url}");
        }
        for url in nowhere {
            assert!(!is_service_url(&local, url), "{url}");
        }
    }

    #[test]
    fn query_params() {
        let q = "feed=at%3A%2F%2Fdid%3Aplc%3Aabc%2Fapp.bsky.feed.generator%2Fhot&limit=3";
        assert_eq!(
            query_param(q, "feed").as_deref(),
            Some("at://did:plc:abc/app.bsky.feed.generator/hot")
        );
        assert_eq!(query_param(q, "limit").as_deref(), Some("3"));
        assert_eq!(query_param(q, "cursor"), None);
        assert_eq!(query_param("repo=a%2", "repo"), None);
        assert_eq!(encode_component("a b/c"), "a%20b%2Fc");
    }
}
