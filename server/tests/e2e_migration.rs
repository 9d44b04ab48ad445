//! Moving a did:plc account onto this PDS, on both shells, against a real PLC directory: the
//! deployment waits deactivated, createAccount takes the account with a service token from the
//! DID's current key (minted by the reference's createServiceJwt) and refuses every other, the
//! PLC operation names this PDS, and activation waits until the document does.

#[macro_use]
mod support;

use pds::crypto::{KeyAlgorithm, SigningKey};
use serde_json::{json, Value};
use support::account::{sign_in, HANDLE, PASSWORD};
use support::firehose::{assert_verified, consume};
use support::http::{get, request, xrpc};
use support::oracle::run_node;
use support::plc::{sign_with_library, PlcDirectory};
use support::ref_pds::RefPds;
use support::ShellKind;

on_both_kinds!(
    an_account_arrives_with_create_account,
    a_round_trip_with_the_reference_pds,
    pds_migrate_moves_an_account_in_and_resumes
);

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
    repo_car_with(did, key, posts, blob, None)
}

/// [`repo_car`], the last post showing `legacy` in the legacy blob form.
fn repo_car_with(
    did: &str,
    key: &SigningKey,
    posts: &[&str],
    blob: Option<&str>,
    legacy: Option<&str>,
) -> (Vec<u8>, String, String) {
    use base64::Engine;
    let mut input = json!({ "did": did, "keyHex": key.to_hex(), "posts": posts });
    if let Some(blob) = blob {
        input["blobCid"] = blob.into();
    }
    if let Some(legacy) = legacy {
        input["legacyBlobCid"] = legacy.into();
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

/// Posts in [`large_car`]: more nodes and records than one step of an import's walk visits
/// (`pds::api::import::WALK_VISITS_PER_STEP`).
const LARGE_POSTS: u64 = 30_000;

/// The path of post `i` of [`large_car`].
fn large_post_path(i: u64) -> String {
    let rkey = pds_api::runtime::syntax::Tid::from_u64((1 << 52) + i);
    format!("app.bsky.feed.post/{}", rkey.as_str())
}

/// A repository of `n` posts for `did`, signed by `key`, built here (too many for the oracle to
/// build quickly), as a CAR.
fn large_car(did: &str, key: &SigningKey, n: u64) -> Vec<u8> {
    use pds::repo::car::CarWriter;
    use pds::repo::{MemoryBlockStore, Repo, WriteOp};
    #[derive(serde::Serialize)]
    struct Post {
        #[serde(rename = "$type")]
        kind: &'static str,
        text: String,
        #[serde(rename = "createdAt")]
        created_at: &'static str,
    }
    let writes: Vec<WriteOp> = (0..n)
        .map(|i| {
            let path = large_post_path(i);
            let (collection, rkey) = path.split_once('/').unwrap();
            let post = Post {
                kind: "app.bsky.feed.post",
                text: format!("post {i}"),
                created_at: "2026-12-06T00:00:00.000Z",
            };
            WriteOp::Create {
                collection: collection.into(),
                rkey: rkey.into(),
                record: pds::repo::cbor::encode(&post).unwrap(),
            }
        })
        .collect();
    let store = MemoryBlockStore::new();
    let rev = pds_api::runtime::syntax::Tid::from_u64((1 << 53) + n);
    let (_, output) = Repo::create(&store, did, &writes, key, rev.as_str()).unwrap();
    let mut car = CarWriter::new(Vec::new(), &output.cid).unwrap();
    for (cid, bytes) in &output.new_blocks {
        car.write_block(cid, bytes).unwrap();
    }
    car.finish().unwrap()
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

/// checkAccountStatus of the account at `base`.
fn account_status(base: &str, token: &str) -> Value {
    ok(
        xrpc(
            base,
            "GET",
            "com.atproto.server.checkAccountStatus",
            token,
            None,
        ),
        "checkAccountStatus",
    )
}

/// listMissingBlobs of the account at `base`.
fn missing_blobs(base: &str, token: &str) -> Value {
    ok(
        xrpc(
            base,
            "GET",
            "com.atproto.repo.listMissingBlobs",
            token,
            None,
        ),
        "listMissingBlobs",
    )
}

/// The paths of posts with these record keys.
fn post_paths(rkeys: &[&str]) -> Vec<String> {
    rkeys
        .iter()
        .map(|r| format!("app.bsky.feed.post/{r}"))
        .collect()
}

/// The record paths of the account's export, verified as [`exported_records`].
fn exported_paths(base: &str, token: &str, did: &str) -> Vec<String> {
    exported_records(base, token, did)["records"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
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
    let status = account_status(&base, &access_after);
    assert_eq!(status["indexedRecords"], 0, "{status}");

    let res = import(&base, &access_after, &car);
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let status = account_status(&base, &access_after);
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
    assert_eq!(
        exported_paths(&base, &access_after, &did),
        post_paths(&posts)
    );

    // Its blobs: what is missing, then uploaded (while deactivated), then nothing.
    let missing = missing_blobs(&base, &access_after);
    assert_eq!(
        missing["blobs"],
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
    let missing = missing_blobs(&base, &access_after);
    assert_eq!(missing["blobs"], json!([]), "{missing}");
    let status = account_status(&base, &access_after);
    assert_eq!(
        (
            status["expectedBlobs"].as_i64(),
            status["importedBlobs"].as_i64()
        ),
        (Some(1), Some(1)),
        "{status}"
    );

    // A repository larger than one step of the account's walk (its check and indexing go
    // over several calls), replacing the smaller one whole; then the smaller one again.
    let large = large_car(&did, &old_key, LARGE_POSTS);
    let res = import(&base, &access_after, &large);
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let status = account_status(&base, &access_after);
    assert_eq!(
        (
            status["indexedRecords"].as_i64(),
            status["expectedBlobs"].as_i64(),
            status["importedBlobs"].as_i64()
        ),
        (Some(LARGE_POSTS as i64), Some(0), Some(0)),
        "{status}"
    );
    assert!(
        status["repoBlocks"].as_i64().unwrap() > LARGE_POSTS as i64,
        "{status}"
    );
    let exported = exported_paths(&base, &access_after, &did);
    assert_eq!(exported.len() as u64, LARGE_POSTS);
    assert_eq!(
        (exported.first(), exported.last()),
        (
            Some(&large_post_path(0)),
            Some(&large_post_path(LARGE_POSTS - 1))
        )
    );

    // Imported again after more changes on the old side: one post gone, two new.
    let later = [
        "3jzfcijpj2z2b",
        "3jzfcijpj2z2c",
        "3jzfcijpj2z2d",
        "3jzfcijpj2z2e",
    ];
    // The last post is old: its image is in the legacy form, which counts as well.
    let legacy = pds::data::cid::cid_for_raw(b"legacy image").to_string();
    let (car, _, _) = repo_car_with(&did, &old_key, &later, None, Some(&legacy));
    let res = import(&base, &access_after, &car);
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(
        exported_paths(&base, &access_after, &did),
        post_paths(&later)
    );
    let status = account_status(&base, &access_after);
    assert_eq!(
        (
            status["indexedRecords"].as_i64(),
            status["expectedBlobs"].as_i64()
        ),
        (Some(4), Some(1)),
        "{status}"
    );
    assert_eq!(
        missing_blobs(&base, &access_after)["blobs"],
        json!([{ "cid": legacy, "recordUri": format!("at://{did}/app.bsky.feed.post/{}", later[3]) }])
    );

    // Not yet this PDS's account in the network's eyes: activation waits.
    let status = account_status(&base, &access_after);
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

    let status = account_status(&base, &access_after);
    assert_eq!(status["validDid"], true, "{status}");
    // Still deactivated, but the DID now names this PDS's key, which any session here could
    // mint a token with: the account is no longer one to take.
    assert_not_taken_over(&base, &did, "a-takeover-password");
    // A deactivation repeated with a deleteAfter keeps it, until the account is active again.
    ok(
        xrpc(
            &base,
            "POST",
            "com.atproto.server.deactivateAccount",
            &access_after,
            Some(&json!({ "deleteAfter": DELETE_AFTER })),
        ),
        "deactivateAccount again",
    );
    let own = own_status(&base, &access_after);
    assert_eq!(
        (own["status"].as_str(), own["deleteAfter"].as_str()),
        (Some("deactivated"), Some(DELETE_AFTER)),
        "{own}"
    );
    let activate = xrpc(
        &base,
        "POST",
        "com.atproto.server.activateAccount",
        &access_after,
        None,
    );
    assert_eq!(activate.status, 200, "{:?}", activate.json());
    let own = own_status(&base, &access_after);
    assert_eq!(own["status"], "active", "{own}");
    assert!(own.get("deleteAfter").is_none(), "{own}");
    assert!(own["statusChangedAt"].is_string(), "{own}");
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
    assert_not_taken_over(&base, &did, "another-password");
}

/// A createAccount with a valid token from this PDS's key (which any session here could mint)
/// and `password` is refused, and the account's password stays.
fn assert_not_taken_over(base: &str, did: &str, password: &str) {
    let minted_here = service_token(
        &support::account::signing_key(),
        did,
        SERVICE_DID,
        CREATE_ACCOUNT,
        None,
    );
    let res = create_account(
        base,
        Some(&minted_here),
        &json!({ "did": did, "handle": HANDLE, "password": password }),
    );
    assert_eq!(
        error_of(&res),
        (400, "InvalidRequest".into()),
        "{:?}",
        res.json()
    );
    assert_eq!(sign_in(base, did, NEW_PASSWORD).status, 200);
}

/// GETs `path` (with a token when given): status, content type and bytes.
fn fetch(base: &str, path: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let res = request(base, "GET", path, &headers, b"");
    let kind = res.header("content-type").unwrap_or_default().to_owned();
    (res.status, kind, res.body)
}

fn ok(res: support::http::Reply, what: &str) -> Value {
    assert_eq!(
        res.status,
        200,
        "{what}: {}",
        String::from_utf8_lossy(&res.body)
    );
    if res.body.is_empty() {
        Value::Null
    } else {
        res.json()
    }
}

/// The account's posts as a PDS lists them: path -> CID.
fn posts_on(base: &str, did: &str) -> Value {
    let listed = ok(
        get(base, &format!("/xrpc/com.atproto.repo.listRecords?repo={did}&collection=app.bsky.feed.post&limit=100")),
        "listRecords",
    );
    let mut out = serde_json::Map::new();
    for record in listed["records"].as_array().unwrap() {
        let uri = record["uri"].as_str().unwrap();
        let path = uri.splitn(4, '/').nth(3).unwrap().to_owned();
        out.insert(path, record["cid"].clone());
    }
    Value::Object(out)
}

/// Moves the account's repository, blobs and preferences from `from` to `to` (each a base and
/// a token), the goat way: getRepo -> importRepo, listMissingBlobs -> getBlob -> uploadBlob,
/// getPreferences -> putPreferences.
fn move_data(did: &str, (from, from_token): (&str, &str), (to, to_token): (&str, &str)) {
    let (status, _, car) = fetch(
        from,
        &format!("/xrpc/com.atproto.sync.getRepo?did={did}"),
        Some(from_token),
    );
    assert_eq!(status, 200, "getRepo");
    ok(import(to, to_token, &car), "importRepo");
    let missing = missing_blobs(to, to_token);
    let blobs = missing["blobs"].as_array().unwrap().clone();
    assert!(!blobs.is_empty(), "the image is missing after the import");
    for blob in blobs {
        let cid = blob["cid"].as_str().unwrap();
        let (status, kind, bytes) = fetch(
            from,
            &format!("/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}"),
            Some(from_token),
        );
        assert_eq!(status, 200, "getBlob {cid}");
        let auth = format!("Bearer {to_token}");
        let uploaded = ok(
            request(
                to,
                "POST",
                "/xrpc/com.atproto.repo.uploadBlob",
                &[
                    ("authorization", auth.as_str()),
                    ("content-type", kind.as_str()),
                ],
                &bytes,
            ),
            "uploadBlob",
        );
        assert_eq!(uploaded["blob"]["ref"]["$link"], cid);
    }
    let missing = missing_blobs(to, to_token);
    assert_eq!(missing["blobs"], json!([]));
    let prefs = ok(
        xrpc(
            from,
            "GET",
            "app.bsky.actor.getPreferences",
            from_token,
            None,
        ),
        "getPreferences",
    );
    ok(
        xrpc(
            to,
            "POST",
            "app.bsky.actor.putPreferences",
            to_token,
            Some(&prefs),
        ),
        "putPreferences",
    );
}

/// The recommended credentials of `base`, with a PLC token, as signPlcOperation's input.
fn plc_input(base: &str, token: &str, plc_token: &str) -> Value {
    let mut input = ok(
        xrpc(
            base,
            "GET",
            "com.atproto.identity.getRecommendedDidCredentials",
            token,
            None,
        ),
        "getRecommendedDidCredentials",
    );
    input["token"] = plc_token.into();
    input
}

/// An account born on the reference PDS.
struct Born {
    did: String,
    /// A session's access token there.
    token: String,
    /// The image the first post shows.
    blob: Value,
    /// Its posts, by path (see [`posts_on`]).
    posts: Value,
    /// Its preferences.
    prefs: Value,
}

/// Creates an account on the reference PDS at `old`, with three posts (the first showing
/// [`IMAGE`]), `photos` more posts each showing a photo of its own (256 KiB), and preferences.
fn born_on_reference(old: &str, password: &str, email: &str, photos: usize) -> Born {
    let born = ok(
        support::http::post_json(
            old,
            "/xrpc/com.atproto.server.createAccount",
            &json!({ "handle": HANDLE, "email": email, "password": password }),
        ),
        "createAccount on the reference",
    );
    let did = born["did"].as_str().unwrap().to_owned();
    let token = born["accessJwt"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {token}");
    let upload = |bytes: &[u8]| {
        ok(
            request(
                old,
                "POST",
                "/xrpc/com.atproto.repo.uploadBlob",
                &[
                    ("authorization", auth.as_str()),
                    ("content-type", "image/png"),
                ],
                bytes,
            ),
            "uploadBlob",
        )["blob"]
            .clone()
    };
    let blob = upload(IMAGE);
    let create = |post: Value| {
        ok(
            xrpc(
                old,
                "POST",
                "com.atproto.repo.createRecord",
                &token,
                Some(&json!({ "repo": did, "collection": "app.bsky.feed.post", "record": post })),
            ),
            "createRecord",
        );
    };
    let with_image = |text: &str, image: &Value| {
        json!({ "$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-12-06T10:00:00.000Z",
                "embed": { "$type": "app.bsky.embed.images", "images": [{ "alt": "", "image": image }] } })
    };
    for (i, text) in ["first", "second", "third"].iter().enumerate() {
        if i == 0 {
            create(with_image(text, &blob));
        } else {
            create(
                json!({ "$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-12-06T10:00:00.000Z" }),
            );
        }
    }
    for i in 0..photos {
        let mut photo = IMAGE.to_vec();
        photo.extend((0..256 * 1024).map(|j: usize| (j * 31 + i * 7) as u8));
        create(with_image(&format!("photo {i}"), &upload(&photo)));
    }
    let prefs = json!({ "preferences": [{ "$type": "app.bsky.actor.defs#adultContentPref", "enabled": false }] });
    ok(
        xrpc(
            old,
            "POST",
            "app.bsky.actor.putPreferences",
            &token,
            Some(&prefs),
        ),
        "putPreferences",
    );
    let posts = posts_on(old, &did);
    assert_eq!(posts.as_object().unwrap().len(), 3 + photos);
    Born {
        did,
        token,
        blob,
        posts,
        prefs,
    }
}

/// An account born on the reference PDS moves here the standard way (goat's steps), is
/// checked (the PLC log names this PDS, the export verifies with this PDS's key, every record,
/// blob and preference is here, the firehose announces it, the old account is deactivated), and
/// moves back the same way.
fn a_round_trip_with_the_reference_pds(kind: ShellKind) {
    const REF_PASSWORD: &str = "password-on-the-reference";
    const EMAIL: &str = "alice@example.com";
    let plc = PlcDirectory::start();
    let reference = RefPds::start(&plc.url);
    let old = reference.base.clone();

    // Born there, with posts (one showing an image) and preferences.
    let Born {
        did,
        token: old_token,
        blob,
        posts,
        prefs,
    } = born_on_reference(&old, REF_PASSWORD, EMAIL, 0);

    // This PDS, waiting for the account.
    let server = support::start_shell(
        kind,
        &[
            (pds::config::vars::DID, did.as_str()),
            (pds::config::vars::PLC_URL, plc.url.as_str()),
        ],
    );
    let base = server.base().to_owned();

    // In: the account, its data, its identity.
    let service = ok(
        xrpc(
            &old,
            "GET",
            &format!("com.atproto.server.getServiceAuth?aud={SERVICE_DID}&lxm={CREATE_ACCOUNT}"),
            &old_token,
            None,
        ),
        "getServiceAuth on the reference",
    );
    let created = ok(
        create_account(
            &base,
            service["token"].as_str(),
            &json!({ "did": did, "handle": HANDLE, "password": NEW_PASSWORD }),
        ),
        "createAccount here",
    );
    let token = created["accessJwt"].as_str().unwrap().to_owned();
    move_data(&did, (&old, &old_token), (&base, &token));
    ok(
        xrpc(
            &old,
            "POST",
            "com.atproto.identity.requestPlcOperationSignature",
            &old_token,
            None,
        ),
        "requestPlcOperationSignature",
    );
    let input = plc_input(&base, &token, &reference.plc_token(&did));
    let signed = ok(
        xrpc(
            &old,
            "POST",
            "com.atproto.identity.signPlcOperation",
            &old_token,
            Some(&input),
        ),
        "signPlcOperation on the reference",
    );
    hand_over(&signed["operation"], (&base, &token), (&old, &old_token));

    // Checked: the PLC log, the repository, the blob, the preferences, both accounts' states.
    let log = plc.verify(&did);
    assert_eq!(log["ok"], true, "{log}");
    assert_eq!(
        log["data"]["services"]["atproto_pds"]["endpoint"],
        "http://localhost"
    );
    assert_eq!(log["data"]["rotationKeys"], input["rotationKeys"]);
    assert_eq!(
        log["data"]["verificationMethods"]["atproto"],
        support::account::signing_key().public_key().to_did_key()
    );
    assert_eq!(posts_on(&base, &did), posts, "every record, with its CID");
    let exported = exported_records(&base, &token, &did);
    assert_eq!(exported["records"].as_object().unwrap().len(), 3);
    let image = blob["ref"]["$link"].as_str().unwrap();
    assert_moved_here((&base, &token), &old, &did, image, &prefs);
    // The firehose announces the account with the re-signed head; every commit it carries
    // verifies with this PDS's key.
    let stream = consume(&input_for(
        &base,
        json!({ "idleMs": 1500, "timeoutMs": 60000 }),
    ));
    assert_verified(&stream);
    let kinds: Vec<&str> = stream["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        kinds.ends_with(&["#account", "#identity", "#sync"]),
        "{kinds:?}"
    );

    // Back out: the reference takes the account again (its old copy removed first: it never
    // takes a DID it holds), with a token from this PDS and an operation this PDS signs.
    let admin = {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("admin:{}", reference.admin_password))
        )
    };
    ok(
        request(
            &old,
            "POST",
            "/xrpc/com.atproto.admin.deleteAccount",
            &[
                ("authorization", admin.as_str()),
                ("content-type", "application/json"),
            ],
            json!({ "did": did }).to_string().as_bytes(),
        ),
        "deleteAccount there",
    );
    let service = ok(
        xrpc(
            &base,
            "GET",
            // Query-encoded: the service DID holds a `%3A`.
            &format!(
                "com.atproto.server.getServiceAuth?aud={}&lxm={CREATE_ACCOUNT}",
                reference.did.replace('%', "%25")
            ),
            &token,
            None,
        ),
        "getServiceAuth here",
    );
    let auth = format!("Bearer {}", service["token"].as_str().unwrap());
    let back = ok(
        request(
            &old,
            "POST",
            "/xrpc/com.atproto.server.createAccount",
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            json!({ "did": did, "handle": HANDLE, "email": EMAIL, "password": REF_PASSWORD })
                .to_string()
                .as_bytes(),
        ),
        "createAccount on the reference",
    );
    let old_token = back["accessJwt"].as_str().unwrap().to_owned();
    move_data(&did, (&base, &token), (&old, &old_token));
    let plc_token = ok(
        xrpc(
            &base,
            "POST",
            "dev.rustpds.identity.getPlcOperationToken",
            &token,
            Some(&json!({ "password": NEW_PASSWORD })),
        ),
        "getPlcOperationToken",
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let input = plc_input(&old, &old_token, &plc_token);
    let signed = ok(
        xrpc(
            &base,
            "POST",
            "com.atproto.identity.signPlcOperation",
            &token,
            Some(&input),
        ),
        "signPlcOperation here",
    );
    hand_over(&signed["operation"], (&old, &old_token), (&base, &token));

    let log = plc.verify(&did);
    assert_eq!(log["ok"], true, "{log}");
    assert_eq!(
        log["data"]["services"]["atproto_pds"]["endpoint"],
        reference.base.replace("127.0.0.1", "localhost")
    );
    assert_eq!(posts_on(&old, &did), posts, "every record is back");
    let (status, _, bytes) = fetch(
        &old,
        &format!("/xrpc/com.atproto.sync.getBlob?did={did}&cid={image}"),
        None,
    );
    assert_eq!((status, bytes.as_slice()), (200, IMAGE));
    let status = repo_status(&base, &did);
    assert_eq!(status["active"], false, "{status}");
    // The deleteAfter this side's deactivation was given is kept and shown to the owner.
    let own = own_status(&base, &token);
    assert_eq!(
        (own["status"].as_str(), own["deleteAfter"].as_str()),
        (Some("deactivated"), Some(DELETE_AFTER)),
        "{own}"
    );
}

/// The `deleteAfter` the old side's deactivation is given.
const DELETE_AFTER: &str = "2027-01-05T00:00:00.000Z";

/// dev.rustpds.server.getAccountStatus at `base`.
fn own_status(base: &str, token: &str) -> Value {
    ok(
        xrpc(
            base,
            "GET",
            "dev.rustpds.server.getAccountStatus",
            token,
            None,
        ),
        "getAccountStatus",
    )
}

/// The account `did` is at `base` (a session's `token` there): the blob `image` is served,
/// the preferences are `prefs`; and the old PDS at `old` has it deactivated.
fn assert_moved_here(
    (base, token): (&str, &str),
    old: &str,
    did: &str,
    image: &str,
    prefs: &Value,
) {
    let (status, _, bytes) = fetch(
        base,
        &format!("/xrpc/com.atproto.sync.getBlob?did={did}&cid={image}"),
        None,
    );
    assert_eq!((status, bytes.as_slice()), (200, IMAGE));
    assert_eq!(
        &ok(
            xrpc(base, "GET", "app.bsky.actor.getPreferences", token, None),
            "getPreferences"
        ),
        prefs
    );
    let there = repo_status(old, did);
    assert_eq!(there["active"], false, "{there}");
}

/// Hands the account over with a signed PLC operation: submitted on the new PDS, which then
/// activates the account; the old one deactivates it. Each side is a base URL and a token.
fn hand_over(operation: &Value, (new, new_token): (&str, &str), (old, old_token): (&str, &str)) {
    let submit = json!({ "operation": operation });
    let steps = [
        (
            new,
            new_token,
            "com.atproto.identity.submitPlcOperation",
            Some(submit),
        ),
        (new, new_token, "com.atproto.server.activateAccount", None),
        (
            old,
            old_token,
            "com.atproto.server.deactivateAccount",
            Some(json!({ "deleteAfter": DELETE_AFTER })),
        ),
    ];
    for (base, token, nsid, body) in steps {
        ok(xrpc(base, "POST", nsid, token, body.as_ref()), nsid);
    }
}

/// The firehose consumer's input for this PDS from the start, checking commits with this PDS's
/// key.
fn input_for(base: &str, stop: Value) -> Value {
    support::firehose::input(&support::firehose::url(base, Some("0")), stop)
}

/// `pds migrate` with the arguments every run here shares, its passwords in the environment.
fn migrate_command(base: &str, old: &str, plc: &str, did: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pds"));
    command
        .args(["migrate", "--from", did, "--url", base, "--old-pds", old])
        .args(["--plc-url", plc])
        .env("PDS_OLD_PASSWORD", "password-on-the-reference")
        .env("PDS_PASSWORD", NEW_PASSWORD)
        .env_remove("PDS_URL")
        .env_remove("PDS_PLC_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command
}

/// `com.atproto.sync.getRepoStatus` of `did` at `base`.
fn repo_status(base: &str, did: &str) -> Value {
    ok(
        get(
            base,
            &format!("/xrpc/com.atproto.sync.getRepoStatus?did={did}"),
        ),
        "getRepoStatus",
    )
}

/// The lines a child writes on standard error, as they come.
fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// The next line on `lines` that contains `wanted` (panics after a minute, showing the rest).
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, wanted: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(wanted) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no line with {wanted:?}; saw:\n{}", seen.join("\n"));
}

/// `pds migrate` moves an account from the reference PDS: interrupted during the blob transfer
/// (the process killed), run again, it goes on where it stopped, reads the PLC token from its
/// prompt, activates the account here and deactivates it there; a third run finds nothing to
/// do. Everything is then checked as the step-by-step migration is.
fn pds_migrate_moves_an_account_in_and_resumes(kind: ShellKind) {
    const PHOTOS: usize = 12;
    let plc = PlcDirectory::start();
    let reference = RefPds::start(&plc.url);
    let old = reference.base.clone();
    let Born {
        did,
        blob,
        posts,
        prefs,
        ..
    } = born_on_reference(
        &old,
        "password-on-the-reference",
        "alice@example.com",
        PHOTOS,
    );
    let server = support::start_shell(
        kind,
        &[
            (pds::config::vars::DID, did.as_str()),
            (pds::config::vars::PLC_URL, plc.url.as_str()),
        ],
    );
    let base = server.base().to_owned();

    // A dry run says what would move, bytes included, and moves nothing.
    let dry = migrate_command(&base, &old, &plc.url, &did)
        .arg("--dry-run")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&dry.stderr);
    assert!(dry.status.success(), "{said}");
    let cids = support::http::get(
        &old,
        &format!("/xrpc/com.atproto.sync.listBlobs?did={did}&limit=1000"),
    )
    .json()["cids"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(cids.len(), 1 + PHOTOS);
    let bytes: usize = cids
        .iter()
        .map(|cid| {
            support::http::get(
                &old,
                &format!(
                    "/xrpc/com.atproto.sync.getBlob?did={did}&cid={}",
                    cid.as_str().unwrap()
                ),
            )
            .body
            .len()
        })
        .sum();
    assert!(
        said.contains(&format!("and {} blobs of {bytes} bytes (", 1 + PHOTOS)),
        "{said}"
    );
    assert!(said.contains("would move "), "{said}");
    // Nothing moved: the account does not exist here yet.
    assert_eq!(sign_in(&base, &did, NEW_PASSWORD).status, 401);

    // Interrupted once the first blob is across.
    let mut first = migrate_command(&base, &old, &plc.url, &did)
        .args(["--keep-old", "--parallel", "1"])
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut first);
    wait_for_line(&lines, "repository imported");
    wait_for_line(&lines, "blob 1/");
    first.kill().unwrap();
    first.wait().unwrap();
    let token = ok(sign_in(&base, &did, NEW_PASSWORD), "createSession")["accessJwt"]
        .as_str()
        .unwrap()
        .to_owned();
    let missing = missing_blobs(&base, &token)["blobs"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        (1..=PHOTOS).contains(&missing),
        "{missing} blobs missing after the interruption"
    );
    let status = account_status(&base, &token);
    assert_eq!(status["activated"], false, "{status}");

    // Again, 8 blobs at once, on a terminal: it goes on with a progress bar, asks for the
    // token the old PDS mailed, and asks before deactivating the old account.
    let second = migrate_command(&base, &old, &plc.url, &did);
    let mut command = std::process::Command::new(second.get_program());
    command.args(second.get_args()).args(["--parallel", "8"]);
    for (name, value) in second.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    use expectrl::Expect;
    let mut tty = expectrl::Session::spawn(command).unwrap();
    tty.set_expect_timeout(Some(std::time::Duration::from_secs(120)));
    let mut seen = Vec::new();
    let mut expect = |tty: &mut expectrl::session::OsSession, what: &str| {
        let found = tty
            .expect(what)
            .unwrap_or_else(|e| panic!("{what:?} not seen: {e}"));
        seen.extend_from_slice(found.before());
        seen.extend_from_slice(found.get(0).unwrap_or_default());
    };
    expect(&mut tty, "the account exists here already");
    expect(&mut tty, "repository: already imported");
    expect(
        &mut tty,
        &format!("blobs: {missing} to transfer, 8 at a time"),
    );
    // The bar, drawn on the terminal, reaches the end.
    expect(&mut tty, &format!("{missing}/{missing} blobs"));
    // This PDS does not throttle a migration's parallel uploads: nothing was tried again.
    expect(&mut tty, &format!("blobs: {missing} transferred"));
    expect(&mut tty, ", 0 retries");
    expect(&mut tty, "preferences copied");
    expect(&mut tty, "The old PDS emailed a PLC token; enter it: ");
    let plc_token = reference
        .try_plc_token(&did)
        .expect("the old PDS was asked for a PLC token");
    tty.send_line(&plc_token).unwrap();
    expect(
        &mut tty,
        "identity: the PLC operation naming this PDS is submitted",
    );
    expect(&mut tty, "activated here");
    expect(
        &mut tty,
        "Deactivate the account on the old PDS now? [y/N] ",
    );
    tty.send_line("y").unwrap();
    expect(&mut tty, "deactivated on the old PDS");
    expect(&mut tty, "Migrated in");
    tty.expect(expectrl::Eof).unwrap();
    let seen = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        !seen.contains("password-on-the-reference") && !seen.contains(NEW_PASSWORD),
        "a password was shown:\n{seen}"
    );

    // Checked as the step-by-step migration is.
    let log = plc.verify(&did);
    assert_eq!(log["ok"], true, "{log}");
    assert_eq!(
        log["data"]["services"]["atproto_pds"]["endpoint"],
        "http://localhost"
    );
    assert_eq!(posts_on(&base, &did), posts, "every record, with its CID");
    let token = ok(sign_in(&base, &did, NEW_PASSWORD), "createSession")["accessJwt"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = account_status(&base, &token);
    assert_eq!(
        (
            status["activated"].as_bool(),
            status["validDid"].as_bool(),
            status["expectedBlobs"].as_i64(),
            status["importedBlobs"].as_i64()
        ),
        (
            Some(true),
            Some(true),
            Some(1 + PHOTOS as i64),
            Some(1 + PHOTOS as i64)
        ),
        "{status}"
    );
    let image = blob["ref"]["$link"].as_str().unwrap();
    assert_moved_here((&base, &token), &old, &did, image, &prefs);

    // A third run finds the account moved.
    let third = migrate_command(&base, &old, &plc.url, &did)
        .arg("--keep-old")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&third.stderr);
    assert!(third.status.success(), "{said}");
    assert!(said.contains("already active here"), "{said}");
    assert!(
        said.contains("already deactivated on the old PDS"),
        "{said}"
    );

    // And back: `pds migrate-out` from this PDS to the reference, where the deactivated
    // account still is. This PDS mails nothing: the token is read from it directly.
    let back = std::process::Command::new(env!("CARGO_BIN_EXE_pds"))
        .args([
            "migrate-out",
            "--url",
            &base,
            "--identifier",
            &did,
            "--to",
            &old,
        ])
        .args(["--plc-url", &plc.url, "--deactivate-old"])
        .env("PDS_PASSWORD", NEW_PASSWORD)
        .env("PDS_NEW_PASSWORD", "password-on-the-reference")
        .env_remove("PDS_URL")
        .env_remove("PDS_PLC_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&back.stderr);
    assert!(back.status.success(), "{said}");
    assert!(
        said.contains("the PLC token comes straight from the old PDS"),
        "{said}"
    );
    let log = plc.verify(&did);
    assert_eq!(log["ok"], true, "{log}");
    assert_eq!(
        log["data"]["services"]["atproto_pds"]["endpoint"],
        reference.base.replace("127.0.0.1", "localhost")
    );
    assert_eq!(posts_on(&old, &did), posts, "every record is back");
    let old_status = repo_status(&old, &did);
    assert_eq!(old_status["active"], true, "{old_status}");
    let here = repo_status(&base, &did);
    assert_eq!(here["active"], false, "{here}");
}

/// `pds migrate` on a terminal, against an old PDS (played) that requires an emailed sign-in
/// code: it asks for the password without echoing it, then for the code, signs in with it, and
/// (a dry run) says what would move.
#[test]
fn migrate_asks_for_the_password_and_the_emailed_code_on_a_terminal() {
    use expectrl::{Eof, Expect};
    use support::fake_service::{FakeService, Reply};
    const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
    const TYPED: &str = "typed-on-the-terminal";
    const CODE: &str = "ABCDE-12345";
    let old = FakeService::start(|call| match call.path.as_str() {
        p if p == format!("/{DID}") => Reply::json(
            200,
            json!({
                "id": DID,
                "alsoKnownAs": ["at://alice.example.com"],
                "verificationMethod": [],
                "service": [],
            }),
        ),
        "/xrpc/com.atproto.server.createSession" => {
            let body: Value = serde_json::from_slice(&call.body).unwrap_or_default();
            if body["password"] != TYPED {
                Reply::json(
                    401,
                    json!({ "error": "AuthenticationRequired", "message": "Invalid identifier or password" }),
                )
            } else if body["authFactorToken"] != CODE {
                Reply::json(
                    401,
                    json!({ "error": "AuthFactorTokenRequired", "message": "A sign in code has been sent to your email address" }),
                )
            } else {
                Reply::json(
                    200,
                    json!({
                        "did": DID, "handle": "alice.example.com",
                        "accessJwt": "access.token.here", "refreshJwt": "refresh.token.here",
                    }),
                )
            }
        }
        "/xrpc/com.atproto.server.checkAccountStatus" => Reply::json(
            200,
            json!({
                "activated": true, "validDid": true, "repoCommit": "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
                "repoRev": "3kabcdefghijk", "repoBlocks": 9, "indexedRecords": 4,
                "privateStateValues": 0, "expectedBlobs": 0, "importedBlobs": 0,
            }),
        ),
        "/xrpc/com.atproto.sync.listBlobs" => Reply::json(200, json!({ "cids": [] })),
        _ => Reply::json(200, json!({})),
    });
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pds"));
    command
        .args(["migrate", "--from", DID, "--dry-run"])
        .args(["--old-pds", &old.url, "--plc-url", &old.url])
        .args(["--url", "http://127.0.0.1:9"])
        .env_remove("PDS_OLD_PASSWORD")
        .env_remove("PDS_PASSWORD")
        .env_remove("PDS_URL");
    let mut tty = expectrl::Session::spawn(command).unwrap();
    tty.set_expect_timeout(Some(std::time::Duration::from_secs(60)));
    let mut seen = Vec::new();
    for (prompt, answer) in [
        ("Password on the old PDS: ", TYPED),
        ("The old PDS emailed a sign-in code; enter it: ", CODE),
    ] {
        let found = tty.expect(prompt).unwrap();
        seen.extend_from_slice(found.before());
        tty.send_line(answer).unwrap();
    }
    let done = tty
        .expect("would move 4 records (9 repository blocks) and 0 blobs of 0 bytes")
        .unwrap();
    seen.extend_from_slice(done.before());
    tty.expect(Eof).unwrap();
    let seen = String::from_utf8_lossy(&seen).into_owned();
    assert!(!seen.contains(TYPED), "the password was echoed:\n{seen}");
    let sessions: Vec<Value> = old
        .calls()
        .iter()
        .filter(|c| c.path == "/xrpc/com.atproto.server.createSession")
        .map(|c| serde_json::from_slice(&c.body).unwrap())
        .collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[0]["authFactorToken"], Value::Null);
    assert_eq!(sessions[1]["authFactorToken"], CODE);
    assert_eq!(sessions[1]["identifier"], DID);
}
