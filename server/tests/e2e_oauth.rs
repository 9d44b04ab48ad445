//! OAuth 2.1 end to end on both shells: the npm client real apps use signs in (PAR, the sign-in
//! page as a plain form, token), works (DPoP-bound getSession, createRecord, getRecord,
//! uploadBlob, a proxied AppView read), refreshes, signs out; then every rule a client could
//! break once, with this test's own proofs (`support::oauth`).

#[macro_use]
mod support;

use serde_json::json;
use support::account::{did, HANDLE, PASSWORD};
use support::fake_service::{Call, Reply, Services};
use support::http::{get, request};
use support::oauth::{authorize_path, enc, form, form_secrets, origin, pkce, Client, REDIRECT};
use support::ShellKind;

const GENERIC: &str = "atproto transition:generic";

fn appview(call: &Call) -> Reply {
    match call.nsid() {
        "app.bsky.actor.getProfile" => Reply::json(200, json!({ "did": did(), "handle": HANDLE })),
        _ => Reply::json(404, json!({ "error": "NotFound", "message": "not here" })),
    }
}

fn no_service(_: &Call) -> Reply {
    Reply::json(
        500,
        json!({ "error": "Unexpected", "message": "not called" }),
    )
}

fn the_npm_client_signs_in_works_refreshes_and_signs_out(kind: ShellKind) {
    let services = Services::start(appview, no_service, no_service);
    let server = services.start_pds(kind, &[]);
    let base = server.base();

    // Discovery, as the client reads it.
    let resource = get(base, "/.well-known/oauth-protected-resource");
    assert_eq!(resource.status, 200);
    assert_eq!(resource.json()["resource"], origin());
    assert_eq!(resource.json()["authorization_servers"], json!([origin()]));
    let metadata = get(base, "/.well-known/oauth-authorization-server");
    assert_eq!(metadata.status, 200);
    let m = metadata.json();
    assert_eq!(m["issuer"], origin());
    assert_eq!(
        m["revocation_endpoint"],
        format!("{}/oauth/revoke", origin())
    );
    assert_eq!(m["require_pushed_authorization_requests"], true);
    assert_eq!(m["client_id_metadata_document_supported"], true);
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    assert_eq!(metadata.header("access-control-allow-origin"), Some("*"));
    // Even answers the edge gives alone carry a nonce when the request carried DPoP.
    let with_proof = request(
        base,
        "GET",
        "/.well-known/oauth-authorization-server",
        &[("dpop", "a proof")],
        b"",
    );
    assert!(with_proof.header("dpop-nonce").is_some());

    let report = support::oracle::run_node(
        "oauth-flow.mjs",
        &json!({
            "base": base,
            "origin": origin(),
            "handle": HANDLE,
            "did": did(),
            "password": PASSWORD,
        }),
    );
    assert_eq!(report["sub"], did());
    assert_eq!(report["stateReturned"], "first-state");
    let location = report["location"].as_str().unwrap();
    assert!(
        location.starts_with(&format!("{REDIRECT}?iss={}", enc(&origin()))),
        "{location}"
    );
    assert!(report["csp"]
        .as_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(report["scope"], GENERIC);
    assert_eq!(report["getSession"]["did"], did());
    assert_eq!(report["getSession"]["handle"], HANDLE);
    // transition:generic does not show the email.
    assert_eq!(report["getSession"]["email"], serde_json::Value::Null);
    assert_eq!(report["readText"], "written with an OAuth token");
    assert!(report["created"]
        .as_str()
        .unwrap()
        .starts_with(&format!("at://{}/app.bsky.feed.post/", did())));
    assert!(report["blobSize"].as_u64().unwrap() > 0);
    assert_eq!(report["proxiedHandle"], HANDLE);
    // The proxied call carried a service token from the account, not the OAuth token.
    let proxied = services.appview.last();
    assert_eq!(proxied.nsid(), "app.bsky.actor.getProfile");
    assert_eq!(proxied.verified_token().iss, did());

    assert_eq!(report["refreshed"], true);
    assert_eq!(report["oldAccessStatus"], 401);
    assert!(report["oldAccessChallenge"]
        .as_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
    assert_eq!(report["currentAccessStatus"], 200);
    assert_eq!(report["replay"], "invalid_grant");
    assert_eq!(
        report["afterReplayStatus"], 401,
        "a replayed refresh token revokes the session"
    );
    assert_eq!(report["secondSession"], did());
    assert_eq!(
        report["afterSignOutStatus"], 401,
        "sign-out revokes at once"
    );

    // Every answer to a request that carried DPoP carries a nonce; the first proof of each
    // kind was sent without one and was asked for it.
    let exchanges = report["exchanges"].as_array().unwrap();
    for e in exchanges.iter().filter(|e| e["dpop"] == true) {
        assert_eq!(e["nonce"], true, "no DPoP-Nonce on {e}");
    }
    assert!(exchanges
        .iter()
        .any(|e| e["path"] == "/oauth/par" && e["status"] == 400));
    assert!(exchanges
        .iter()
        .any(|e| e["path"] == "/oauth/par" && e["status"] == 201));
}

/// Pushed requests: what the atproto profile requires of them.
fn pushed_requests_are_checked(kind: ShellKind) {
    let server = support::start_shell(kind, &[]);
    let base = server.base();
    let mut c = Client::new(base, GENERIC);
    let (_, challenge) = pkce();

    // Without a nonce: 400 use_dpop_nonce with the nonce to use.
    let proof = c.proof("POST", "/oauth/par", None);
    let body = form(&[
        ("client_id", &c.client_id.clone()),
        ("response_type", "code"),
    ]);
    let first = request(
        base,
        "POST",
        "/oauth/par",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("dpop", &proof),
        ],
        body.as_bytes(),
    );
    assert_eq!(first.status, 400);
    assert_eq!(first.json()["error"], "use_dpop_nonce");
    assert!(first.header("dpop-nonce").is_some());
    // Without any proof.
    let bare = request(
        base,
        "POST",
        "/oauth/par",
        &[("content-type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    );
    assert_eq!(bare.status, 400);
    assert_eq!(bare.json()["error"], "invalid_dpop_proof");
    c.nonce = first.header("dpop-nonce").map(str::to_owned);

    // A replayed proof, a stale one, one for another URL.
    let ok = c.par(&challenge, GENERIC, &[]);
    assert_eq!(ok.status, 201, "{}", String::from_utf8_lossy(&ok.body));
    let origins = ok
        .headers
        .iter()
        .filter(|(k, _)| k == "access-control-allow-origin")
        .count();
    assert_eq!(
        origins, 1,
        "one CORS origin header, or browsers refuse the answer"
    );
    assert!(ok.json()["request_uri"]
        .as_str()
        .unwrap()
        .starts_with("urn:ietf:params:oauth:request_uri:"));
    assert_eq!(ok.json()["expires_in"], 300);
    let proof = c.proof("POST", "/oauth/par", None);
    let params = form(&[
        ("client_id", &c.client_id.clone()),
        ("response_type", "code"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("state", "s"),
        ("redirect_uri", REDIRECT),
        ("scope", GENERIC),
    ]);
    let send = |proof: &str| {
        request(
            base,
            "POST",
            "/oauth/par",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("dpop", proof),
            ],
            params.as_bytes(),
        )
    };
    assert_eq!(send(&proof).status, 201);
    let replayed = send(&proof);
    assert_eq!(replayed.status, 400);
    assert_eq!(replayed.json()["error_description"], "DPoP proof replayed");
    let stale = c.proof_with("POST", "/oauth/par", None, |claims| {
        claims["iat"] = (claims["iat"].as_u64().unwrap() - 3600).into();
    });
    assert_eq!(send(&stale).json()["error"], "invalid_dpop_proof");
    let elsewhere = c.proof_with("POST", "/oauth/par", None, |claims| {
        claims["htu"] = "http://evil.example.com/oauth/par".into();
    });
    assert_eq!(
        send(&elsewhere).json()["error_description"],
        "DPoP htu mismatch"
    );

    // PKCE, redirect and scope rules.
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("code_challenge", "")], "invalid_request"),
        (&[("code_challenge_method", "plain")], "invalid_request"),
        (&[("state", "")], "invalid_request"),
        (
            &[("redirect_uri", "http://127.0.0.1/elsewhere")],
            "invalid_request",
        ),
        (
            &[("redirect_uri", "https://evil.example.com/callback")],
            "invalid_request",
        ),
        (
            &[("scope", "atproto transition:chat.bsky")],
            "invalid_scope",
        ),
        (&[("scope", "transition:generic")], "invalid_scope"),
        (&[("response_type", "token")], "unsupported_response_type"),
        (&[("prompt", "create")], "invalid_request"),
        (&[("request_uri", "urn:x")], "invalid_request"),
    ];
    for (extra, error) in cases {
        let reply = c.par(&challenge, GENERIC, extra);
        assert_eq!(reply.status, 400, "{extra:?}");
        assert_eq!(
            reply.json()["error"],
            *error,
            "{extra:?}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    // Other methods.
    assert_eq!(request(base, "GET", "/oauth/par", &[], b"").status, 405);
    // A client id that is not a valid loopback client.
    let mut bad = Client::new(base, GENERIC);
    bad.client_id = "http://localhost:8080".into();
    bad.nonce = c.nonce.clone();
    assert_eq!(
        bad.par(&challenge, GENERIC, &[]).json()["error"],
        "invalid_client"
    );
}

/// The authorize page: no side effects on GET, CSRF, wrong passwords, deny, prompt=none.
fn the_authorize_page_guards_the_decision(kind: ShellKind) {
    let server = support::start_shell(kind, &[]);
    let base = server.base();
    let mut c = Client::new(base, GENERIC);
    let (request_uri, _) = c.push(GENERIC, &[]);
    let page_path = authorize_path(&c.client_id, &request_uri);

    // A direct request, an unknown request: error pages, no redirect.
    assert_eq!(get(base, "/oauth/authorize?client_id=x").status, 400);
    assert_eq!(
        get(
            base,
            "/oauth/authorize?request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Areq-nope"
        )
        .status,
        400
    );
    let page = get(base, &page_path);
    assert_eq!(page.status, 200);
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(page.header("access-control-allow-origin").is_none());
    let html = String::from_utf8(page.body.clone()).unwrap();
    assert!(html.contains(&format!("@{HANDLE}")));
    assert!(html.contains("A local development app"));

    // A form without the page's cookie, or from another origin: 403, the request untouched.
    let (csrf, cookie) = form_secrets(&page);
    let decide = |password: &str, action: &str, cookie: &str, origin_header: &str| {
        let body = form(&[
            ("request_uri", &request_uri),
            ("client_id", &c.client_id),
            ("csrf_token", &csrf),
            ("password", password),
            ("action", action),
        ]);
        request(
            base,
            "POST",
            "/oauth/authorize",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", cookie),
                ("origin", origin_header),
            ],
            body.as_bytes(),
        )
    };
    assert_eq!(
        decide(PASSWORD, "allow", "oauth_csrf=forged", &origin()).status,
        403
    );
    assert_eq!(
        decide(PASSWORD, "allow", &cookie, "https://evil.example.com").status,
        403
    );
    // A wrong password, and an app password: the page again, 401.
    let wrong = decide("not-the-password", "allow", &cookie, &origin());
    assert_eq!(wrong.status, 401);
    assert!(String::from_utf8_lossy(&wrong.body).contains("Wrong password"));
    let app = decide("abcd-efgh-ijkl-mnop", "allow", &cookie, &origin());
    assert_eq!(app.status, 401);
    assert!(String::from_utf8_lossy(&app.body).contains("App passwords are not allowed"));
    // Deny: back to the client with access_denied, and the request is spent.
    let denied = decide(PASSWORD, "deny", &cookie, &origin());
    assert_eq!(denied.status, 303);
    let location = denied.header("location").unwrap();
    assert!(location.starts_with(REDIRECT));
    assert!(location.contains("error=access_denied"));
    assert!(location.contains("state=s-123"));
    assert!(location.contains(&format!("iss={}", enc(&origin()))));
    assert_eq!(get(base, &page_path).status, 400);

    // Five wrong passwords spend a request.
    let (uri, _) = c.push(GENERIC, &[]);
    for i in 0..5 {
        let reply = c.approve(&uri, "wrong-password");
        if i < 4 {
            assert_eq!(reply.status, 401);
        } else {
            assert_eq!(reply.status, 303);
            assert!(reply
                .header("location")
                .unwrap()
                .contains("error=access_denied"));
        }
    }

    // prompt=none: no remembered sign-in, so login_required.
    let (uri, _) = c.push(GENERIC, &[("prompt", "none")]);
    let silent = get(base, &authorize_path(&c.client_id, &uri));
    assert_eq!(silent.status, 303);
    assert!(silent
        .header("location")
        .unwrap()
        .contains("error=login_required"));
}

/// The token endpoint: PKCE, codes and refresh tokens used once, DPoP key binding.
fn tokens_are_single_use_and_bound(kind: ShellKind) {
    let server = support::start_shell(kind, &[]);
    let base = server.base();
    let mut c = Client::new(base, GENERIC);

    // A wrong verifier: refused, and the code is spent.
    let (code, _) = c.code(GENERIC);
    let (other_verifier, _) = pkce();
    let wrong = c.exchange(&code, &other_verifier);
    assert_eq!(wrong.json()["error"], "invalid_grant");

    // A nonce retry at the token endpoint spends nothing: the second try succeeds.
    let (code, verifier) = c.code(GENERIC);
    c.nonce = None;
    let first = c.exchange(&code, &verifier);
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let tokens = first.json();
    assert_eq!(tokens["token_type"], "DPoP");
    assert_eq!(tokens["sub"], did());
    assert_eq!(tokens["scope"], GENERIC);
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(first.header("cache-control"), Some("no-store"));
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    // The code again: refused, and what it gave is revoked.
    let again = c.exchange(&code, &verifier);
    assert_eq!(again.json()["error"], "invalid_grant");
    let revoked = c.xrpc("GET", "/xrpc/com.atproto.server.getSession", &access, None);
    assert_eq!(revoked.status, 401);
    assert_eq!(revoked.json()["error"], "invalid_token");
    assert!(revoked
        .header("www-authenticate")
        .unwrap()
        .starts_with("DPoP error=\"invalid_token\""));

    // Another key cannot use a token.
    let t = c.sign_in(GENERIC);
    let mut thief = Client::new(base, GENERIC);
    thief.nonce = c.nonce.clone();
    let stolen = thief.xrpc(
        "GET",
        "/xrpc/com.atproto.server.getSession",
        &t.access,
        None,
    );
    assert_eq!(stolen.status, 401);
    assert_eq!(stolen.json()["message"], "Invalid DPoP key binding");
    // Nor refresh it.
    let stolen_refresh = thief.refresh(&t.refresh);
    assert_eq!(stolen_refresh.json()["error"], "invalid_grant");
    // ...which ended the session for the owner too (a token in the wrong hands).
    assert_eq!(c.refresh(&t.refresh).json()["error"], "invalid_grant");

    // A token as Bearer, without a proof, with a replayed proof.
    let t = c.sign_in(GENERIC);
    let bearer = request(
        base,
        "GET",
        "/xrpc/com.atproto.server.getSession",
        &[("authorization", &format!("Bearer {}", t.access))],
        b"",
    );
    assert!(matches!(bearer.status, 400 | 401));
    let no_proof = request(
        base,
        "GET",
        "/xrpc/com.atproto.server.getSession",
        &[("authorization", &format!("DPoP {}", t.access))],
        b"",
    );
    assert_eq!(no_proof.status, 401);
    assert_eq!(no_proof.json()["error"], "invalid_dpop_proof");
    assert!(no_proof.header("dpop-nonce").is_some());
    let proof = c.proof(
        "GET",
        "/xrpc/com.atproto.server.getSession",
        Some(&t.access),
    );
    let auth = format!("DPoP {}", t.access);
    let with = |proof: &str| {
        request(
            base,
            "GET",
            "/xrpc/com.atproto.server.getSession",
            &[("authorization", &auth), ("dpop", proof)],
            b"",
        )
    };
    // A proof whose signature is another proof's: refused (on Workers by WebCrypto's check).
    let other = c.proof(
        "GET",
        "/xrpc/com.atproto.server.getSession",
        Some(&t.access),
    );
    let forged = format!(
        "{}.{}",
        &other[..other.rfind('.').unwrap()],
        proof.rsplit('.').next().unwrap()
    );
    let refused = with(&forged);
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["message"], "Invalid DPoP proof signature");
    assert_eq!(with(&proof).status, 200);
    let replay = with(&proof);
    assert_eq!(replay.status, 401);
    assert_eq!(replay.json()["message"], "DPoP proof replayed");
    // A nonce-less proof gets use_dpop_nonce with the challenge clients act on.
    c.nonce = None;
    let nonceless = with(&c.proof(
        "GET",
        "/xrpc/com.atproto.server.getSession",
        Some(&t.access),
    ));
    assert_eq!(nonceless.status, 401);
    assert_eq!(nonceless.json()["error"], "use_dpop_nonce");
    assert!(nonceless
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"use_dpop_nonce\""));
    c.nonce = nonceless.header("dpop-nonce").map(str::to_owned);

    // Refresh: rotated; the old refresh token again revokes the session.
    let fresh = c.refresh(&t.refresh);
    assert_eq!(fresh.status, 200);
    let new_access = fresh.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        c.xrpc(
            "GET",
            "/xrpc/com.atproto.server.getSession",
            &new_access,
            None
        )
        .status,
        200
    );
    assert_eq!(
        c.xrpc(
            "GET",
            "/xrpc/com.atproto.server.getSession",
            &t.access,
            None
        )
        .status,
        401
    );
    let reused = c.refresh(&t.refresh);
    assert_eq!(reused.json()["error_description"], "Refresh token replayed");
    assert_eq!(
        c.xrpc(
            "GET",
            "/xrpc/com.atproto.server.getSession",
            &new_access,
            None
        )
        .status,
        401
    );

    // Another client cannot revoke a code it was not issued.
    let (code, verifier) = c.code(GENERIC);
    let mut stranger = Client::new(base, "atproto");
    stranger.nonce = c.nonce.clone();
    let stranger_id = stranger.client_id.clone();
    let revoked = stranger.post_form(
        "/oauth/revoke",
        &form(&[("token", &code), ("client_id", &stranger_id)]),
    );
    assert_eq!(revoked.status, 200);
    assert_eq!(
        c.exchange(&code, &verifier).status,
        200,
        "the code survived"
    );

    // Revocation with the access token.
    let t = c.sign_in(GENERIC);
    let client_id = c.client_id.clone();
    let revoke = c.post_form(
        "/oauth/revoke",
        &form(&[("token", &t.access), ("client_id", &client_id)]),
    );
    assert_eq!(revoke.status, 200);
    assert_eq!(
        c.xrpc(
            "GET",
            "/xrpc/com.atproto.server.getSession",
            &t.access,
            None
        )
        .status,
        401
    );
    assert_eq!(c.refresh(&t.refresh).json()["error"], "invalid_grant");
}

/// Scopes on every endpoint: granular repo, blob and rpc scopes; methods OAuth never gets.
fn scopes_decide_what_a_token_may_do(kind: ShellKind) {
    let services = Services::start(appview, no_service, no_service);
    let server = services.start_pds(kind, &[]);
    let base = server.base();
    // In a scope, a DID's own percent signs are encoded too.
    let appview_aud = format!(
        "{}%23bsky_appview",
        services.appview.did.replace('%', "%25")
    );
    let scope = format!(
        "atproto repo:app.bsky.feed.post?action=create blob:image/* \
         rpc:app.bsky.actor.getProfile?aud={appview_aud}"
    );
    let mut c = Client::new(base, &scope);
    let t = c.sign_in(&scope);
    assert_eq!(t.scope, scope);
    let post = json!({
        "repo": did(),
        "collection": "app.bsky.feed.post",
        "record": { "$type": "app.bsky.feed.post", "text": "scoped", "createdAt": "2026-12-06T00:00:00Z" },
    });
    let created = c.xrpc(
        "POST",
        "/xrpc/com.atproto.repo.createRecord",
        &t.access,
        Some(&post),
    );
    assert_eq!(
        created.status,
        200,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    // Another collection, another action: 403 InsufficientScope naming the scope.
    let like = json!({
        "repo": did(),
        "collection": "app.bsky.feed.like",
        "record": { "$type": "app.bsky.feed.like", "subject": { "uri": created.json()["uri"], "cid": created.json()["cid"] }, "createdAt": "2026-12-06T00:00:00Z" },
    });
    let refused = c.xrpc(
        "POST",
        "/xrpc/com.atproto.repo.createRecord",
        &t.access,
        Some(&like),
    );
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"], "InsufficientScope");
    assert_eq!(
        refused.json()["message"],
        "Missing required scope \"repo:app.bsky.feed.like?action=create\""
    );
    assert!(refused
        .header("www-authenticate")
        .unwrap()
        .contains("insufficient_scope"));
    let rkey = created.json()["uri"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let delete = json!({ "repo": did(), "collection": "app.bsky.feed.post", "rkey": rkey });
    assert_eq!(
        c.xrpc(
            "POST",
            "/xrpc/com.atproto.repo.deleteRecord",
            &t.access,
            Some(&delete)
        )
        .status,
        403
    );
    // The AppView method the token names passes, with the AppView's audience.
    let profile = c.xrpc(
        "GET",
        &format!("/xrpc/app.bsky.actor.getProfile?actor={}", did()),
        &t.access,
        None,
    );
    assert_eq!(
        profile.status,
        200,
        "{}",
        String::from_utf8_lossy(&profile.body)
    );
    assert!(profile.header("dpop-nonce").is_some());
    // Another method, or the same at another service: 403.
    let timeline = c.xrpc("GET", "/xrpc/app.bsky.feed.getTimeline", &t.access, None);
    assert_eq!(timeline.status, 403);
    let other_aud = request_with_proxy(
        &mut c,
        &t.access,
        "did:web:elsewhere.example.com#bsky_appview",
    );
    assert_eq!(
        other_aud.status,
        403,
        "{}",
        String::from_utf8_lossy(&other_aud.body)
    );
    // Preferences are the AppView's methods: this token has no rpc scope for them.
    assert_eq!(
        c.xrpc(
            "GET",
            "/xrpc/app.bsky.actor.getPreferences",
            &t.access,
            None
        )
        .status,
        403
    );
    // A service token: only for the method and audience an rpc scope names.
    // In a query, the DID's own percent signs are encoded too.
    let appview = format!(
        "{}%23bsky_appview",
        services.appview.did.replace('%', "%25")
    );
    let minted = c.xrpc(
        "GET",
        &format!(
            "/xrpc/com.atproto.server.getServiceAuth?aud={appview}&lxm=app.bsky.actor.getProfile"
        ),
        &t.access,
        None,
    );
    assert_eq!(
        minted.status,
        200,
        "{}",
        String::from_utf8_lossy(&minted.body)
    );
    for query in [
        "aud=did:web:elsewhere.example.com%23svc",
        &format!("aud={appview}"),
        &format!("aud={appview}&lxm=app.bsky.feed.getTimeline"),
    ] {
        let refused = c.xrpc(
            "GET",
            &format!("/xrpc/com.atproto.server.getServiceAuth?{query}"),
            &t.access,
            None,
        );
        assert_eq!(refused.status, 403, "{query}");
        assert!(
            refused
                .header("www-authenticate")
                .unwrap()
                .contains("scope=\"rpc:"),
            "{query}"
        );
    }
    // Account management is never OAuth's, whatever the scope.
    let never = c.xrpc(
        "POST",
        "/xrpc/com.atproto.server.createAppPassword",
        &t.access,
        Some(&json!({ "name": "x" })),
    );
    assert_eq!(never.status, 403);
    assert_eq!(never.json()["error"], "Forbidden");
    // Identity changes need identity: scopes.
    let handle = c.xrpc(
        "POST",
        "/xrpc/com.atproto.identity.updateHandle",
        &t.access,
        Some(&json!({ "handle": HANDLE })),
    );
    assert_eq!(handle.status, 403);
    assert_eq!(
        handle.json()["message"],
        "Missing required scope \"identity:handle\""
    );

    // Blobs: an image passes, a video does not.
    let upload = "/xrpc/com.atproto.repo.uploadBlob";
    let png_bytes = [137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 0];
    let png = c.xrpc_raw(upload, &t.access, "image/png", &png_bytes);
    assert_eq!(png.status, 200, "{}", String::from_utf8_lossy(&png.body));
    let video = c.xrpc_raw(upload, &t.access, "video/mp4", b"not really a video");
    assert_eq!(video.status, 403);
    assert_eq!(
        video.json()["message"],
        "Missing required scope \"blob:video/mp4\""
    );
}

/// The sign-in page in headless Chromium, at the public origin: a phone in light mode (a wrong
/// password first), a desktop in dark mode (the right one, Allow), and the browser lands back at
/// the app with a code the app can exchange. Screenshots are kept in `target/oauth-pages/`.
fn the_sign_in_page_works_in_a_browser(kind: ShellKind) {
    let server = support::start_shell(kind, &[]);
    let base = server.base();
    let mut c = Client::new(base, GENERIC);
    let (request_uri, verifier) = c.push(GENERIC, &[]);
    let url = format!("{}{}", origin(), authorize_path(&c.client_id, &request_uri));
    let out_dir = support::worker::project_root()
        .join("target/oauth-pages")
        .join(format!("{kind:?}"));
    let seen = support::oracle::run_node(
        "oauth-browser.mjs",
        &json!({ "url": url, "base": base, "origin": origin(), "password": PASSWORD, "outDir": out_dir }),
    );
    let views = seen["views"].as_array().unwrap();
    assert_eq!(views.len(), 2);
    for view in views {
        let label = view["label"].as_str().unwrap();
        assert_eq!(view["status"], 200, "{label}");
        let width = view["width"].as_i64().unwrap();
        assert!(
            view["scrollWidth"].as_i64().unwrap() <= width,
            "{label} overflows"
        );
        let text = view["text"].as_str().unwrap();
        assert!(
            text.contains("A local development app wants to use your account"),
            "{label}: {text}"
        );
        assert!(text.contains(&format!("@{HANDLE}")), "{label}");
        assert!(text.contains("Allow") && text.contains("Deny"), "{label}");
        assert!(std::path::Path::new(view["screenshot"].as_str().unwrap()).exists());
    }
    let after_wrong = views[0]["afterWrong"].as_str().unwrap();
    assert!(after_wrong.contains("Wrong password"), "{after_wrong}");
    assert_ne!(
        views[0]["background"], views[1]["background"],
        "dark mode is dark"
    );
    let callback = seen["callback"]
        .as_str()
        .unwrap_or_else(|| panic!("the browser did not go back to the app: {}", views[1]));
    assert!(
        callback.starts_with(&format!("{REDIRECT}?iss=")),
        "{callback}"
    );
    assert!(callback.contains("state=s-123"));
    let code = callback
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let tokens = c.exchange(code, &verifier);
    assert_eq!(
        tokens.status,
        200,
        "{}",
        String::from_utf8_lossy(&tokens.body)
    );
}

/// The owner sees the apps signed in with OAuth and signs them out, through the method and the
/// command line; an OAuth token may not look or sign out others; a signed-out app's tokens
/// stop working at once.
fn the_owner_lists_and_signs_out_apps(kind: ShellKind) {
    let server = support::start_shell(kind, &[]);
    let base = server.base();
    let mut phone = Client::new(base, GENERIC);
    let phone_tokens = phone.sign_in(GENERIC);
    let mut laptop = Client::new(base, "atproto");
    let laptop_tokens = laptop.sign_in("atproto");

    let pds = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pds"))
            .args(args)
            .env("PDS_URL", base)
            .env("PDS_IDENTIFIER", HANDLE)
            .env("PDS_PASSWORD", PASSWORD)
            .output()
            .unwrap()
    };
    let listed = support::stdout_of(&pds(&["oauth", "sessions"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    // Newest first: the laptop's "atproto" session, then the phone's.
    assert!(
        lines[0].contains(&laptop.client_id) && lines[0].ends_with("\tatproto"),
        "{listed}"
    );
    assert!(
        lines[1].contains(&phone.client_id) && lines[1].contains("with password"),
        "{listed}"
    );
    let laptop_id = lines[0].split('\t').next().unwrap();

    // An OAuth token cannot list or end sessions.
    let refused = laptop.xrpc(
        "GET",
        "/xrpc/dev.rustpds.oauth.listSessions",
        &laptop_tokens.access,
        None,
    );
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"], "Forbidden");

    let out = support::stdout_of(&pds(&["oauth", "revoke", laptop_id]));
    assert!(out.contains("1 session(s) ended"), "{out}");
    assert_eq!(
        laptop
            .xrpc(
                "GET",
                "/xrpc/com.atproto.server.getSession",
                &laptop_tokens.access,
                None
            )
            .status,
        401
    );
    assert_eq!(
        phone
            .xrpc(
                "GET",
                "/xrpc/com.atproto.server.getSession",
                &phone_tokens.access,
                None
            )
            .status,
        200
    );
    let by_client = support::stdout_of(&pds(&["oauth", "revoke", &phone.client_id]));
    assert!(by_client.contains("1 session(s) ended"), "{by_client}");
    assert_eq!(
        phone
            .xrpc(
                "GET",
                "/xrpc/com.atproto.server.getSession",
                &phone_tokens.access,
                None
            )
            .status,
        401
    );
    let none = pds(&["oauth", "revoke", "no-such-session"]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("SessionNotFound"));
}

/// A token with `account:repo?action=manage` imports a repository: the import's later steps
/// (its batches and its completion) carry the same DPoP proof as its first, and pass.
fn an_oauth_token_imports_a_repository(kind: ShellKind) {
    let server = support::start_shell(kind, &[]);
    let base = server.base();
    let (legacy, _) = support::account::login(base);
    for i in 0..3 {
        support::account::create_record(
            base,
            &legacy,
            json!({ "$type": "app.bsky.feed.post", "text": format!("post {i}"), "createdAt": "2026-12-06T00:00:00Z" }),
        );
    }
    let car = get(
        base,
        &format!("/xrpc/com.atproto.sync.getRepo?did={}", did()),
    )
    .body;
    let deactivated = request(
        base,
        "POST",
        "/xrpc/com.atproto.server.deactivateAccount",
        &[
            ("authorization", &format!("Bearer {legacy}")),
            ("content-type", "application/json"),
        ],
        b"{}",
    );
    assert_eq!(deactivated.status, 200);
    let scope = "atproto account:repo?action=manage";
    let mut c = Client::new(base, scope);
    let t = c.sign_in(scope);
    let imported = c.xrpc_raw(
        "/xrpc/com.atproto.repo.importRepo",
        &t.access,
        "application/vnd.ipld.car",
        &car,
    );
    assert_eq!(
        imported.status,
        200,
        "{}",
        String::from_utf8_lossy(&imported.body)
    );
    // Without the scope: 403.
    let mut other = Client::new(base, GENERIC);
    let t = other.sign_in(GENERIC);
    let refused = other.xrpc_raw(
        "/xrpc/com.atproto.repo.importRepo",
        &t.access,
        "application/vnd.ipld.car",
        &car,
    );
    assert_eq!(refused.status, 403);
}

/// The NSID of the permission set the lexicon authority below publishes.
const SET: &str = "com.example.calendar.authFull";

/// A lexicon authority played on loopback: its DID document (a did:web with a signing key and
/// a PDS, itself), the `_lexicon` TXT record of `calendar.example.com` (DNS-over-HTTPS), and its
/// repository's `com.atproto.lexicon.schema/<SET>` record, served as a signed getRecord proof
/// (the interop catalog's permission set, under `SET`).
fn lexicon_authority() -> support::fake_service::FakeService {
    use pds::crypto::{KeyAlgorithm, SigningKey};
    let key = SigningKey::generate(KeyAlgorithm::K256);
    let multibase = key.public_key().to_multibase();
    let car = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let served = car.clone();
    let did_cell = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let did_for_dns = did_cell.clone();
    let authority = support::fake_service::FakeService::start_with_document(
        move |did, url| {
            json!({
                "id": did,
                "verificationMethod": [{ "id": format!("{did}#atproto"), "type": "Multikey", "controller": did, "publicKeyMultibase": multibase }],
                "service": [{ "id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": url }],
            })
        },
        move |call| match call.path.as_str() {
            "/dns-query" if call.query.contains("name=_lexicon.calendar.example.com") => {
                Reply::json(
                    200,
                    json!({ "Status": 0, "Answer": [{ "name": "_lexicon.calendar.example.com.", "type": 16, "TTL": 300, "data": format!("\"did={}\"", did_for_dns.lock().unwrap()) }] }),
                )
            }
            "/dns-query" => Reply::json(200, json!({ "Status": 3 })),
            "/xrpc/com.atproto.sync.getRecord" if call.query.contains(SET) => Reply {
                status: 200,
                headers: vec![("content-type".into(), "application/vnd.ipld.car".into())],
                body: served.lock().unwrap().clone(),
                delay: std::time::Duration::ZERO,
            },
            _ => Reply::json(404, json!({ "error": "RecordNotFound", "message": "no" })),
        },
    );
    *did_cell.lock().unwrap() = authority.did.clone();
    // The authority's repository: one commit holding the lexicon record.
    let path = support::interop_dir().join("lexicon/catalog/permission-set.json");
    let mut lexicon: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    lexicon["id"] = SET.into();
    lexicon["$type"] = "com.atproto.lexicon.schema".into();
    let record = pds::data::cbor::encode(&pds::data::Value::from_json(&lexicon).unwrap());
    let empty = pds::repo::MemoryBlockStore::new();
    let (_, output) = pds::repo::Repo::create(
        &empty,
        &authority.did,
        &[pds::repo::WriteOp::Create {
            collection: "com.atproto.lexicon.schema".into(),
            rkey: SET.into(),
            record,
        }],
        &key,
        "3lauthority22",
    )
    .unwrap();
    let store = pds::repo::MemoryBlockStore::from_blocks(output.new_blocks.clone());
    let repo = pds::repo::Repo::open(&store, output.cid).unwrap();
    let proof = repo
        .record_proof(&store, "com.atproto.lexicon.schema", SET)
        .unwrap();
    let mut bytes = pds::repo::car::header_bytes(&output.cid).unwrap();
    for (cid, block) in proof.iter() {
        bytes.extend(pds::repo::car::block_bytes(cid, block));
    }
    *car.lock().unwrap() = bytes;
    authority
}

/// `include:` scopes: the permission set is resolved through DNS, the authority's DID document
/// and its signed record, shown on the page by its title, and expanded into the granular
/// scopes the token gets; those, and only those, are allowed.
fn permission_sets_are_resolved_and_expanded(kind: ShellKind) {
    let authority = lexicon_authority();
    let server = support::start_shell(
        kind,
        &[("PDS_DOH_URL", &format!("{}/dns-query", authority.url))],
    );
    let base = server.base();
    let scope = format!("atproto include:{SET}?aud=did:web:api.example.com%23svc");
    let mut c = Client::new(base, &scope);

    // The page names the set by its title.
    let (uri, _) = c.push(&scope, &[]);
    let page = get(base, &authorize_path(&c.client_id, &uri));
    assert!(String::from_utf8_lossy(&page.body)
        .contains("Example for Moderation: Create moderation reports"));

    let t = c.sign_in(&scope);
    let granted: Vec<&str> = t.scope.split(' ').collect();
    assert_eq!(
        granted,
        vec![
            "atproto",
            "repo?collection=com.example.calendar.event&collection=com.example.calendar.rsvp&action=create&action=delete",
            "repo:com.example.calendar.eventV2?action=create",
            "rpc:com.example.calendar.listEvents?aud=*",
            "rpc:com.example.calendar.listEvents?aud=did:web:api.example.com%23svc",
        ]
    );
    let event = json!({
        "repo": did(),
        "collection": "com.example.calendar.eventV2",
        "record": { "$type": "com.example.calendar.eventV2", "name": "meetup" },
    });
    let created = c.xrpc(
        "POST",
        "/xrpc/com.atproto.repo.createRecord",
        &t.access,
        Some(&event),
    );
    assert_eq!(
        created.status,
        200,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let post = json!({
        "repo": did(),
        "collection": "app.bsky.feed.post",
        "record": { "$type": "app.bsky.feed.post", "text": "no", "createdAt": "2026-12-06T00:00:00Z" },
    });
    assert_eq!(
        c.xrpc(
            "POST",
            "/xrpc/com.atproto.repo.createRecord",
            &t.access,
            Some(&post)
        )
        .status,
        403
    );
    // A refresh expands the set again (from the cache): the same grant.
    let fresh = c.refresh(&t.refresh);
    assert_eq!(fresh.json()["scope"], t.scope);

    // A set nobody publishes: the request is refused at PAR.
    let missing = "atproto include:com.example.nowhere.set";
    let mut other = Client::new(base, missing);
    other.nonce = c.nonce.clone();
    let (_, challenge) = pkce();
    let refused = other.par(&challenge, missing, &[]);
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"], "invalid_scope");
}

fn request_with_proxy(c: &mut Client, access: &str, service: &str) -> support::http::Reply {
    let path = "/xrpc/app.bsky.actor.getProfile";
    let proof = c.proof("GET", path, Some(access));
    request(
        &c.base.clone(),
        "GET",
        &format!("{path}?actor={}", did()),
        &[
            ("authorization", &format!("DPoP {access}")),
            ("dpop", &proof),
            ("atproto-proxy", service),
        ],
        b"",
    )
}

on_both_kinds!(
    the_npm_client_signs_in_works_refreshes_and_signs_out,
    pushed_requests_are_checked,
    the_authorize_page_guards_the_decision,
    tokens_are_single_use_and_bound,
    scopes_decide_what_a_token_may_do,
    the_sign_in_page_works_in_a_browser,
    the_owner_lists_and_signs_out_apps,
    permission_sets_are_resolved_and_expanded,
    an_oauth_token_imports_a_repository,
);
