//! Relay notification end to end on both shells: with a relay configured (played by a small
//! HTTP server on loopback), the server asks it to crawl when the account first comes up and
//! again on activation, off the request path (the Durable Object alarm on Workers, the
//! maintenance task natively), and not on deactivation.

#[macro_use]
mod support;

use std::time::Duration;

use support::relay::{Received, Relay};

#[test]
fn native_server_asks_relays_to_crawl() {
    let relay = Relay::start(&[]);
    let server = support::native::NativeServer::start(&[("PDS_RELAYS", relay.url.as_str())]);
    asks_relays_to_crawl_on_start_and_on_activation(&server.base, &relay);
}

#[test]
#[ignore = "Worker under workerd: npm test runs it with --ignored"]
fn worker_asks_relays_to_crawl() {
    let relay = Relay::start(&[]);
    let server = support::worker::WorkerServer::start(&[("PDS_RELAYS", relay.url.as_str())]);
    asks_relays_to_crawl_on_start_and_on_activation(&server.base, &relay);
}

fn check_crawl_request(r: &Received) {
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/xrpc/com.atproto.sync.requestCrawl");
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        r.body,
        serde_json::json!({ "hostname": support::account::HOSTNAME })
    );
}

fn asks_relays_to_crawl_on_start_and_on_activation(base: &str, relay: &Relay) {
    // The Durable Object starts with the first account request (the native server at once).
    let (access, _) = support::account::login(base);
    let received = relay.wait_for(1);
    assert_eq!(received.len(), 1, "a crawl request on start");
    check_crawl_request(&received[0]);

    // Deactivating is no reason to ask; activating is, even within the quiet period.
    let res = support::http::xrpc(
        base,
        "POST",
        "com.atproto.server.deactivateAccount",
        &access,
        Some(&serde_json::json!({})),
    );
    assert_eq!(res.status, 200, "{}", res.json());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(relay.received().len(), 1);
    let res = support::http::xrpc(
        base,
        "POST",
        "com.atproto.server.activateAccount",
        &access,
        None,
    );
    assert_eq!(res.status, 200, "{}", res.json());
    let received = relay.wait_for(2);
    assert_eq!(received.len(), 2, "a crawl request on activation");
    check_crawl_request(&received[1]);
    // Writes within the quiet period do not ask again.
    let res = support::http::xrpc(
        base,
        "POST",
        "com.atproto.repo.createRecord",
        &access,
        Some(&serde_json::json!({
            "repo": support::account::did(),
            "collection": "app.bsky.feed.post",
            "record": { "$type": "app.bsky.feed.post", "text": "quiet", "createdAt": "2026-11-24T00:00:00Z" },
        })),
    );
    assert_eq!(res.status, 200, "{}", res.json());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(relay.received().len(), 2);
}
