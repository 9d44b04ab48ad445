//! com.atproto.repo end to end over HTTP, on the native shell and (with `--ignored`)
//! the Worker under workerd: a session writes, reads, pages, swaps and uploads.

#[macro_use]
mod support;

use serde_json::{json, Value};
use support::http::{get, post_json, request, xrpc};

on_both_shells!(
    records_round_trip,
    swaps_and_batches,
    blobs_upload_and_attach,
    post_text_is_limited_in_graphemes
);

/// An access token for the test account.
fn login(base: &str) -> String {
    let session = post_json(
        base,
        "/xrpc/com.atproto.server.createSession",
        &json!({"identifier": support::account::HANDLE, "password": support::account::PASSWORD}),
    );
    assert_eq!(session.status, 200, "{:?}", session.json());
    session.json()["accessJwt"].as_str().unwrap().to_owned()
}

fn post(text: &str) -> Value {
    json!({"$type": "app.bsky.feed.post", "text": text, "createdAt": "2024-01-01T00:00:00.000Z"})
}

fn records_round_trip(base: &str) {
    let token = login(base);
    let did = support::account::did();
    // Writes need a session.
    let anonymous = post_json(
        base,
        "/xrpc/com.atproto.repo.createRecord",
        &json!({"repo": did, "collection": "app.bsky.feed.post", "record": post("x")}),
    );
    assert_eq!(anonymous.status, 401);

    let mut uris = Vec::new();
    for i in 0..5 {
        let created = xrpc(
            base,
            "POST",
            "com.atproto.repo.createRecord",
            &token,
            Some(
                &json!({"repo": did, "collection": "app.bsky.feed.post", "record": post(&format!("p{i}"))}),
            ),
        );
        assert_eq!(created.status, 200, "{:?}", created.json());
        assert_eq!(created.json()["validationStatus"], "valid");
        uris.push(created.json()["uri"].as_str().unwrap().to_owned());
    }
    let rkey = uris[0].rsplit('/').next().unwrap().to_owned();
    // Reads are public.
    let got = get(
        base,
        &format!(
            "/xrpc/com.atproto.repo.getRecord?repo={did}&collection=app.bsky.feed.post&rkey={rkey}"
        ),
    );
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["value"], post("p0"));

    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get(
            base,
            &format!("/xrpc/com.atproto.repo.listRecords?repo=alice.test&collection=app.bsky.feed.post&limit=2{cursor}"),
        );
        assert_eq!(page.status, 200);
        let page = page.json();
        seen.extend(
            page["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["uri"].as_str().unwrap().to_owned()),
        );
        match page["cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    uris.reverse();
    assert_eq!(seen, uris, "newest first, no duplicates or gaps");

    let desc = get(base, "/xrpc/com.atproto.repo.describeRepo?repo=alice.test");
    assert_eq!(desc.status, 200);
    assert_eq!(desc.json()["collections"], json!(["app.bsky.feed.post"]));

    let deleted = xrpc(
        base,
        "POST",
        "com.atproto.repo.deleteRecord",
        &token,
        Some(&json!({"repo": did, "collection": "app.bsky.feed.post", "rkey": rkey})),
    );
    assert_eq!(deleted.status, 200);
    let missing = get(
        base,
        &format!(
            "/xrpc/com.atproto.repo.getRecord?repo={did}&collection=app.bsky.feed.post&rkey={rkey}"
        ),
    );
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json()["error"], "RecordNotFound");
    assert_eq!(
        missing.json()["message"],
        format!("Could not locate record: at://{did}/app.bsky.feed.post/{rkey}")
    );
}

fn swaps_and_batches(base: &str) {
    let token = login(base);
    let did = support::account::did();
    let put = |name: &str, swap: Option<&Value>| {
        let mut body = json!({"repo": did, "collection": "app.bsky.actor.profile", "rkey": "self",
                              "record": {"$type": "app.bsky.actor.profile", "displayName": name}});
        if let Some(s) = swap {
            body["swapRecord"] = s.clone();
        }
        xrpc(
            base,
            "POST",
            "com.atproto.repo.putRecord",
            &token,
            Some(&body),
        )
    };
    let first = put("A", None);
    assert_eq!(first.status, 200, "{:?}", first.json());
    let first = first.json();
    let second = put("B", Some(&first["cid"])).json();
    let stale = put("C", Some(&first["cid"]));
    assert_eq!(stale.status, 400);
    assert_eq!(stale.json()["error"], "InvalidSwap");
    assert_eq!(
        stale.json()["message"],
        format!("Record was at {}", second["cid"].as_str().unwrap())
    );

    let writes: Vec<Value> = (0..3)
        .map(|i| json!({"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.like",
                        "value": {"$type": "app.bsky.feed.like", "createdAt": "2024-01-01T00:00:00.000Z",
                                  "subject": {"uri": format!("at://{did}/app.bsky.feed.post/3jzfcijpj2z2{i}"),
                                              "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"}}}))
        .collect();
    let batch = xrpc(
        base,
        "POST",
        "com.atproto.repo.applyWrites",
        &token,
        Some(&json!({"repo": did, "writes": writes, "swapCommit": second["commit"]["cid"]})),
    );
    assert_eq!(batch.status, 200, "{:?}", batch.json());
    assert_eq!(batch.json()["results"].as_array().unwrap().len(), 3);
    let stale_commit = xrpc(
        base,
        "POST",
        "com.atproto.repo.applyWrites",
        &token,
        Some(&json!({"repo": did, "writes": [], "swapCommit": second["commit"]["cid"]})),
    );
    assert_eq!(stale_commit.status, 400);
    assert_eq!(
        stale_commit.json()["message"],
        format!(
            "Commit was at {}",
            batch.json()["commit"]["cid"].as_str().unwrap()
        )
    );
}

fn blobs_upload_and_attach(base: &str) {
    let token = login(base);
    let did = support::account::did();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend((0..20_000u32).map(|i| (i % 251) as u8));
    let auth = format!("Bearer {token}");
    let uploaded = request(
        base,
        "POST",
        "/xrpc/com.atproto.repo.uploadBlob",
        &[
            ("authorization", &auth),
            ("content-type", "application/octet-stream"),
        ],
        &png,
    );
    assert_eq!(uploaded.status, 200, "{:?}", uploaded.json());
    let blob = uploaded.json()["blob"].clone();
    assert_eq!(blob["mimeType"], "image/png");
    assert_eq!(blob["size"], png.len());
    let attached = xrpc(
        base,
        "POST",
        "com.atproto.repo.putRecord",
        &token,
        Some(
            &json!({"repo": did, "collection": "app.bsky.actor.profile", "rkey": "self",
                     "record": {"$type": "app.bsky.actor.profile", "avatar": blob}}),
        ),
    );
    assert_eq!(attached.status, 200, "{:?}", attached.json());
}

/// A post's text may hold 300 graphemes (`maxGraphemes`), however many code points each has:
/// the Worker counts them with `Intl.Segmenter`, the native shell with unicode-segmentation.
fn post_text_is_limited_in_graphemes(base: &str) {
    let token = login(base);
    let create = |text: String| {
        xrpc(
            base,
            "POST",
            "com.atproto.repo.createRecord",
            &token,
            Some(
                &json!({"repo": support::account::did(), "collection": "app.bsky.feed.post",
                         "record": post(&text)}),
            ),
        )
    };
    // An accented letter as two code points (3 bytes), a family as five joined emoji (18).
    let accented = "e\u{301}";
    let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}";
    for text in [
        accented.repeat(300),
        family.repeat(150),
        format!("{}x", accented.repeat(299)),
    ] {
        let res = create(text);
        assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    }
    for text in [
        accented.repeat(301),
        format!("{}{}", family.repeat(100), accented.repeat(201)),
    ] {
        let res = create(text);
        assert_eq!(res.status, 400, "{}", String::from_utf8_lossy(&res.body));
        assert_eq!(res.json()["error"], "InvalidRequest");
        let message = res.json()["message"].as_str().unwrap_or("").to_owned();
        assert!(
            message.contains("must not be longer than 300 graphemes"),
            "{message}"
        );
    }
}
