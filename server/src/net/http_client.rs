//! The outbound HTTP port: what the core asks of a platform to call other services (relays,
//! the PLC directory, DID documents and handles, the AppView, OAuth client metadata, other
//! PDSes). The Worker answers it with `fetch`, native code with a rustls client.
//!
//! Every exchange is bounded: a timeout (until the whole response body is read) and a cap on the
//! response body, enforced while it streams, so nothing is ever buffered past the cap. Redirects
//! are not followed: a 3xx comes back as it is, and the caller decides (identity resolution
//! refuses them, as the reference implementation does).

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::{self, Stream, StreamExt};

pub use crate::storage::blobs::LocalBoxFuture;

/// How long an exchange may take when the request does not say: connection, request, and the
/// whole response body.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response body read when the request does not say.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 10 * 1024 * 1024;
/// The `User-Agent` sent when the request sets none.
pub const USER_AGENT: &str = concat!("rust-pds/", env!("CARGO_PKG_VERSION"));

/// The outbound HTTP port. No `Send` bound: Durable Object futures are not `Send`.
pub trait HttpClient {
    /// Sends `request` and resolves once the response head has arrived; the body is then read
    /// from the [`ClientResponse`], still under the request's timeout and size cap.
    fn send(&self, request: ClientRequest)
        -> LocalBoxFuture<'_, Result<ClientResponse, HttpError>>;
}

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The request cannot be sent as given: a malformed URL, a scheme other than http(s), a
    /// header the platform refuses.
    InvalidRequest(String),
    /// No usable response: DNS, connection refused or reset, TLS failure, a broken body.
    Network(String),
    /// The exchange did not finish within its timeout.
    Timeout,
    /// The response body is larger than the cap (declared or counted while streaming).
    TooLarge {
        /// The cap that was exceeded, in bytes.
        limit: u64,
    },
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::InvalidRequest(why) => write!(f, "invalid request: {why}"),
            HttpError::Network(why) => write!(f, "network error: {why}"),
            HttpError::Timeout => f.write_str("timed out"),
            HttpError::TooLarge { limit } => {
                write!(f, "response body larger than {limit} bytes")
            }
        }
    }
}

impl std::error::Error for HttpError {}

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl Method {
    /// The method's name on the wire, e.g. `GET`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }

    /// The method named `name` (case-sensitive, as HTTP methods are), if it is one of these.
    pub fn parse(name: &str) -> Option<Method> {
        Some(match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => return None,
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A body as a stream of chunks; an `Err` item ends it.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Vec<u8>, HttpError>>>>;

/// What a request carries.
#[derive(Default)]
pub enum RequestBody {
    /// No body.
    #[default]
    Empty,
    /// Bytes in memory (sent with a `Content-Length`).
    Bytes(Vec<u8>),
    /// Bytes as they come (proxied uploads); sent chunked unless the request sets a
    /// `Content-Length` itself.
    Stream(BodyStream),
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestBody::Empty => f.write_str("Empty"),
            RequestBody::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            RequestBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// An outbound request.
#[derive(Debug)]
pub struct ClientRequest {
    pub method: Method,
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    /// Headers to send, names in any case.
    pub headers: Vec<(String, String)>,
    pub body: RequestBody,
    /// The exchange's time limit; `None`: the client's default.
    pub timeout: Option<Duration>,
    /// The response body cap in bytes; `None`: the client's default.
    pub max_response_bytes: Option<u64>,
    /// Only public unicast addresses may be reached: for URLs anyone can make the PDS fetch
    /// (OAuth client metadata). The native client checks what the host resolves to; a Worker's
    /// `fetch` cannot reach private networks anyway.
    pub public_only: bool,
}

impl ClientRequest {
    /// A request without body or headers.
    pub fn new(method: Method, url: impl Into<String>) -> ClientRequest {
        ClientRequest {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: RequestBody::Empty,
            timeout: None,
            max_response_bytes: None,
            public_only: false,
        }
    }

    /// A GET of `url`.
    pub fn get(url: impl Into<String>) -> ClientRequest {
        ClientRequest::new(Method::Get, url)
    }

    /// A POST of `body` as `application/json` to `url`.
    pub fn post_json(url: impl Into<String>, body: Vec<u8>) -> ClientRequest {
        ClientRequest::new(Method::Post, url)
            .header("content-type", "application/json")
            .body(RequestBody::Bytes(body))
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> ClientRequest {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: RequestBody) -> ClientRequest {
        self.body = body;
        self
    }

    /// Sets the time limit of the exchange.
    pub fn timeout(mut self, timeout: Duration) -> ClientRequest {
        self.timeout = Some(timeout);
        self
    }

    /// Refuses any address that is not public unicast ([`ClientRequest::public_only`]).
    pub fn public_only(mut self) -> ClientRequest {
        self.public_only = true;
        self
    }

    /// Sets the response body cap.
    pub fn max_response_bytes(mut self, limit: u64) -> ClientRequest {
        self.max_response_bytes = Some(limit);
        self
    }

    /// The first value of a header, by name in any case.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Whether the URL is absolute http(s): the adapters refuse anything else up front.
    pub fn check_url(&self) -> Result<(), HttpError> {
        let scheme = self
            .url
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("http" | "https") => Ok(()),
            _ => Err(HttpError::InvalidRequest(format!(
                "not an http(s) URL: {:?}",
                self.url
            ))),
        }
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A response whose head has arrived; the body is read from it, capped.
pub struct ClientResponse {
    /// The status code.
    pub status: u16,
    /// The headers, names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    body: BodyStream,
    limit: u64,
}

impl fmt::Debug for ClientResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl ClientResponse {
    /// Assembles a response from what an adapter received: a `Content-Length` above `limit` is
    /// refused before any of the body is read, and the body stream fails with
    /// [`HttpError::TooLarge`] as soon as it passes `limit`.
    pub fn new(
        status: u16,
        headers: Vec<(String, String)>,
        body: BodyStream,
        limit: u64,
    ) -> Result<ClientResponse, HttpError> {
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let declared =
            find_header(&headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(HttpError::TooLarge { limit });
        }
        Ok(ClientResponse {
            status,
            headers,
            body: capped(body, limit),
            limit,
        })
    }

    /// The first value of a header, by name in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body cap this response is read under.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The body as a stream of chunks (for passing bytes through); it fails with
    /// [`HttpError::TooLarge`] past the cap.
    pub fn into_stream(self) -> BodyStream {
        self.body
    }

    /// The whole body, up to the request's cap.
    pub async fn bytes(self) -> Result<Vec<u8>, HttpError> {
        let limit = self.limit;
        self.bytes_up_to(limit).await
    }

    /// The whole body, up to `limit` bytes (or the request's cap, if smaller): a caller that
    /// expects a small document says so here.
    pub async fn bytes_up_to(self, limit: u64) -> Result<Vec<u8>, HttpError> {
        let limit = limit.min(self.limit);
        let declared = self
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(HttpError::TooLarge { limit });
        }
        let mut out = Vec::new();
        let mut body = self.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if (out.len() + chunk.len()) as u64 > limit {
                return Err(HttpError::TooLarge { limit });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// `body`, failing with [`HttpError::TooLarge`] once more than `limit` bytes came through; it
/// ends after the error so nothing more is read.
fn capped(body: BodyStream, limit: u64) -> BodyStream {
    Box::pin(stream::unfold(
        (body, 0u64, false),
        move |(mut body, seen, done)| async move {
            if done {
                return None;
            }
            match body.next().await? {
                Ok(chunk) => {
                    let seen = seen.saturating_add(chunk.len() as u64);
                    if seen > limit {
                        Some((Err(HttpError::TooLarge { limit }), (body, seen, true)))
                    } else {
                        Some((Ok(chunk), (body, seen, false)))
                    }
                }
                Err(e) => Some((Err(e), (body, seen, true))),
            }
        },
    ))
}

/// A body stream of the given chunks (tests, and adapters with bytes in hand).
pub fn body_from_chunks(chunks: Vec<Vec<u8>>) -> BodyStream {
    Box::pin(stream::iter(chunks.into_iter().map(Ok)))
}

/// Whether `ip` is a public unicast address: not loopback, private, link-local, shared (CGNAT),
/// documentation, benchmarking, multicast, reserved or unspecified.
pub fn is_public_address(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_address(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_executor::block_on;

    fn response(chunks: Vec<Vec<u8>>, limit: u64) -> Result<ClientResponse, HttpError> {
        ClientResponse::new(
            200,
            vec![("Content-Type".into(), "text/plain".into())],
            body_from_chunks(chunks),
            limit,
        )
    }

    #[test]
    fn bodies_within_the_cap_are_read_whole() {
        let r = response(vec![b"hello ".to_vec(), b"world".to_vec()], 11).unwrap();
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(block_on(r.bytes()).unwrap(), b"hello world");
    }

    #[test]
    fn a_body_past_the_cap_fails_and_stops_reading() {
        let r = response(vec![vec![1; 8], vec![2; 8], vec![3; 8]], 10).unwrap();
        let chunks: Vec<_> = block_on(r.into_stream().collect::<Vec<_>>());
        assert_eq!(
            chunks,
            vec![Ok(vec![1; 8]), Err(HttpError::TooLarge { limit: 10 })]
        );
        let r = response(vec![vec![1; 8], vec![2; 8]], 100).unwrap();
        assert_eq!(
            block_on(r.bytes_up_to(12)),
            Err(HttpError::TooLarge { limit: 12 })
        );
    }

    #[test]
    fn a_declared_length_past_the_cap_is_refused_before_reading() {
        let err = ClientResponse::new(
            200,
            vec![("content-length".into(), "1000".into())],
            body_from_chunks(vec![]),
            999,
        )
        .unwrap_err();
        assert_eq!(err, HttpError::TooLarge { limit: 999 });
    }

    #[test]
    fn only_http_urls_are_accepted() {
        assert!(ClientRequest::get("https://plc.directory/x")
            .check_url()
            .is_ok());
        assert!(ClientRequest::get("HTTP://localhost:1/")
            .check_url()
            .is_ok());
        for bad in ["ftp://x/", "plc.directory", "file:///etc/passwd", ""] {
            assert!(ClientRequest::get(bad).check_url().is_err(), "{bad}");
        }
        assert_eq!(Method::parse("PATCH"), Some(Method::Patch));
        assert_eq!(Method::parse("get"), None);
    }
}
