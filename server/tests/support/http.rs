//! A small std-only HTTP/1.1 client for end-to-end tests (no TLS; loopback only).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The body parsed as JSON (panics with the body text when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A connection to `base` (reads time out after a minute) and its authority (`host:port`).
fn connect(base: &str) -> (TcpStream, &str) {
    connect_from(None, base)
}

/// A connection to `base` from the loopback address `source` (any when `None`), so a test can
/// play several clients: 127.0.0.1 and 127.0.0.2 are both this machine.
pub fn connect_from(source: Option<std::net::IpAddr>, base: &str) -> (TcpStream, &str) {
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    let stream = match source {
        None => TcpStream::connect(authority),
        Some(ip) => bound_connect(ip, authority),
    }
    .unwrap_or_else(|e| panic!("connect {authority}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    (stream, authority)
}

/// std cannot bind before connecting; tokio's socket can.
fn bound_connect(ip: std::net::IpAddr, authority: &str) -> std::io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let to = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async {
        let socket = match ip {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(std::net::SocketAddr::new(ip, 0))?;
        let stream = socket.connect(to).await?.into_std()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    })
}

/// Sends one request to `base` (e.g. `http://127.0.0.1:8787`) and reads the whole response.
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    request_from(None, base, method, path, headers, body)
}

/// [`request`] from the loopback address `source` (see [`connect_from`]).
pub fn request_from(
    source: Option<std::net::IpAddr>,
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let (mut stream, authority) = connect_from(source, base);
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n");
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    let head = with_headers(head, headers);
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();

    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let body = read_body(&mut reader, &headers);
    Reply {
        status,
        headers,
        body,
    }
}

/// A request head: `head` (request line and fixed headers) with `headers`, then the blank line.
pub fn with_headers(mut head: String, headers: &[(&str, &str)]) -> String {
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Reads a response's status line and headers (names lower-cased).
pub fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    try_read_head(reader).expect("a response head")
}

/// [`read_head`], or `None` when the connection ends or breaks before a whole head.
pub fn try_read_head(reader: &mut impl BufRead) -> Option<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status: u16 = line.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    Some((status, headers))
}

/// Reads a body framed by `content-length` or chunked encoding, else up to the end of the
/// stream.
pub fn read_body(reader: &mut impl BufRead, headers: &[(String, String)]) -> Vec<u8> {
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let size =
                usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = header("content-length") {
        body.resize(len.parse().unwrap(), 0);
        reader.read_exact(&mut body).unwrap();
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    body
}

/// Asks `base` to upgrade `path` to a WebSocket: the stream after a 101's headers, or the
/// whole non-101 response.
pub fn upgrade(base: &str, path: &str) -> Result<BufReader<TcpStream>, Reply> {
    upgrade_from(None, base, path, &[])
}

/// [`upgrade`] from the loopback address `source` (see [`connect_from`]), with more headers.
pub fn upgrade_from(
    source: Option<std::net::IpAddr>,
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<BufReader<TcpStream>, Reply> {
    let (mut stream, authority) = connect_from(source, base);
    let head = with_headers(
        format!(
            "GET {path} HTTP/1.1\r\nhost: {authority}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
             sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n"
        ),
        headers,
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    if status == 101 {
        return Ok(reader);
    }
    let body = read_body(&mut reader, &headers);
    Err(Reply {
        status,
        headers,
        body,
    })
}

pub fn get(base: &str, path: &str) -> Reply {
    request(base, "GET", path, &[], b"")
}

pub fn post_json(base: &str, path: &str, body: &serde_json::Value) -> Reply {
    request(
        base,
        "POST",
        path,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// Calls XRPC method `nsid` (with any query string) with a bearer token and an optional JSON body.
pub fn xrpc(
    base: &str,
    method: &str,
    nsid: &str,
    token: &str,
    body: Option<&serde_json::Value>,
) -> Reply {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    request(
        base,
        method,
        &format!("/xrpc/{nsid}"),
        &headers,
        bytes.as_bytes(),
    )
}
