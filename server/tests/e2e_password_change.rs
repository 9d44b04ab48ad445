//! The owner changes the account password (`dev.rustpds.server.changePassword`, through the
//! `pds change-password` command), end to end on both shells: it needs a full session and the
//! current password, goes through the login throttle, and ends every session, app-password
//! sessions included; the new password survives a restart.

#[macro_use]
mod support;

use serde_json::json;
use support::account::{create_app_password, login, refresh, sign_in, HANDLE, PASSWORD};
use support::http::{xrpc, Reply};
use support::ShellKind;

on_both_kinds!(a_password_change_ends_every_session);

const CHANGE_PASSWORD: &str = "dev.rustpds.server.changePassword";

fn change(base: &str, token: &str, current: &str, new: &str) -> Reply {
    xrpc(
        base,
        "POST",
        CHANGE_PASSWORD,
        token,
        Some(&json!({ "currentPassword": current, "newPassword": new })),
    )
}

fn a_password_change_ends_every_session(kind: ShellKind) {
    let mut server = support::start_shell(kind, &[]);
    let base = server.base().to_owned();
    let (access, refresh_jwt) = login(&base);
    let app_password = create_app_password(&base, &access, "phone");
    let app_access = sign_in(&base, HANDLE, &app_password).json()["accessJwt"]
        .as_str()
        .unwrap()
        .to_owned();
    let new_password = "a-brand-new-password";

    // An app-password session may not change the password, even knowing it.
    let res = change(&base, &app_access, PASSWORD, new_password);
    assert_eq!(res.status, 400, "{:?}", res.json());
    assert_eq!(res.json()["error"], "InvalidToken");
    // A wrong current password is refused, and counted by the login throttle.
    let res = change(&base, &access, "not-the-password", new_password);
    assert_eq!(res.status, 400, "{:?}", res.json());
    assert_eq!(res.json()["error"], "InvalidPassword");
    assert_eq!(res.header("ratelimit-policy"), Some("30;w=300"));
    let remaining: u32 = res.header("ratelimit-remaining").unwrap().parse().unwrap();
    let again = change(&base, &access, "still-not-it", new_password);
    let after: u32 = again
        .header("ratelimit-remaining")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(after, remaining - 1);
    // Too short a new password: the lexicon's minimum.
    let res = change(&base, &access, PASSWORD, "short");
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"], "InvalidRequest");
    // Nothing changed so far.
    let session = xrpc(&base, "GET", "com.atproto.server.getSession", &access, None);
    assert_eq!(session.status, 200);

    // The command line: passwords from the environment, never from arguments.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pds"))
        .args(["change-password", "--url", &base, "--identifier", HANDLE])
        .env("PDS_PASSWORD", PASSWORD)
        .env("PDS_NEW_PASSWORD", new_password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every session ended, the app password's too.
    for token in [&access, &app_access] {
        let res = xrpc(&base, "GET", "com.atproto.server.getSession", token, None);
        assert_eq!(res.status, 400, "{:?}", res.json());
        assert_eq!(res.json()["error"], "ExpiredToken");
    }
    assert_eq!(refresh(&base, &refresh_jwt).json()["error"], "ExpiredToken");
    assert_eq!(sign_in(&base, HANDLE, PASSWORD).status, 401);
    assert_eq!(sign_in(&base, HANDLE, new_password).status, 200);
    assert_eq!(sign_in(&base, HANDLE, &app_password).status, 200);

    // The stored password outlives a restart with the same configuration.
    server.restart();
    let base = server.base().to_owned();
    assert_eq!(sign_in(&base, HANDLE, PASSWORD).status, 401);
    assert_eq!(sign_in(&base, HANDLE, new_password).status, 200);

    // A wrong current password through the command line fails with the server's error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pds"))
        .args(["change-password", "--url", &base])
        .env("PDS_IDENTIFIER", HANDLE)
        .env("PDS_PASSWORD", "wrong-password")
        .env("PDS_NEW_PASSWORD", "whatever-else")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("AuthenticationRequired"), "{stderr}");
}
