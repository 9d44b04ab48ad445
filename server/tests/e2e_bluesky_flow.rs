//! The Bluesky-app flow end to end, on both shells: log in, upload an image, post with it, read
//! it back, edit it, delete it, then export the repository and verify it with `@atproto/repo`
//! (the reference implementation from npm, not our code) against the account's key.

#[macro_use]
mod support;

use serde_json::{json, Value};
use support::account::{login, HANDLE};
use support::http::{get, request, xrpc};

on_both_shells!(bluesky_app_flow);

/// A real 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

fn bluesky_app_flow(base: &str) {
    let (access, _) = login(base);
    let did = support::account::did();

    // Upload an image.
    let blob = support::account::upload_png(base, &access, PNG);
    assert_eq!(blob["$type"], "blob");
    assert_eq!(blob["mimeType"], "image/png");
    assert_eq!(blob["size"], PNG.len());
    let blob_cid = blob["ref"]["$link"].as_str().unwrap().to_owned();

    // Post with it.
    let post = json!({
        "$type": "app.bsky.feed.post",
        "text": "hello from the flow test",
        "createdAt": "2026-11-24T08:00:00.000Z",
        "embed": {
            "$type": "app.bsky.embed.images",
            "images": [{ "alt": "one pixel", "image": blob, "aspectRatio": { "width": 1, "height": 1 } }]
        }
    });
    let created = xrpc(
        base,
        "POST",
        "com.atproto.repo.createRecord",
        &access,
        Some(&json!({ "repo": HANDLE, "collection": "app.bsky.feed.post", "record": post })),
    );
    assert_eq!(
        created.status,
        200,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let created = created.json();
    assert_eq!(created["validationStatus"], "valid");
    let uri = created["uri"].as_str().unwrap().to_owned();
    let rkey = uri.rsplit('/').next().unwrap().to_owned();
    assert!(
        uri.starts_with(&format!("at://{did}/app.bsky.feed.post/")),
        "{uri}"
    );

    // Read it back, exactly as sent.
    let get_record = format!(
        "/xrpc/com.atproto.repo.getRecord?repo={did}&collection=app.bsky.feed.post&rkey={rkey}"
    );
    let read = get(base, &get_record);
    assert_eq!(read.status, 200);
    let read = read.json();
    assert_eq!(read["value"], post);
    assert_eq!(read["cid"], created["cid"]);

    // The image is served with its type and the headers that keep it from running script here.
    let fetched = get(
        base,
        &format!("/xrpc/com.atproto.sync.getBlob?did={did}&cid={blob_cid}"),
    );
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body, PNG);
    assert_eq!(fetched.header("content-type"), Some("image/png"));
    assert_eq!(fetched.header("x-content-type-options"), Some("nosniff"));
    assert!(fetched
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));

    // Range requests: a slice with 206 and Content-Range, an unsatisfiable one with 416.
    let blob_path = format!("/xrpc/com.atproto.sync.getBlob?did={did}&cid={blob_cid}");
    let head = request(base, "GET", &blob_path, &[("range", "bytes=0-7")], b"");
    assert_eq!(head.status, 206);
    assert_eq!(head.body, &PNG[..8]);
    assert_eq!(
        head.header("content-range").map(str::to_owned),
        Some(format!("bytes 0-7/{}", PNG.len()))
    );
    let tail = request(base, "GET", &blob_path, &[("range", "bytes=-4")], b"");
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, &PNG[PNG.len() - 4..]);
    let beyond = request(base, "GET", &blob_path, &[("range", "bytes=1000-")], b"");
    assert_eq!(beyond.status, 416);
    assert_eq!(
        beyond.header("content-range").map(str::to_owned),
        Some(format!("bytes */{}", PNG.len()))
    );

    // Edit it (the swap names the version being replaced).
    let mut edited = post.clone();
    edited["text"] = json!("edited text");
    let put = xrpc(
        base,
        "POST",
        "com.atproto.repo.putRecord",
        &access,
        Some(&json!({
            "repo": did, "collection": "app.bsky.feed.post", "rkey": rkey,
            "record": edited, "swapRecord": created["cid"]
        })),
    );
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    assert_eq!(
        get(base, &get_record).json()["value"]["text"],
        "edited text"
    );

    // Keep one other post, then delete the first.
    let kept = xrpc(
        base,
        "POST",
        "com.atproto.repo.createRecord",
        &access,
        Some(&json!({ "repo": did, "collection": "app.bsky.feed.post",
            "record": { "$type": "app.bsky.feed.post", "text": "kept", "createdAt": "2026-11-24T08:01:00.000Z" } })),
    )
    .json();
    let deleted = xrpc(
        base,
        "POST",
        "com.atproto.repo.deleteRecord",
        &access,
        Some(&json!({ "repo": did, "collection": "app.bsky.feed.post", "rkey": rkey })),
    );
    assert_eq!(deleted.status, 200);
    let gone = get(base, &get_record);
    assert_eq!(gone.status, 400);
    assert_eq!(gone.json()["error"], "RecordNotFound");
    assert_eq!(
        gone.json()["message"],
        format!("Could not locate record: {uri}")
    );

    // Export the repository and verify it with @atproto/repo against the account's did:key.
    let car = get(base, &format!("/xrpc/com.atproto.sync.getRepo?did={did}"));
    assert_eq!(car.status, 200);
    assert_eq!(car.header("content-type"), Some("application/vnd.ipld.car"));
    let verified = support::oracle::verify_repo_car(&car.body);
    let records = verified["records"].as_object().unwrap();
    assert_eq!(records.len(), 1, "{verified}");
    let kept_rkey = kept["uri"].as_str().unwrap().rsplit('/').next().unwrap();
    assert_eq!(
        records[&format!("app.bsky.feed.post/{kept_rkey}")],
        kept["cid"]
    );
    let _: Value = verified;
}
