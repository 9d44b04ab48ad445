//! End to end over HTTP on loopback: every scenario runs against the native shell and, with
//! `--ignored` (as `npm test` runs it, after building the Worker), against the real Worker under
//! workerd (wrangler dev, local DO SQLite and R2).

#[macro_use]
mod support;

use support::http::get;

// Every scenario, once: each runs on both shells.
on_both_shells!(
    health_and_unknown_paths,
    well_known_identity,
    cors_for_browsers,
    describe_server,
    unimplemented_methods,
    malformed_requests,
);

fn health_and_unknown_paths(base: &str) {
    let health = get(base, "/xrpc/_health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["version"], env!("CARGO_PKG_VERSION"));

    // The Worker's internal upload requests to the Durable Object are not reachable from outside.
    for path in [
        "/_internal/offload/uploadBlob/authorize",
        "/_internal/offload/uploadBlob/complete",
    ] {
        let res = support::http::post_json(
            base,
            path,
            &serde_json::json!({"cid": "x", "size": 1, "mimeType": "a/b"}),
        );
        assert_eq!(res.status, 404, "{path}");
    }

    let missing = get(base, "/no/such/path");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "NotFound");
}

fn well_known_identity(base: &str) {
    let did = get(base, "/.well-known/atproto-did");
    assert_eq!(did.status, 200);
    assert_eq!(
        String::from_utf8(did.body).unwrap(),
        support::account::did()
    );

    let doc = get(base, "/.well-known/did.json");
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert_eq!(doc["id"], support::account::did());
    assert_eq!(
        doc["alsoKnownAs"][0],
        format!("at://{}", support::account::HANDLE)
    );
    assert_eq!(doc["service"][0]["serviceEndpoint"], "http://localhost");
    let key = doc["verificationMethod"][0]["publicKeyMultibase"]
        .as_str()
        .unwrap();
    let signing = support::account::signing_key();
    assert_eq!(key, signing.public_key().to_multibase());
}

fn cors_for_browsers(base: &str) {
    use support::http::request;
    let preflight = request(
        base,
        "OPTIONS",
        "/xrpc/com.atproto.repo.createRecord",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type,dpop",
            ),
        ],
        b"",
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("authorization,content-type,dpop")
    );
    assert!(preflight
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));

    for path in ["/xrpc/_health", "/.well-known/atproto-did", "/no/such/path"] {
        let res = request(base, "GET", path, &[("origin", "https://app.example")], b"");
        assert_eq!(
            res.header("access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
        let exposed = res.header("access-control-expose-headers").unwrap_or("");
        for header in ["WWW-Authenticate", "DPoP-Nonce", "RateLimit-Remaining"] {
            assert!(exposed.contains(header), "{path} exposes {exposed}");
        }
    }
}

fn describe_server(base: &str) {
    let res = get(base, "/xrpc/com.atproto.server.describeServer");
    assert_eq!(res.status, 200);
    assert!(res
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let body = res.json();
    assert_eq!(
        body["did"],
        format!("did:web:{}", support::account::HOSTNAME)
    );
    assert_eq!(body["availableUserDomains"], serde_json::json!([]));
    assert_eq!(body["inviteCodeRequired"], true);
}

/// A lexicon method without a handler here, and an NSID no lexicon defines, are proxied to the
/// AppView, which needs the account's credentials: anonymous callers get 401 AuthMissing, as
/// from the reference PDS. A path that is no NSID is 501 through the dispatcher.
fn unimplemented_methods(base: &str) {
    for path in [
        "/xrpc/com.atproto.lexicon.resolveLexicon?nsid=app.bsky.feed.post",
        "/xrpc/com.example.nothing.here",
    ] {
        let res = get(base, path);
        assert_eq!(res.status, 401, "{path}");
        assert_eq!(
            res.json(),
            serde_json::json!({"error": "AuthMissing", "message": "Authentication Required"})
        );
    }
    let res = get(base, "/xrpc/nonsense");
    assert_eq!(res.status, 501);
    assert_eq!(
        res.json(),
        serde_json::json!({"error": "MethodNotImplemented", "message": "Method Not Implemented"})
    );
}

/// Bad params, bad JSON, wrong HTTP method, wrong content type: 400 InvalidRequest, never a 500;
/// and no credentials where they are needed: 401 AuthMissing.
fn malformed_requests(base: &str) {
    use support::http::{post_json, request};
    let expect_invalid = |res: support::http::Reply, what: &str| {
        assert_eq!(
            res.status,
            400,
            "{what}: {}",
            String::from_utf8_lossy(&res.body)
        );
        let body = res.json();
        assert_eq!(body["error"], "InvalidRequest", "{what}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    };
    expect_invalid(
        get(base, "/xrpc/com.atproto.repo.listRecords?repo=alice.test&collection=app.bsky.feed.post&limit=abc"),
        "non-integer limit",
    );
    expect_invalid(
        get(base, "/xrpc/com.atproto.repo.listRecords?repo=alice.test&collection=app.bsky.feed.post&limit=1000"),
        "limit above its maximum",
    );
    expect_invalid(
        get(base, "/xrpc/com.atproto.repo.listRecords?repo=alice.test"),
        "missing required param",
    );
    expect_invalid(
        post_json(
            base,
            "/xrpc/com.atproto.server.describeServer",
            &serde_json::json!({}),
        ),
        "POST on a query",
    );
    expect_invalid(
        request(
            base,
            "POST",
            "/xrpc/com.atproto.server.createSession",
            &[("content-type", "application/json")],
            b"{not json",
        ),
        "malformed JSON",
    );

    let unauthenticated = post_json(
        base,
        "/xrpc/com.atproto.repo.createRecord",
        &serde_json::json!({}),
    );
    assert_eq!(unauthenticated.status, 401);
    assert_eq!(unauthenticated.json()["error"], "AuthMissing");

    let (access, _) = support::account::login(base);
    let bearer = format!("Bearer {access}");
    let create = |content_type: &str, body: &[u8]| {
        request(
            base,
            "POST",
            "/xrpc/com.atproto.repo.createRecord",
            &[("content-type", content_type), ("authorization", &bearer)],
            body,
        )
    };
    expect_invalid(
        create("application/json", b"{not json"),
        "malformed JSON with a session",
    );
    expect_invalid(create("text/plain", b"hello"), "wrong content type");
    expect_invalid(
        create("application/json", br#"{"repo": "alice.test"}"#),
        "input missing required fields",
    );
}
