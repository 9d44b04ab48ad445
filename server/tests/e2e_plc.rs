//! did:plc identity operations end to end on both shells, against a real PLC directory
//! (`@did-plc/server` on loopback) with `@did-plc/lib` checking every operation independently:
//! recommended credentials, the single-use token, signing with the PDS's rotation key,
//! submitting with the reference's checks, and the refusals on the way.

#[macro_use]
mod support;

use serde_json::{json, Value};
use support::account::{create_app_password, login, sign_in, HANDLE, PASSWORD};
use support::fake_service::{FakeService, Reply};
use support::firehose::{assert_verified, consume, input, url};
use support::http::{get, xrpc};
use support::plc::{rotation_key, sign_with_library, PlcDirectory};
use support::ShellKind;

on_both_kinds!(
    plc_operations_sign_submit_and_refuse,
    handle_changes_are_verified_signed_and_announced
);

const TOKEN: &str = "dev.rustpds.identity.getPlcOperationToken";
const SIGN: &str = "com.atproto.identity.signPlcOperation";
const SUBMIT: &str = "com.atproto.identity.submitPlcOperation";

/// The document data the account starts with: created elsewhere (another PDS's endpoint),
/// with the user's recovery key first and this PDS's rotation key second.
fn genesis_data(recovery: &pds::crypto::SigningKey) -> Value {
    json!({
        "rotationKeys": [recovery.public_key().to_did_key(), rotation_key().public_key().to_did_key()],
        "verificationMethods": { "atproto": support::account::signing_key().public_key().to_did_key() },
        "alsoKnownAs": [format!("at://{HANDLE}")],
        "services": { "atproto_pds": { "type": "AtprotoPersonalDataServer", "endpoint": "https://old-pds.example.com" } },
    })
}

fn token(base: &str, access: &str) -> String {
    let res = xrpc(
        base,
        "POST",
        TOKEN,
        access,
        Some(&json!({ "password": PASSWORD })),
    );
    assert_eq!(res.status, 200, "{:?}", res.json());
    res.json()["token"].as_str().unwrap().to_owned()
}

fn error_of(res: &support::http::Reply) -> (u16, String, String) {
    let body = res.json();
    (
        res.status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn plc_operations_sign_submit_and_refuse(kind: ShellKind) {
    let plc = PlcDirectory::start();
    let recovery = pds::crypto::SigningKey::generate(pds::crypto::KeyAlgorithm::K256);
    let did = plc.create(&genesis_data(&recovery), &recovery);
    let server = support::start_shell(
        kind,
        &[
            (pds::config::vars::DID, did.as_str()),
            (pds::config::vars::PLC_URL, plc.url.as_str()),
        ],
    );
    let base = server.base().to_owned();
    let (access, _) = login(&base);

    // The credentials this PDS needs the document to carry.
    let recommended = xrpc(
        &base,
        "GET",
        "com.atproto.identity.getRecommendedDidCredentials",
        &access,
        None,
    );
    assert_eq!(recommended.status, 200);
    let recommended = recommended.json();
    let ours = rotation_key().public_key().to_did_key();
    assert_eq!(recommended["rotationKeys"], json!([ours]));
    assert_eq!(
        recommended["alsoKnownAs"],
        json!([format!("at://{HANDLE}")])
    );
    assert_eq!(
        recommended["verificationMethods"]["atproto"],
        support::account::signing_key().public_key().to_did_key()
    );
    let endpoint = recommended["services"]["atproto_pds"]["endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(endpoint, "http://localhost");
    assert_eq!(
        recommended["services"]["atproto_pds"]["type"],
        "AtprotoPersonalDataServer"
    );

    // No token, a wrong token: refused, as the reference refuses them.
    let none = xrpc(&base, "POST", SIGN, &access, Some(&json!({})));
    assert_eq!(
        error_of(&none),
        (
            400,
            "InvalidRequest".into(),
            "email confirmation token required to sign PLC operations".into()
        )
    );
    let wrong = xrpc(
        &base,
        "POST",
        SIGN,
        &access,
        Some(&json!({ "token": "AAAAA-AAAAA" })),
    );
    assert_eq!(error_of(&wrong).1, "InvalidToken");

    // The token is the owner's alone: no app password, even privileged, reads it.
    let app_password = create_app_password(&base, &access, "phone");
    let app_access = sign_in(&base, HANDLE, &app_password).json()["accessJwt"]
        .as_str()
        .unwrap()
        .to_owned();
    let with_password = json!({ "password": PASSWORD });
    let refused = xrpc(&base, "POST", TOKEN, &app_access, Some(&with_password));
    assert_eq!(
        (refused.status, refused.json()["error"].as_str()),
        (400, Some("InvalidToken"))
    );
    // Nor a session without the password: a stolen session alone cannot move the identity.
    for body in [
        json!({}),
        json!({ "password": "not-the-password" }),
        json!({ "password": app_password }),
    ] {
        let refused = xrpc(&base, "POST", TOKEN, &access, Some(&body));
        assert_eq!(refused.status, 400, "{body}: {:?}", refused.json());
    }
    let wrong = xrpc(
        &base,
        "POST",
        TOKEN,
        &access,
        Some(&json!({ "password": "not-the-password" })),
    );
    assert_eq!(wrong.json()["error"], "InvalidPassword");

    // requestPlcOperationSignature answers as the reference's (the token it makes is mailed
    // there; here the owner reads a fresh one, which replaces it).
    let request = xrpc(
        &base,
        "POST",
        "com.atproto.identity.requestPlcOperationSignature",
        &access,
        None,
    );
    assert_eq!(request.status, 200, "{:?}", request.json());
    let first = token(&base, &access);
    let live = token(&base, &access);
    assert_ne!(first, live);
    assert!(live.len() == 11 && live.as_bytes()[5] == b'-', "{live}");
    let stale = xrpc(
        &base,
        "POST",
        SIGN,
        &access,
        Some(&json!({ "token": first })),
    );
    assert_eq!(
        error_of(&stale).1,
        "InvalidToken",
        "a replaced token is dead"
    );

    // Signing: the user's recovery key stays first, this PDS becomes the host.
    let mut wanted = recommended.clone();
    wanted["rotationKeys"] = json!([recovery.public_key().to_did_key(), ours]);
    let mut input = wanted.clone();
    input["token"] = live.to_ascii_lowercase().into();
    let signed = xrpc(&base, "POST", SIGN, &access, Some(&input));
    assert_eq!(signed.status, 200, "{:?}", signed.json());
    let operation = signed.json()["operation"].clone();
    for field in [
        "rotationKeys",
        "verificationMethods",
        "alsoKnownAs",
        "services",
    ] {
        assert_eq!(operation[field], wanted[field], "{field}");
    }
    let genesis_cid = sign_with_library(
        &{
            let mut op = genesis_data(&recovery);
            op["type"] = "plc_operation".into();
            op["prev"] = Value::Null;
            op
        },
        &recovery,
    )["cid"]
        .clone();
    assert_eq!(
        operation["prev"], genesis_cid,
        "prev names the directory's last operation"
    );
    // @did-plc/lib signs the same unsigned operation with the same key to the same bytes.
    let mut unsigned = operation.clone();
    unsigned.as_object_mut().unwrap().remove("sig");
    let library = sign_with_library(&unsigned, &rotation_key());
    assert_eq!(library["signed"]["sig"], operation["sig"]);
    assert_eq!(library["didKey"], ours);

    // The token was spent.
    let again = xrpc(&base, "POST", SIGN, &access, Some(&input));
    assert_eq!(error_of(&again).1, "InvalidToken");

    // Submitting: the reference's checks, each with its message; nothing reaches the directory.
    let submit = |op: &Value| {
        xrpc(
            &base,
            "POST",
            SUBMIT,
            &access,
            Some(&json!({ "operation": op })),
        )
    };
    let cases: [(&str, Value, &str); 5] = [
        ("type", json!("plc_tombstone"), "Invalid operation"),
        (
            "rotationKeys",
            json!([recovery.public_key().to_did_key()]),
            "Rotation keys do not include server's rotation key",
        ),
        (
            "services",
            json!({ "atproto_pds": { "type": "AtprotoPersonalDataServer", "endpoint": "https://elsewhere.example.com" } }),
            "Incorrect endpoint on atproto_pds service",
        ),
        (
            "verificationMethods",
            json!({ "atproto": recovery.public_key().to_did_key() }),
            "Incorrect signing key",
        ),
        (
            "alsoKnownAs",
            json!(["at://bob.test"]),
            "Incorrect handle in alsoKnownAs",
        ),
    ];
    for (field, value, message) in cases {
        let mut bad = operation.clone();
        bad[field] = value;
        assert_eq!(
            error_of(&submit(&bad)),
            (400, "InvalidRequest".into(), message.into()),
            "{field}"
        );
    }
    assert_eq!(plc.verify(&did)["ops"], 1, "nothing was submitted");

    // A forged signature: our checks pass, the directory refuses, its words come back.
    let mut forged = operation.clone();
    forged["sig"] = library["signed"]["sig"]
        .as_str()
        .unwrap()
        .replace(|c: char| c.is_ascii_digit(), "A")
        .into();
    if forged["sig"] != operation["sig"] {
        let res = submit(&forged);
        let (status, error, message) = error_of(&res);
        assert_eq!(
            (status, error.as_str()),
            (400, "InvalidRequest"),
            "{message}"
        );
        assert!(message.contains("signature"), "{message}");
    }

    // The real one goes through, and @did-plc/lib verifies the whole log.
    let res = submit(&operation);
    assert_eq!(res.status, 200, "{:?}", res.json());
    let report = plc.verify(&did);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["ops"], 2);
    assert_eq!(
        report["data"]["services"]["atproto_pds"]["endpoint"],
        endpoint
    );
    assert_eq!(report["data"]["rotationKeys"], wanted["rotationKeys"]);

    // A reused operation: its prev is no longer the last, the directory refuses it.
    let replay = submit(&operation);
    assert_eq!(replay.status, 400, "{:?}", replay.json());
    assert_eq!(plc.verify(&did)["ops"], 2);

    // The user's recovery key drops this PDS's key; the PDS then refuses to sign (the
    // directory would refuse the operation) and leaves the token live.
    let (_, last) = plc.get(&format!("/{did}/log/last"));
    let last_cid = sign_with_library(
        &{
            let mut op = last.clone();
            op.as_object_mut().unwrap().remove("sig");
            op
        },
        &rotation_key(),
    )["cid"]
        .clone();
    assert_eq!(
        library["cid"], last_cid,
        "the submitted operation is the last"
    );
    let mut without_us = wanted.clone();
    without_us["rotationKeys"] = json!([recovery.public_key().to_did_key()]);
    without_us["type"] = "plc_operation".into();
    without_us["prev"] = last_cid;
    let recovered = sign_with_library(&without_us, &recovery);
    let (status, body) = plc.submit(&did, &recovered["signed"]);
    assert_eq!(status, 200, "{body}");
    let live = token(&base, &access);
    let mut input = wanted.clone();
    input["token"] = live.clone().into();
    let cannot = xrpc(&base, "POST", SIGN, &access, Some(&input));
    let (status, error, message) = error_of(&cannot);
    assert_eq!((status, error.as_str()), (400, "InvalidRequest"));
    assert!(
        message.contains("rotation key") && message.contains(&ours),
        "{message}"
    );
    let res = xrpc(&base, "POST", SIGN, &access, Some(&input));
    assert_eq!(
        error_of(&res).2,
        message,
        "the token is still live after a refusal"
    );
}

/// A DNS-over-HTTPS resolver that knows `_atproto` TXT records for some handles.
fn doh(records: Vec<(&'static str, String)>) -> FakeService {
    FakeService::start(move |call| {
        let name = call
            .query
            .split('&')
            .find_map(|p| p.strip_prefix("name="))
            .unwrap_or_default()
            .to_owned();
        let answers: Vec<Value> = records
            .iter()
            .filter(|(handle, _)| name == format!("_atproto.{handle}"))
            .map(|(_, did)| json!({ "name": name, "type": 16, "data": format!("\"did={did}\"") }))
            .collect();
        let status = if answers.is_empty() { 3 } else { 0 };
        Reply::json(200, json!({ "Status": status, "Answer": answers }))
    })
}

fn identity_events(base: &str) -> usize {
    let result = consume(&input(
        &url(base, Some("0")),
        json!({ "idleMs": 1500, "timeoutMs": 60000 }),
    ));
    assert_verified(&result);
    result["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| *k == "#identity")
        .count()
}

/// updateHandle on a did:plc account: the new handle must resolve to the DID (here through
/// DNS-over-HTTPS), then a PLC operation names it, the stored handle changes and `#identity`
/// announces it; describeRepo and sessions show the resolved document.
fn handle_changes_are_verified_signed_and_announced(kind: ShellKind) {
    let plc = PlcDirectory::start();
    let recovery = pds::crypto::SigningKey::generate(pds::crypto::KeyAlgorithm::K256);
    let mut data = genesis_data(&recovery);
    data["services"]["atproto_pds"]["endpoint"] = "http://localhost".into();
    let did = plc.create(&data, &recovery);
    let dns = doh(vec![
        ("bob.test", did.clone()),
        ("dave.test", "did:plc:someoneelse234567abcdefg".to_owned()),
    ]);
    let doh_url = format!("{}/dns-query", dns.url);
    let server = support::start_shell(
        kind,
        &[
            (pds::config::vars::DID, did.as_str()),
            (pds::config::vars::PLC_URL, plc.url.as_str()),
            (pds::config::vars::DOH_URL, doh_url.as_str()),
        ],
    );
    let base = server.base().to_owned();
    let (access, _) = login(&base);
    // A did:plc deployment starts deactivated; the document already names this PDS.
    let activated = xrpc(
        &base,
        "POST",
        "com.atproto.server.activateAccount",
        &access,
        None,
    );
    assert_eq!(activated.status, 200, "{:?}", activated.json());

    // The resolved document, in describeRepo and in sessions.
    let described = get(
        &base,
        &format!("/xrpc/com.atproto.repo.describeRepo?repo={did}"),
    )
    .json();
    assert_eq!(described["handleIsCorrect"], true, "{described}");
    assert_eq!(described["didDoc"]["id"], did);
    assert_eq!(
        described["didDoc"]["alsoKnownAs"],
        json!([format!("at://{HANDLE}")])
    );
    let session = xrpc(&base, "GET", "com.atproto.server.getSession", &access, None).json();
    assert_eq!(session["didDoc"]["id"], did, "{session}");
    assert_eq!(
        session["didDoc"]["service"][0]["serviceEndpoint"],
        "http://localhost"
    );
    let announced = identity_events(&base);
    // alice.test resolves nowhere: the identity stands, its handle is not verified.
    let identity = resolve_identity(&base, &access, &did);
    assert_eq!(
        (identity.status, identity.json()["handle"].as_str()),
        (200, Some("handle.invalid"))
    );

    let update = |handle: &str| {
        xrpc(
            &base,
            "POST",
            "com.atproto.identity.updateHandle",
            &access,
            Some(&json!({ "handle": handle })),
        )
    };
    // Refusals first: nothing reaches the directory.
    for (handle, error, message) in [
        (
            "carol.test",
            "InvalidRequest",
            "External handle did not resolve to DID",
        ),
        (
            "dave.test",
            "InvalidRequest",
            "External handle did not resolve to DID",
        ),
        (
            "bob.example",
            "InvalidHandle",
            "Handle TLD is invalid or disallowed",
        ),
        ("not a handle", "InvalidRequest", ""),
    ] {
        let (status, got_error, got_message) = error_of(&update(handle));
        assert_eq!(
            (status, got_error.as_str()),
            (400, error),
            "{handle}: {got_message}"
        );
        if !message.is_empty() {
            assert_eq!(got_message, message, "{handle}");
        }
    }
    assert_eq!(plc.verify(&did)["ops"], 1);

    // Bob.test resolves to the account (case does not matter).
    let res = update("Bob.Test");
    assert_eq!(res.status, 200, "{:?}", res.json());
    let report = plc.verify(&did);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["ops"], 2);
    assert_eq!(report["data"]["alsoKnownAs"], json!(["at://bob.test"]));
    assert_eq!(
        report["data"]["rotationKeys"], data["rotationKeys"],
        "nothing else changed"
    );
    assert_eq!(report["data"]["services"], data["services"]);
    assert_eq!(identity_events(&base), announced + 1);

    let described = get(
        &base,
        &format!("/xrpc/com.atproto.repo.describeRepo?repo={did}"),
    )
    .json();
    assert_eq!(described["handle"], "bob.test");
    assert_eq!(described["handleIsCorrect"], true, "{described}");
    assert_eq!(described["didDoc"]["alsoKnownAs"], json!(["at://bob.test"]));
    let resolved = get(
        &base,
        "/xrpc/com.atproto.identity.resolveHandle?handle=bob.test",
    );
    assert_eq!(resolved.json()["did"], did);
    assert_eq!(sign_in(&base, "bob.test", PASSWORD).status, 200);
    let session = xrpc(&base, "GET", "com.atproto.server.getSession", &access, None).json();
    assert_eq!(session["handle"], "bob.test");

    // Resolution, for the account's own callers: both ways now.
    let path = format!("/xrpc/com.atproto.identity.resolveDid?did={did}");
    assert_eq!(get(&base, &path).status, 401, "not for anyone");
    let resolved = xrpc(&base, "GET", &path["/xrpc/".len()..], &access, None);
    assert_eq!(resolved.status, 200, "{:?}", resolved.json());
    assert_eq!(resolved.json()["didDoc"], described["didDoc"]);
    for identifier in [did.as_str(), "bob.test", "BOB.test"] {
        let identity = resolve_identity(&base, &access, identifier);
        assert_eq!(identity.status, 200, "{identifier}: {:?}", identity.json());
        let identity = identity.json();
        assert_eq!(
            (identity["did"].as_str(), identity["handle"].as_str()),
            (Some(did.as_str()), Some("bob.test")),
            "{identifier}"
        );
        assert_eq!(identity["didDoc"], described["didDoc"]);
    }
    let refreshed = xrpc(
        &base,
        "POST",
        "com.atproto.identity.refreshIdentity",
        &access,
        Some(&json!({ "identifier": did })),
    );
    assert_eq!(
        refreshed.json()["handle"],
        "bob.test",
        "{:?}",
        refreshed.json()
    );
    // dave.test names another DID, which the directory does not know.
    let (status, error, _) = error_of(&resolve_identity(&base, &access, "dave.test"));
    assert_eq!((status, error.as_str()), (400, "DidNotFound"));
    let (status, error, _) = error_of(&resolve_identity(&base, &access, "carol.test"));
    assert_eq!((status, error.as_str()), (400, "HandleNotFound"));
}

fn resolve_identity(base: &str, access: &str, identifier: &str) -> support::http::Reply {
    xrpc(
        base,
        "GET",
        &format!("com.atproto.identity.resolveIdentity?identifier={identifier}"),
        access,
        None,
    )
}
