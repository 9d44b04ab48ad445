//! Relay notification against a small real HTTP relay on loopback: the requestCrawl call the
//! maintenance run sends (path, JSON body), its retry with backoff after a failure (driven by
//! a fake clock through `maintenance::run`), and https relays (a TLS relay with a test CA). The shells
//! sending it by themselves are in e2e_relay.rs.

mod net_support;
mod support;

use net_support::{handler, reply, serve, TestTls};
use pds::account::Account;
use pds::clock::ManualClock;
use pds::config::Config;
use pds::maintenance::{self, FIRST_RETRY_MS};
use pds::platform::native::http_client::NativeHttpClient;
use pds::platform::native::{DirBlobStore, NativeRelayClient, NativeSql};
use support::relay::{Received, Relay};
use support::worker::TempDir;

const CRAWL_PATH: &str = "/xrpc/com.atproto.sync.requestCrawl";

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
fn an_https_relay_is_asked_over_tls() {
    let tls = TestTls::new(&["127.0.0.1"]);
    let runtime = net_support::runtime();
    let relay = runtime.block_on(serve(
        handler(|_| reply(200, "application/json", "{}")),
        Some(tls.server.clone()),
    ));
    let config = config_with(&[("PDS_RELAYS", &relay.url("https"))]);
    let dir = TempDir::new("relay-notify-tls");
    const T0: i64 = 1_700_000_000_000;
    let account = Account::open(
        Box::new(NativeSql::open_in_memory().unwrap()),
        Box::new(DirBlobStore::open(&dir.0).unwrap()),
        Box::new(ManualClock::new(T0 as u64 * 1000)),
    );
    assert_eq!(
        maintenance::after_request(&config, &account, T0).unwrap(),
        Some(T0)
    );
    // The production client does not trust the test CA: the attempt fails and is retried.
    assert_eq!(
        runtime.block_on(maintenance::run(&config, &account, T0, &NativeRelayClient)),
        Some(T0 + FIRST_RETRY_MS)
    );
    assert!(relay.hits().is_empty());
    // A client that trusts it delivers the request.
    let client = NativeHttpClient::builder()
        .add_root_certificate_der(&tls.ca_der)
        .build()
        .unwrap();
    let later = T0 + FIRST_RETRY_MS;
    assert_eq!(
        runtime.block_on(maintenance::run(&config, &account, later, &client)),
        Some(T0 + maintenance::PRUNE_INTERVAL_MS)
    );
    let hits = relay.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].method, "POST");
    assert_eq!(hits[0].target, CRAWL_PATH);
}
