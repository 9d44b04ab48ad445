//! The `pds` command line against a running PDS, on both shells: app passwords created, listed
//! and revoked, the account deactivated and activated again, a PLC operation token printed, and
//! failures reported with the server's error and a non-zero exit. Passwords travel in the
//! environment, never as arguments.

#[macro_use]
mod support;

use std::process::{Command, Output};

use support::account::{did, sign_in, HANDLE, PASSWORD};
use support::http::get;
use support::ShellKind;

on_both_kinds!(
    the_command_line_looks_after_the_account,
    a_backup_restores_onto_a_fresh_deployment
);

/// Runs `pds args...` for the account at `base`, signed in with `password`.
fn pds(base: &str, password: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pds"))
        .args(args)
        .env("PDS_URL", base)
        .env("PDS_IDENTIFIER", HANDLE)
        .env("PDS_PASSWORD", password)
        .output()
        .unwrap()
}

fn the_command_line_looks_after_the_account(kind: ShellKind) {
    let server = support::start_shell(kind, &[]);
    let base = server.base();

    let created = support::stdout_of(&pds(
        base,
        PASSWORD,
        &["app-password", "create", "phone", "--privileged"],
    ));
    let app_password = created.trim();
    assert_eq!(
        app_password.len(),
        19,
        "xxxx-xxxx-xxxx-xxxx: {app_password}"
    );
    assert_eq!(sign_in(base, HANDLE, app_password).status, 200);
    support::stdout_of(&pds(base, PASSWORD, &["app-password", "create", "laptop"]));
    let listed = support::stdout_of(&pds(base, PASSWORD, &["app-password", "list"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("phone\t") && l.ends_with("\tprivileged")),
        "{listed}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("laptop\t") && !l.contains("privileged")),
        "{listed}"
    );
    support::stdout_of(&pds(base, PASSWORD, &["app-password", "revoke", "phone"]));
    assert_eq!(sign_in(base, HANDLE, app_password).status, 401);

    let status = |base: &str| {
        get(
            base,
            &format!("/xrpc/com.atproto.sync.getLatestCommit?did={}", did()),
        )
    };
    // `pds status` (public reads, no password): what checks out, and each problem with its
    // fix. The test server calls itself `localhost` while the test reaches it at 127.0.0.1:
    // the DID document names another PDS than the URL, a real problem here.
    let checked = |base: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_pds"))
            .args(["status", "--relay", "http://127.0.0.1:9"])
            .env("PDS_URL", base)
            .env("PDS_IDENTIFIER", HANDLE)
            .env_remove("PDS_PASSWORD")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, report) = checked(base);
    assert_eq!(code, Some(1), "{report}");
    for ok in [
        "ok      account did:web:localhost, handle alice.test",
        "ok      alice.test resolves to did:web:localhost",
        "is signed by the key the DID document names",
        "ok      0 blobs",
        "ok      the firehose streams: seq ",
        "PROBLEM the DID document names http://localhost as the account's PDS",
        "note    http://127.0.0.1:9 does not tell its view of this host",
    ] {
        assert!(report.contains(ok), "{ok:?} not in:\n{report}");
    }
    assert!(report.contains("        fix: "), "{report}");

    // A handle that does not resolve to the account is refused, with the server's reason.
    let refused = pds(base, PASSWORD, &["handle", "set", "someone-else.test"]);
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("com.atproto.identity.updateHandle"), "{said}");

    support::stdout_of(&pds(base, PASSWORD, &["deactivate"]));
    let res = status(base);
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"], "RepoDeactivated");
    let (code, report) = checked(base);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains("PROBLEM the account alice.test is deactivated"),
        "{report}"
    );
    assert!(
        report.contains("fix: finish moving it here (pds migrate) or activate it (pds activate)"),
        "{report}"
    );
    support::stdout_of(&pds(base, PASSWORD, &["activate"]));
    assert_eq!(status(base).status, 200);

    // A PLC operation token: alone on standard output, and live (this did:web account has no
    // PLC operations to sign, which is what signing then says, past the token check).
    let token = support::stdout_of(&pds(base, PASSWORD, &["plc-token"]));
    let token = token.trim_end();
    assert!(
        token.len() == 11 && token.as_bytes()[5] == b'-',
        "{token:?}"
    );
    let access = sign_in(base, HANDLE, PASSWORD).json()["accessJwt"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = support::http::xrpc(
        base,
        "POST",
        "com.atproto.identity.signPlcOperation",
        &access,
        Some(&serde_json::json!({ "token": token })),
    );
    assert_eq!(res.status, 400);
    let message = res.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("is not a did:plc"), "{message}");

    // Failures: the server's error, and a non-zero exit.
    let wrong = pds(base, "not-the-password", &["app-password", "list"]);
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("AuthenticationRequired"), "{stderr}");
    let unknown = pds(base, PASSWORD, &["app-password", "revoke", "nothing"]);
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("no app password named"), "{stderr}");
    // No URL at all: refused before anything is sent.
    let out = Command::new(env!("CARGO_BIN_EXE_pds"))
        .args(["activate"])
        .env_remove("PDS_URL")
        .env("PDS_IDENTIFIER", HANDLE)
        .env("PDS_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--url"));
}

/// The account's records at `base`, as (URI, CID), in order.
fn records_at(base: &str) -> Vec<(String, String)> {
    let listed = get(
        base,
        &format!(
            "/xrpc/com.atproto.repo.listRecords?repo={}&collection=app.bsky.feed.post&limit=100",
            did()
        ),
    )
    .json();
    listed["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["uri"].as_str().unwrap().to_owned(),
                r["cid"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `pds export` writes a backup folder, checked, then only what changed; `pds import-backup`
/// restores it onto a fresh deployment of the account: the same records (same CIDs), blobs
/// and preferences, the account active.
fn a_backup_restores_onto_a_fresh_deployment(kind: ShellKind) {
    use support::account::login;
    use support::http::xrpc;
    let server = support::start_shell(kind, &[]);
    let base = server.base();
    let (token, _) = login(base);
    let image = b"\x89PNG\r\n\x1a\nan image to keep".to_vec();
    let (blob, _) = support::account::post_an_image(base, &token, &image);
    let cid = blob["ref"]["$link"].as_str().unwrap().to_owned();
    let prefs = serde_json::json!({ "preferences": [{ "$type": "app.bsky.actor.defs#adultContentPref", "enabled": true }] });
    let put = xrpc(
        base,
        "POST",
        "app.bsky.actor.putPreferences",
        &token,
        Some(&prefs),
    );
    assert_eq!(put.status, 200);
    let records = records_at(base);
    assert_eq!(records.len(), 3);

    let folder = support::worker::TempDir::new("pds-backup");
    let dir = folder.0.to_string_lossy().into_owned();
    let said = support::stdout_of(&pds(base, PASSWORD, &["export", &dir]));
    assert!(
        said.contains("3 records (repository written), 1 blobs fetched, 0 already there"),
        "{said}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.0.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["did"], did());
    assert_eq!(manifest["blobTypes"][&cid], "image/png");
    assert_eq!(
        std::fs::read(folder.0.join("blobs").join(&cid)).unwrap(),
        image
    );
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.0.join("preferences.json")).unwrap()).unwrap();
    assert_eq!(saved, prefs);
    // Again: nothing changed, nothing fetched; a damaged blob is fetched again.
    let said = support::stdout_of(&pds(base, PASSWORD, &["export", &dir]));
    assert!(
        said.contains("(repository unchanged), 0 blobs fetched, 1 already there"),
        "{said}"
    );
    std::fs::write(folder.0.join("blobs").join(&cid), b"damaged").unwrap();
    let said = support::stdout_of(&pds(base, PASSWORD, &["export", &dir]));
    assert!(said.contains("1 blobs fetched, 0 already there"), "{said}");
    assert_eq!(
        std::fs::read(folder.0.join("blobs").join(&cid)).unwrap(),
        image
    );

    // A fresh deployment of the same account, restored from the folder.
    let fresh = support::start_shell(kind, &[]);
    let restored_at = fresh.base();
    assert!(records_at(restored_at).is_empty());
    let said = support::stdout_of(&pds(restored_at, PASSWORD, &["import-backup", &dir]));
    assert!(
        said.contains("3 records, 1 blobs; the account is active"),
        "{said}"
    );
    assert_eq!(records_at(restored_at), records);
    let fetched = get(
        restored_at,
        &format!("/xrpc/com.atproto.sync.getBlob?did={}&cid={cid}", did()),
    );
    assert_eq!((fetched.status, fetched.body.clone()), (200, image));
    assert_eq!(fetched.header("content-type"), Some("image/png"));
    let (token, _) = login(restored_at);
    let restored = xrpc(
        restored_at,
        "GET",
        "app.bsky.actor.getPreferences",
        &token,
        None,
    );
    assert_eq!(restored.json(), prefs);
}
