//! Service proxying end to end on both shells: the AppView, chat and moderation services are
//! played by loopback servers with did:web identities (`support::fake_service`), which verify
//! every service token with the account's key from its DID document. The PDS forwards what it
//! does not serve, with the reference PDS's targets, tokens, headers and errors.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::fake_service::{echo, Call, Reply, Services};
use support::http::{get, request};
use support::ShellKind;

const FEEDGEN_DID: &str = "did:web:feedgen.test";
/// A getLikes answer the AppView sends gzipped.
const LIKES: &str =
    r#"{"uri":"at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.post/1","likes":[]}"#;
/// A foreign repository (`getRecord` of it goes to the AppView).
const OTHER_DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";

/// The AppView's answers, by method.
fn appview_reply(call: &Call) -> Reply {
    match call.nsid() {
        "app.bsky.actor.getProfile" => Reply::json(
            200,
            json!({ "did": support::account::did(), "handle": support::account::HANDLE }),
        )
        .header("atproto-repo-rev", "3lzzzzzzzzzzz")
        .header("content-language", "en")
        .header("atproto-content-labelers", "did:plc:labeler")
        .header("x-internal-detail", "not for clients"),
        "com.atproto.repo.getRecord" if call.query.contains("app.bsky.feed.generator") => {
            if call.query.contains("rkey=hot") {
                Reply::json(
                    200,
                    json!({ "uri": "at://x", "value": { "did": FEEDGEN_DID } }),
                )
            } else {
                Reply::json(200, json!({ "uri": "at://x", "value": {} }))
            }
        }
        "com.atproto.identity.resolveHandle" if call.query == "handle=bob.test" => {
            Reply::json(200, json!({ "did": OTHER_DID }))
        }
        "com.atproto.identity.resolveHandle" => Reply::json(
            400,
            json!({ "error": "InvalidRequest", "message": "Unable to resolve handle" }),
        ),
        "com.atproto.repo.getRecord" => Reply::json(
            200,
            json!({ "uri": format!("at://{OTHER_DID}/app.bsky.feed.post/1"), "value": { "text": "from the AppView" } }),
        ),
        "app.bsky.notification.listNotifications" => Reply::json(
            400,
            json!({ "error": "InvalidRequest", "message": "the AppView says no" }),
        ),
        "app.bsky.feed.getTimeline" => Reply::json(
            500,
            json!({ "error": "InternalServerError", "message": "boom" }),
        ),
        "app.bsky.unspecced.getConfig" => Reply {
            delay: Duration::from_secs(6),
            ..Reply::json(200, json!({}))
        },
        "app.bsky.feed.searchPosts" => Reply {
            body: vec![b' '; 17 * 1024 * 1024],
            ..Reply::json(200, json!({}))
        },
        // Compressed when the caller accepts it.
        "app.bsky.feed.getLikes"
            if call
                .header("accept-encoding")
                .is_some_and(|a| a.contains("gzip")) =>
        {
            Reply {
                body: support::fake_service::gzip_stored(LIKES.as_bytes()),
                ..Reply::json(200, json!({}))
            }
            .header("content-encoding", "gzip")
        }
        nsid => Reply::json(200, json!({ "served": nsid, "by": "appview" })),
    }
}

fn services() -> Services {
    Services::start(appview_reply, echo("chat"), echo("report"))
}

on_both_kinds!(proxies_calls);

fn call(
    base: &str,
    method: &str,
    path: &str,
    token: &str,
    extra: &[(&str, &str)],
) -> support::http::Reply {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    request(base, method, path, &headers, b"")
}

fn error_of(res: &support::http::Reply) -> (u16, String, String) {
    let body = res.json();
    (
        res.status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Checks the token a service received: from the account, for `aud`, bound to `lxm`, short.
fn assert_token(call: &Call, aud: &str, lxm: &str) {
    let token = call.verified_token();
    assert_eq!(token.iss, support::account::did());
    assert_eq!(token.aud, aud, "{}", call.path);
    assert_eq!(token.lxm.as_deref(), Some(lxm), "{}", call.path);
    assert!(
        token.exp > token.iat && token.exp - token.iat <= 60,
        "{token:?}"
    );
}

fn proxies_calls(kind: ShellKind) {
    let s = &services();
    let server = s.start_pds(kind, &[(pds::config::vars::PROXY_TIMEOUT_SECONDS, "2")]);
    let base = server.base();
    let (access, _) = support::account::login(base);

    // Anonymous calls are refused, as the reference refuses them; nothing is forwarded.
    let res = get(base, "/xrpc/app.bsky.actor.getProfile?actor=alice.test");
    assert_eq!(error_of(&res).0..=401, 401..=401);
    assert_eq!(error_of(&res).1, "AuthMissing");
    assert!(s.appview.calls().is_empty());

    // A method served elsewhere goes to the AppView with a token for it, the forwarded request
    // headers, and comes back with the status, body and the headers passed through.
    let res = call(
        base,
        "GET",
        "/xrpc/app.bsky.actor.getProfile?actor=alice.test",
        &access,
        &[
            ("accept-language", "fr-CA"),
            ("atproto-accept-labelers", "did:plc:labeler;redact"),
            ("x-bsky-topics", "t1,t2"),
            ("cookie", "never=forwarded"),
        ],
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["handle"], support::account::HANDLE);
    assert_eq!(res.header("atproto-repo-rev"), Some("3lzzzzzzzzzzz"));
    assert_eq!(res.header("content-language"), Some("en"));
    assert_eq!(
        res.header("atproto-content-labelers"),
        Some("did:plc:labeler")
    );
    assert!(res
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(res.header("x-internal-detail"), None);
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    let got = s.appview.last();
    assert_eq!(
        (got.method.as_str(), got.path.as_str()),
        ("GET", "/xrpc/app.bsky.actor.getProfile")
    );
    assert_eq!(got.query, "actor=alice.test");
    assert_token(&got, &s.appview.did, "app.bsky.actor.getProfile");
    assert_eq!(got.header("accept-language"), Some("fr-CA"));
    assert_eq!(
        got.header("atproto-accept-labelers"),
        Some("did:plc:labeler;redact")
    );
    assert_eq!(got.header("x-bsky-topics"), Some("t1,t2"));
    assert_eq!(got.header("cookie"), None);
    assert_eq!(got.header("atproto-proxy"), None);

    // Chat goes to the chat service; reports to the moderation service, body and all.
    let res = call(
        base,
        "GET",
        "/xrpc/chat.bsky.convo.listConvos",
        &access,
        &[],
    );
    assert_eq!(res.json()["by"], "chat", "{}", res.json());
    assert_token(&s.chat.last(), &s.chat.did, "chat.bsky.convo.listConvos");
    let report = json!({
        "reasonType": "com.atproto.moderation.defs#reasonSpam",
        "subject": { "$type": "com.atproto.admin.defs#repoRef", "did": OTHER_DID },
    });
    let auth = format!("Bearer {access}");
    let res = request(
        base,
        "POST",
        "/xrpc/com.atproto.moderation.createReport",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        report.to_string().as_bytes(),
    );
    assert_eq!(res.json()["by"], "report", "{}", res.json());
    let got = s.report.last();
    assert_eq!(got.method, "POST");
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&got.body).unwrap(),
        report
    );
    assert_token(&got, &s.report.did, "com.atproto.moderation.createReport");

    // The header names any service (the configured ones by their URLs, others through their
    // DID documents); the token's audience is the service's bare DID, as the current reference
    // sends it.
    for (service, id, by) in [
        (&s.chat, "bsky_chat", "chat"),
        (&s.report, "bsky_appview", "report"),
    ] {
        let header = service.proxy_header(id);
        let res = call(
            base,
            "GET",
            "/xrpc/app.bsky.feed.getSuggestedFeeds",
            &access,
            &[("atproto-proxy", &header)],
        );
        assert_eq!(res.json()["by"], by, "{}", res.json());
        assert_token(
            &service.last(),
            &service.did,
            "app.bsky.feed.getSuggestedFeeds",
        );
    }

    // The client's accept-encoding goes along (natively; the Workers runtime negotiates its
    // own); a compressed answer reaches the client consistent with its content-encoding,
    // whatever the shell does to the bytes.
    let res = call(
        base,
        "GET",
        "/xrpc/app.bsky.feed.getLikes?uri=at://x",
        &access,
        &[("accept-encoding", "gzip")],
    );
    assert_eq!(res.status, 200);
    assert!(s
        .appview
        .last()
        .header("accept-encoding")
        .unwrap()
        .contains("gzip"));
    let text = match res.header("content-encoding") {
        Some("gzip") => {
            use base64::Engine;
            let gz = base64::engine::general_purpose::STANDARD.encode(&res.body);
            let out = support::oracle::run_node("gunzip.mjs", &json!({ "gzip": gz }));
            out["text"].as_str().unwrap().to_owned()
        }
        other => {
            assert_eq!(other, None, "an encoding the test did not ask for");
            String::from_utf8(res.body.clone()).unwrap()
        }
    };
    assert_eq!(text, LIKES);

    // Bad headers, unknown services and unresolvable DIDs: the reference's errors, nothing sent.
    s.appview.clear();
    let dead_did = "did:web:localhost%3A9";
    for (header, message) in [
        (
            "#bsky_appview".to_owned(),
            "no did specified in proxy header",
        ),
        (
            s.appview.did.clone(),
            "no service id specified in proxy header",
        ),
        (
            format!("{}#a#b", s.appview.did),
            "invalid proxy header format",
        ),
        (
            s.appview.proxy_header("nope"),
            "could not resolve proxy did service url",
        ),
        (
            format!("{dead_did}#bsky_appview"),
            "could not resolve proxy did",
        ),
    ] {
        let res = call(
            base,
            "GET",
            "/xrpc/app.bsky.actor.getProfile?actor=x.test",
            &access,
            &[("atproto-proxy", &header)],
        );
        assert_eq!(
            error_of(&res),
            (400, "InvalidRequest".into(), message.into()),
            "{header}"
        );
    }
    assert!(s.appview.calls().is_empty());

    // Methods that must never be proxied, and chat from an app password without the privilege.
    let res = call(
        base,
        "POST",
        "/xrpc/com.atproto.server.requestEmailUpdate",
        &access,
        &[],
    );
    assert_eq!(
        error_of(&res),
        (400, "InvalidToken".into(), "Bad token method".into())
    );
    let app_password = |privileged: bool| {
        let res = support::http::xrpc(
            base,
            "POST",
            "com.atproto.server.createAppPassword",
            &access,
            Some(&json!({ "name": format!("app {privileged}"), "privileged": privileged })),
        );
        assert_eq!(res.status, 200, "{}", res.json());
        let password = res.json()["password"].as_str().unwrap().to_owned();
        let res = support::http::post_json(
            base,
            "/xrpc/com.atproto.server.createSession",
            &json!({ "identifier": support::account::HANDLE, "password": password }),
        );
        res.json()["accessJwt"].as_str().unwrap().to_owned()
    };
    let plain = app_password(false);
    s.chat.clear();
    let res = call(base, "GET", "/xrpc/chat.bsky.convo.listConvos", &plain, &[]);
    assert_eq!(
        error_of(&res),
        (400, "InvalidToken".into(), "Bad token method".into())
    );
    assert!(s.chat.calls().is_empty());
    let res = call(
        base,
        "GET",
        "/xrpc/app.bsky.actor.getProfile?actor=x.test",
        &plain,
        &[],
    );
    assert_eq!(res.status, 200, "an app password reads the AppView");
    let privileged = app_password(true);
    let res = call(
        base,
        "GET",
        "/xrpc/chat.bsky.convo.listConvos",
        &privileged,
        &[],
    );
    assert_eq!(res.json()["by"], "chat", "{}", res.json());

    // A known method called with the wrong HTTP method is refused here.
    let res = call(
        base,
        "POST",
        "/xrpc/app.bsky.actor.getProfile",
        &access,
        &[],
    );
    assert_eq!(error_of(&res).0, 400);
    assert!(
        error_of(&res).2.contains("Incorrect HTTP method"),
        "{:?}",
        error_of(&res)
    );

    // Upstream answers: a 4xx passes through unchanged; a 500 is a 502 UpstreamFailure; a dead,
    // hanging or oversized upstream is a 502 too, never a hang.
    let res = call(
        base,
        "GET",
        "/xrpc/app.bsky.notification.listNotifications",
        &access,
        &[],
    );
    assert_eq!(
        error_of(&res),
        (400, "InvalidRequest".into(), "the AppView says no".into())
    );
    let res = call(base, "GET", "/xrpc/app.bsky.feed.getTimeline", &access, &[]);
    assert_eq!(
        (error_of(&res).0, error_of(&res).1.as_str()),
        (502, "UpstreamFailure")
    );
    let dead = s.appview.proxy_header("dead");
    let res = call(
        base,
        "GET",
        "/xrpc/app.bsky.actor.getProfile?actor=x.test",
        &access,
        &[("atproto-proxy", &dead)],
    );
    assert_eq!(
        (error_of(&res).0, error_of(&res).1.as_str()),
        (502, "UpstreamFailure")
    );
    let started = Instant::now();
    let res = call(
        base,
        "GET",
        "/xrpc/app.bsky.unspecced.getConfig",
        &access,
        &[],
    );
    assert_eq!(
        (error_of(&res).0, error_of(&res).1.as_str()),
        (502, "UpstreamFailure")
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the 2 s proxy timeout holds"
    );
    let res = call(
        base,
        "GET",
        "/xrpc/app.bsky.feed.searchPosts?q=x",
        &access,
        &[],
    );
    assert_eq!(
        (error_of(&res).0, error_of(&res).1.as_str()),
        (502, "UpstreamFailure")
    );

    // getFeed: the generator's DID comes from its record (through the AppView); the call goes to
    // the AppView with a token for the generator, bound to getFeedSkeleton.
    s.appview.clear();
    let feed = "at%3A%2F%2Fdid%3Aplc%3Aewvi7nxzyoun6zhxrhs64oiz%2Fapp.bsky.feed.generator%2Fhot";
    let res = call(
        base,
        "GET",
        &format!("/xrpc/app.bsky.feed.getFeed?feed={feed}"),
        &access,
        &[],
    );
    assert_eq!(
        res.json()["served"],
        "app.bsky.feed.getFeed",
        "{}",
        res.json()
    );
    let calls = s.appview.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].nsid(), "com.atproto.repo.getRecord");
    assert!(
        calls[0].token.is_none(),
        "the record is read without credentials"
    );
    assert_eq!(calls[1].query, format!("feed={feed}"));
    assert_token(&calls[1], FEEDGEN_DID, "app.bsky.feed.getFeedSkeleton");
    let nodid = feed.replace("hot", "cold");
    let res = call(
        base,
        "GET",
        &format!("/xrpc/app.bsky.feed.getFeed?feed={nodid}"),
        &access,
        &[],
    );
    assert_eq!(
        error_of(&res),
        (
            400,
            "UnknownFeed".into(),
            "could not resolve feed did".into()
        )
    );

    // Reads of repositories hosted elsewhere go to the AppView, without credentials; reads of
    // the account's own repository stay here.
    s.appview.clear();
    let path = format!(
        "/xrpc/com.atproto.repo.getRecord?repo={OTHER_DID}&collection=app.bsky.feed.post&rkey=1"
    );
    let res = get(base, &path);
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["value"]["text"], "from the AppView");
    assert_eq!(res.header("x-pds-proxy-grant"), None);
    let got = s.appview.last();
    assert_eq!(got.nsid(), "com.atproto.repo.getRecord");
    assert!(got.token.is_none());
    let res = get(
        base,
        &format!("/xrpc/com.atproto.repo.describeRepo?repo={OTHER_DID}"),
    );
    assert_eq!(res.json()["served"], "com.atproto.repo.describeRepo");
    s.appview.clear();
    for own in [support::account::did(), support::account::HANDLE.to_owned()] {
        let res = get(
            base,
            &format!("/xrpc/com.atproto.repo.describeRepo?repo={own}"),
        );
        assert_eq!(res.status, 200);
        assert_eq!(res.json()["did"], support::account::did());
    }
    assert!(s.appview.calls().is_empty());

    // Push registrations go where the body's serviceDid says: the AppView, or the
    // `#bsky_notif` service of that DID; the token is for the bare serviceDid.
    let register = |service_did: &str| {
        let body = json!({ "serviceDid": service_did, "token": "t", "platform": "ios", "appId": "xyz.blueskyweb.app" });
        let auth = format!("Bearer {access}");
        request(
            base,
            "POST",
            "/xrpc/app.bsky.notification.registerPush",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
    };
    let res = register(&s.appview.did);
    assert_eq!(res.json()["by"], "appview", "{}", res.json());
    let got = s.appview.last();
    assert_token(&got, &s.appview.did, "app.bsky.notification.registerPush");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&got.body).unwrap()["token"],
        "t"
    );
    let res = register(&s.chat.did);
    assert_eq!(res.json()["by"], "chat", "{}", res.json());
    assert_token(
        &s.chat.last(),
        &s.chat.did,
        "app.bsky.notification.registerPush",
    );
    let res = register("did:web:localhost%3A9");
    assert_eq!(
        error_of(&res),
        (
            400,
            "InvalidRequest".into(),
            "could not resolve did document: did:web:localhost%3A9".into()
        )
    );

    // Other handles are resolved by the AppView, as the reference asks it.
    s.appview.clear();
    let res = get(
        base,
        "/xrpc/com.atproto.identity.resolveHandle?handle=bob.test",
    );
    assert_eq!(res.json(), json!({ "did": OTHER_DID }));
    let res = get(
        base,
        "/xrpc/com.atproto.identity.resolveHandle?handle=nobody.test",
    );
    assert_eq!(
        error_of(&res),
        (
            400,
            "InvalidRequest".into(),
            "Unable to resolve handle".into()
        )
    );
    assert_eq!(s.appview.calls().len(), 2);
    assert!(s.appview.calls().iter().all(|c| c.token.is_none()));
}
