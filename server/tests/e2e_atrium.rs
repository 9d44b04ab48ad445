//! The server driven by atrium (atrium-api + atrium-xrpc), on both shells.

#[macro_use]
mod support;

use atrium_api::types::string::Handle;
use support::account::{HANDLE, PASSWORD};
use support::atrium::{client, run};

on_both_shells!(atrium_sessions_and_account, atrium_records_and_sync);

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

/// Records and sync through atrium's typed client: create, read, list, delete; the latest commit,
/// a record proof and the repository export.
fn atrium_records_and_sync(base: &str) {
    use atrium_api::types::string::{AtIdentifier, Did, Nsid, RecordKey};
    let (agent, tokens) = client(base);
    let session = run(agent.service.com.atproto.server.create_session(
        atrium_api::com::atproto::server::create_session::InputData {
            identifier: HANDLE.into(),
            password: PASSWORD.into(),
            auth_factor_token: None,
            allow_takendown: None,
        }
        .into(),
    ))
    .expect("createSession");
    *tokens.lock().unwrap() = Some((session.access_jwt.clone(), session.refresh_jwt.clone()));
    let repo = &agent.service.com.atproto.repo;
    let did = Did::new(support::account::did()).unwrap();
    let collection = Nsid::new("app.bsky.feed.post".into()).unwrap();

    let mut created = Vec::new();
    for i in 0..3 {
        let record: atrium_api::types::Unknown = serde_json::from_value(serde_json::json!({
            "$type": "app.bsky.feed.post", "text": format!("from atrium {i}"), "createdAt": "2026-11-24T08:00:00.000Z"
        }))
        .unwrap();
        let out = run(repo.create_record(
            atrium_api::com::atproto::repo::create_record::InputData {
                collection: collection.clone(),
                record,
                repo: AtIdentifier::Did(did.clone()),
                rkey: None,
                swap_commit: None,
                validate: Some(true),
            }
            .into(),
        ))
        .expect("createRecord");
        assert!(out.commit.is_some());
        created.push(out);
    }
    let rkey = |uri: &str| RecordKey::new(uri.rsplit('/').next().unwrap().to_owned()).unwrap();

    let got = run(repo.get_record(
        atrium_api::com::atproto::repo::get_record::ParametersData {
            cid: None,
            collection: collection.clone(),
            repo: AtIdentifier::Did(did.clone()),
            rkey: rkey(&created[1].uri),
        }
        .into(),
    ))
    .expect("getRecord");
    assert_eq!(
        got.cid.as_ref().map(|c| c.as_ref().to_string()),
        Some(created[1].cid.as_ref().to_string())
    );

    let listed = run(repo.list_records(
        atrium_api::com::atproto::repo::list_records::ParametersData {
            collection: collection.clone(),
            cursor: None,
            limit: None,
            repo: AtIdentifier::Did(did.clone()),
            reverse: None,
        }
        .into(),
    ))
    .expect("listRecords");
    assert_eq!(listed.records.len(), 3);
    assert_eq!(listed.records[0].uri, created[2].uri, "newest first");

    run(repo.delete_record(
        atrium_api::com::atproto::repo::delete_record::InputData {
            collection: collection.clone(),
            repo: AtIdentifier::Did(did.clone()),
            rkey: rkey(&created[0].uri),
            swap_commit: None,
            swap_record: None,
        }
        .into(),
    ))
    .expect("deleteRecord");

    let sync = &agent.service.com.atproto.sync;
    let latest = run(sync.get_latest_commit(
        atrium_api::com::atproto::sync::get_latest_commit::ParametersData { did: did.clone() }
            .into(),
    ))
    .expect("getLatestCommit");
    let car = run(sync.get_repo(
        atrium_api::com::atproto::sync::get_repo::ParametersData {
            did: did.clone(),
            since: None,
        }
        .into(),
    ))
    .expect("getRepo");
    // Our verifier reads atrium's bytes: two records left, under the latest commit.
    let verified = pds::repo::verify::verify_car_with_did_key(
        &car[..],
        &support::account::signing_key().public_key().to_did_key(),
        Some(did.as_str()),
    )
    .expect("the export verifies");
    assert_eq!(verified.records.len(), 2);
    assert_eq!(
        verified.commit_cid.to_string(),
        latest.cid.as_ref().to_string()
    );

    let proof = run(sync.get_record(
        atrium_api::com::atproto::sync::get_record::ParametersData {
            collection,
            did,
            rkey: rkey(&created[2].uri),
        }
        .into(),
    ))
    .expect("sync.getRecord");
    assert!(!proof.is_empty());
}
