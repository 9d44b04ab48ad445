//! Abuse resistance, under attack and with normal service going on, on both shells: bodies over
//! a method's limit are refused from their declared length before they are read; logins are
//! throttled per identifier and client address before any password is hashed; a concurrent
//! double refresh keeps the user signed in, and a new password ends every session; firehose
//! subscribers are capped in total and per address, and refused cleanly over the caps; the
//! account's repository writes spend a budget of points; expensive reads are limited per client
//! address at the edge.

#[macro_use]
mod support;

use std::io::{BufReader, Read, Write};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use support::account::{
    create_app_password, create_record, did, login, refresh, sign_in, HANDLE, PASSWORD,
};
use support::http::{
    connect_from, read_body, read_head, request, request_from, try_read_head, upgrade,
    upgrade_from, with_headers, xrpc,
};
use support::ShellKind;

const DO_STARTED: &str = "pds: account object started";
const CREATE_SESSION: &str = "/xrpc/com.atproto.server.createSession";

on_both_kinds!(
    oversized_bodies_are_refused_unread,
    logins_are_throttled,
    sessions_survive_a_double_refresh_and_end_with_the_password,
    firehose_subscribers_are_capped,
    writes_spend_the_accounts_budget,
    expensive_reads_are_limited_per_address,
);

fn create_post(base: &str, token: &str, text: &str) -> serde_json::Value {
    create_record(
        base,
        token,
        json!({"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-12-06T00:00:00Z"}),
    )
}

/// Reads one WebSocket frame header and payload from a subscriber's socket; its first byte.
fn next_frame(socket: &mut BufReader<std::net::TcpStream>) -> u8 {
    let mut head = [0u8; 2];
    socket.read_exact(&mut head).expect("a firehose frame");
    let len = match head[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            socket.read_exact(&mut n).unwrap();
            u64::from(u16::from_be_bytes(n))
        }
        127 => {
            let mut n = [0u8; 8];
            socket.read_exact(&mut n).unwrap();
            u64::from_be_bytes(n)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    socket.read_exact(&mut payload).unwrap();
    head[0]
}

/// Streams 2 MiB of JSON to createSession without a declared length: the answer's status and
/// body, or `None` when the connection dropped before an answer.
fn chunked_over_limit(base: &str) -> Option<(u16, Vec<u8>)> {
    let (mut stream, authority) = connect_from(None, base);
    write!(
        stream,
        "POST {CREATE_SESSION} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b' '; 32 * 1024];
    for _ in 0..64 {
        let sent = write!(stream, "{:x}\r\n", chunk.len())
            .and_then(|()| stream.write_all(&chunk))
            .and_then(|()| stream.write_all(b"\r\n"));
        if sent.is_err() {
            break; // The server stopped reading: its answer is waiting.
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut reader = BufReader::new(stream);
    let (status, headers) = try_read_head(&mut reader)?;
    Some((status, read_body(&mut reader, &headers)))
}

fn oversized_bodies_are_refused_unread(kind: ShellKind) {
    let server = support::start_shell(kind, &[]);
    let base = server.base().to_owned();
    let starts = || server.worker().map(|w| w.log_count(DO_STARTED));
    let (token, _) = login(&base);
    let post = create_post(&base, &token, "before the attack");
    let mut subscriber = upgrade(&base, "/xrpc/com.atproto.sync.subscribeRepos")
        .unwrap_or_else(|r| panic!("subscribe: {} {:?}", r.status, r.body));
    subscriber
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started_before = starts();

    // 95 MB declared, 64 KiB sent: the answer comes without the rest being read.
    let asked = Instant::now();
    let (status, headers, body) = declare(&base, CREATE_SESSION, &[], 95_000_000);
    let waited = asked.elapsed();
    assert_eq!(status, 413, "declared 95 MB");
    assert_eq!(body["error"], "PayloadTooLarge", "{body}");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "access-control-allow-origin" && v == "*"),
        "{headers:?}"
    );
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");

    // Meanwhile the account serves as usual: a read, a write, and its event to the live
    // subscriber, from the same object (not restarted).
    let uri = post["uri"].as_str().unwrap();
    let rkey = uri.rsplit('/').next().unwrap();
    let read = request(
        &base,
        "GET",
        &format!(
            "/xrpc/com.atproto.repo.getRecord?repo={}&collection=app.bsky.feed.post&rkey={rkey}",
            did()
        ),
        &[],
        b"",
    );
    assert_eq!(read.status, 200, "{}", String::from_utf8_lossy(&read.body));
    assert_eq!(read.json()["value"]["text"], "before the attack");
    create_post(&base, &token, "after the attack");
    assert_eq!(next_frame(&mut subscriber), 0x82, "a binary event frame");
    assert_eq!(
        starts(),
        started_before,
        "the account object was not restarted"
    );

    // A streamed body without a declared length is counted and cut at the limit: 413 once it
    // passes 150 KiB, whatever follows. Under `wrangler dev`, the local proxy in front of the
    // Worker sometimes loses the race between its upload and the early answer, and answers
    // its own 500 "Network connection lost." (or drops the connection) instead of passing the
    // 413 on; Cloudflare's edge does not sit there. Only that artifact is retried.
    let mut artifacts = 0;
    let body = loop {
        match chunked_over_limit(&base) {
            Some((413, body)) => break body,
            Some((500, body))
                if kind == ShellKind::Worker
                    && String::from_utf8_lossy(&body).contains("Network connection lost") => {}
            None if kind == ShellKind::Worker => {}
            other => panic!("chunked 2 MiB: {other:?}"),
        }
        artifacts += 1;
        assert!(artifacts < 5, "the dev proxy's artifact every time");
    };
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "PayloadTooLarge");

    // Limits are per method: a 300 KB record fits createRecord's 1,000,000 bytes, while
    // putPreferences keeps the reference's 150 KiB.
    let big = "x".repeat(300_000);
    let res = xrpc(
        &base,
        "POST",
        "com.atproto.repo.createRecord",
        &token,
        Some(&json!({
            "repo": did(),
            "collection": "com.example.big",
            "record": {"$type": "com.example.big", "blob": big},
        })),
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let res = xrpc(
        &base,
        "POST",
        "app.bsky.actor.putPreferences",
        &token,
        Some(&json!({ "preferences": [{"$type": "com.example.pref", "blob": big}] })),
    );
    assert_eq!(res.status, 413, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["error"], "PayloadTooLarge");
    // An upload over the blob limit (100 MiB by default), or a proxied call over 1 MiB, is
    // refused from its declared length before a byte is stored or sent.
    let auth = format!("Bearer {token}");
    for (path, declared) in [
        ("/xrpc/com.atproto.repo.uploadBlob", 105_000_000),
        ("/xrpc/app.bsky.feed.sendInteractions", 2_000_000),
    ] {
        let (status, _, body) = declare(&base, path, &[("authorization", &auth)], declared);
        assert_eq!(
            (status, &body["error"]),
            (413, &json!("PayloadTooLarge")),
            "{path}: {body}"
        );
    }
}

/// POSTs to `path` declaring a body of `declared` bytes and sending 64 KiB of it; the answer's
/// status, headers and JSON body.
fn declare(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    declared: u64,
) -> (u16, Vec<(String, String)>, serde_json::Value) {
    let (mut attack, authority) = connect_from(None, base);
    let head = with_headers(
        format!(
            "POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\n\
             content-length: {declared}\r\n"
        ),
        headers,
    );
    attack.write_all(head.as_bytes()).unwrap();
    attack.write_all(&vec![b' '; 64 * 1024]).unwrap();
    attack
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(attack);
    let (status, headers) = read_head(&mut reader);
    let body = serde_json::from_slice(&read_body(&mut reader, &headers)).unwrap();
    (status, headers, body)
}

fn login_from(
    server: &dyn support::Shell,
    source: IpAddr,
    identifier: &str,
    password: &str,
) -> support::http::Reply {
    let body = json!({ "identifier": identifier, "password": password }).to_string();
    let ip = source.to_string();
    let mut headers = address_headers(server, &ip);
    headers.push(("content-type", "application/json"));
    request_from(
        Some(source),
        server.base(),
        "POST",
        CREATE_SESSION,
        &headers,
        body.as_bytes(),
    )
}

fn logins_are_throttled(kind: ShellKind) {
    let server = support::start_shell(kind, &[]);
    let base = server.base().to_owned();
    let attacker: IpAddr = "127.0.0.2".parse().unwrap();
    let owner: IpAddr = "127.0.0.1".parse().unwrap();
    // The owner is signed in before the attack, and stays so.
    let res = login_from(server.as_ref(), owner, HANDLE, PASSWORD);
    assert_eq!(res.status, 200, "{:?}", res.json());
    let token = res.json()["accessJwt"].as_str().unwrap().to_owned();

    // The account's handle (in any case) and DID share one budget per address.
    let names = [HANDLE.to_owned(), HANDLE.to_uppercase(), did()];
    for i in 0..30 {
        let res = login_from(server.as_ref(), attacker, &names[i % 3], "wrong password");
        assert_eq!(res.status, 401, "attempt {i}: {:?}", res.json());
        assert_eq!(res.json()["error"], "AuthenticationRequired");
        assert_eq!(res.header("ratelimit-limit"), Some("30"), "attempt {i}");
        assert_eq!(
            res.header("ratelimit-remaining"),
            Some((29 - i).to_string().as_str()),
            "attempt {i}"
        );
        assert_eq!(res.header("ratelimit-policy"), Some("30;w=300"));
    }
    for i in 30..40 {
        let started = Instant::now();
        let res = login_from(server.as_ref(), attacker, &names[i % 3], "wrong password");
        assert_eq!(res.status, 429, "attempt {i}");
        let body = res.json();
        assert_eq!(body["error"], "RateLimitExceeded", "{body}");
        assert_eq!(res.header("ratelimit-remaining"), Some("0"));
        let retry: u64 = res.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=300).contains(&retry), "retry-after {retry}");
        let reset: u64 = res.header("ratelimit-reset").unwrap().parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            reset > now && reset <= now + 301,
            "reset {reset}, now {now}"
        );
        // Refused before any hash: far quicker than a password check.
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    // The right password from the throttled address is refused too: nothing is checked.
    let res = login_from(server.as_ref(), attacker, HANDLE, PASSWORD);
    assert_eq!(res.status, 429);

    // The owner, elsewhere, signs in; their session from before still works.
    let res = login_from(server.as_ref(), owner, HANDLE, PASSWORD);
    assert_eq!(res.status, 200, "{:?}", res.json());
    assert_eq!(res.header("ratelimit-limit"), Some("30"));
    assert_eq!(res.header("ratelimit-remaining"), Some("28"));
    let res = xrpc(&base, "GET", "com.atproto.server.getSession", &token, None);
    assert_eq!(res.status, 200);

    // Another identifier from the attacker's address has its own budget (and is no account).
    let res = login_from(server.as_ref(), attacker, "bob.test", "wrong password");
    assert_eq!(res.status, 401);
    assert_eq!(res.header("ratelimit-remaining"), Some("29"));
}

fn sessions_survive_a_double_refresh_and_end_with_the_password(kind: ShellKind) {
    let mut server = support::start_shell(kind, &[]);
    let base = server.base().to_owned();
    let (access, refresh_jwt) = login(&base);
    let app_password = create_app_password(&base, &access, "phone");
    let app_session = sign_in(&base, HANDLE, &app_password).json();
    let app_access = app_session["accessJwt"].as_str().unwrap().to_owned();

    // Two refreshes with the same token at once (a retry racing the original): both succeed
    // with the same successor, and the user stays signed in.
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| refresh(&base, &refresh_jwt));
        let b = scope.spawn(|| refresh(&base, &refresh_jwt));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(
        (a.status, b.status),
        (200, 200),
        "{:?} {:?}",
        a.json(),
        b.json()
    );
    let next = a.json()["refreshJwt"].as_str().unwrap().to_owned();
    assert_eq!(b.json()["refreshJwt"], json!(next), "the same successor");
    let later = refresh(&base, &next);
    assert_eq!(later.status, 200, "{:?}", later.json());
    let access = later.json()["accessJwt"].as_str().unwrap().to_owned();
    let session = xrpc(&base, "GET", "com.atproto.server.getSession", &access, None);
    assert_eq!(session.status, 200);

    // A new configured password ends every session, the app password's too.
    let new_password = "a-new-password-5678";
    server.set_var(
        "PDS_PASSWORD_HASH",
        &pds::password::hash(new_password).unwrap(),
    );
    server.restart();
    let base = server.base().to_owned();
    for token in [&access, &app_access] {
        let res = xrpc(&base, "GET", "com.atproto.server.getSession", token, None);
        assert_eq!(res.status, 400, "{:?}", res.json());
        assert_eq!(res.json()["error"], "ExpiredToken");
    }
    let res = refresh(&base, later.json()["refreshJwt"].as_str().unwrap());
    assert_eq!(res.json()["error"], "ExpiredToken");
    assert_eq!(sign_in(&base, HANDLE, PASSWORD).status, 401);
    assert_eq!(sign_in(&base, HANDLE, new_password).status, 200);
    // The app password itself stays, and opens a new session.
    assert_eq!(sign_in(&base, HANDLE, &app_password).status, 200);
}

fn subscribe_from(
    server: &dyn support::Shell,
    source: IpAddr,
) -> Result<BufReader<std::net::TcpStream>, support::http::Reply> {
    let ip = source.to_string();
    upgrade_from(
        Some(source),
        server.base(),
        "/xrpc/com.atproto.sync.subscribeRepos",
        &address_headers(server, &ip),
    )
}

fn firehose_subscribers_are_capped(kind: ShellKind) {
    let server = support::start_shell(
        kind,
        &[
            ("PDS_FIREHOSE_MAX_SUBSCRIBERS", "3"),
            ("PDS_FIREHOSE_MAX_SUBSCRIBERS_PER_ADDRESS", "2"),
        ],
    );
    let base = server.base().to_owned();
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let refused = |res: Result<BufReader<std::net::TcpStream>, support::http::Reply>| {
        let reply = res.expect_err("refused");
        assert_eq!(
            reply.status,
            429,
            "{:?}",
            String::from_utf8_lossy(&reply.body)
        );
        let body = reply.json();
        assert_eq!(body["error"], "RateLimitExceeded", "{body}");
        body["message"].as_str().unwrap().to_owned()
    };
    let a1 = subscribe_from(server.as_ref(), ip("127.0.0.2")).expect("first from .2");
    let _a2 = subscribe_from(server.as_ref(), ip("127.0.0.2")).expect("second from .2");
    let message = refused(subscribe_from(server.as_ref(), ip("127.0.0.2")));
    assert!(message.contains("from this address"), "{message}");
    let mut b1 = subscribe_from(server.as_ref(), ip("127.0.0.1")).expect("first from .1");
    let message = refused(subscribe_from(server.as_ref(), ip("127.0.0.3")));
    assert!(message.contains("at most 3"), "{message}");

    // The subscribers in are served as before.
    b1.get_ref()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (token, _) = login(&base);
    create_post(&base, &token, "to the subscribers");
    assert_eq!(next_frame(&mut b1), 0x82);

    // One leaves: its place is free again.
    drop(a1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match subscribe_from(server.as_ref(), ip("127.0.0.3")) {
            Ok(_) => break,
            Err(reply) => {
                assert_eq!(reply.status, 429);
                assert!(
                    Instant::now() < deadline,
                    "the freed place was not given back"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn writes_spend_the_accounts_budget(kind: ShellKind) {
    let mut server = support::start_shell(kind, &[("PDS_WRITE_POINTS_PER_HOUR", "13")]);
    let base = server.base().to_owned();
    let (token, _) = login(&base);
    let anonymous = request(
        &base,
        "POST",
        "/xrpc/com.atproto.repo.createRecord",
        &[("content-type", "application/json")],
        json!({"repo": did(), "collection": "app.bsky.feed.post", "record": {}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(anonymous.status, 401, "anonymous calls spend nothing");
    let create = |base: &str, record: serde_json::Value| {
        xrpc(
            base,
            "POST",
            "com.atproto.repo.createRecord",
            &token,
            Some(&json!({"repo": did(), "collection": "app.bsky.feed.post", "record": record})),
        )
    };
    let post = |text: &str| json!({"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-12-06T00:00:00Z"});
    // A write that fails after admission spends its points too (the reference charges every
    // attempt): stored after the call, as it made no commit to store them with.
    let invalid = create(&base, json!({"$type": "app.bsky.feed.post"}));
    assert_eq!(invalid.status, 400, "{:?}", invalid.json());
    assert_eq!(invalid.header("ratelimit-remaining"), Some("10"));
    // Stored, not only held in memory: a restart keeps them.
    server.restart();
    let base = server.base().to_owned();
    // Three creates (3 points each) fit in the 10 left; the answers say what is left.
    let mut uris = Vec::new();
    for left in ["7", "4", "1"] {
        let res = create(&base, post("x"));
        assert_eq!(res.status, 200, "{:?}", res.json());
        assert_eq!(res.header("ratelimit-remaining"), Some(left));
        assert_eq!(res.header("ratelimit-policy"), Some("13;w=3600"));
        uris.push(res.json()["uri"].as_str().unwrap().to_owned());
    }
    // A fourth does not fit: refused, nothing written.
    let res = create(&base, post("y"));
    assert_eq!(res.status, 429);
    assert_eq!(res.json()["error"], "RateLimitExceeded");
    assert!(res.header("retry-after").is_some());
    let listed = request(
        &base,
        "GET",
        &format!(
            "/xrpc/com.atproto.repo.listRecords?repo={}&collection=app.bsky.feed.post",
            did()
        ),
        &[],
        b"",
    );
    assert_eq!(listed.json()["records"].as_array().unwrap().len(), 3);
    // A delete costs 1 point: it still fits.
    let rkey = uris[0].rsplit('/').next().unwrap();
    let res = xrpc(
        &base,
        "POST",
        "com.atproto.repo.deleteRecord",
        &token,
        Some(&json!({"repo": did(), "collection": "app.bsky.feed.post", "rkey": rkey})),
    );
    assert_eq!(res.status, 200, "{:?}", res.json());
    assert_eq!(res.header("ratelimit-remaining"), Some("0"));
    // Reads are not writes.
    assert_eq!(listed.status, 200);
}

/// The headers that place a request at client address `ip`: on Workers Cloudflare's
/// `CF-Connecting-IP`, which the test plays; natively none (the connection's peer address
/// counts, and the tests connect from it).
fn address_headers<'a>(server: &dyn support::Shell, ip: &'a str) -> Vec<(&'static str, &'a str)> {
    match server.worker() {
        Some(_) => vec![("cf-connecting-ip", ip)],
        None => vec![],
    }
}

/// A GET from `source` (see [`address_headers`]).
fn get_from(server: &dyn support::Shell, source: IpAddr, path: &str) -> support::http::Reply {
    let ip = source.to_string();
    let headers = address_headers(server, &ip);
    request_from(Some(source), server.base(), "GET", path, &headers, b"")
}

fn expensive_reads_are_limited_per_address(kind: ShellKind) {
    let server = support::start_shell(kind, &[]);
    let attacker: IpAddr = "127.0.0.2".parse().unwrap();
    let owner: IpAddr = "127.0.0.1".parse().unwrap();
    let list = format!(
        "/xrpc/com.atproto.repo.listRecords?repo={}&collection=app.bsky.feed.post",
        did()
    );
    // Cloudflare's limiter (and its local twin under workerd) counts in fixed windows of a
    // minute: a count that starts near a window's end would carry into the next one.
    if server.worker().is_some() {
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 60;
        if second > 40 {
            std::thread::sleep(std::time::Duration::from_secs(61 - second));
        }
    }
    let mut allowed = 0;
    let refused = loop {
        let res = get_from(server.as_ref(), attacker, &list);
        if res.status != 200 {
            break res;
        }
        allowed += 1;
        assert!(allowed <= 400, "never refused");
    };
    assert_eq!(allowed, 300, "300 a minute per address");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["error"], "RateLimitExceeded");
    assert_eq!(refused.header("retry-after"), Some("60"));
    assert_eq!(refused.header("ratelimit-policy"), Some("300;w=60"));
    // Every expensive read from that address counts, the firehose's connects too; cheap reads
    // do not.
    let repo = format!("/xrpc/com.atproto.sync.getRepo?did={}", did());
    assert_eq!(get_from(server.as_ref(), attacker, &repo).status, 429);
    let subscribe = subscribe_from(server.as_ref(), attacker);
    assert_eq!(subscribe.expect_err("refused").status, 429);
    let describe = "/xrpc/com.atproto.server.describeServer";
    assert_eq!(get_from(server.as_ref(), attacker, describe).status, 200);
    // Another address reads on.
    assert_eq!(get_from(server.as_ref(), owner, &list).status, 200);
    assert_eq!(get_from(server.as_ref(), owner, &repo).status, 200);
}
