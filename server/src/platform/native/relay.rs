//! The native [`RelayClient`]: a minimal HTTP/1.1 POST over `tokio::net::TcpStream`, for
//! `http://` relays (loopback relays in tests, local setups). `https://` is refused with an
//! explanation: TLS is out of scope natively (the Worker's `fetch` does it on Cloudflare).

use std::time::Duration;

use crate::storage::blobs::LocalBoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::maintenance::RelayClient;

/// How long one request may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The status line and headers are read up to this size.
const MAX_HEAD: usize = 16 * 1024;

/// Posts crawl requests over plain HTTP.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeRelayClient;

impl RelayClient for NativeRelayClient {
    fn post_json<'a>(
        &'a self,
        url: &'a str,
        body: &'a [u8],
    ) -> LocalBoxFuture<'a, Result<u16, String>> {
        Box::pin(async move {
            match tokio::time::timeout(TIMEOUT, post_json(url, body)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no response from {url} within {TIMEOUT:?}")),
            }
        })
    }
}

/// Splits `http://host[:port][/path]` into the address to connect to, the `Host` header and
/// the request target.
fn parse_http_url(url: &str) -> Result<(String, String, String), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(if url.starts_with("https://") {
            format!("{url}: https is not supported by the native server (use an http:// relay)")
        } else {
            format!("{url}: not an http URL")
        });
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url}: bad host"));
    }
    let address = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((address, authority.to_owned(), path.to_owned()))
}

async fn post_json(url: &str, body: &[u8]) -> Result<u16, String> {
    let (address, host, path) = parse_http_url(url)?;
    let io = |e: std::io::Error| format!("{url}: {e}");
    let mut stream = TcpStream::connect(&address).await.map_err(io)?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nUser-Agent: rust-pds/{}\r\nConnection: close\r\n\r\n",
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(body).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    // Only the status line matters; read until it is complete.
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    while !response.windows(2).any(|w| w == b"\r\n") {
        if response.len() > MAX_HEAD {
            return Err(format!("{url}: response head too long"));
        }
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err(format!("{url}: connection closed before a response"));
        }
        response.extend_from_slice(&chunk[..n]);
    }
    parse_status(&response).ok_or_else(|| format!("{url}: malformed response"))
}

/// The status code of `HTTP/1.x NNN reason`.
fn parse_status(response: &[u8]) -> Option<u16> {
    let line = response.split(|b| *b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_status_lines() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:8080/xrpc/x").unwrap(),
            (
                "127.0.0.1:8080".to_owned(),
                "127.0.0.1:8080".to_owned(),
                "/xrpc/x".to_owned()
            )
        );
        assert_eq!(
            parse_http_url("http://relay.test").unwrap().0,
            "relay.test:80"
        );
        let e = parse_http_url("https://bsky.network/xrpc/x").unwrap_err();
        assert!(e.contains("https is not supported"), "{e}");
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503 Busy\r\n"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0\r\n"), None);
    }
}
