//! A relay played by a small HTTP server on 127.0.0.1: it records every requestCrawl call and
//! answers with scripted statuses. `getHostStatus` (the status page's check) is answered apart:
//! the host is active at seq 42; those reads are counted, not recorded.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the relay received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub body: serde_json::Value,
}

/// A relay on 127.0.0.1 answering requests with scripted statuses (200 once the script is
/// spent), recording each request.
pub struct Relay {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    host_status_reads: Arc<Mutex<usize>>,
}

impl Relay {
    pub fn start(script: &[u16]) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let log = received.clone();
        let host_status_reads = Arc::new(Mutex::new(0));
        let reads = host_status_reads.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split(' ');
                let method = parts.next().unwrap_or("").to_owned();
                let path = parts.next().unwrap_or("").to_owned();
                let (mut length, mut content_type) = (0, None);
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    let header = header.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = header.split_once(':') {
                        match k.trim().to_ascii_lowercase().as_str() {
                            "content-length" => length = v.trim().parse().unwrap(),
                            "content-type" => content_type = Some(v.trim().to_owned()),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                if method == "GET" && path.starts_with("/xrpc/com.atproto.sync.getHostStatus?") {
                    *reads.lock().unwrap() += 1;
                    let host = path.split("hostname=").nth(1).unwrap_or("");
                    let answer = serde_json::json!({
                        "hostname": host.replace("%3A", ":"),
                        "seq": 42,
                        "status": "active",
                    })
                    .to_string();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    continue;
                }
                log.lock().unwrap().push(Received {
                    method,
                    path,
                    content_type,
                    body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                });
                let status = script.lock().unwrap().pop_front().unwrap_or(200);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Relay {
            url,
            received,
            host_status_reads,
        }
    }

    /// How many getHostStatus reads the relay answered.
    pub fn host_status_reads(&self) -> usize {
        *self.host_status_reads.lock().unwrap()
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until the relay has received `n` requests.
    pub fn wait_for(&self, n: usize) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n || start.elapsed() > Duration::from_secs(20) {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
