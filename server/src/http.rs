//! Platform-neutral HTTP request and response: what the shells (Worker, native) convert to and from,
//! so that routing and every decision above it is shared code.

/// Percent-encodes `s` for a URL component: every byte but RFC 3986's unreserved characters
/// and those in `keep`.
pub fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || keep.contains(&b)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The origin of an absolute URL, `scheme://authority`, as written. `None` without `://`.
pub fn url_origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&url[..scheme.len() + 3 + end])
}

/// The path (`/` when empty) and the query (without its `?`; empty when none) of an absolute
/// URL as a WHATWG serializer writes it, the fragment dropped. Runtimes hand requests over
/// serialized so, which makes splitting them all the parsing they need.
pub fn url_path_query(url: &str) -> (&str, &str) {
    let rest = url_origin(url).map_or(url, |origin| &url[origin.len()..]);
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    (if path.is_empty() { "/" } else { path }, query)
}

/// An HTTP request as the PDS core sees it.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// Upper-case method, e.g. `GET`.
    pub method: String,
    /// The URL path, e.g. `/xrpc/com.atproto.server.describeServer`.
    pub path: String,
    /// The raw query string without the leading `?` (may be empty).
    pub query: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
    /// The client's address as the platform knows it: `CF-Connecting-IP` on Workers (set by
    /// Cloudflare's edge, never the client's), the peer address natively.
    pub client_ip: Option<std::net::IpAddr>,
}

impl HttpRequest {
    /// The first value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub use pds_api::runtime::xrpc::Body;

/// An HTTP response as the PDS core produces it. The body may be a stream (CARs, blobs): the
/// shells pass streams through without buffering them.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl HttpResponse {
    /// A JSON response with the given status.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::bytes(
            status,
            "application/json; charset=utf-8",
            value.to_string().into_bytes(),
        )
    }

    /// A response with bytes in memory and their content type.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: Body::Bytes(body),
        }
    }
}

impl From<pds_api::runtime::xrpc::Response> for HttpResponse {
    fn from(res: pds_api::runtime::xrpc::Response) -> Self {
        HttpResponse {
            status: res.status,
            headers: res.headers,
            body: res.body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serialized_url_splits_into_origin_path_and_query() {
        let url = "https://pds.example:8443/xrpc/com.atproto.repo.getRecord?repo=did%3Aplc%3Aa&rkey=x#frag";
        assert_eq!(url_origin(url), Some("https://pds.example:8443"));
        assert_eq!(
            url_path_query(url),
            (
                "/xrpc/com.atproto.repo.getRecord",
                "repo=did%3Aplc%3Aa&rkey=x"
            )
        );
        assert_eq!(url_path_query("http://localhost:8787"), ("/", ""));
        assert_eq!(url_path_query("http://localhost:8787?a=1"), ("/", "a=1"));
        assert_eq!(url_path_query("http://h/p?"), ("/p", ""));
        assert_eq!(url_path_query("http://h/p#x?y"), ("/p", ""));
        assert_eq!(url_origin("not a url"), None);
    }
}
