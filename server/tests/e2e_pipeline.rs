//! The request pipeline end to end on both shells: the route table's doors, offloaded uploads
//! through internal paths nobody outside can reach, the account's identity kept as state
//! across restarts and redeploys, and server faults answered without their details.

#[macro_use]
mod support;

use serde_json::json;
use support::account::{did, login, HANDLE, PASSWORD};
use support::http::{get, post_json, request, xrpc};
use support::Shell;

on_both_shells!(route_table_doors, internal_paths_are_closed_from_outside);
on_both_servers!(
    stored_identity_survives_restarts,
    server_faults_hide_their_details
);

fn route_table_doors(base: &str) {
    // The OAuth doors: the discovery documents from the edge, the authorization server in the
    // account (a direct authorize request is an HTML error page, never CORS), unknown paths a
    // clean XRPC 404 with CORS.
    let metadata = get(base, "/.well-known/oauth-authorization-server");
    assert_eq!(metadata.status, 200);
    assert!(metadata.json()["issuer"].is_string());
    let authorize = get(base, "/oauth/authorize");
    assert_eq!(authorize.status, 400);
    assert_eq!(
        authorize.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(authorize.header("access-control-allow-origin"), None);
    for path in ["/oauth/nothing-here", "/favicon.ico"] {
        let res = get(base, path);
        assert_eq!(res.status, 404, "{path}");
        assert_eq!(res.json()["error"], "NotFound", "{path}");
        assert_eq!(
            res.header("access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
    }
    let root = get(base, "/");
    assert_eq!(root.status, 200);
    assert!(String::from_utf8_lossy(&root.body).contains(&did()));
    let atproto_did = get(base, "/.well-known/atproto-did");
    assert_eq!(String::from_utf8_lossy(&atproto_did.body), did());
    let health = get(base, "/xrpc/_health");
    assert_eq!(health.status, 200);
    assert!(health.json()["version"].is_string());
    let preflight = request(
        base,
        "OPTIONS",
        "/xrpc/com.atproto.repo.uploadBlob",
        &[("access-control-request-headers", "authorization")],
        b"",
    );
    assert_eq!(preflight.status, 204);
}

fn internal_paths_are_closed_from_outside(base: &str) {
    let (access, _) = login(base);
    // Recording a blob that was never stored, or asking for an upload grant, from outside:
    // the edge answers 404 and the account never sees it.
    let forged = json!({ "cid": "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba", "size": 4, "mimeType": "text/plain" });
    for step in ["complete", "authorize"] {
        let path = format!("/_internal/offload/uploadBlob/{step}");
        let auth = format!("Bearer {access}");
        let res = request(
            base,
            "POST",
            &path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            forged.to_string().as_bytes(),
        );
        assert_eq!(res.status, 404, "{path}");
        assert_eq!(res.json()["error"], "NotFound");
    }
    // Nothing was recorded: a record cannot reference the forged blob.
    let profile = |cid: &str, mime: &str, size: u64| {
        json!({
            "repo": did(), "collection": "app.bsky.actor.profile", "rkey": "self",
            "record": { "$type": "app.bsky.actor.profile", "avatar":
                { "$type": "blob", "ref": { "$link": cid }, "mimeType": mime, "size": size } }
        })
    };
    let forged_ref = xrpc(
        base,
        "POST",
        "com.atproto.repo.putRecord",
        &access,
        Some(&profile(forged["cid"].as_str().unwrap(), "image/png", 4)),
    );
    assert_eq!(
        forged_ref.status,
        400,
        "{}",
        String::from_utf8_lossy(&forged_ref.body)
    );
    assert_eq!(forged_ref.json()["error"], "BlobNotFound");

    // The real door works: authorize, stream, complete.
    let auth = format!("Bearer {access}");
    let up = request(
        base,
        "POST",
        "/xrpc/com.atproto.repo.uploadBlob",
        &[("authorization", &auth), ("content-type", "image/png")],
        b"\x89PNG\r\n\x1a\nhello, offload",
    );
    assert_eq!(up.status, 200, "{}", String::from_utf8_lossy(&up.body));
    let blob = up.json()["blob"].clone();
    assert_eq!(blob["size"], 22);
    assert_eq!(blob["mimeType"], "image/png");
    let cid = blob["ref"]["$link"].as_str().unwrap().to_owned();
    let fetched = get(
        base,
        &format!("/xrpc/com.atproto.sync.getBlob?did={}&cid={cid}", did()),
    );
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body, b"\x89PNG\r\n\x1a\nhello, offload");
    let referenced = xrpc(
        base,
        "POST",
        "com.atproto.repo.putRecord",
        &access,
        Some(&profile(&cid, "image/png", 22)),
    );
    assert_eq!(
        referenced.status,
        200,
        "{}",
        String::from_utf8_lossy(&referenced.body)
    );
    // Unauthenticated uploads are refused before any byte is stored.
    let anon = request(
        base,
        "POST",
        "/xrpc/com.atproto.repo.uploadBlob",
        &[("content-type", "text/plain")],
        b"anonymous bytes",
    );
    assert_eq!(anon.status, 401);
    assert_eq!(anon.json()["error"], "AuthMissing");
    let blobs = get(
        base,
        &format!("/xrpc/com.atproto.sync.listBlobs?did={}", did()),
    );
    assert_eq!(blobs.json()["cids"], json!([cid]));
}

fn session_handle(base: &str, identifier: &str, password: &str) -> (u16, serde_json::Value) {
    let res = post_json(
        base,
        "/xrpc/com.atproto.server.createSession",
        &json!({ "identifier": identifier, "password": password }),
    );
    let status = res.status;
    (status, res.json())
}

fn resolves(base: &str, handle: &str) -> bool {
    let res = get(
        base,
        &format!("/xrpc/com.atproto.identity.resolveHandle?handle={handle}"),
    );
    res.status == 200 && res.json()["did"] == did()
}

fn stored_identity_survives_restarts(server: &mut dyn Shell) {
    let base = server.base().to_owned();
    let (status, session) = session_handle(&base, HANDLE, PASSWORD);
    assert_eq!(status, 200);
    assert_eq!(session["handle"], HANDLE);

    // A handle changed in the account's state (as the API will change it) survives a restart
    // with the same configuration: storage, not configuration, is the source of truth.
    server.run_stored_sql("UPDATE account SET handle = 'changed.test' WHERE id = 1");
    server.restart();
    let base = server.base().to_owned();
    assert!(resolves(&base, "changed.test"));
    assert!(!resolves(&base, HANDLE));
    let (status, session) = session_handle(&base, "changed.test", PASSWORD);
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["handle"], "changed.test");
    let doc = get(&base, "/.well-known/did.json").json();
    assert_eq!(doc["alsoKnownAs"], json!(["at://changed.test"]));

    // A redeploy with a new handle and a new password wins over the stored values.
    let new_password = "a-new-password-5678";
    let new_hash = pds::password::hash(new_password).unwrap();
    server.set_var("PDS_HANDLE", "renamed.test");
    server.set_var("PDS_PASSWORD_HASH", &new_hash);
    server.restart();
    let base = server.base().to_owned();
    assert!(resolves(&base, "renamed.test"));
    let (status, _) = session_handle(&base, "renamed.test", PASSWORD);
    assert_eq!(status, 401, "the old password no longer signs in");
    let (status, session) = session_handle(&base, "renamed.test", new_password);
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["handle"], "renamed.test");

    // And a restart with that same configuration keeps everything.
    server.restart();
    let base = server.base().to_owned();
    let (status, _) = session_handle(&base, "renamed.test", new_password);
    assert_eq!(status, 200);
}

fn server_faults_hide_their_details(server: &mut dyn Shell) {
    let (access, _) = login(server.base());
    // Break the account's storage under the server: the fault must not reach the client as
    // SQL text.
    server.run_stored_sql("DROP TABLE preferences");
    server.restart();
    let base = server.base().to_owned();
    let (access2, _) = login(&base);
    let _ = access;
    let res = xrpc(
        &base,
        "GET",
        "app.bsky.actor.getPreferences",
        &access2,
        None,
    );
    assert_eq!(res.status, 500);
    let body = res.json();
    assert_eq!(
        body,
        json!({ "error": "InternalServerError", "message": "Internal Server Error" })
    );
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
}
