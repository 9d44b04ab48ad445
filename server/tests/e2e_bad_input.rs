//! Bad input on both shells: every method the server knows, called with garbage by an
//! authenticated caller, answers a clean XRPC error body with a 4xx, never a 500 or a panic;
//! oversized bodies answer 413. Methods served elsewhere are forwarded as they are (the service
//! judges them, as behind the reference PDS): with no service reachable in these tests, they
//! answer 502 UpstreamFailure.

#[macro_use]
mod support;

use pds_api::runtime::xrpc::MethodKind;
use support::account::login;
use support::http::{request, Reply};

on_both_shells!(garbage_never_breaks_anything, oversized_bodies);

fn assert_clean_error(res: &Reply, what: &str, proxied: bool) {
    assert!(
        (400..500).contains(&res.status)
            || (proxied && res.status == 502 && res.json()["error"] == "UpstreamFailure"),
        "{what}: status {} body {}",
        res.status,
        String::from_utf8_lossy(&res.body)
    );
    let body = res.json();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {body}"
    );
    assert!(
        body.get("message").is_none_or(|m| m.is_string()),
        "{what}: {body}"
    );
}

fn garbage_never_breaks_anything(base: &str) {
    let (access, _) = login(base);
    let bearer = format!("Bearer {access}");
    let mut calls = 0;
    for meta in pds_api::methods::METHODS {
        // Session-ending and account-changing methods would end this test's session.
        if matches!(
            meta.nsid,
            "com.atproto.server.deleteSession"
                | "com.atproto.server.deactivateAccount"
                | "com.atproto.server.deleteAccount"
        ) || meta.kind == MethodKind::Subscription
        {
            continue;
        }
        let path = format!("/xrpc/{}", meta.nsid);
        let proxied = !pds_api::methods::serves::<pds::api::Api<'_>>(meta.nsid);
        match meta.kind {
            MethodKind::Query => {
                for query in [
                    "?limit=x&cursor=%ff%fe&did=not-a-did&uri=at%3A%2F%2F",
                    "?repo=&rkey=..&collection=a",
                ] {
                    let res = request(
                        base,
                        "GET",
                        &format!("{path}{query}"),
                        &[("authorization", &bearer)],
                        b"",
                    );
                    if res.status != 200 {
                        assert_clean_error(&res, &format!("GET {path}{query}"), proxied);
                    }
                    calls += 1;
                }
            }
            _ => {
                for (content_type, body) in [
                    ("application/json", &b"{\"unterminated"[..]),
                    ("application/json", b"[1, 2, 3]"),
                    (
                        "application/json",
                        br#"{"repo": 5, "collection": {}, "record": [], "writes": "no"}"#,
                    ),
                    ("application/octet-stream", b"\x00\xff\xfe garbage"),
                ] {
                    let res = request(
                        base,
                        "POST",
                        &path,
                        &[("authorization", &bearer), ("content-type", content_type)],
                        body,
                    );
                    if res.status != 200 {
                        assert_clean_error(&res, &format!("POST {path} ({content_type})"), proxied);
                    }
                    calls += 1;
                }
            }
        }
    }
    assert!(calls > 300, "swept {calls} calls");
}

fn oversized_bodies(base: &str) {
    let big = vec![b' '; 2 * 1024 * 1024];
    let res = request(
        base,
        "POST",
        "/xrpc/com.atproto.server.createSession",
        &[("content-type", "application/json")],
        &big,
    );
    assert_eq!(res.status, 413, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["error"], "PayloadTooLarge");
}
