//! Moving a did:plc account onto this PDS, on both shells, against a real PLC directory: the
//! deployment waits deactivated, createAccount takes the account with a service token from the
//! DID's current key (minted by the reference's createServiceJwt) and refuses every other, the
//! PLC operation names this PDS, and activation waits until the document does.

#[macro_use]
mod support;

use pds::crypto::{KeyAlgorithm, SigningKey};
use serde_json::{json, Value};
use support::account::{sign_in, HANDLE, PASSWORD};
use support::http::{get, request, xrpc};
use support::oracle::run_node;
use support::plc::{sign_with_library, PlcDirectory};
use support::ShellKind;

on_both_kinds!(an_account_arrives_with_create_account);

const CREATE_ACCOUNT: &str = "com.atproto.server.createAccount";
/// The test servers' service DID (`did:web:` of their hostname).
const SERVICE_DID: &str = "did:web:localhost";
const NEW_PASSWORD: &str = "the-password-it-brings";
/// The bytes of the image the first imported post shows.
const IMAGE: &[u8] = b"\x89PNG";

/// A repository of `posts` for `did`, signed by `key`, made by @atproto/repo: the CAR, its
/// root and its rev.
fn repo_car(
    did: &str,
    key: &SigningKey,
    posts: &[&str],
    blob: Option<&str>,
) -> (Vec<u8>, String, String) {
    use base64::Engine;
    let mut input = json!({ "did": did, "keyHex": key.to_hex(), "posts": posts });
    if let Some(blob) = blob {
        input["blobCid"] = blob.into();
    }
    let out = run_node("repo-car.mjs", &input);
    let car = base64::engine::general_purpose::STANDARD
        .decode(out["car"].as_str().unwrap())
        .unwrap();
    (
        car,
        out["root"].as_str().unwrap().to_owned(),
        out["rev"].as_str().unwrap().to_owned(),
    )
}

fn import(base: &str, token: &str, car: &[u8]) -> support::http::Reply {
    let auth = format!("Bearer {token}");
    request(
        base,
        "POST",
        "/xrpc/com.atproto.repo.importRepo",
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/vnd.ipld.car"),
        ],
        car,
    )
}

/// The records of the account's exported repository, verified by @atproto/repo against this
/// PDS's signing key.
fn exported_records(base: &str, token: &str, did: &str) -> Value {
    use base64::Engine;
    let auth = format!("Bearer {token}");
    let res = request(
        base,
        "GET",
        &format!("/xrpc/com.atproto.sync.getRepo?did={did}"),
        &[("authorization", auth.as_str())],
        b"",
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    run_node(
        "sync-verify.mjs",
        &json!({
            "did": did,
            "didKey": support::account::signing_key().public_key().to_did_key(),
            "repoCar": base64::engine::general_purpose::STANDARD.encode(&res.body),
            "proofs": [],
        }),
    )
}

/// A service token from `key`, as another PDS's getServiceAuth makes one.
fn service_token(key: &SigningKey, iss: &str, aud: &str, lxm: &str, exp: Option<u64>) -> String {
    let mut input = json!({ "keyHex": key.to_hex(), "iss": iss, "aud": aud, "lxm": lxm });
    if let Some(exp) = exp {
        input["exp"] = exp.into();
    }
    run_node("service-jwt.mjs", &input)["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn create_account(base: &str, token: Option<&str>, body: &Value) -> support::http::Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    request(
        base,
        "POST",
        &format!("/xrpc/{CREATE_ACCOUNT}"),
        &headers,
        body.to_string().as_bytes(),
    )
}

/// A createAccount that must be refused: the case, its token, its body, the status and error.
type Refusal = (&'static str, Option<String>, Value, (u16, &'static str));

fn error_of(res: &support::http::Reply) -> (u16, String) {
    (
        res.status,
        res.json()["error"].as_str().unwrap_or_default().to_owned(),
    )
}

fn an_account_arrives_with_create_account(kind: ShellKind) {
    let plc = PlcDirectory::start();
    // The account as it lives on its old PDS: that PDS's signing key, the user's recovery key.
    let recovery = SigningKey::generate(KeyAlgorithm::K256);
    let old_key = SigningKey::generate(KeyAlgorithm::K256);
    let did = plc.create(
        &json!({
            "rotationKeys": [recovery.public_key().to_did_key()],
            "verificationMethods": { "atproto": old_key.public_key().to_did_key() },
            "alsoKnownAs": [format!("at://{HANDLE}")],
            "services": { "atproto_pds": { "type": "AtprotoPersonalDataServer", "endpoint": "https://old-pds.example.com" } },
        }),
        &recovery,
    );
    let server = support::start_shell(
        kind,
        &[
            (pds::config::vars::DID, did.as_str()),
            (pds::config::vars::PLC_URL, plc.url.as_str()),
        ],
    );
    let base = server.base().to_owned();

    // The deployment waits for its account: deactivated, nothing public.
    let status = get(
        &base,
        &format!("/xrpc/com.atproto.sync.getRepoStatus?did={did}"),
    )
    .json();
    assert_eq!(
        (status["active"].as_bool(), status["status"].as_str()),
        (Some(false), Some("deactivated")),
        "{status}"
    );
    let described = get(
        &base,
        &format!("/xrpc/com.atproto.repo.describeRepo?repo={did}"),
    );
    assert_eq!(error_of(&described), (400, "RepoDeactivated".into()));

    // Refused, each with the reference's answer, and nothing changes.
    let body = json!({ "did": did, "handle": HANDLE, "password": NEW_PASSWORD });
    let valid = || service_token(&old_key, &did, SERVICE_DID, CREATE_ACCOUNT, None);
    let stranger = SigningKey::generate(KeyAlgorithm::K256);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let cases: Vec<Refusal> = vec![
        (
            "no token",
            None,
            body.clone(),
            (401, "AuthenticationRequired"),
        ),
        (
            "no DID",
            Some(valid()),
            json!({ "handle": HANDLE, "password": NEW_PASSWORD }),
            (400, "InvalidRequest"),
        ),
        (
            "another DID",
            Some(valid()),
            json!({ "did": "did:plc:someoneelse234567abcdefg", "handle": HANDLE, "password": NEW_PASSWORD }),
            (400, "InvalidRequest"),
        ),
        (
            "a forged key",
            Some(service_token(
                &stranger,
                &did,
                SERVICE_DID,
                CREATE_ACCOUNT,
                None,
            )),
            body.clone(),
            (401, "BadJwtSignature"),
        ),
        (
            "another audience",
            Some(service_token(
                &old_key,
                &did,
                "did:web:elsewhere.example.com",
                CREATE_ACCOUNT,
                None,
            )),
            body.clone(),
            (401, "BadJwtAudience"),
        ),
        (
            "another method",
            Some(service_token(
                &old_key,
                &did,
                SERVICE_DID,
                "com.atproto.repo.createRecord",
                None,
            )),
            body.clone(),
            (401, "BadJwtLexiconMethod"),
        ),
        (
            "another DID's valid token",
            Some(service_token(
                &stranger,
                "did:plc:someoneelse234567abcdefg",
                SERVICE_DID,
                CREATE_ACCOUNT,
                None,
            )),
            body.clone(),
            (401, "UntrustedIss"),
        ),
        (
            "an expired token",
            Some(service_token(
                &old_key,
                &did,
                SERVICE_DID,
                CREATE_ACCOUNT,
                Some(now - 10),
            )),
            body.clone(),
            (401, "JwtExpired"),
        ),
    ];
    for (case, token, body, want) in cases {
        let res = create_account(&base, token.as_deref(), &body);
        assert_eq!(
            error_of(&res),
            (want.0, want.1.to_owned()),
            "{case}: {:?}",
            res.json()
        );
        assert_eq!(
            sign_in(&base, &did, NEW_PASSWORD).status,
            401,
            "{case} changed the password"
        );
    }
    let (access, _) = support::account::login(&base);

    // The token from the DID's current key: the account is here, with the password it brings.
    let created = create_account(&base, Some(&valid()), &body);
    assert_eq!(created.status, 200, "{:?}", created.json());
    let created = created.json();
    assert_eq!(created["did"], did);
    assert_eq!(created["handle"], HANDLE);
    assert_eq!(created["didDoc"]["id"], did);
    let access_after = created["accessJwt"].as_str().unwrap().to_owned();
    assert!(created["refreshJwt"].is_string());
    assert_eq!(
        sign_in(&base, HANDLE, PASSWORD).status,
        401,
        "the configured password is replaced"
    );
    assert_eq!(sign_in(&base, &did, NEW_PASSWORD).status, 200);
    let stale = xrpc(&base, "GET", "com.atproto.server.getSession", &access, None);
    assert_eq!(
        error_of(&stale),
        (400, "ExpiredToken".into()),
        "sessions of the old password ended"
    );
    let session = xrpc(
        &base,
        "GET",
        "com.atproto.server.getSession",
        &access_after,
        None,
    )
    .json();
    assert_eq!(
        (session["active"].as_bool(), session["status"].as_str()),
        (Some(false), Some("deactivated")),
        "{session}"
    );

    // The repository moves in, from a CAR made by @atproto/repo and signed by the old key.
    // Refused first, each cleanly, the (empty) repository untouched: another DID's, a corrupt
    // block.
    let posts = ["3jzfcijpj2z2a", "3jzfcijpj2z2b", "3jzfcijpj2z2c"];
    let image = pds::data::cid::cid_for_raw(IMAGE).to_string();
    let (car, root, rev) = repo_car(&did, &old_key, &posts, Some(&image));
    let (others, _, _) = repo_car("did:plc:someoneelse234567abcdefg", &old_key, &posts, None);
    let res = import(&base, &access_after, &others);
    assert_eq!(error_of(&res), (400, "InvalidRequest".into()));
    assert!(
        res.json()["message"]
            .as_str()
            .unwrap()
            .contains("commit for did:plc:someoneelse"),
        "{:?}",
        res.json()
    );
    let mut corrupt = car.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let res = import(&base, &access_after, &corrupt);
    assert_eq!(error_of(&res), (400, "InvalidRequest".into()));
    assert!(
        res.json()["message"]
            .as_str()
            .unwrap()
            .contains("Invalid CAR"),
        "{:?}",
        res.json()
    );
    let status = xrpc(
        &base,
        "GET",
        "com.atproto.server.checkAccountStatus",
        &access_after,
        None,
    )
    .json();
    assert_eq!(status["indexedRecords"], 0, "{status}");

    let res = import(&base, &access_after, &car);
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let status = xrpc(
        &base,
        "GET",
        "com.atproto.server.checkAccountStatus",
        &access_after,
        None,
    )
    .json();
    assert_eq!(
        (
            status["indexedRecords"].as_i64(),
            status["expectedBlobs"].as_i64(),
            status["importedBlobs"].as_i64()
        ),
        (Some(3), Some(1), Some(0)),
        "{status}"
    );
    // Signed anew by this PDS, at a later revision.
    assert_ne!(status["repoCommit"].as_str(), Some(root.as_str()));
    assert!(
        status["repoRev"].as_str().unwrap() > rev.as_str(),
        "{status} after {rev}"
    );
    let exported = exported_records(&base, &access_after, &did);
    let paths: Vec<String> = posts
        .iter()
        .map(|r| format!("app.bsky.feed.post/{r}"))
        .collect();
    let got: Vec<&String> = exported["records"].as_object().unwrap().keys().collect();
    assert_eq!(got, paths.iter().collect::<Vec<_>>());

    // Its blobs: what is missing, then uploaded (while deactivated), then nothing.
    let missing = xrpc(
        &base,
        "GET",
        "com.atproto.repo.listMissingBlobs",
        &access_after,
        None,
    );
    assert_eq!(missing.status, 200, "{:?}", missing.json());
    assert_eq!(
        missing.json()["blobs"],
        json!([{ "cid": image, "recordUri": format!("at://{did}/app.bsky.feed.post/{}", posts[0]) }])
    );
    let auth = format!("Bearer {access_after}");
    let uploaded = request(
        &base,
        "POST",
        "/xrpc/com.atproto.repo.uploadBlob",
        &[
            ("authorization", auth.as_str()),
            ("content-type", "image/png"),
        ],
        IMAGE,
    );
    assert_eq!(
        uploaded.status,
        200,
        "{}",
        String::from_utf8_lossy(&uploaded.body)
    );
    assert_eq!(uploaded.json()["blob"]["ref"]["$link"], image);
    let missing = xrpc(
        &base,
        "GET",
        "com.atproto.repo.listMissingBlobs",
        &access_after,
        None,
    )
    .json();
    assert_eq!(missing["blobs"], json!([]), "{missing}");
    let status = xrpc(
        &base,
        "GET",
        "com.atproto.server.checkAccountStatus",
        &access_after,
        None,
    )
    .json();
    assert_eq!(
        (
            status["expectedBlobs"].as_i64(),
            status["importedBlobs"].as_i64()
        ),
        (Some(1), Some(1)),
        "{status}"
    );

    // Imported again after more changes on the old side: one post gone, two new.
    let later = [
        "3jzfcijpj2z2b",
        "3jzfcijpj2z2c",
        "3jzfcijpj2z2d",
        "3jzfcijpj2z2e",
    ];
    let (car, _, _) = repo_car(&did, &old_key, &later, None);
    let res = import(&base, &access_after, &car);
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let exported = exported_records(&base, &access_after, &did);
    let got: Vec<&String> = exported["records"].as_object().unwrap().keys().collect();
    let paths: Vec<String> = later
        .iter()
        .map(|r| format!("app.bsky.feed.post/{r}"))
        .collect();
    assert_eq!(got, paths.iter().collect::<Vec<_>>());
    let status = xrpc(
        &base,
        "GET",
        "com.atproto.server.checkAccountStatus",
        &access_after,
        None,
    )
    .json();
    assert_eq!(
        (
            status["indexedRecords"].as_i64(),
            status["expectedBlobs"].as_i64()
        ),
        (Some(4), Some(0)),
        "{status}"
    );

    // Not yet this PDS's account in the network's eyes: activation waits.
    let status = xrpc(
        &base,
        "GET",
        "com.atproto.server.checkAccountStatus",
        &access_after,
        None,
    )
    .json();
    assert_eq!(
        (status["activated"].as_bool(), status["validDid"].as_bool()),
        (Some(false), Some(false)),
        "{status}"
    );
    let activate = xrpc(
        &base,
        "POST",
        "com.atproto.server.activateAccount",
        &access_after,
        None,
    );
    assert_eq!(
        (activate.status, activate.json()["message"].as_str()),
        (
            400,
            Some("Server rotation key not included in PLC DID data")
        )
    );

    // The old side signs the operation this PDS recommends (the user's recovery key stays
    // first); this PDS checks and submits it.
    let mut op = xrpc(
        &base,
        "GET",
        "com.atproto.identity.getRecommendedDidCredentials",
        &access_after,
        None,
    )
    .json();
    let ours = op["rotationKeys"][0].clone();
    op["rotationKeys"] = json!([recovery.public_key().to_did_key(), ours]);
    op["type"] = "plc_operation".into();
    let (_, last) = plc.get(&format!("/{did}/log/last"));
    let mut unsigned_last = last.clone();
    unsigned_last.as_object_mut().unwrap().remove("sig");
    // The CID of the last operation as the library computes it (the signature is deterministic).
    op["prev"] = sign_with_library(&unsigned_last, &recovery)["cid"].clone();
    let signed = sign_with_library(&op, &recovery)["signed"].clone();
    let submitted = xrpc(
        &base,
        "POST",
        "com.atproto.identity.submitPlcOperation",
        &access_after,
        Some(&json!({ "operation": signed })),
    );
    assert_eq!(submitted.status, 200, "{:?}", submitted.json());
    assert_eq!(plc.verify(&did)["ok"], true);

    let status = xrpc(
        &base,
        "GET",
        "com.atproto.server.checkAccountStatus",
        &access_after,
        None,
    )
    .json();
    assert_eq!(status["validDid"], true, "{status}");
    let activate = xrpc(
        &base,
        "POST",
        "com.atproto.server.activateAccount",
        &access_after,
        None,
    );
    assert_eq!(activate.status, 200, "{:?}", activate.json());
    let status = get(
        &base,
        &format!("/xrpc/com.atproto.sync.getRepoStatus?did={did}"),
    )
    .json();
    assert_eq!(status["active"], true, "{status}");
    let described = get(
        &base,
        &format!("/xrpc/com.atproto.repo.describeRepo?repo={did}"),
    )
    .json();
    assert_eq!(described["handleIsCorrect"], true, "{described}");

    // Active: a live repository is never replaced by an import.
    let res = import(&base, &access_after, &car);
    assert_eq!(
        error_of(&res),
        (400, "InvalidRequest".into()),
        "{:?}",
        res.json()
    );
    assert_eq!(
        exported_records(&base, &access_after, &did)["records"]
            .as_object()
            .unwrap()
            .len(),
        4
    );

    // Here now: a second createAccount, even with a valid token from the DID's current key
    // (this PDS's), would take the account over, and is refused.
    let current = service_token(
        &support::account::signing_key(),
        &did,
        SERVICE_DID,
        CREATE_ACCOUNT,
        None,
    );
    let again = create_account(
        &base,
        Some(&current),
        &json!({ "did": did, "handle": HANDLE, "password": "another-password" }),
    );
    assert_eq!(
        error_of(&again),
        (400, "InvalidRequest".into()),
        "{:?}",
        again.json()
    );
    assert_eq!(sign_in(&base, &did, NEW_PASSWORD).status, 200);
}
