//! Identity and preferences end to end on both shells.

#[macro_use]
mod support;

use serde_json::json;
use support::account::{login, HANDLE};
use support::http::{get, post_json, xrpc as authed};

on_both_shells!(resolve_own_handle, preferences_round_trip_and_rules);

fn resolve_own_handle(base: &str) {
    for handle in [HANDLE, "Alice.TEST"] {
        let res = get(
            base,
            &format!("/xrpc/com.atproto.identity.resolveHandle?handle={handle}"),
        );
        assert_eq!(res.status, 200, "{handle}");
        assert_eq!(res.json()["did"], support::account::did());
    }
    // Other handles are the AppView's to resolve (e2e_proxy plays one); here none answers.
    let other = get(
        base,
        "/xrpc/com.atproto.identity.resolveHandle?handle=bob.test",
    );
    assert_eq!(other.status, 502);
    assert_eq!(other.json()["error"], "UpstreamFailure");
    let malformed = get(
        base,
        "/xrpc/com.atproto.identity.resolveHandle?handle=not_a_handle",
    );
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["error"], "InvalidRequest");
}

fn preferences_round_trip_and_rules(base: &str) {
    let (access, _) = login(base);
    let empty = authed(base, "GET", "app.bsky.actor.getPreferences", &access, None);
    assert_eq!(
        empty.status,
        200,
        "{}",
        String::from_utf8_lossy(&empty.body)
    );
    assert_eq!(empty.json(), json!({ "preferences": [] }));

    let prefs = json!([
        // A field newer lexicons may add is kept: preferences are stored as sent.
        { "$type": "app.bsky.actor.defs#adultContentPref", "enabled": false, "futureField": "kept" },
        { "$type": "app.bsky.actor.defs#personalDetailsPref", "birthDate": "1990-01-01T00:00:00.000Z" },
        { "$type": "app.bsky.actor.defs#savedFeedsPrefV2", "items": [
            { "id": "3l", "type": "timeline", "value": "following", "pinned": true, "extra": { "a": 1 } }
        ] },
        { "$type": "app.bsky.actor.defs#someFuturePref", "anything": [1, 2, 3] },
    ]);
    let put = authed(
        base,
        "POST",
        "app.bsky.actor.putPreferences",
        &access,
        Some(&json!({ "preferences": prefs })),
    );
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    let got = authed(base, "GET", "app.bsky.actor.getPreferences", &access, None).json();
    assert_eq!(
        got["preferences"], prefs,
        "stored exactly, unknown preference types and fields included"
    );

    // Still checked against the lexicon: a member without a type, or a known one with a
    // field of the wrong type, is refused.
    for bad in [
        json!({ "preferences": [{ "enabled": true }] }),
        json!({ "preferences": [{ "$type": "app.bsky.actor.defs#adultContentPref", "enabled": "yes" }] }),
    ] {
        let res = authed(
            base,
            "POST",
            "app.bsky.actor.putPreferences",
            &access,
            Some(&bad),
        );
        assert_eq!(res.status, 400, "{bad}");
        assert_eq!(res.json()["error"], "InvalidRequest", "{bad}");
    }

    let foreign = json!({ "preferences": [{ "$type": "com.example.pref", "x": 1 }] });
    let res = authed(
        base,
        "POST",
        "app.bsky.actor.putPreferences",
        &access,
        Some(&foreign),
    );
    assert_eq!(res.status, 400);
    assert_eq!(
        res.json()["message"],
        "Some preferences are not in the app.bsky namespace"
    );

    let huge = json!({ "preferences": [{ "$type": "app.bsky.actor.defs#mutedWordsPref", "items":
        (0..6000).map(|i| json!({ "value": format!("word number {i} with some padding text"), "targets": ["content"] })).collect::<Vec<_>>() }] });
    let res = authed(
        base,
        "POST",
        "app.bsky.actor.putPreferences",
        &access,
        Some(&huge),
    );
    // Over the reference's 150 KiB JSON limit: refused before the body is read.
    assert_eq!(res.status, 413, "oversized preferences");
    assert_eq!(res.json()["error"], "PayloadTooLarge");

    // An app password sees no personal details and cannot erase them.
    let created = authed(
        base,
        "POST",
        "com.atproto.server.createAppPassword",
        &access,
        Some(&json!({ "name": "app" })),
    );
    let app_password = created.json()["password"].as_str().unwrap().to_owned();
    let app_session = post_json(
        base,
        "/xrpc/com.atproto.server.createSession",
        &json!({ "identifier": HANDLE, "password": app_password }),
    )
    .json();
    let app_access = app_session["accessJwt"].as_str().unwrap();
    let seen = authed(
        base,
        "GET",
        "app.bsky.actor.getPreferences",
        app_access,
        None,
    )
    .json();
    assert_eq!(
        seen["preferences"].as_array().unwrap().len(),
        3,
        "all but the personal details"
    );
    let replace = json!({ "preferences": [{ "$type": "app.bsky.actor.defs#adultContentPref", "enabled": true }] });
    assert_eq!(
        authed(
            base,
            "POST",
            "app.bsky.actor.putPreferences",
            app_access,
            Some(&replace)
        )
        .status,
        200
    );
    let after = authed(base, "GET", "app.bsky.actor.getPreferences", &access, None).json();
    let types: Vec<&str> = after["preferences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["$type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "app.bsky.actor.defs#personalDetailsPref",
            "app.bsky.actor.defs#adultContentPref"
        ]
    );
}
