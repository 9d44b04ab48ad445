//! com.atproto.sync.subscribeRepos end to end on both shells (native, and the Worker under
//! workerd with `--ignored`): a consumer that does not use our decoder
//! (tests/oracle/firehose-consume.mjs, @atproto/sync and @atproto/repo from npm) subscribes over
//! WebSocket and checks every frame (lexicon shapes, commit signatures against the account's
//! did:key, every op proven by the blocks, ops inverted back to prevData, the prevData/since
//! chain) while the tests write through com.atproto.repo.*, restart the server, let the Durable
//! Object hibernate, and send bad cursors.

#[macro_use]
mod support;

use serde_json::{json, Value};
use support::firehose::{assert_verified, consume, input, seqs, url, Consumer};
use support::http::{get, xrpc};
use support::Shell;

on_both_shells!(
    live_subscriber_receives_exactly_the_commits,
    cursor_zero_replays_from_the_repository_creation_then_goes_live,
    future_cursor_is_an_error_frame_then_close,
    malformed_cursor_and_plain_get_are_client_errors,
);

on_both_servers!(
    reconnect_across_a_restart_has_no_gap_and_no_duplicate,
    status_and_handle_changes_reach_subscribers,
);

/// The line the account Durable Object prints each time it is constructed (first use, and again
/// after workerd evicted it).
const DO_STARTED: &str = "pds: account object started";

/// Writes through com.atproto.repo.*, each call one commit: creates, then updates and deletes of
/// records it created.
struct Writer {
    token: String,
    live: Vec<String>,
    /// Ops written per action: create, update, delete.
    actions: [usize; 3],
    n: usize,
}

impl Writer {
    fn new(base: &str) -> Writer {
        Writer {
            token: support::account::login(base).0,
            live: Vec::new(),
            actions: [0; 3],
            n: 0,
        }
    }

    fn call(&mut self, base: &str, nsid: &str, body: Value) -> Value {
        let res = xrpc(base, "POST", nsid, &self.token, Some(&body));
        assert_eq!(
            res.status,
            200,
            "{nsid}: {}",
            String::from_utf8_lossy(&res.body)
        );
        res.json()
    }

    fn record(&mut self) -> Value {
        self.n += 1;
        json!({"$type": "app.bsky.feed.post", "text": format!("firehose {}", self.n), "createdAt": "2026-11-24T09:00:00.000Z"})
    }

    fn create(&mut self, base: &str) {
        let record = self.record();
        let out = self.call(
            base,
            "com.atproto.repo.createRecord",
            json!({"repo": support::account::did(), "collection": "app.bsky.feed.post", "record": record}),
        );
        let rkey = out["uri"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        self.live.push(rkey);
        self.actions[0] += 1;
    }

    fn update(&mut self, base: &str) {
        let rkey = self.live.last().expect("a record to update").clone();
        let record = self.record();
        self.call(
            base,
            "com.atproto.repo.putRecord",
            json!({"repo": support::account::did(), "collection": "app.bsky.feed.post", "rkey": rkey, "record": record}),
        );
        self.actions[1] += 1;
    }

    fn delete(&mut self, base: &str) {
        let rkey = self.live.remove(0);
        self.call(
            base,
            "com.atproto.repo.deleteRecord",
            json!({"repo": support::account::did(), "collection": "app.bsky.feed.post", "rkey": rkey}),
        );
        self.actions[2] += 1;
    }

    /// `n` commits cycling create, update, create, delete (the repository never runs empty).
    fn mix(&mut self, base: &str, n: usize) {
        for i in 0..n {
            match i % 4 {
                0 | 2 => self.create(base),
                1 => self.update(base),
                _ => self.delete(base),
            }
        }
    }

    fn actions_json(&self) -> Value {
        let [c, u, d] = self.actions;
        json!({"create": c, "update": u, "delete": d})
    }
}

/// Everything the log holds, from cursor 0, checked from the repository's creation on (the
/// consumer stops once no frame came for 1.5 s).
fn replay_all(base: &str) -> Value {
    let mut i = input(&url(base, Some("0")), json!({"idleMs": 1500}));
    i["prev"] = Value::Null;
    let result = consume(&i);
    assert_verified(&result);
    assert_eq!(result["stopReason"], "idle", "{result}");
    result
}

fn last_seq(result: &Value) -> u64 {
    *seqs(result).last().expect("no events")
}

/// A consumer continuing from a previous result: cursor at its last seq, chain from its last
/// commit, stopping at `until`.
fn continuing(base: &str, previous: &Value, until: u64) -> Value {
    let cursor = last_seq(previous);
    let mut i = input(
        &url(base, Some(&cursor.to_string())),
        json!({"untilSeq": until, "timeoutMs": 90000}),
    );
    i["prev"] = previous["last"].clone();
    i["lastSeq"] = json!(cursor);
    i
}

fn range(from: u64, to: u64) -> Vec<u64> {
    (from..=to).collect()
}

/// Subscribed without a cursor, the consumer gets exactly the commits written after it
/// connected: their seqs in order, one commit each, the chain continuing the repository's.
fn live_subscriber_receives_exactly_the_commits(base: &str) {
    let mut writer = Writer::new(base);
    writer.create(base);
    let before = replay_all(base);
    let latest = last_seq(&before);

    let mut i = input(
        &url(base, None),
        json!({"untilSeq": latest + 9, "timeoutMs": 90000}),
    );
    // The chain state the replay ended at: the first live commit must continue it.
    i["prev"] = before["last"].clone();
    i["lastSeq"] = json!(latest);
    let consumer = Consumer::start(&i);
    let mut live = Writer {
        actions: [0; 3],
        ..writer
    };
    live.mix(base, 9);
    let result = consumer.finish();
    assert_verified(&result);
    assert_eq!(result["stopReason"], "seq", "{result}");
    assert_eq!(seqs(&result), range(latest + 1, latest + 9));
    assert_eq!(result["kinds"], json!(vec!["#commit"; 9]));
    assert_eq!(result["counts"]["commits"], 9);
    assert_eq!(result["counts"]["ops"], 9);
    assert_eq!(result["counts"]["actions"], live.actions_json());
    // Every commit had a predecessor: each was inverted back to its prevData.
    assert_eq!(result["counts"]["inverted"], 9);
}

/// cursor=0 replays the whole log from the repository's creation (#sync first among repository
/// events, commits chained from it), then the same socket carries new commits.
fn cursor_zero_replays_from_the_repository_creation_then_goes_live(base: &str) {
    let mut writer = Writer::new(base);
    writer.mix(base, 3);
    let before = replay_all(base);
    let latest = last_seq(&before);
    assert_eq!(
        seqs(&before),
        range(1, latest),
        "the log starts at seq 1, no gaps"
    );
    let kinds: Vec<&str> = before["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    let sync = kinds
        .iter()
        .position(|k| *k == "#sync")
        .expect("no #sync for the repository's creation");
    let first_commit = kinds.iter().position(|k| *k == "#commit").unwrap();
    assert!(sync < first_commit, "{kinds:?}");
    assert_eq!(before["counts"]["commits"], 3);

    let mut i = input(
        &url(base, Some("0")),
        json!({"untilSeq": latest + 2, "timeoutMs": 90000}),
    );
    i["prev"] = Value::Null;
    let consumer = Consumer::start(&i);
    writer.mix(base, 2);
    let result = consumer.finish();
    assert_verified(&result);
    assert_eq!(
        seqs(&result),
        range(1, latest + 2),
        "replay then live, no gap, no duplicate"
    );
    assert_eq!(result["counts"]["commits"], 5);
    assert_eq!(result["counts"]["syncs"], 1);
    assert_eq!(result["counts"]["actions"], writer.actions_json());
}

/// Consume to S and disconnect; write; restart the server (workerd on the Worker) on the same
/// state; write again; reconnect with cursor=S: every event after S once, in order, the chain
/// intact across the restart.
fn reconnect_across_a_restart_has_no_gap_and_no_duplicate(server: &mut dyn Shell) {
    let mut writer = Writer::new(server.base());
    writer.mix(server.base(), 2);
    let first = replay_all(server.base());
    let s = last_seq(&first);
    // A subscriber still connected when the server stops: it gets what was written before.
    let mut i = input(
        &url(server.base(), None),
        json!({"untilSeq": s + 100, "timeoutMs": 90000}),
    );
    i["prev"] = first["last"].clone();
    i["lastSeq"] = json!(s);
    let connected = Consumer::start(&i);
    writer.mix(server.base(), 3);
    // The frames go out after the responses: stopping workerd at once has been seen to cut
    // them off (1 of 3 delivered). A reconnect with a cursor is what recovers from that (below).
    std::thread::sleep(std::time::Duration::from_secs(2));
    let old = server.base().trim_start_matches("http://").to_owned();
    server.restart();
    assert!(
        std::net::TcpStream::connect(&old).is_err(),
        "the stopped server still accepts connections"
    );
    let cut = connected.finish();
    assert_verified(&cut);
    assert_eq!(seqs(&cut), range(s + 1, s + 3));
    assert_eq!(
        cut["closed"]["byServer"], true,
        "the stop closed the socket: {cut}"
    );
    // Sessions live in the stored state: the same token works after the restart.
    writer.mix(server.base(), 2);
    let i = continuing(server.base(), &first, s + 5);
    let result = consume(&i);
    assert_verified(&result);
    assert_eq!(seqs(&result), range(s + 1, s + 5));
    assert_eq!(result["counts"]["commits"], 5);
    // The cursor continues the sequence the restart read back: the log is whole from 1.
    let all = replay_all(server.base());
    assert_eq!(seqs(&all), range(1, s + 5));
}

/// The frames a consumer kept (`keepFrames`), decoded: (header, body) maps.
fn decoded_frames(result: &Value) -> Vec<(pds::data::Map, pds::data::Map)> {
    use base64::Engine;
    result["frames"]
        .as_array()
        .expect("the consumer kept its frames")
        .iter()
        .map(|f| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(f.as_str().unwrap())
                .unwrap();
            let (header, used) = pds::data::cbor::decode_prefix(&bytes).unwrap();
            let body = pds::data::decode(&bytes[used..]).unwrap();
            match (header, body) {
                (pds::data::Value::Map(h), pds::data::Value::Map(b)) => (h, b),
                other => panic!("frame parts are not maps: {other:?}"),
            }
        })
        .collect()
}

/// Deactivation and activation reach a live subscriber as `#account` (inactive, then active),
/// `#identity` and `#sync` of the current head, all verified; a redeploy with another handle
/// announces it with `#identity`.
fn status_and_handle_changes_reach_subscribers(server: &mut dyn Shell) {
    use pds::data::Value as V;
    let base = server.base().to_owned();
    let mut writer = Writer::new(&base);
    writer.create(&base);
    let before = replay_all(&base);
    let latest = last_seq(&before);
    let mut i = input(
        &url(&base, None),
        json!({"untilSeq": latest + 4, "timeoutMs": 60000}),
    );
    i["prev"] = before["last"].clone();
    i["lastSeq"] = json!(latest);
    i["keepFrames"] = json!(true);
    let consumer = Consumer::start(&i);
    for (nsid, body) in [
        ("com.atproto.server.deactivateAccount", Some(json!({}))),
        ("com.atproto.server.activateAccount", None),
    ] {
        let res = xrpc(&base, "POST", nsid, &writer.token, body.as_ref());
        assert_eq!(
            res.status,
            200,
            "{nsid}: {}",
            String::from_utf8_lossy(&res.body)
        );
    }
    let result = consumer.finish();
    assert_verified(&result);
    assert_eq!(seqs(&result), range(latest + 1, latest + 4));
    assert_eq!(
        result["kinds"],
        json!(["#account", "#account", "#identity", "#sync"])
    );
    let frames = decoded_frames(&result);
    let did = V::String(support::account::did());
    assert_eq!(frames[0].1["did"], did);
    assert_eq!(frames[0].1["active"], V::Bool(false));
    assert_eq!(frames[0].1["status"], V::String("deactivated".into()));
    assert_eq!(frames[1].1["active"], V::Bool(true));
    assert!(!frames[1].1.contains_key("status"));
    assert_eq!(
        frames[2].1["handle"],
        V::String(support::account::HANDLE.into())
    );
    let head = get(
        &base,
        &format!(
            "/xrpc/com.atproto.sync.getLatestCommit?did={}",
            support::account::did()
        ),
    )
    .json();
    assert_eq!(
        frames[3].1["rev"],
        V::String(head["rev"].as_str().unwrap().into())
    );

    // A redeploy with a new handle: the first request after it announces the handle once.
    server.set_var("PDS_HANDLE", "renamed.test");
    server.restart();
    let base = server.base().to_owned();
    for _ in 0..2 {
        let res = get(
            &base,
            &format!(
                "/xrpc/com.atproto.sync.getLatestCommit?did={}",
                support::account::did()
            ),
        );
        assert_eq!(res.status, 200);
    }
    let mut i = input(
        &url(&base, Some(&(latest + 4).to_string())),
        json!({"idleMs": 1500, "timeoutMs": 60000}),
    );
    i["keepFrames"] = json!(true);
    let result = consume(&i);
    assert_verified(&result);
    assert_eq!(
        seqs(&result),
        vec![latest + 5],
        "one #identity, once: {result}"
    );
    let frames = decoded_frames(&result);
    assert_eq!(frames[0].0["t"], V::String("#identity".into()));
    assert_eq!(frames[0].1["handle"], V::String("renamed.test".into()));
}

/// A cursor past the newest event: one FutureCursor error frame, then the server closes.
fn future_cursor_is_an_error_frame_then_close(base: &str) {
    let mut writer = Writer::new(base);
    writer.create(base);
    let latest = last_seq(&replay_all(base));
    let cursor = (latest + 1000).to_string();
    // The Worker's close has been seen to come ~10 s after the error frame: allow 30 s.
    let result = consume(&input(
        &url(base, Some(&cursor)),
        json!({"untilError": true, "closeWaitMs": 30000, "timeoutMs": 60000}),
    ));
    assert_verified(&result);
    assert_eq!(result["errors"], json!(["FutureCursor"]), "{result}");
    assert_eq!(
        result["kinds"],
        json!(["error"]),
        "nothing but the error frame"
    );
    assert_eq!(
        result["closed"]["byServer"], true,
        "the server must close after the error: {result}"
    );
}

/// A cursor that is not an integer is refused before the upgrade (400 InvalidRequest) or with an
/// error frame; a GET without the WebSocket upgrade is a client error in XRPC JSON, not a 500.
fn malformed_cursor_and_plain_get_are_client_errors(base: &str) {
    let reply = upgrade_request(base, "/xrpc/com.atproto.sync.subscribeRepos?cursor=abc");
    if reply.status == 101 {
        let result = consume(&input(
            &url(base, Some("abc")),
            json!({"untilError": true, "timeoutMs": 30000}),
        ));
        assert_eq!(result["errors"], json!(["InvalidRequest"]), "{result}");
    } else {
        assert_eq!(
            reply.status,
            400,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["error"], "InvalidRequest");
    }

    let plain = get(base, "/xrpc/com.atproto.sync.subscribeRepos");
    assert!(
        (400..500).contains(&plain.status),
        "status {}: {}",
        plain.status,
        String::from_utf8_lossy(&plain.body)
    );
    assert!(
        plain.json()["error"].is_string(),
        "{}",
        String::from_utf8_lossy(&plain.body)
    );
}

/// A WebSocket upgrade request's answer: its status (and body when not 101).
fn upgrade_request(base: &str, path: &str) -> support::http::Reply {
    support::http::upgrade(base, path).map_or_else(
        |refused| refused,
        |_| support::http::Reply {
            status: 101,
            headers: Vec::new(),
            body: Vec::new(),
        },
    )
}

/// With at most 1,000 events kept (`PDS_EVENT_RETENTION_COUNT`), once the hourly prune ran a
/// cursor before the oldest kept event gets `#info OutdatedCursor`, then every kept event from
/// the oldest on, then live.
fn outdated_cursor_after_count_retention(server: &mut dyn Shell) {
    let mut writer = Writer::new(server.base());
    for _ in 0..1011 {
        writer.create(server.base());
    }
    // The first prune ran right after the first event; the next is an hour later. Move the
    // last prune back an hour instead of waiting for it.
    server.run_stored_sql(
        "UPDATE maintenance_state SET last_prune_ms = coalesce(last_prune_ms, 0) - 3600000 WHERE id = 1",
    );
    // A request (re)schedules maintenance: the prune is due now.
    writer.create(server.base());
    let mut pruned = None;
    for _ in 0..20 {
        let result = consume(&input(
            &url(server.base(), Some("1")),
            json!({"idleMs": 2000, "timeoutMs": 60000}),
        ));
        assert_verified(&result);
        if result["kinds"][0] == "#info" {
            pruned = Some(result);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let result = pruned.expect("no OutdatedCursor: events were not pruned by count");
    assert_eq!(result["infos"], json!(["OutdatedCursor"]));
    let got = seqs(&result);
    // 1,000 kept at the prune, plus the commit written after it if the prune ran first.
    assert!(
        (1000..=1001).contains(&got.len()),
        "{} events kept",
        got.len()
    );
    assert!(got[0] > 2, "replay starts at {}", got[0]);
    assert_eq!(
        got,
        range(got[0], got[0] + got.len() as u64 - 1),
        "kept events have no gap"
    );
    // Every commit written is among the newest events: the log ends with the last one.
    assert_eq!(
        result["kinds"].as_array().unwrap().last().unwrap(),
        "#commit"
    );
    assert!(*got.last().unwrap() >= 1012, "{}", got.last().unwrap());
}

mod retention {
    const COUNT: (&str, &str) = ("PDS_EVENT_RETENTION_COUNT", "1000");

    #[test]
    fn native_outdated_cursor_after_count_retention() {
        let mut s = crate::support::native::NativeServer::start(&[COUNT]);
        super::outdated_cursor_after_count_retention(&mut s);
    }

    #[test]
    #[ignore = "Worker under workerd: npm test runs it with --ignored"]
    fn worker_outdated_cursor_after_count_retention() {
        let mut s = crate::support::worker::WorkerServer::start(&[COUNT]);
        super::outdated_cursor_after_count_retention(&mut s);
    }
}

/// How long the tests leave the account Durable Object without a request so that workerd evicts
/// it while a hibernatable WebSocket stays open: measured under wrangler 4.164 (idle 9 s: never
/// evicted; 10 s and more: always), doubled for a loaded machine.
const EVICTION_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The Durable Object hibernates with a subscriber connected: after workerd evicted it (a second
/// "account object started" once a request wakes it), a write reaches the still-open socket with
/// the next seq, verified and chained; a reconnect after another eviction replays from its cursor
/// and goes live.
#[test]
#[ignore = "Worker under workerd: npm test runs it with --ignored"]
fn worker_subscriber_survives_durable_object_eviction() {
    use std::time::Duration;
    let server = support::worker::WorkerServer::start(&[]);
    let base = server.base.clone();
    let mut writer = Writer::new(&base);
    writer.create(&base);
    let before = replay_all(&base);
    let latest = last_seq(&before);
    let started = server.log_count(DO_STARTED);
    assert!(started >= 1, "the Worker never printed {DO_STARTED:?}");

    let mut i = input(
        &url(&base, None),
        json!({"untilSeq": latest + 2, "timeoutMs": 120000}),
    );
    i["prev"] = before["last"].clone();
    i["lastSeq"] = json!(latest);
    let consumer = Consumer::start(&i);
    writer.create(&base);
    std::thread::sleep(EVICTION_WAIT);
    assert_eq!(
        server.log_count(DO_STARTED),
        started,
        "something woke the object while idle"
    );
    writer.create(&base);
    assert!(
        server.wait_for_log(DO_STARTED, started + 1, Duration::from_secs(10)),
        "the object was not evicted after {EVICTION_WAIT:?} idle with a subscriber connected"
    );
    let result = consumer.finish();
    assert_verified(&result);
    assert_eq!(seqs(&result), range(latest + 1, latest + 2));
    assert_ne!(
        result["closed"]["byServer"], true,
        "the socket stayed open through the eviction"
    );

    // Reconnect after another eviction: replay from the cursor, then live.
    std::thread::sleep(EVICTION_WAIT);
    let woken = server.log_count(DO_STARTED);
    let consumer = Consumer::start(&continuing(&base, &before, latest + 3));
    assert!(
        server.wait_for_log(DO_STARTED, woken + 1, Duration::from_secs(10)),
        "the object was not evicted before the reconnect"
    );
    writer.create(&base);
    let result = consumer.finish();
    assert_verified(&result);
    assert_eq!(seqs(&result), range(latest + 1, latest + 3));
}
