//! Passkeys end to end on both shells: `pds passkey add` prints a one-time registration link;
//! a passkey of each algorithm (ES256, EdDSA, RS256), played by an authenticator in Node,
//! registers there and approves OAuth sign-ins, with the counter rule and forged signatures
//! refused; Chromium's virtual authenticator does the same through the pages' own script;
//! `pds passkey list` and `revoke` manage them.

#[macro_use]
mod support;

use serde_json::json;
use support::account::{HANDLE, PASSWORD};
use support::oauth::{authorize_path, origin, Client};
use support::ShellKind;

const GENERIC: &str = "atproto transition:generic";

fn pds(base: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pds"))
        .args(args)
        .env("PDS_URL", base)
        .env("PDS_IDENTIFIER", HANDLE)
        .env("PDS_PASSWORD", PASSWORD)
        .output()
        .unwrap()
}

/// A registration link from `pds passkey add`, as a path on the server.
fn registration_path(base: &str, name: &str) -> String {
    let url = support::stdout_of(&pds(base, &["passkey", "add", "--name", name]));
    let url = url.trim();
    assert!(
        url.starts_with(&format!("{}/passkey/register?token=", origin())),
        "{url}"
    );
    url[origin().len()..].to_owned()
}

fn a_passkey_of_each_algorithm_approves_sign_ins(kind: ShellKind) {
    let server = support::start_shell(kind, &[]);
    let base = server.base();
    let mut c = Client::new(base, GENERIC);
    for alg in ["ES256", "EdDSA", "RS256"] {
        let register = registration_path(base, &format!("{alg} key"));
        let requests: Vec<(String, String)> = (0..3).map(|_| c.push(GENERIC, &[])).collect();
        let seen = support::oracle::run_node(
            "passkey-ceremony.mjs",
            &json!({
                "base": base,
                "origin": origin(),
                "alg": alg,
                "registerPath": register,
                "authorizePaths": requests.iter().map(|(uri, _)| authorize_path(&c.client_id, uri)).collect::<Vec<_>>(),
            }),
        );
        assert_eq!(seen["registered"], 200, "{alg}: {}", seen["registeredText"]);
        // The first approval: a code the app exchanges.
        assert_eq!(seen["first"]["status"], 303, "{alg}: {}", seen["first"]);
        let location = seen["first"]["location"].as_str().unwrap();
        let code = location
            .split("code=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        let tokens = c.exchange(code, &requests[0].1);
        assert_eq!(tokens.status, 200, "{alg}");
        // A repeated counter is refused; the next one is approved.
        assert_eq!(seen["replayStatus"], 401, "{alg}");
        assert_eq!(seen["second"]["status"], 303, "{alg}: {}", seen["second"]);
        // Another key's signature is refused.
        assert_eq!(seen["forgedStatus"], 401, "{alg}");
        // The link was spent.
        assert_eq!(support::http::get(base, &register).status, 400, "{alg}");
    }

    // The sessions the passkeys opened say so.
    let sessions = support::stdout_of(&pds(base, &["oauth", "sessions"]));
    assert_eq!(sessions.matches("with passkey").count(), 3, "{sessions}");

    let listed = support::stdout_of(&pds(base, &["passkey", "list"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    for (line, alg) in lines.iter().zip(["ES256", "EdDSA", "RS256"]) {
        assert!(line.contains(&format!("{alg} key\t{alg}\t")), "{line}");
        assert!(line.contains("last used"), "{line}");
    }
    let id = lines[0].split('\t').next().unwrap();
    support::stdout_of(&pds(base, &["passkey", "revoke", id]));
    assert_eq!(
        support::stdout_of(&pds(base, &["passkey", "list"]))
            .lines()
            .count(),
        2
    );
    let missing = pds(base, &["passkey", "revoke", id]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("PasskeyNotFound"));
}

fn the_browser_registers_and_signs_in_with_a_passkey(kind: ShellKind) {
    let server = support::start_shell(kind, &[]);
    let base = server.base();
    let mut c = Client::new(base, GENERIC);
    let register = registration_path(base, "Chromium");
    let (request_uri, verifier) = c.push(GENERIC, &[]);
    let out_dir = support::worker::project_root()
        .join("target/oauth-pages")
        .join(format!("{kind:?}"));
    let seen = support::oracle::run_node(
        "passkey-browser.mjs",
        &json!({
            "base": base,
            "origin": origin(),
            "registerUrl": format!("{}{register}", origin()),
            "authorizeUrl": format!("{}{}", origin(), authorize_path(&c.client_id, &request_uri)),
            "outDir": out_dir,
        }),
    );
    assert!(
        seen["registered"]
            .as_str()
            .unwrap()
            .contains("Passkey added"),
        "{seen}"
    );
    assert_eq!(
        seen["problems"],
        json!([]),
        "the pages' script ran without errors"
    );
    assert_eq!(seen["credentials"], 1);
    let callback = seen["callback"]
        .as_str()
        .unwrap_or_else(|| panic!("no callback: {seen}"));
    let code = callback
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let tokens = c.exchange(code, &verifier);
    assert_eq!(
        tokens.status,
        200,
        "{}",
        String::from_utf8_lossy(&tokens.body)
    );
    let listed = support::stdout_of(&pds(base, &["passkey", "list"]));
    assert!(listed.contains("Chromium\tES256\t"), "{listed}");
}

on_both_kinds!(
    a_passkey_of_each_algorithm_approves_sign_ins,
    the_browser_registers_and_signs_in_with_a_passkey,
);
