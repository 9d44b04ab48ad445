//! XRPC plumbing shared by the generated dispatcher and the server: the one error type,
//! request and response shapes, bodies that may stream, and per-method metadata.

use std::fmt;
use std::pin::Pin;

/// Every XRPC failure: an HTTP status and the `{"error", "message"}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XrpcError {
    pub status: u16,
    /// The error name, e.g. `InvalidRequest` or a lexicon-declared name.
    pub error: String,
    pub message: String,
}

impl XrpcError {
    /// An error with any status, name and message.
    pub fn new(status: u16, error: impl Into<String>, message: impl Into<String>) -> Self {
        XrpcError {
            status,
            error: error.into(),
            message: message.into(),
        }
    }

    /// 400 InvalidRequest: bad params, bad input, wrong HTTP method.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidRequest", message)
    }

    /// 400 with a lexicon-declared error name.
    pub fn declared(error: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(400, error, message)
    }

    /// 401 AuthenticationRequired.
    pub fn authentication_required(message: impl Into<String>) -> Self {
        Self::new(401, "AuthenticationRequired", message)
    }

    /// 401 with a specific name (e.g. `ExpiredToken`, `InvalidToken`).
    pub fn unauthorized(error: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(401, error, message)
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 404 NotFound.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NotFound", message)
    }

    /// 413 PayloadTooLarge.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(413, "PayloadTooLarge", message)
    }

    /// 429 RateLimitExceeded.
    pub fn rate_limit_exceeded(message: impl Into<String>) -> Self {
        Self::new(429, "RateLimitExceeded", message)
    }

    /// 500 InternalServerError with the reference's generic message.
    pub fn internal() -> Self {
        Self::new(500, "InternalServerError", "Internal Server Error")
    }

    /// 500 InternalServerError with a specific message.
    pub fn internal_message(message: impl Into<String>) -> Self {
        Self::new(500, "InternalServerError", message)
    }

    /// 501 MethodNotImplemented, as the reference answers for unknown or unserved methods.
    pub fn method_not_implemented() -> Self {
        Self::new(501, "MethodNotImplemented", "Method Not Implemented")
    }

    /// 502 UpstreamFailure.
    pub fn upstream_failure(message: impl Into<String>) -> Self {
        Self::new(502, "UpstreamFailure", message)
    }

    /// The JSON body: `{"error": ..., "message": ...}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({ "error": self.error, "message": self.message }).to_string()
    }

    /// This error as a complete response.
    pub fn into_response(self) -> Response {
        Response {
            status: self.status,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: Body::Bytes(self.to_json().into_bytes()),
        }
    }
}

impl fmt::Display for XrpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.error, self.message)
    }
}

impl std::error::Error for XrpcError {}

/// A stream of body chunks. Not `Send`: Durable Object futures are not.
pub type ByteStream = Pin<Box<dyn futures_core::Stream<Item = Result<Vec<u8>, XrpcError>>>>;

/// A request or response body: bytes in memory, or a stream (CARs, blobs).
pub enum Body {
    Bytes(Vec<u8>),
    Stream(ByteStream),
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Body::Bytes(Vec::new())
    }

    /// Collects the body into memory, failing with 413 past `limit` bytes.
    pub async fn collect(self, limit: usize) -> Result<Vec<u8>, XrpcError> {
        match self {
            Body::Bytes(b) if b.len() > limit => {
                Err(XrpcError::payload_too_large("request entity too large"))
            }
            Body::Bytes(b) => Ok(b),
            Body::Stream(mut s) => {
                let mut out = Vec::new();
                while let Some(chunk) = std::future::poll_fn(|cx| s.as_mut().poll_next(cx)).await {
                    out.extend_from_slice(&chunk?);
                    if out.len() > limit {
                        return Err(XrpcError::payload_too_large("request entity too large"));
                    }
                }
                Ok(out)
            }
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Bytes(b) => write!(f, "Body::Bytes({} bytes)", b.len()),
            Body::Stream(_) => f.write_str("Body::Stream"),
        }
    }
}

/// A raw (non-JSON) request body: uploadBlob, importRepo.
#[derive(Debug)]
pub struct BinaryInput {
    /// The request's Content-Type, as sent.
    pub content_type: Option<String>,
    pub body: Body,
}

/// A raw (non-JSON) response body with its Content-Type, any extra headers and its HTTP
/// status (200 unless the handler says otherwise, e.g. 206 for a byte range, or 416 for an
/// unsatisfiable one, which must carry a `Content-Range` header an `XrpcError` cannot).
#[derive(Debug)]
pub struct BinaryOutput {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl BinaryOutput {
    /// A 200 body with a content type and no extra headers.
    pub fn new(content_type: impl Into<String>, body: Body) -> Self {
        BinaryOutput {
            status: 200,
            content_type: content_type.into(),
            headers: Vec::new(),
            body,
        }
    }
}

/// The HTTP method of a request, as far as XRPC cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
    /// Anything else (HEAD, PUT, ...).
    Other,
}

impl HttpMethod {
    /// Parses an HTTP method name.
    pub fn parse(s: &str) -> Self {
        if s.eq_ignore_ascii_case("GET") {
            HttpMethod::Get
        } else if s.eq_ignore_ascii_case("POST") {
            HttpMethod::Post
        } else {
            HttpMethod::Other
        }
    }
}

/// One XRPC request as the dispatcher sees it.
#[derive(Debug)]
pub struct Request {
    /// The method NSID (the path after `/xrpc/`).
    pub nsid: String,
    pub method: HttpMethod,
    /// The raw query string, without `?`.
    pub query: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Request {
    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One XRPC response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

/// What the server defines once for all handler traits: the per-request context handlers get
/// (the authenticated caller, request headers, ...).
pub trait Service {
    /// Per-request context passed to every handler.
    type Context;
}

/// Query, procedure or subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    Query,
    Procedure,
    Subscription,
}

/// The authentication an endpoint needs, checked by the server once before the handler runs.
/// Lexicons do not say which; the server's policy table (`pds::auth::policy`) assigns one to
/// every method, so it is not part of [`MethodMeta`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRequirement {
    /// No credentials needed (and any are ignored).
    None,
    /// Credentials optional: when present they must be valid (an access token or service JWT).
    Optional,
    /// An access token (session, app password, OAuth).
    Access,
    /// An access token with privileged scope (not a plain app password).
    AccessPrivileged,
    /// Access token, or a full-account session only: excludes app passwords entirely.
    AccessFull,
    /// A refresh token (refreshSession, deleteSession).
    Refresh,
    /// An inter-service JWT only: signed with the account's own key (`iss` the account), `aud`
    /// this PDS, `lxm` the method called.
    Service,
    /// An access token or an inter-service JWT.
    AccessOrService,
    /// Admin basic auth (the operator's password).
    Admin,
}

/// The body shape of an input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// The lexicon's MIME type (may be `*/*` or a comma list).
    pub mime: &'static str,
    /// True when the body is JSON decoded against a schema.
    pub json: bool,
}

/// Everything known about one method, as static data.
#[derive(Debug)]
pub struct MethodMeta {
    pub nsid: &'static str,
    pub kind: MethodKind,
    /// The params schema (empty when the method has none).
    pub params: &'static super::schema::ObjectSchema,
    pub input: Option<Encoding>,
    pub input_schema: Option<&'static super::schema::Schema>,
    pub output: Option<Encoding>,
    /// Names of the lexicon-declared errors.
    pub errors: &'static [&'static str],
}

/// Finds a method by NSID in a table sorted by NSID and checks the HTTP method the way the
/// reference's xrpc-server does: unknown -> 501, GET on a procedure or POST on a query -> 400.
pub fn lookup_in(
    table: &'static [&'static MethodMeta],
    nsid: &str,
    method: HttpMethod,
) -> Result<&'static MethodMeta, XrpcError> {
    let meta = match table.binary_search_by(|m| m.nsid.cmp(nsid)) {
        Ok(i) => table[i],
        Err(_) => return Err(XrpcError::method_not_implemented()),
    };
    let expected = match meta.kind {
        MethodKind::Query => HttpMethod::Get,
        MethodKind::Procedure => HttpMethod::Post,
        MethodKind::Subscription => return Ok(meta),
    };
    if method != expected {
        let got = match method {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Other => "OTHER",
        };
        let want = if expected == HttpMethod::Get {
            "GET"
        } else {
            "POST"
        };
        return Err(XrpcError::invalid_request(format!(
            "Incorrect HTTP method ({got}) expected {want}"
        )));
    }
    Ok(meta)
}
