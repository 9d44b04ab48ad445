//! Relay notification against a small real HTTP relay on loopback: the requestCrawl call the
//! maintenance run sends (path, JSON body), its retry with backoff after a failure (driven by
//! a fake clock through `maintenance::run`), and the native shell sending it by itself on
//! start and on activation.

mod support;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pds::account::Account;
use pds::clock::ManualClock;
use pds::config::Config;
use pds::maintenance::{self, FIRST_RETRY_MS};
use pds::platform::native::{DirBlobStore, NativeRelayClient, NativeSql};
use support::worker::TempDir;

const CRAWL_PATH: &str = "/xrpc/com.atproto.sync.requestCrawl";

/// One request the relay received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    content_type: Option<String>,
    body: serde_json::Value,
}

/// A relay on 127.0.0.1 answering requests with scripted statuses (200 once the script is
/// spent), recording each request.
struct Relay {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Relay {
    fn start(script: &[u16]) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let log = received.clone();
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
        Relay { url, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until the relay has received `n` requests.
    fn wait_for(&self, n: usize) -> Vec<Received> {
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

fn config_with(overrides: &[(&str, &str)]) -> Config {
    let vars = support::account::vars_with(overrides);
    Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .unwrap()
}

fn check_crawl_request(r: &Received, config: &Config) {
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, CRAWL_PATH);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(r.body, serde_json::json!({ "hostname": config.hostname }));
}

#[test]
fn a_failed_crawl_request_is_retried_after_the_backoff() {
    let relay = Relay::start(&[500]);
    let config = config_with(&[("PDS_RELAYS", &relay.url)]);
    let dir = TempDir::new("relay-notify");
    const T0: i64 = 1_700_000_000_000;
    let account = Account::open(
        Box::new(NativeSql::open_in_memory().unwrap()),
        Box::new(DirBlobStore::open(&dir.0).unwrap()),
        Box::new(ManualClock::new(T0 as u64 * 1000)),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = |now| runtime.block_on(maintenance::run(&config, &account, now, &NativeRelayClient));

    // First start: the handle announcement is news, so a crawl request is due at once.
    assert_eq!(
        maintenance::after_request(&config, &account, T0).unwrap(),
        Some(T0)
    );
    // The relay answers 500: retry in 30 s.
    assert_eq!(run(T0), Some(T0 + FIRST_RETRY_MS));
    assert_eq!(relay.received().len(), 1);
    // Not yet due: nothing sent.
    assert_eq!(run(T0 + 1_000), Some(T0 + FIRST_RETRY_MS));
    assert_eq!(relay.received().len(), 1);
    // Due: sent again, 200, done; only the hourly prune remains.
    assert_eq!(
        run(T0 + FIRST_RETRY_MS),
        Some(T0 + maintenance::PRUNE_INTERVAL_MS)
    );
    let received = relay.received();
    assert_eq!(received.len(), 2);
    for r in &received {
        check_crawl_request(r, &config);
    }
}

#[test]
fn an_https_relay_fails_natively_with_a_reason() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = runtime
        .block_on(pds::maintenance::RelayClient::post_json(
            &NativeRelayClient,
            "https://relay.example.com/xrpc/com.atproto.sync.requestCrawl",
            b"{}",
        ))
        .unwrap_err();
    assert!(err.contains("https is not supported"), "{err}");
}

#[test]
fn the_native_server_asks_relays_to_crawl_on_start_and_on_activation() {
    let relay = Relay::start(&[]);
    let overrides = [("PDS_RELAYS", relay.url.as_str())];
    let config = config_with(&overrides);
    let server = support::native::NativeServer::start(&overrides);
    let received = relay.wait_for(1);
    assert_eq!(received.len(), 1, "a crawl request on start");
    check_crawl_request(&received[0], &config);

    // Deactivating is no reason to ask; activating is, even within the quiet period.
    let (access, _) = support::account::login(&server.base);
    let body = serde_json::json!({});
    let res = support::http::xrpc(
        &server.base,
        "POST",
        "com.atproto.server.deactivateAccount",
        &access,
        Some(&body),
    );
    assert_eq!(res.status, 200, "{}", res.json());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(relay.received().len(), 1);
    let res = support::http::xrpc(
        &server.base,
        "POST",
        "com.atproto.server.activateAccount",
        &access,
        None,
    );
    assert_eq!(res.status, 200, "{}", res.json());
    let received = relay.wait_for(2);
    assert_eq!(received.len(), 2, "a crawl request on activation");
    check_crawl_request(&received[1], &config);
}
