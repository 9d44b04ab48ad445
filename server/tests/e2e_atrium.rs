//! The server driven by atrium (atrium-api + atrium-xrpc), on both shells.

#[macro_use]
mod support;

use atrium_api::types::string::Handle;
use support::account::{HANDLE, PASSWORD};
use support::atrium::{client, run};

on_both_shells!(atrium_sessions_and_account);

fn atrium_sessions_and_account(base: &str) {
    let (agent, tokens) = client(base);
    let server = &agent.service.com.atproto.server;

    let described = run(server.describe_server()).expect("describeServer");
    assert_eq!(
        described.did.as_str(),
        format!("did:web:{}", support::account::HOSTNAME)
    );

    let session = run(server.create_session(
        atrium_api::com::atproto::server::create_session::InputData {
            identifier: HANDLE.into(),
            password: PASSWORD.into(),
            auth_factor_token: None,
            allow_takendown: None,
        }
        .into(),
    ))
    .expect("createSession");
    assert_eq!(session.did.as_str(), support::account::did());
    assert_eq!(session.handle.as_str(), HANDLE);
    *tokens.lock().unwrap() = Some((session.access_jwt.clone(), session.refresh_jwt.clone()));

    let got = run(server.get_session()).expect("getSession");
    assert_eq!(got.handle.as_str(), HANDLE);
    assert_eq!(got.active, Some(true));

    let refreshed = run(server.refresh_session()).expect("refreshSession");
    assert_ne!(refreshed.refresh_jwt, session.refresh_jwt);
    *tokens.lock().unwrap() = Some((refreshed.access_jwt.clone(), refreshed.refresh_jwt.clone()));

    let app_password = run(server.create_app_password(
        atrium_api::com::atproto::server::create_app_password::InputData {
            name: "atrium".into(),
            privileged: Some(true),
        }
        .into(),
    ))
    .expect("createAppPassword");
    assert_eq!(app_password.password.len(), 19);
    let listed = run(server.list_app_passwords()).expect("listAppPasswords");
    assert_eq!(listed.passwords.len(), 1);
    assert_eq!(listed.passwords[0].privileged, Some(true));

    let resolved = run(agent.service.com.atproto.identity.resolve_handle(
        atrium_api::com::atproto::identity::resolve_handle::ParametersData {
            handle: Handle::new(HANDLE.into()).unwrap(),
        }
        .into(),
    ))
    .expect("resolveHandle");
    assert_eq!(resolved.did.as_str(), support::account::did());

    let status = run(server.check_account_status()).expect("checkAccountStatus");
    assert!(status.activated);
    assert!(!status.repo_rev.is_empty());

    // A typed error comes back typed: an unknown identifier.
    let bad = run(server.create_session(
        atrium_api::com::atproto::server::create_session::InputData {
            identifier: "bob.test".into(),
            password: PASSWORD.into(),
            auth_factor_token: None,
            allow_takendown: None,
        }
        .into(),
    ));
    assert!(bad.is_err());
}
