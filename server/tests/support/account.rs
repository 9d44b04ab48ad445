//! The account every end-to-end test server is configured with.

use std::sync::OnceLock;

/// The test account's password.
pub const PASSWORD: &str = "test-password-1234";
/// The test account's handle.
pub const HANDLE: &str = "alice.test";
/// The test servers' hostname (and so the account's did:web).
pub const HOSTNAME: &str = "localhost";

/// The configuration variables of the test account (generated once per test process).
pub fn vars() -> &'static [(String, String)] {
    static VARS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    VARS.get_or_init(|| {
        let account =
            pds::dev_account::DevAccount::generate(1, Some(HANDLE), Some(PASSWORD)).unwrap();
        account
            .vars
            .into_iter()
            .map(|(k, v)| match k {
                pds::config::vars::HOSTNAME => (k.to_owned(), HOSTNAME.to_owned()),
                pds::config::vars::DID => (k.to_owned(), format!("did:web:{HOSTNAME}")),
                _ => (k.to_owned(), v),
            })
            // No test reaches the real network: the services calls are proxied to are a
            // loopback port where nothing listens, unless a test plays them.
            .chain(
                [
                    pds::config::vars::APPVIEW_URL,
                    pds::config::vars::CHAT_URL,
                    pds::config::vars::REPORT_SERVICE_URL,
                ]
                .map(|k| (k.to_owned(), DEAD_SERVICE.to_owned())),
            )
            // Some tests build repositories of thousands of records through the API; the
            // write budget itself is tested with its own small value (e2e_abuse).
            .chain(
                [
                    pds::config::vars::WRITE_POINTS_PER_HOUR,
                    pds::config::vars::WRITE_POINTS_PER_DAY,
                ]
                .map(|k| (k.to_owned(), "1000000000".to_owned())),
            )
            .collect()
    })
}

/// A loopback URL where nothing listens.
pub const DEAD_SERVICE: &str = "http://127.0.0.1:9";

/// `vars()` with `overrides` applied (name, value).
pub fn vars_with(overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars = vars().to_vec();
    for (name, value) in overrides {
        match vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => vars.push((name.to_string(), value.to_string())),
        }
    }
    vars
}

/// The account's DID.
pub fn did() -> String {
    format!("did:web:{HOSTNAME}")
}

/// The answer to `createSession` with `identifier` and `password`, whatever it is.
pub fn sign_in(base: &str, identifier: &str, password: &str) -> super::http::Reply {
    super::http::post_json(
        base,
        "/xrpc/com.atproto.server.createSession",
        &serde_json::json!({ "identifier": identifier, "password": password }),
    )
}

/// Signs in with the test account's password; returns (accessJwt, refreshJwt).
pub fn login(base: &str) -> (String, String) {
    let res = sign_in(base, HANDLE, PASSWORD);
    assert_eq!(
        res.status,
        200,
        "createSession: {}",
        String::from_utf8_lossy(&res.body)
    );
    let body = res.json();
    (
        body["accessJwt"].as_str().unwrap().to_owned(),
        body["refreshJwt"].as_str().unwrap().to_owned(),
    )
}

/// The answer to `refreshSession` with `refresh_jwt`, whatever it is.
pub fn refresh(base: &str, refresh_jwt: &str) -> super::http::Reply {
    super::http::xrpc(
        base,
        "POST",
        "com.atproto.server.refreshSession",
        refresh_jwt,
        None,
    )
}

/// Creates app password `name` with the session `access`; returns the password.
pub fn create_app_password(base: &str, access: &str, name: &str) -> String {
    let res = super::http::xrpc(
        base,
        "POST",
        "com.atproto.server.createAppPassword",
        access,
        Some(&serde_json::json!({ "name": name })),
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    res.json()["password"].as_str().unwrap().to_owned()
}

/// Creates `record` (with its `$type`) in its collection with the session `token`; returns
/// the output (`uri`, `cid`, ...).
pub fn create_record(base: &str, token: &str, record: serde_json::Value) -> serde_json::Value {
    let res = super::http::xrpc(
        base,
        "POST",
        "com.atproto.repo.createRecord",
        token,
        Some(&serde_json::json!({
            "repo": did(),
            "collection": record["$type"],
            "record": record,
        })),
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    res.json()
}

/// Uploads `image` as `image/png`: its blob reference.
pub fn upload_png(base: &str, token: &str, image: &[u8]) -> serde_json::Value {
    let uploaded = super::http::request(
        base,
        "POST",
        "/xrpc/com.atproto.repo.uploadBlob",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("content-type", "image/png"),
        ],
        image,
    );
    assert_eq!(
        uploaded.status,
        200,
        "{}",
        String::from_utf8_lossy(&uploaded.body)
    );
    uploaded.json()["blob"].clone()
}

/// Uploads `image` (as `image/png`) and posts "one" (with the image), "two" and "three": the
/// blob reference and the posts' URIs.
pub fn post_an_image(base: &str, token: &str, image: &[u8]) -> (serde_json::Value, Vec<String>) {
    let blob = upload_png(base, token, image);
    let uris = ["one", "two", "three"]
        .into_iter()
        .map(|text| {
            let mut post = serde_json::json!({ "$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-12-06T00:00:00Z" });
            if text == "one" {
                post["embed"] = serde_json::json!({ "$type": "app.bsky.embed.images", "images": [{ "alt": "", "image": blob }] });
            }
            create_record(base, token, post)["uri"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    (blob, uris)
}

/// The test account's repository signing key.
pub fn signing_key() -> pds::crypto::SigningKey {
    let hex = &vars()
        .iter()
        .find(|(k, _)| k == pds::config::vars::SIGNING_KEY)
        .unwrap()
        .1;
    pds::crypto::SigningKey::from_hex(pds::crypto::KeyAlgorithm::K256, hex).unwrap()
}
