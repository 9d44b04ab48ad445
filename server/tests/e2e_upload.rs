//! uploadBlob end to end on both shells: an upload over R2's multipart part size round-trips
//! (on the Worker it is streamed to R2 by the Worker, the DO only authorizes and records it),
//! and missing, malformed and revoked tokens are refused.

#[macro_use]
mod support;

use serde_json::json;
use support::http::{post_json, request, xrpc};

on_both_shells!(large_upload_round_trips, refused_uploads);

/// A (access, refresh) token pair for the test account.
fn login(base: &str) -> (String, String) {
    let session = post_json(
        base,
        "/xrpc/com.atproto.server.createSession",
        &json!({"identifier": support::account::HANDLE, "password": support::account::PASSWORD}),
    );
    assert_eq!(session.status, 200, "{:?}", session.json());
    let s = session.json();
    (
        s["accessJwt"].as_str().unwrap().to_owned(),
        s["refreshJwt"].as_str().unwrap().to_owned(),
    )
}

/// 8 MiB: over R2's 5 MiB part size, so the Worker streams it as a multipart upload.
fn large_jpeg() -> Vec<u8> {
    let mut bytes = b"\xff\xd8\xff\xe0".to_vec();
    let mut x: u32 = 12345;
    bytes.extend((0..8 * 1024 * 1024).map(|_| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (x >> 16) as u8
    }));
    bytes
}

fn upload(base: &str, auth: Option<&str>, body: &[u8]) -> support::http::Reply {
    let mut headers = vec![("content-type", "application/octet-stream")];
    if let Some(auth) = auth {
        headers.push(("authorization", auth));
    }
    request(
        base,
        "POST",
        "/xrpc/com.atproto.repo.uploadBlob",
        &headers,
        body,
    )
}

fn large_upload_round_trips(base: &str) {
    let (token, _) = login(base);
    let bytes = large_jpeg();
    let uploaded = upload(base, Some(&format!("Bearer {token}")), &bytes);
    assert_eq!(uploaded.status, 200, "{:?}", uploaded.json());
    assert_eq!(
        uploaded.header("access-control-allow-origin"),
        Some("*"),
        "CORS on the Worker-served answer too"
    );
    let blob = uploaded.json()["blob"].clone();
    assert_eq!(blob["$type"], "blob");
    assert_eq!(blob["mimeType"], "image/jpeg", "sniffed, not declared");
    assert_eq!(blob["size"], bytes.len());
    let cid = blob["ref"]["$link"].as_str().unwrap().to_owned();

    // The same bytes again: same CID, the stored row answers.
    let again = upload(base, Some(&format!("Bearer {token}")), &bytes);
    assert_eq!(again.status, 200, "{:?}", again.json());
    assert_eq!(again.json()["blob"], blob);

    let did = support::account::did();
    let fetched = request(
        base,
        "GET",
        &format!("/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}"),
        &[],
        b"",
    );
    assert_eq!(fetched.status, 200);
    assert!(fetched.body == bytes, "getBlob returns the uploaded bytes");

    // The metadata row exists: a record may reference the blob.
    let attached = xrpc(
        base,
        "POST",
        "com.atproto.repo.putRecord",
        &token,
        Some(
            &json!({"repo": did, "collection": "com.example.upload", "rkey": "big",
                     "record": {"$type": "com.example.upload", "file": blob}}),
        ),
    );
    assert_eq!(attached.status, 200, "{:?}", attached.json());
}

fn refused_uploads(base: &str) {
    let body = b"\x89PNG\r\n\x1a\nnever stored".to_vec();
    let missing = upload(base, None, &body);
    assert_eq!(missing.status, 401, "{:?}", missing.json());
    assert_eq!(missing.json()["error"], "AuthMissing");

    let garbage = upload(base, Some("Bearer not-a-jwt"), &body);
    assert_eq!(garbage.status, 400, "{:?}", garbage.json());
    assert_eq!(garbage.json()["error"], "InvalidToken");

    // A revoked session's access token is refused: the check reads the DO's session store.
    let (access, refresh) = login(base);
    let deleted = xrpc(
        base,
        "POST",
        "com.atproto.server.deleteSession",
        &refresh,
        None,
    );
    assert_eq!(deleted.status, 200);
    let revoked = upload(base, Some(&format!("Bearer {access}")), &body);
    assert_eq!(revoked.status, 400, "{:?}", revoked.json());
    assert_eq!(revoked.json()["error"], "ExpiredToken");
}
