//! OAuth 2.1 as the atproto profile defines it: this PDS is both the authorization server
//! (PAR, the sign-in and consent page, token, revocation) and the resource server (XRPC calls
//! with DPoP-bound access tokens, judged by their scopes).
//!
//! Decisions (`../shared/reference/oauth.md` §0 has the reasons):
//! - PAR is the only way in; PKCE S256 and a DPoP proof are required there;
//! - DPoP everywhere, with stateless server nonces ([`dpop`]) and single-use proof ids;
//! - the authorize page's GET changes nothing; the POST spends the request;
//! - access tokens are opaque and looked up on every request, so revocation is immediate;
//! - refresh tokens are single-use, and a reuse revokes the session;
//! - codes are single-use, and a reuse revokes what was issued from them.
//!
//! Lifetimes follow the reference, except the access token's (15 minutes, not an hour).

pub mod client;
pub mod dpop;
pub mod metadata;
pub mod page;
pub mod passkey;
pub mod passkey_pages;
pub mod permission_set;
pub mod scope;
pub mod server;
pub mod store;

use std::collections::BTreeMap;

use crate::http::{Body, HttpRequest, HttpResponse};
use crate::storage::StorageError;

/// A pushed request's lifetime.
pub const REQUEST_TTL_MS: i64 = 300_000;
/// An authorization code's lifetime, from approval.
pub const CODE_TTL_MS: i64 = 300_000;
/// An access token's lifetime.
pub const ACCESS_TTL_MS: i64 = 900_000;
/// A public client's session lifetime, and how long its refresh token lasts unused.
pub const PUBLIC_SESSION_MS: i64 = 14 * 24 * 3600 * 1000;
/// A confidential client's session lifetime (two years).
pub const CONFIDENTIAL_SESSION_MS: i64 = 730 * 24 * 3600 * 1000 + 12 * 3600 * 1000;
/// How long a confidential client's refresh token lasts unused (three months).
pub const CONFIDENTIAL_REFRESH_IDLE_MS: i64 = 7_889_400_000;
/// How long a PKCE challenge is remembered, so it cannot be used twice.
pub const CHALLENGE_MEMORY_MS: i64 = 24 * 3600 * 1000;
/// Wrong credentials tolerated on one request before it is dropped.
pub const MAX_FAILED_ATTEMPTS: i64 = 5;
/// The prefix of a `request_uri`.
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:req-";

/// An OAuth error response (RFC 6749 §5.2): `{"error", "error_description"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }
    /// 400 `invalid_request`.
    pub fn invalid_request(d: impl Into<String>) -> OAuthError {
        OAuthError::new(400, "invalid_request", d)
    }
    /// 400 `invalid_client`.
    pub fn invalid_client(d: impl Into<String>) -> OAuthError {
        OAuthError::new(400, "invalid_client", d)
    }
    /// 400 `invalid_client_metadata`.
    pub fn invalid_client_metadata(d: impl Into<String>) -> OAuthError {
        OAuthError::new(400, "invalid_client_metadata", d)
    }
    /// 400 `invalid_grant`.
    pub fn invalid_grant(d: impl Into<String>) -> OAuthError {
        OAuthError::new(400, "invalid_grant", d)
    }
    /// 400 `invalid_scope`.
    pub fn invalid_scope(d: impl Into<String>) -> OAuthError {
        OAuthError::new(400, "invalid_scope", d)
    }
    /// 400 `unsupported_grant_type`.
    pub fn unsupported_grant_type(d: impl Into<String>) -> OAuthError {
        OAuthError::new(400, "unsupported_grant_type", d)
    }
    /// 500 `server_error`, with a generic description (the detail is logged).
    pub fn server_error(detail: impl std::fmt::Display) -> OAuthError {
        crate::log::error(&format!("oauth: {detail}"));
        OAuthError::new(500, "server_error", "Internal Server Error")
    }

    /// The JSON response, uncacheable, with CORS.
    pub fn response(&self) -> HttpResponse {
        json_response(
            self.status,
            &crate::data::json::JsonWriter::new()
                .str("error", self.error)
                .str("error_description", &self.description)
                .finish(),
        )
    }
}

impl From<dpop::DpopError> for OAuthError {
    fn from(e: dpop::DpopError) -> OAuthError {
        OAuthError::new(400, e.error(), e.description())
    }
}

impl From<StorageError> for OAuthError {
    fn from(e: StorageError) -> OAuthError {
        OAuthError::server_error(e)
    }
}

impl From<pds_api::runtime::xrpc::XrpcError> for OAuthError {
    fn from(e: pds_api::runtime::xrpc::XrpcError) -> OAuthError {
        OAuthError::server_error(e)
    }
}

/// A JSON answer of the OAuth endpoints: never cached (the lifecycle adds CORS, as to every
/// answer of the account but the pages).
pub fn json_response(status: u16, value: &serde_json::Value) -> HttpResponse {
    let mut res = HttpResponse::json(status, value);
    res.headers
        .push(("cache-control".into(), "no-store".into()));
    res.headers.push(("pragma".into(), "no-cache".into()));
    res
}

/// The parameters of an OAuth request: its form-urlencoded (or JSON) body, or its query.
/// A parameter given twice is refused (RFC 6749 §3.1).
pub fn parameters(
    req: &HttpRequest,
    from_query: bool,
) -> Result<BTreeMap<String, String>, OAuthError> {
    let mut out = BTreeMap::new();
    let is_json = req
        .header("content-type")
        .is_some_and(|t| t.trim_start().starts_with("application/json"));
    if !from_query && is_json {
        let value: serde_json::Value = serde_json::from_slice(&req.body)
            .map_err(|_| OAuthError::invalid_request("Invalid JSON body"))?;
        let object = value
            .as_object()
            .ok_or_else(|| OAuthError::invalid_request("The body must be a JSON object"))?;
        for (k, v) in object {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(OAuthError::invalid_request(format!(
                        "Invalid parameter {k}"
                    )))
                }
            };
            out.insert(k.clone(), v);
        }
        return Ok(out);
    }
    let raw = if from_query {
        req.query.clone()
    } else {
        String::from_utf8(req.body.clone())
            .map_err(|_| OAuthError::invalid_request("The body is not UTF-8"))?
    };
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            pds_api::runtime::schema::percent_decode(s)
                .map_err(|_| OAuthError::invalid_request("Invalid form encoding"))
        };
        let (k, v) = (decode(k)?, decode(v)?);
        if out.insert(k.clone(), v).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "Parameter \"{k}\" was given more than once"
            )));
        }
    }
    Ok(out)
}

/// Percent-encodes a query parameter value: everything but RFC 3986's unreserved characters.
pub fn encode_component(s: &str) -> String {
    crate::http::percent_encode(s, b"")
}

/// A 303 to `location`, uncacheable.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse {
        status: 303,
        headers: vec![
            ("location".into(), location.to_owned()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: Body::empty(),
    }
}

/// 32 random bytes as base64url: tokens, codes, request ids.
pub fn random_token() -> Result<String, OAuthError> {
    use base64::Engine;
    let bytes = crate::auth::random_bytes::<32>().map_err(OAuthError::server_error)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}
