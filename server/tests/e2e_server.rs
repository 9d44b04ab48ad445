//! `com.atproto.server` end to end on both shells: sessions, refresh rotation, revocation,
//! expired tokens, app passwords, service auth, account status.

#[macro_use]
mod support;

use base64::Engine;
use serde_json::{json, Value};
use support::account::{login, HANDLE, PASSWORD};
use support::http::{post_json, xrpc as call, Reply};

on_both_shells!(
    sessions_rotate_and_revoke,
    wrong_credentials_and_expired_tokens,
    app_passwords_are_limited_and_revocable,
    service_auth_tokens,
    account_status_and_deactivation,
);

fn expect_error(res: &Reply, status: u16, error: &str) {
    assert_eq!(res.status, status, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["error"], error);
}

/// The claims of a JWT, decoded without verification (for checking what the server minted).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn sessions_rotate_and_revoke(base: &str) {
    // By handle and by DID.
    let (access, refresh) = login(base);
    let by_did = post_json(
        base,
        "/xrpc/com.atproto.server.createSession",
        &json!({ "identifier": support::account::did(), "password": PASSWORD }),
    );
    assert_eq!(by_did.status, 200);
    let session = by_did.json();
    assert_eq!(session["did"], support::account::did());
    assert_eq!(session["handle"], HANDLE);
    assert_eq!(session["active"], true);

    let got = call(base, "GET", "com.atproto.server.getSession", &access, None);
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["handle"], HANDLE);

    // A refresh token is not an access token, and the other way round.
    expect_error(
        &call(base, "GET", "com.atproto.server.getSession", &refresh, None),
        400,
        "InvalidToken",
    );
    expect_error(
        &call(
            base,
            "POST",
            "com.atproto.server.refreshSession",
            &access,
            None,
        ),
        400,
        "InvalidToken",
    );

    // Rotation: a new pair; the spent refresh token is refused and ends the session.
    let rotated = call(
        base,
        "POST",
        "com.atproto.server.refreshSession",
        &refresh,
        None,
    );
    assert_eq!(
        rotated.status,
        200,
        "{}",
        String::from_utf8_lossy(&rotated.body)
    );
    let rotated = rotated.json();
    let (access2, refresh2) = (
        rotated["accessJwt"].as_str().unwrap(),
        rotated["refreshJwt"].as_str().unwrap(),
    );
    assert_ne!(refresh2, refresh);
    assert_eq!(
        call(base, "GET", "com.atproto.server.getSession", access2, None).status,
        200
    );
    // The spent token again within the grace window (a retry): the same successor. (Reuse
    // after the window revokes the session: tests/auth.rs, on a test clock.)
    let retry = call(
        base,
        "POST",
        "com.atproto.server.refreshSession",
        &refresh,
        None,
    );
    assert_eq!(retry.status, 200, "retrying a refresh");
    assert_eq!(retry.json()["refreshJwt"], refresh2);
    assert_eq!(
        call(base, "GET", "com.atproto.server.getSession", access2, None).status,
        200
    );
    // Spending the successor moves the session on.
    let third = call(
        base,
        "POST",
        "com.atproto.server.refreshSession",
        refresh2,
        None,
    );
    assert_eq!(third.status, 200);
    let access3 = third.json()["accessJwt"].as_str().unwrap().to_owned();
    assert_eq!(
        call(base, "GET", "com.atproto.server.getSession", &access3, None).status,
        200
    );

    // deleteSession revokes at once; other sessions live on.
    let (access3, refresh3) = login(base);
    let other = session["accessJwt"].as_str().unwrap();
    assert_eq!(
        call(
            base,
            "POST",
            "com.atproto.server.deleteSession",
            &refresh3,
            None
        )
        .status,
        200
    );
    expect_error(
        &call(base, "GET", "com.atproto.server.getSession", &access3, None),
        400,
        "ExpiredToken",
    );
    assert_eq!(
        call(base, "GET", "com.atproto.server.getSession", other, None).status,
        200
    );
}

fn wrong_credentials_and_expired_tokens(base: &str) {
    for (identifier, password) in [(HANDLE, "wrong-password"), ("bob.test", PASSWORD)] {
        let res = post_json(
            base,
            "/xrpc/com.atproto.server.createSession",
            &json!({ "identifier": identifier, "password": password }),
        );
        expect_error(&res, 401, "AuthenticationRequired");
    }
    expect_error(
        &call(
            base,
            "GET",
            "com.atproto.server.getSession",
            "not-a-jwt",
            None,
        ),
        400,
        "InvalidToken",
    );

    // A token signed with the real secret but issued three hours ago: 400 ExpiredToken, the
    // answer on which the Bluesky app refreshes.
    let (access, _) = login(base);
    let sid = claims(&access)["sid"].as_str().unwrap().to_owned();
    let vars = support::account::vars();
    let secret =
        pds::hex::decode(&vars.iter().find(|(k, _)| k == "PDS_JWT_SECRET").unwrap().1).unwrap();
    let service_did = format!("did:web:{}", support::account::HOSTNAME);
    let keys = pds::auth::tokens::SessionKeys {
        secret: &secret,
        service_did: &service_did,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = keys.mint_access(
        &support::account::did(),
        pds::auth::AccessScope::Full,
        &sid,
        now - 3 * 3600,
    );
    let res = call(base, "GET", "com.atproto.server.getSession", &expired, None);
    expect_error(&res, 400, "ExpiredToken");
    assert_eq!(res.json()["message"], "Token has expired");
}

fn app_passwords_are_limited_and_revocable(base: &str) {
    let (access, _) = login(base);
    let created = call(
        base,
        "POST",
        "com.atproto.server.createAppPassword",
        &access,
        Some(&json!({ "name": "my client", "privileged": false })),
    );
    assert_eq!(
        created.status,
        200,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let app_password = created.json()["password"].as_str().unwrap().to_owned();
    assert_eq!(app_password.len(), 19, "xxxx-xxxx-xxxx-xxxx");
    let duplicate = call(
        base,
        "POST",
        "com.atproto.server.createAppPassword",
        &access,
        Some(&json!({ "name": "my client" })),
    );
    assert_eq!(duplicate.status, 400);

    let app_session = post_json(
        base,
        "/xrpc/com.atproto.server.createSession",
        &json!({ "identifier": HANDLE, "password": app_password }),
    );
    assert_eq!(app_session.status, 200);
    let app_access = app_session.json()["accessJwt"].as_str().unwrap().to_owned();
    assert_eq!(claims(&app_access)["scope"], "com.atproto.appPass");

    // A plain app password cannot manage app passwords or the account.
    for (method, nsid, body) in [
        (
            "POST",
            "com.atproto.server.createAppPassword",
            Some(json!({ "name": "escalate" })),
        ),
        ("GET", "com.atproto.server.listAppPasswords", None),
        (
            "POST",
            "com.atproto.server.deactivateAccount",
            Some(json!({})),
        ),
    ] {
        let res = call(base, method, nsid, &app_access, body.as_ref());
        assert_eq!(
            res.status,
            400,
            "{nsid}: {}",
            String::from_utf8_lossy(&res.body)
        );
        assert_eq!(res.json()["error"], "InvalidToken", "{nsid}");
    }
    assert_eq!(
        call(
            base,
            "GET",
            "com.atproto.server.getSession",
            &app_access,
            None
        )
        .status,
        200
    );

    let listed = call(
        base,
        "GET",
        "com.atproto.server.listAppPasswords",
        &access,
        None,
    )
    .json();
    assert_eq!(listed["passwords"][0]["name"], "my client");
    assert_eq!(listed["passwords"][0]["privileged"], false);
    assert!(
        listed["passwords"][0].get("password").is_none(),
        "never listed in clear"
    );

    // Revoking it ends its sessions at once.
    let revoked = call(
        base,
        "POST",
        "com.atproto.server.revokeAppPassword",
        &access,
        Some(&json!({ "name": "my client" })),
    );
    assert_eq!(revoked.status, 200);
    expect_error(
        &call(
            base,
            "GET",
            "com.atproto.server.getSession",
            &app_access,
            None,
        ),
        400,
        "ExpiredToken",
    );
    let again = post_json(
        base,
        "/xrpc/com.atproto.server.createSession",
        &json!({ "identifier": HANDLE, "password": app_password }),
    );
    expect_error(&again, 401, "AuthenticationRequired");
}

fn service_auth_tokens(base: &str) {
    let (access, _) = login(base);
    let res = call(
        base,
        "GET",
        "com.atproto.server.getServiceAuth?aud=did:web:api.example.com&lxm=app.bsky.feed.getTimeline",
        &access,
        None,
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let token = res.json()["token"].as_str().unwrap().to_owned();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256K");
    let c = claims(&token);
    assert_eq!(c["iss"], support::account::did());
    assert_eq!(c["aud"], "did:web:api.example.com");
    assert_eq!(c["lxm"], "app.bsky.feed.getTimeline");
    let lifetime = c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap();
    assert!(lifetime > 0 && lifetime <= 3600, "{lifetime}");

    // Signed with the account's key: the signature verifies against its did:key.
    let key = support::account::signing_key();
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap();
    key.public_key().verify(signed.as_bytes(), &sig).unwrap();

    let far = call(
        base,
        "GET",
        "com.atproto.server.getServiceAuth?aud=did:web:api.example.com&exp=99999999999",
        &access,
        None,
    );
    assert_eq!(far.status, 400, "an expiry beyond the allowed window");
}

fn account_status_and_deactivation(base: &str) {
    let (access, _) = login(base);
    let status = call(
        base,
        "GET",
        "com.atproto.server.checkAccountStatus",
        &access,
        None,
    );
    assert_eq!(
        status.status,
        200,
        "{}",
        String::from_utf8_lossy(&status.body)
    );
    assert_eq!(status.json()["activated"], true);

    assert_eq!(
        call(
            base,
            "POST",
            "com.atproto.server.deactivateAccount",
            &access,
            Some(&json!({}))
        )
        .status,
        200
    );
    assert_eq!(
        call(
            base,
            "GET",
            "com.atproto.server.checkAccountStatus",
            &access,
            None
        )
        .json()["activated"],
        false
    );
    let session = call(base, "GET", "com.atproto.server.getSession", &access, None).json();
    assert_eq!(session["active"], false);
    assert_eq!(session["status"], "deactivated");
    let write = call(
        base,
        "POST",
        "com.atproto.repo.createRecord",
        &access,
        Some(&json!({ "repo": HANDLE, "collection": "app.bsky.feed.post", "record": {} })),
    );
    expect_error(&write, 401, "AccountDeactivated");
    // Its records are not served while it is deactivated.
    let list = format!("com.atproto.repo.listRecords?repo={HANDLE}&collection=app.bsky.feed.post");
    expect_error(
        &call(base, "GET", &list, &access, None),
        400,
        "InvalidRequest",
    );

    assert_eq!(
        call(
            base,
            "POST",
            "com.atproto.server.activateAccount",
            &access,
            None
        )
        .status,
        200
    );
    assert_eq!(
        call(
            base,
            "GET",
            "com.atproto.server.checkAccountStatus",
            &access,
            None
        )
        .json()["activated"],
        true
    );
    assert_eq!(call(base, "GET", &list, &access, None).status, 200);
}
