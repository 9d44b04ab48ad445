//! OAuth clients: who they are (a `client_id`), what they declared (their metadata document),
//! and how confidential clients prove it (`private_key_jwt` assertions).
//!
//! Two kinds of `client_id`:
//! - discoverable: an `https://` URL of the client's metadata document, fetched through the
//!   outbound HTTP port (no redirects, 10 s, 64 KiB) and cached for 10 minutes;
//! - loopback (development): `http://localhost` with optional `scope` and `redirect_uri`
//!   query parameters, whose metadata is implied (a public, native client).

use serde_json::Value;

use super::store::OAuthStore;
use super::OAuthError;
use crate::account::Account;
use crate::auth::jwt;
use crate::first_error::FirstError;
use crate::http::url_origin;
use crate::net::http_client::ClientRequest;

/// How long fetched metadata is trusted (the reference's 10 minutes).
pub const METADATA_CACHE_MS: i64 = 10 * 60 * 1000;
/// The largest metadata document read.
pub const MAX_METADATA_BYTES: u64 = 64 * 1024;
/// How old a client assertion may be (the spec: accept those under a minute old).
const ASSERTION_MAX_AGE_SECS: u64 = 60;
/// Clock tolerance for a client assertion's times.
const ASSERTION_SKEW_SECS: u64 = 10;
/// The assertion type of `private_key_jwt`.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client's metadata document, as far as this server reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientMetadata {
    pub client_id: String,
    pub redirect_uris: Vec<String>,
    pub response_types: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub scope: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub token_endpoint_auth_signing_alg: Option<String>,
    pub jwks: Option<Value>,
    pub jwks_uri: Option<String>,
    pub application_type: Option<String>,
    pub dpop_bound_access_tokens: Option<bool>,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub tos_uri: Option<String>,
    pub policy_uri: Option<String>,
}

impl ClientMetadata {
    /// Reads a metadata document (JSON text). Members this server does not read are ignored;
    /// a read member of the wrong type fails it.
    pub fn parse(json: &[u8]) -> Result<ClientMetadata, String> {
        let o = crate::data::json::JsonObject::parse(json)?;
        let mut e = FirstError::new();
        let v = ClientMetadata {
            client_id: e.keep(o.str("client_id")),
            redirect_uris: e.keep(o.opt_strs("redirect_uris")).unwrap_or_default(),
            response_types: e.keep(o.opt_strs("response_types")),
            grant_types: e.keep(o.opt_strs("grant_types")),
            scope: e.keep(o.opt_str("scope")),
            token_endpoint_auth_method: e.keep(o.opt_str("token_endpoint_auth_method")),
            token_endpoint_auth_signing_alg: e.keep(o.opt_str("token_endpoint_auth_signing_alg")),
            jwks: o.get("jwks").cloned(),
            jwks_uri: e.keep(o.opt_str("jwks_uri")),
            application_type: e.keep(o.opt_str("application_type")),
            dpop_bound_access_tokens: e.keep(o.opt_bool("dpop_bound_access_tokens")),
            client_name: e.keep(o.opt_str("client_name")),
            client_uri: e.keep(o.opt_str("client_uri")),
            logo_uri: e.keep(o.opt_str("logo_uri")),
            tos_uri: e.keep(o.opt_str("tos_uri")),
            policy_uri: e.keep(o.opt_str("policy_uri")),
        };
        e.finish(v)
    }
}

/// A client this server knows how to talk to.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub metadata: ClientMetadata,
    /// A loopback development client.
    pub loopback: bool,
}

impl Client {
    /// `none` (public) or `private_key_jwt` (confidential).
    pub fn auth_method(&self) -> &str {
        self.metadata
            .token_endpoint_auth_method
            .as_deref()
            .unwrap_or("none")
    }

    /// Whether the client declared `grant`.
    pub fn has_grant(&self, grant: &str) -> bool {
        match &self.metadata.grant_types {
            Some(g) => g.iter().any(|x| x == grant),
            None => grant == "authorization_code",
        }
    }

    /// Whether the client declared every token of `scope` (exact token membership, as the
    /// reference checks).
    pub fn declares_scope(&self, scope: &str) -> bool {
        let declared: Vec<&str> = self
            .metadata
            .scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .collect();
        scope.split(' ').all(|t| declared.contains(&t))
    }

    /// Whether `uri` is one of the client's redirect URIs: exactly, or, for a loopback IP
    /// registered without a port, with any port (RFC 8252 §7.3).
    pub fn allows_redirect(&self, uri: &str) -> bool {
        self.metadata
            .redirect_uris
            .iter()
            .any(|registered| registered == uri || loopback_port_match(registered, uri))
    }

    /// Whether this is a confidential client (it authenticates with a key).
    pub fn is_confidential(&self) -> bool {
        self.auth_method() == "private_key_jwt"
    }
}

/// Whether `uri` is an `http://` URL whose host is exactly a loopback IP (`127.0.0.1` or
/// `[::1]`), with an optional port: `http://127.0.0.1.evil.com/` and `http://127.0.0.1@evil.com/`
/// are not.
pub fn is_loopback_ip_url(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("http://") else {
        return false;
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let port = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    ["127.0.0.1", "[::1]"].iter().any(|host| {
        authority
            .strip_prefix(host)
            .is_some_and(|p| p.is_empty() || p.strip_prefix(':').is_some_and(port))
    })
}

/// `http://127.0.0.1/cb` (registered, no port) matches `http://127.0.0.1:8080/cb`.
fn loopback_port_match(registered: &str, uri: &str) -> bool {
    for host in ["http://127.0.0.1", "http://[::1]"] {
        let (Some(reg_rest), Some(uri_rest)) =
            (registered.strip_prefix(host), uri.strip_prefix(host))
        else {
            continue;
        };
        if reg_rest.starts_with(':') {
            return false;
        }
        let Some(uri_rest) = uri_rest.strip_prefix(':') else {
            return false;
        };
        let digits = uri_rest.bytes().take_while(u8::is_ascii_digit).count();
        return digits > 0 && &uri_rest[digits..] == reg_rest;
    }
    false
}

/// Hostnames a discoverable client may not live at (the reference's "local" names).
fn is_local_hostname(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let tld = host.rsplit('.').next().unwrap_or("");
    !host.contains('.')
        || matches!(
            tld,
            "test" | "local" | "localhost" | "invalid" | "example" | "internal"
        )
}

/// The client a `client_id` names: a loopback client's implied metadata, or a discoverable
/// client's document (from the cache, else fetched).
pub async fn resolve(account: &Account, client_id: &str) -> Result<Client, OAuthError> {
    if client_id.starts_with("http://") {
        return loopback_client(client_id);
    }
    let url = discoverable_url(client_id)?;
    let store = OAuthStore::new(account.sql.as_ref());
    let now_ms = crate::maintenance::now_ms(account);
    if let Some(cached) = store.cached_client(client_id, now_ms - METADATA_CACHE_MS)? {
        if let Ok(metadata) = ClientMetadata::parse(cached.as_bytes()) {
            return validate(metadata, client_id, false);
        }
    }
    let fetch_failed = |why: String| {
        OAuthError::invalid_client_metadata(format!(
            "Unable to obtain client metadata for \"{client_id}\": {why}"
        ))
    };
    let request = ClientRequest::get(url)
        .header("accept", "application/json")
        .timeout(std::time::Duration::from_secs(10))
        .max_response_bytes(MAX_METADATA_BYTES)
        .public_only();
    let response = account
        .http
        .send(request)
        .await
        .map_err(|e| fetch_failed(e.to_string()))?;
    if response.status != 200 {
        return Err(fetch_failed(format!("HTTP {}", response.status)));
    }
    let json_type = response.header("content-type").is_some_and(|t| {
        let t = t
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
    });
    if !json_type {
        return Err(fetch_failed("not application/json".into()));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| fetch_failed(e.to_string()))?;
    let metadata = ClientMetadata::parse(&bytes)
        .map_err(|e| fetch_failed(format!("invalid document: {e}")))?;
    let client = validate(metadata, client_id, false)?;
    let text = String::from_utf8_lossy(&bytes);
    store.cache_client(client_id, &text, now_ms)?;
    Ok(client)
}

/// The URL of a discoverable client's document: `https://`, a DNS name (no IP, no local
/// name), no port, credentials or fragment, and a path other than `/`.
fn discoverable_url(client_id: &str) -> Result<String, OAuthError> {
    let bad = |why: &str| OAuthError::invalid_client(format!("Invalid client_id: {why}"));
    let rest = client_id
        .strip_prefix("https://")
        .ok_or_else(|| bad("must be an https URL"))?;
    if client_id.contains('#') {
        return Err(bad("must not have a fragment"));
    }
    let (authority, path) = rest
        .split_once('/')
        .map(|(a, p)| (a, format!("/{p}")))
        .ok_or_else(|| bad("must have a path"))?;
    if authority.contains('@') || authority.contains(':') {
        return Err(bad("must not have credentials or a port"));
    }
    if authority.parse::<std::net::IpAddr>().is_ok() || authority.starts_with('[') {
        return Err(bad("must not be an IP address"));
    }
    if is_local_hostname(authority) {
        return Err(bad("must not be a local hostname"));
    }
    if path == "/" || path.split(['?', '#']).next().unwrap_or("").contains("/../") {
        return Err(bad("must have a path other than /"));
    }
    Ok(client_id.to_owned())
}

/// A loopback development client: `http://localhost[/]` with optional `scope` (once) and
/// `redirect_uri` (any number, each `http://127.0.0.1` or `http://[::1]`) parameters.
fn loopback_client(client_id: &str) -> Result<Client, OAuthError> {
    let bad = |why: &str| OAuthError::invalid_client(format!("Invalid loopback client_id: {why}"));
    let rest = client_id
        .strip_prefix("http://localhost")
        .ok_or_else(|| bad("only http://localhost is a loopback client"))?;
    let query = match rest {
        "" | "/" => "",
        _ => rest
            .strip_prefix("/?")
            .or_else(|| rest.strip_prefix('?'))
            .ok_or_else(|| bad("no port or path allowed"))?,
    };
    let mut scope = None;
    let mut redirect_uris = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| bad("malformed query"))?;
        let v = pds_api::runtime::schema::percent_decode(v).map_err(|_| bad("malformed query"))?;
        match k {
            "scope" if scope.is_none() => scope = Some(v),
            "redirect_uri" => {
                if !is_loopback_ip_url(&v) {
                    return Err(bad("redirect_uri must be a loopback IP URL"));
                }
                redirect_uris.push(v);
            }
            _ => return Err(bad("unexpected query parameter")),
        }
    }
    if redirect_uris.is_empty() {
        redirect_uris = vec!["http://127.0.0.1/".into(), "http://[::1]/".into()];
    }
    let metadata = ClientMetadata {
        client_id: client_id.to_owned(),
        redirect_uris,
        response_types: Some(vec!["code".into()]),
        grant_types: Some(vec!["authorization_code".into(), "refresh_token".into()]),
        scope: Some(scope.unwrap_or_else(|| "atproto".into())),
        token_endpoint_auth_method: Some("none".into()),
        token_endpoint_auth_signing_alg: None,
        jwks: None,
        jwks_uri: None,
        application_type: Some("native".into()),
        dpop_bound_access_tokens: Some(true),
        client_name: None,
        client_uri: None,
        logo_uri: None,
        tos_uri: None,
        policy_uri: None,
    };
    validate(metadata, client_id, true)
}

/// Checks a metadata document against the atproto profile.
pub fn validate(m: ClientMetadata, client_id: &str, loopback: bool) -> Result<Client, OAuthError> {
    let bad = |why: &str| OAuthError::invalid_client_metadata(why.to_owned());
    if m.client_id != client_id {
        return Err(bad("client_id does not match the document's URL"));
    }
    if m.redirect_uris.is_empty() {
        return Err(bad("redirect_uris must not be empty"));
    }
    if !m
        .response_types
        .as_ref()
        .is_none_or(|r| r.iter().any(|t| t == "code"))
    {
        return Err(bad("response_types must include \"code\""));
    }
    if let Some(grants) = &m.grant_types {
        let known = grants
            .iter()
            .all(|g| g == "authorization_code" || g == "refresh_token");
        // A handful of values: a pairwise check, not a sort.
        let repeated = grants
            .iter()
            .enumerate()
            .any(|(i, g)| grants[..i].contains(g));
        if !known || repeated || !grants.iter().any(|g| g == "authorization_code") {
            return Err(bad(
                "grant_types must be authorization_code and optionally refresh_token",
            ));
        }
    }
    let scope = m.scope.as_deref().unwrap_or("");
    if !scope.split(' ').any(|t| t == super::scope::ATPROTO) {
        return Err(bad("scope must include \"atproto\""));
    }
    if m.dpop_bound_access_tokens != Some(true) {
        return Err(bad("dpop_bound_access_tokens must be true"));
    }
    let native = m.application_type.as_deref() == Some("native");
    if !matches!(
        m.application_type.as_deref(),
        None | Some("web") | Some("native")
    ) {
        return Err(bad("application_type must be web or native"));
    }
    match m.token_endpoint_auth_method.as_deref() {
        Some("none") => {
            if m.token_endpoint_auth_signing_alg.is_some() {
                return Err(bad(
                    "token_endpoint_auth_signing_alg is not allowed with \"none\"",
                ));
            }
        }
        Some("private_key_jwt") => {
            if native {
                return Err(bad(
                    "native clients must use token_endpoint_auth_method \"none\"",
                ));
            }
            if m.token_endpoint_auth_signing_alg.as_deref() != Some("ES256") {
                return Err(bad("token_endpoint_auth_signing_alg must be ES256"));
            }
            let keys = m
                .jwks
                .as_ref()
                .and_then(|j| j.get("keys"))
                .and_then(Value::as_array);
            if keys.is_none_or(|k| k.is_empty()) {
                return Err(bad(
                    "private_key_jwt clients must declare jwks with at least one key",
                ));
            }
        }
        _ => {
            return Err(bad(
                "token_endpoint_auth_method must be \"none\" or \"private_key_jwt\"",
            ))
        }
    }
    for uri in [&m.logo_uri, &m.tos_uri, &m.policy_uri]
        .into_iter()
        .flatten()
    {
        if !uri.starts_with("https://") {
            return Err(bad("logo_uri, tos_uri and policy_uri must be https URLs"));
        }
    }
    if let Some(client_uri) = &m.client_uri {
        if loopback || !same_origin(client_uri, client_id) {
            return Err(bad("client_uri must have the client_id's origin"));
        }
    }
    for uri in &m.redirect_uris {
        let ok = if let Some(rest) = uri.strip_prefix("https://") {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.contains('@')
                && !is_local_hostname(host.split(':').next().unwrap_or(""))
                && (!native || same_origin(uri, client_id))
        } else if is_loopback_ip_url(uri) {
            native
        } else if let Some((scheme, rest)) = uri.split_once(':') {
            // A private-use scheme: the client_id's host reversed (`app.example.com` →
            // `com.example.app:/callback`).
            native
                && !scheme.starts_with("http")
                && rest.starts_with('/')
                && !rest.starts_with("//")
                && reversed_host(client_id).is_some_and(|r| r == scheme)
        } else {
            false
        };
        if !ok {
            return Err(bad(&format!(
                "redirect_uri {uri:?} is not allowed for this client"
            )));
        }
    }
    Ok(Client {
        metadata: m,
        loopback,
    })
}

/// Whether two URLs have one scheme and authority (`https://host:port`).
fn same_origin(a: &str, b: &str) -> bool {
    matches!((url_origin(a), url_origin(b)), (Some(x), Some(y)) if x.eq_ignore_ascii_case(y))
}

fn reversed_host(client_id: &str) -> Option<String> {
    let rest = client_id.strip_prefix("https://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    Some(host.rsplit('.').collect::<Vec<_>>().join("."))
}

/// The credentials a client sends to PAR, token and revoke.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub client_id: Option<String>,
    pub assertion_type: Option<String>,
    pub assertion: Option<String>,
}

/// Authenticates a client with the credentials it sent: a public client sends none; a
/// confidential one a fresh `private_key_jwt` assertion signed with one of its keys, each
/// assertion usable once. Returns the key's `kid` for a confidential client.
pub fn authenticate(
    client: &Client,
    credentials: &Credentials,
    issuer: &str,
    store: &OAuthStore<'_>,
    now_ms: u64,
) -> Result<Option<String>, OAuthError> {
    let bad = |why: &str| OAuthError::invalid_client(why.to_owned());
    match (client.is_confidential(), &credentials.assertion) {
        (false, None) if credentials.assertion_type.is_none() => return Ok(None),
        (false, _) => return Err(bad("A public client must not authenticate")),
        (true, None) => return Err(bad("Client authentication required")),
        (true, Some(_)) => {}
    }
    if credentials.assertion_type.as_deref() != Some(JWT_BEARER) {
        return Err(bad("Unsupported client_assertion_type"));
    }
    let assertion = credentials.assertion.as_deref().unwrap_or("");
    let token = jwt::decode(assertion).map_err(|_| bad("Invalid client assertion"))?;
    let kid = token
        .header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Client assertion has no kid"))?
        .to_owned();
    let jwk = client
        .metadata
        .jwks
        .as_ref()
        .and_then(|j| j.get("keys"))
        .and_then(Value::as_array)
        .and_then(|keys| {
            keys.iter()
                .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid.as_str()))
        })
        .and_then(Value::as_object)
        .ok_or_else(|| bad("Client assertion key not found in the client's jwks"))?;
    let (key, _) = super::dpop::jwk_key(jwk).map_err(|_| bad("Unsupported client key"))?;
    if token.alg() != Some("ES256") {
        return Err(bad("Client assertion must be signed with ES256"));
    }
    let verified = token
        .verify_jose(&key)
        .map_err(|_| bad("Invalid client assertion signature"))?;
    let claims = &verified.claims;
    let client_id = client.metadata.client_id.as_str();
    let str_claim = |name: &str| claims.get(name).and_then(Value::as_str);
    if str_claim("iss") != Some(client_id) || str_claim("sub") != Some(client_id) {
        return Err(bad("Client assertion iss and sub must be the client_id"));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == issuer,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(issuer)),
        _ => false,
    };
    if !aud_ok {
        return Err(bad("Client assertion aud must be the issuer"));
    }
    let now = now_ms / 1000;
    let iat = match jwt::int_claim(claims, "iat") {
        Some(Some(iat)) => iat,
        _ => return Err(bad("Client assertion has no valid iat")),
    };
    if iat.saturating_add(ASSERTION_MAX_AGE_SECS + ASSERTION_SKEW_SECS) < now
        || iat > now.saturating_add(ASSERTION_SKEW_SECS)
    {
        return Err(bad("Client assertion is too old or from the future"));
    }
    if let Some(exp) = jwt::int_claim(claims, "exp") {
        if exp.is_none_or(|e| e.saturating_add(ASSERTION_SKEW_SECS) <= now) {
            return Err(bad("Client assertion has expired"));
        }
    }
    let jti = str_claim("jti")
        .filter(|j| !j.is_empty())
        .ok_or_else(|| bad("Client assertion has no jti"))?;
    let keep_until = iat
        .saturating_add(ASSERTION_MAX_AGE_SECS + 2 * ASSERTION_SKEW_SECS)
        .saturating_mul(1000);
    let now_i = i64::try_from(now_ms).unwrap_or(i64::MAX);
    if !store.use_once(
        &format!("assertion:{client_id}:{jti}"),
        i64::try_from(keep_until).unwrap_or(i64::MAX),
        now_i,
    )? {
        return Err(bad("Client assertion replayed"));
    }
    Ok(Some(kid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web_client(extra: Value) -> Value {
        let mut m = serde_json::json!({
            "client_id": "https://app.example.com/client-metadata.json",
            "redirect_uris": ["https://app.example.com/callback"],
            "scope": "atproto transition:generic",
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
            "dpop_bound_access_tokens": true,
        });
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    }

    fn check(m: Value) -> Result<Client, OAuthError> {
        let id = m["client_id"].as_str().unwrap().to_owned();
        validate(
            ClientMetadata::parse(m.to_string().as_bytes()).unwrap(),
            &id,
            false,
        )
    }

    #[test]
    fn metadata_is_checked_against_the_profile() {
        assert!(check(web_client(serde_json::json!({}))).is_ok());
        for bad in [
            serde_json::json!({ "dpop_bound_access_tokens": false }),
            serde_json::json!({ "scope": "transition:generic" }),
            serde_json::json!({ "token_endpoint_auth_method": "client_secret_basic" }),
            serde_json::json!({ "redirect_uris": [] }),
            serde_json::json!({ "redirect_uris": ["http://app.example.com/callback"] }),
            serde_json::json!({ "grant_types": ["implicit"] }),
            serde_json::json!({ "token_endpoint_auth_method": "private_key_jwt", "token_endpoint_auth_signing_alg": "ES256" }),
            serde_json::json!({ "client_id": "https://other.example.com/x.json" }),
            serde_json::json!({ "logo_uri": "http://app.example.com/logo.png" }),
        ] {
            let m = web_client(bad.clone());
            let id = "https://app.example.com/client-metadata.json";
            let r = validate(
                ClientMetadata::parse(m.to_string().as_bytes()).unwrap(),
                id,
                false,
            );
            assert!(r.is_err(), "{bad}");
        }
    }

    #[test]
    fn client_ids_and_redirects() {
        let c = loopback_client(
            "http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback&scope=atproto%20transition%3Ageneric",
        )
        .unwrap();
        assert!(c.allows_redirect("http://127.0.0.1/callback"));
        assert!(c.allows_redirect("http://127.0.0.1:4567/callback"));
        assert!(!c.allows_redirect("http://127.0.0.1:4567/other"));
        assert!(!c.allows_redirect("http://localhost/callback"));
        assert!(c.declares_scope("atproto transition:generic"));
        assert!(!c.declares_scope("atproto transition:chat.bsky"));
        assert!(loopback_client("http://localhost:8080").is_err());
        assert!(loopback_client("http://localhost/path").is_err());
        assert!(
            loopback_client("http://localhost?redirect_uri=http%3A%2F%2Flocalhost%2Fcb").is_err()
        );
        assert!(discoverable_url("https://app.example.com/client.json").is_ok());
        for bad in [
            "https://app.example.com",
            "https://app.example.com/",
            "https://app.example.com:8443/c.json",
            "https://127.0.0.1/c.json",
            "https://app.test/c.json",
            "https://u@app.example.com/c.json",
            "http://app.example.com/c.json",
        ] {
            assert!(discoverable_url(bad).is_err(), "{bad}");
        }
        for tricky in [
            "http%3A%2F%2F127.0.0.1.evil.com%2Fcb",
            "http%3A%2F%2F127.0.0.1%40evil.com%2Fcb",
            "http%3A%2F%2F127.0.0.1%3A80x%2Fcb",
        ] {
            let id = format!("http://localhost?redirect_uri={tricky}");
            assert!(loopback_client(&id).is_err(), "{tricky}");
        }
        assert!(is_loopback_ip_url("http://[::1]:8080/cb"));
        assert!(loopback_port_match("http://[::1]/cb", "http://[::1]:99/cb"));
        assert!(!loopback_port_match(
            "http://[::1]:98/cb",
            "http://[::1]:99/cb"
        ));
    }

    /// Discoverable clients: fetched once (then cached), checked; confidential ones
    /// authenticate with fresh, single-use ES256 assertions from a declared key.
    #[cfg(not(target_arch = "wasm32"))]
    mod discoverable {
        use super::*;
        use crate::clock::ManualClock;
        use crate::crypto::{KeyAlgorithm, SigningKey};
        use crate::net::http_client::{body_from_chunks, ClientResponse, HttpClient, HttpError};
        use crate::platform::native::{DirBlobStore, NativeSql};
        use futures_util::future::LocalBoxFuture;
        use std::cell::Cell;
        use std::rc::Rc;

        const ID: &str = "https://app.example.com/oauth-client-metadata.json";
        const ISSUER: &str = "https://pds.example.com";
        const NOW_MS: u64 = 1_800_000_000_000;

        /// Answers every request with one (status, content type, body), counting them.
        struct OneDocument {
            answer: (u16, &'static str, String),
            calls: Rc<Cell<usize>>,
        }

        impl HttpClient for OneDocument {
            fn send(
                &self,
                _: ClientRequest,
            ) -> LocalBoxFuture<'_, Result<ClientResponse, HttpError>> {
                self.calls.set(self.calls.get() + 1);
                let (status, kind, body) = self.answer.clone();
                Box::pin(async move {
                    ClientResponse::new(
                        status,
                        vec![("content-type".into(), kind.into())],
                        body_from_chunks(vec![body.into_bytes()]),
                        1 << 20,
                    )
                })
            }
        }

        struct Clock(Rc<ManualClock>);
        impl crate::clock::Clock for Clock {
            fn now_micros(&self) -> u64 {
                self.0.now_micros()
            }
        }

        fn account(answer: (u16, &'static str, String)) -> (Account, Rc<Cell<usize>>) {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "pds-oauth-client-{}-{}",
                std::process::id(),
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            let calls = Rc::new(Cell::new(0));
            let account = Account::open(
                Box::new(NativeSql::open_in_memory().unwrap()),
                Box::new(DirBlobStore::open(&dir).unwrap()),
                Box::new(Clock(Rc::new(ManualClock::new(NOW_MS * 1000)))),
            )
            .with_http(Rc::new(OneDocument {
                answer,
                calls: calls.clone(),
            }));
            (account, calls)
        }

        fn confidential(key: &SigningKey) -> String {
            let mut jwk = crate::oauth::dpop::public_jwk(&key.public_key());
            jwk["kid"] = "k1".into();
            web_client(serde_json::json!({
                "client_id": ID,
                "token_endpoint_auth_method": "private_key_jwt",
                "token_endpoint_auth_signing_alg": "ES256",
                "jwks": { "keys": [jwk] },
            }))
            .to_string()
        }

        fn assertion(key: &SigningKey, kid: &str, tweak: impl FnOnce(&mut Value)) -> String {
            let mut claims = serde_json::json!({
                "iss": ID, "sub": ID, "aud": ISSUER, "jti": "a1", "iat": NOW_MS / 1000,
            });
            tweak(&mut claims);
            let mut header = serde_json::Map::new();
            header.insert("kid".into(), kid.into());
            jwt::sign_es(header, claims.as_object().unwrap(), key)
        }

        #[test]
        fn a_confidential_client_is_fetched_once_and_authenticates_once_per_assertion() {
            let key = SigningKey::generate(KeyAlgorithm::P256);
            let (account, calls) = account((200, "application/json", confidential(&key)));
            let client = futures_executor::block_on(resolve(&account, ID)).unwrap();
            assert!(client.is_confidential());
            futures_executor::block_on(resolve(&account, ID)).unwrap();
            assert_eq!(calls.get(), 1, "the second resolution comes from the cache");

            let store = OAuthStore::new(account.sql.as_ref());
            let creds = |a: String| Credentials {
                client_id: Some(ID.into()),
                assertion_type: Some(JWT_BEARER.into()),
                assertion: Some(a),
            };
            let good = assertion(&key, "k1", |_| {});
            assert_eq!(
                authenticate(&client, &creds(good.clone()), ISSUER, &store, NOW_MS).unwrap(),
                Some("k1".into())
            );
            let replay = authenticate(&client, &creds(good), ISSUER, &store, NOW_MS).unwrap_err();
            assert_eq!(replay.description, "Client assertion replayed");
            let other_key = SigningKey::generate(KeyAlgorithm::P256);
            let cases: Vec<(String, &str)> = vec![
                (
                    assertion(&key, "k1", |c| {
                        c["aud"] = "https://elsewhere.example.com".into()
                    }),
                    "Client assertion aud must be the issuer",
                ),
                (
                    assertion(&key, "k1", |c| c["iat"] = (NOW_MS / 1000 - 600).into()),
                    "Client assertion is too old or from the future",
                ),
                (
                    assertion(&key, "k2", |c| c["jti"] = "a2".into()),
                    "Client assertion key not found in the client's jwks",
                ),
                (
                    assertion(&other_key, "k1", |c| c["jti"] = "a3".into()),
                    "Invalid client assertion signature",
                ),
                (
                    assertion(&key, "k1", |c| {
                        c["iss"] = "https://evil.example.com/c.json".into()
                    }),
                    "Client assertion iss and sub must be the client_id",
                ),
            ];
            for (a, why) in cases {
                let e = authenticate(&client, &creds(a), ISSUER, &store, NOW_MS).unwrap_err();
                assert_eq!((e.error, e.description.as_str()), ("invalid_client", why));
            }
            let none = Credentials {
                client_id: Some(ID.into()),
                ..Credentials::default()
            };
            assert_eq!(
                authenticate(&client, &none, ISSUER, &store, NOW_MS)
                    .unwrap_err()
                    .description,
                "Client authentication required"
            );
        }

        #[test]
        fn documents_that_are_not_the_clients_are_refused() {
            let cases = [
                (
                    302,
                    "application/json",
                    web_client(serde_json::json!({ "client_id": ID })).to_string(),
                ),
                (
                    200,
                    "text/html",
                    web_client(serde_json::json!({ "client_id": ID })).to_string(),
                ),
                (
                    200,
                    "application/json",
                    web_client(serde_json::json!({})).to_string(),
                ),
                (200, "application/json", "not json".to_owned()),
            ];
            for answer in cases {
                let (account, _) = account(answer.clone());
                let e = futures_executor::block_on(resolve(&account, ID)).unwrap_err();
                assert_eq!(e.error, "invalid_client_metadata", "{answer:?}");
            }
        }
    }
}
