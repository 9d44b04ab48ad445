//! uploadBlob end to end on both shells: an upload of exactly R2's multipart part size (the
//! largest the Worker writes as one object) and one over it round-trip under the CID of their
//! bytes (on the Worker they are streamed to R2 by the Worker, the DO only authorizes and
//! records them),
//! a service JWT bound to uploadBlob uploads (the video service's flow), and missing, malformed,
//! revoked and otherwise-bound tokens are refused.

#[macro_use]
mod support;

use serde_json::json;
use support::account::login;
use support::http::{request, xrpc};

on_both_shells!(
    part_sized_upload_round_trips,
    large_upload_round_trips,
    chunked_upload_round_trips,
    refused_uploads,
    service_token_uploads
);

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

/// The raw CID of `bytes`, as the reference computes it.
fn raw_cid(bytes: &[u8]) -> String {
    pds::data::cid_string(&pds::data::cid_for_raw(bytes))
}

/// Reads `range` of the blob `cid`.
fn get_blob_range(base: &str, cid: &str, range: &str) -> support::http::Reply {
    let did = support::account::did();
    request(
        base,
        "GET",
        &format!("/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}"),
        &[("range", range)],
        b"",
    )
}

fn part_sized_upload_round_trips(base: &str) {
    let (token, _) = login(base);
    let mut bytes = large_jpeg();
    bytes.truncate(5 * 1024 * 1024);
    let uploaded = upload(base, Some(&format!("Bearer {token}")), &bytes);
    assert_eq!(uploaded.status, 200, "{:?}", uploaded.json());
    let cid = uploaded.json()["blob"]["ref"]["$link"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(cid, raw_cid(&bytes));
    let tail = get_blob_range(base, &cid, "bytes=5242870-");
    assert_eq!(tail.status, 206);
    assert!(tail.body == bytes[5_242_870..], "the last bytes");
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
    assert_eq!(cid, raw_cid(&bytes));

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
    // A range across the first part's end.
    let across = get_blob_range(base, &cid, "bytes=5242870-5242889");
    assert_eq!(across.status, 206);
    assert_eq!(
        across.header("content-range"),
        Some(format!("bytes 5242870-5242889/{}", bytes.len()).as_str())
    );
    assert!(across.body == bytes[5_242_870..5_242_890]);

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

/// A large upload without a declared length (chunked), in chunks that do not divide R2's part
/// size, is stored under the CID of its bytes.
fn chunked_upload_round_trips(base: &str) {
    use std::io::{BufReader, Write};
    let (token, _) = login(base);
    let mut bytes = large_jpeg();
    bytes.truncate(6 * 1024 * 1024 + 3);
    let (mut stream, authority) = support::http::connect_from(None, base);
    write!(
        stream,
        "POST /xrpc/com.atproto.repo.uploadBlob HTTP/1.1\r\nhost: {authority}\r\n\
         authorization: Bearer {token}\r\ncontent-type: application/octet-stream\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    for chunk in bytes.chunks(100_003) {
        write!(stream, "{:x}\r\n", chunk.len()).unwrap();
        stream.write_all(chunk).unwrap();
        stream.write_all(b"\r\n").unwrap();
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let (status, headers) = support::http::try_read_head(&mut reader).expect("an answer");
    let body = support::http::read_body(&mut reader, &headers);
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["blob"]["ref"]["$link"], raw_cid(&bytes).as_str());
    assert_eq!(answer["blob"]["size"], bytes.len());
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

/// A service JWT the account minted for uploadBlob at this PDS uploads, as the reference
/// accepts from the video service; one bound to another method is refused before any byte is
/// stored.
fn service_token_uploads(base: &str) {
    let (access, _) = login(base);
    let service_token = |lxm: &str| {
        let minted = xrpc(
            base,
            "GET",
            &format!(
                "com.atproto.server.getServiceAuth?aud=did:web:{}&lxm={lxm}",
                support::account::HOSTNAME
            ),
            &access,
            None,
        );
        assert_eq!(minted.status, 200, "{:?}", minted.json());
        minted.json()["token"].as_str().unwrap().to_owned()
    };
    let body = b"\x89PNG\r\n\x1a\nuploaded by a service".to_vec();
    let token = service_token("com.atproto.repo.uploadBlob");
    let uploaded = upload(base, Some(&format!("Bearer {token}")), &body);
    assert_eq!(uploaded.status, 200, "{:?}", uploaded.json());
    assert_eq!(uploaded.json()["blob"]["mimeType"], "image/png");
    assert_eq!(uploaded.json()["blob"]["size"], body.len());

    let other = service_token("com.atproto.repo.getRecord");
    let refused = upload(base, Some(&format!("Bearer {other}")), &body);
    assert_eq!(refused.status, 401, "{:?}", refused.json());
    assert_eq!(refused.json()["error"], "BadJwtLexiconMethod");
}
