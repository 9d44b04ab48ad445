//! com.atproto.repo through the generated dispatcher, in process: the commit pipeline (signed
//! commits, record index, blob references, sequencer events), validation semantics, swaps,
//! pagination and uploads, over a real SQLite database and blob directory.

mod support;

use std::path::PathBuf;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use pds::account::Account;
use pds::api::{Api, RequestContext};
use pds::auth::{AccessCaller, AccessScope, Caller};
use pds::clock::SystemClock;
use pds::config::Config;
use pds::platform::native::{DirBlobStore, NativeSql};
use pds::repo::Repo;
use pds::storage::{self, SqlBlockStore};
use pds_api::runtime::xrpc::{Body, HttpMethod, Request};
use serde_json::{json, Value as Json};

/// Polls a future that never waits on anything external (SQLite and the blob directory are
/// synchronous) to completion.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

struct Harness {
    config: Config,
    account: Account,
    dir: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn harness(name: &str) -> Harness {
    let dir = std::env::temp_dir().join(format!("pds-repo-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let vars = support::account::vars();
    let config =
        Config::from_lookup(|n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())).unwrap();
    let account = Account::open(
        Box::new(NativeSql::open_in_memory().unwrap()),
        Box::new(DirBlobStore::open(&dir.join("blobs")).unwrap()),
        Box::new(SystemClock),
    );
    account.schema.as_ref().unwrap();
    Harness {
        config,
        account,
        dir,
    }
}

impl Harness {
    fn raw(
        &self,
        method: HttpMethod,
        nsid: &str,
        query: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> (u16, Json) {
        let api = Api {
            config: &self.config,
            account: &self.account,
        };
        // Auth runs before dispatch (the lifecycle); handlers ask the caller for permissions,
        // which the account's own full session holds.
        let cx = RequestContext {
            range: headers
                .iter()
                .find(|(k, _)| k == "range")
                .map(|(_, v)| v.clone()),
            caller: Caller::Access(AccessCaller {
                did: self.did(),
                scope: AccessScope::Full,
                session_id: "test-session".into(),
            }),
            authorization: None,
            subscribers: Some(0),
        };
        let req = Request {
            nsid: nsid.to_owned(),
            method,
            query: query.to_owned(),
            headers,
            body: Body::Bytes(body),
        };
        let res = block_on(pds_api::methods::dispatch(&api, &cx, req));
        let bytes = match res.body {
            Body::Bytes(b) => b,
            Body::Stream(_) => panic!("unexpected stream"),
        };
        let json = if bytes.is_empty() {
            Json::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (res.status, json)
    }

    fn post(&self, nsid: &str, body: Json) -> (u16, Json) {
        self.raw(
            HttpMethod::Post,
            &format!("com.atproto.repo.{nsid}"),
            "",
            vec![("content-type".into(), "application/json".into())],
            serde_json::to_vec(&body).unwrap(),
        )
    }

    fn get(&self, nsid: &str, query: &str) -> (u16, Json) {
        self.raw(
            HttpMethod::Get,
            &format!("com.atproto.repo.{nsid}"),
            query,
            vec![],
            vec![],
        )
    }

    fn did(&self) -> String {
        self.config.did.as_str().to_owned()
    }

    fn head(&self) -> Option<storage::RepoRoot> {
        storage::load_root(self.account.sql.as_ref()).unwrap()
    }

    fn create_post(&self, text: &str) -> Json {
        let (status, out) = self.post(
            "createRecord",
            json!({"repo": self.did(), "collection": "app.bsky.feed.post", "record": post(text)}),
        );
        assert_eq!(status, 200, "{out}");
        out
    }
}

/// Stores the account of `h` with `status`.
fn create_account_row(h: &Harness, status: storage::account::AccountStatus) {
    storage::account::create_account(
        h.account.sql.as_ref(),
        &storage::account::Account {
            did: h.did(),
            handle: Some("alice.test".into()),
            email: None,
            email_confirmed_ms: None,
            password_hash: None,
            status,
            status_changed_ms: None,
            created_ms: 0,
        },
    )
    .unwrap();
}

fn post(text: &str) -> Json {
    json!({"$type": "app.bsky.feed.post", "text": text, "createdAt": "2024-01-01T00:00:00.000Z"})
}

fn assert_error(reply: (u16, Json), status: u16, error: &str, message: &str) {
    assert_eq!(reply.0, status, "{}", reply.1);
    assert_eq!(reply.1["error"], error, "{}", reply.1);
    assert_eq!(reply.1["message"], message, "{}", reply.1);
}

#[test]
fn create_get_list_describe_and_the_stored_commit_agree() {
    let h = harness("flow");
    assert!(h.head().is_none());
    let out = h.create_post("hello");
    assert_eq!(out["validationStatus"], "valid");
    let uri = out["uri"].as_str().unwrap();
    assert!(
        uri.starts_with(&format!("at://{}/app.bsky.feed.post/", h.did())),
        "{uri}"
    );
    let head = h.head().unwrap();
    assert_eq!(out["commit"]["cid"], head.commit_cid.to_string());
    assert_eq!(out["commit"]["rev"], head.rev);

    // The signed repository holds what the index says.
    let rkey = uri.rsplit('/').next().unwrap();
    let store = SqlBlockStore::new(h.account.sql.as_ref());
    let repo = Repo::open(&store, head.commit_cid).unwrap();
    let (cid, _) = repo
        .get_record(&store, "app.bsky.feed.post", rkey)
        .unwrap()
        .unwrap();
    assert_eq!(out["cid"], cid.to_string());
    repo.commit()
        .verify(&h.config.signing_key.public_key())
        .unwrap();

    let (status, got) = h.get(
        "getRecord",
        &format!("repo={}&collection=app.bsky.feed.post&rkey={rkey}", h.did()),
    );
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["value"], post("hello"));
    assert_eq!(got["cid"], out["cid"]);

    // The handle names the repo too.
    let (status, list) = h.get(
        "listRecords",
        "repo=alice.test&collection=app.bsky.feed.post",
    );
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["records"].as_array().unwrap().len(), 1);

    let (status, desc) = h.get("describeRepo", "repo=alice.test");
    assert_eq!(status, 200, "{desc}");
    assert_eq!(desc["did"], h.did());
    assert_eq!(desc["handle"], "alice.test");
    assert_eq!(desc["collections"], json!(["app.bsky.feed.post"]));
    assert_eq!(desc["didDoc"]["id"], h.did());
    assert_eq!(desc["handleIsCorrect"], true);

    // The empty repository was announced with #sync on first use; the commit follows with
    // its ops.
    let events = storage::events_after(h.account.sql.as_ref(), 0, 10).unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["sync", "commit"]);
    let body = pds::data::decode(&events[1].event).unwrap();
    let body = body.as_map().unwrap();
    assert_eq!(body["rev"].as_str(), Some(head.rev.as_str()));
    assert_eq!(body["repo"].as_str(), Some(h.did().as_str()));
    match &body["ops"] {
        pds::data::Value::Array(ops) => assert_eq!(ops.len(), 1),
        other => panic!("ops: {other:?}"),
    }

    // Another commit advances the head and the rev.
    h.create_post("second");
    let next = h.head().unwrap();
    assert!(next.rev > head.rev);
    assert_ne!(next.commit_cid, head.commit_cid);
}

#[test]
fn missing_records_and_foreign_repos_use_the_reference_errors() {
    let h = harness("errors");
    let uri = format!("at://{}/app.bsky.feed.post/3jzfcijpj2z2a", h.did());
    assert_error(
        h.get(
            "getRecord",
            &format!(
                "repo={}&collection=app.bsky.feed.post&rkey=3jzfcijpj2z2a",
                h.did()
            ),
        ),
        400,
        "RecordNotFound",
        &format!("Could not locate record: {uri}"),
    );
    assert_error(
        h.post(
            "createRecord",
            json!({"repo": "bob.test", "collection": "app.bsky.feed.post", "record": post("x")}),
        ),
        403,
        "AccountNotFound",
        "Account not found",
    );
    assert_error(
        h.get("describeRepo", "repo=bob.test"),
        400,
        "RepoNotFound",
        "Could not find repo for DID: bob.test",
    );
    assert_error(
        h.get(
            "listRecords",
            "repo=did:plc:ewvi7nxzyoun6zhxrhs64oiz&collection=app.bsky.feed.post",
        ),
        400,
        "InvalidRequest",
        "Could not find repo: did:plc:ewvi7nxzyoun6zhxrhs64oiz",
    );
    // $type must be the collection.
    let (status, out) = h.post(
        "createRecord",
        json!({"repo": h.did(), "collection": "app.bsky.feed.like", "record": post("x")}),
    );
    assert_eq!(status, 400, "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid $type"),
        "{out}"
    );
    assert!(h.head().is_none(), "a refused write commits nothing");
}

#[test]
fn validate_flag_follows_the_reference() {
    let h = harness("validate");
    let unknown = json!({"$type": "com.example.thing", "n": 1});
    let (status, out) = h.post(
        "createRecord",
        json!({"repo": h.did(), "collection": "com.example.thing", "record": unknown}),
    );
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["validationStatus"], "unknown");
    assert_error(
        h.post(
            "createRecord",
            json!({"repo": h.did(), "collection": "com.example.thing", "record": unknown, "validate": true}),
        ),
        400,
        "InvalidRequest",
        "Unknown lexicon type: com.example.thing",
    );
    let bad = json!({"$type": "app.bsky.feed.post", "text": "no date"});
    let (status, out) = h.post(
        "createRecord",
        json!({"repo": h.did(), "collection": "app.bsky.feed.post", "record": bad}),
    );
    assert_eq!(status, 400, "{out}");
    let (status, out) = h.post(
        "createRecord",
        json!({"repo": h.did(), "collection": "app.bsky.feed.post", "record": bad, "validate": false}),
    );
    assert_eq!(status, 200, "{out}");
    assert!(
        out.get("validationStatus").is_none() || out["validationStatus"].is_null(),
        "{out}"
    );
    // A record without $type gets the collection's.
    let (status, out) = h.post(
        "createRecord",
        json!({"repo": h.did(), "collection": "app.bsky.feed.post",
               "record": {"text": "untyped", "createdAt": "2024-01-01T00:00:00.000Z"}}),
    );
    assert_eq!(status, 200, "{out}");
    let rkey = out["uri"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let (_, got) = h.get(
        "getRecord",
        &format!("repo={}&collection=app.bsky.feed.post&rkey={rkey}", h.did()),
    );
    assert_eq!(got["value"]["$type"], "app.bsky.feed.post");
    // The profile's key is literal:self.
    let (status, out) = h.post(
        "putRecord",
        json!({"repo": h.did(), "collection": "app.bsky.actor.profile", "rkey": "other",
               "record": {"$type": "app.bsky.actor.profile"}}),
    );
    assert_eq!(status, 400, "{out}");
}

#[test]
fn put_delete_and_swaps() {
    let h = harness("swaps");
    let profile = |name: &str| json!({"$type": "app.bsky.actor.profile", "displayName": name});
    let put = |record: Json, extra: Json| {
        let mut body = json!({"repo": h.did(), "collection": "app.bsky.actor.profile", "rkey": "self", "record": record});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        h.post("putRecord", body)
    };
    let (status, first) = put(profile("A"), json!({}));
    assert_eq!(status, 200, "{first}");
    let (status, second) = put(profile("B"), json!({"swapRecord": first["cid"]}));
    assert_eq!(status, 200, "{second}");
    assert_ne!(first["cid"], second["cid"]);
    // The same record again: no commit.
    let head = h.head().unwrap();
    let (status, same) = put(profile("B"), json!({}));
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["cid"], second["cid"]);
    assert!(
        same.get("commit").is_none() || same["commit"].is_null(),
        "{same}"
    );
    assert_eq!(h.head().unwrap(), head);
    // A stale swapRecord names where the record was.
    assert_error(
        put(profile("C"), json!({"swapRecord": first["cid"]})),
        400,
        "InvalidSwap",
        &format!("Record was at {}", second["cid"].as_str().unwrap()),
    );
    // A stale swapCommit names where the commit was.
    let head = h.head().unwrap();
    assert_error(
        put(profile("C"), json!({"swapCommit": first["commit"]["cid"]})),
        400,
        "InvalidSwap",
        &format!("Commit was at {}", head.commit_cid),
    );
    assert_eq!(h.head().unwrap(), head, "refused swaps commit nothing");

    let del = |extra: Json| {
        let mut body =
            json!({"repo": h.did(), "collection": "app.bsky.actor.profile", "rkey": "self"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        h.post("deleteRecord", body)
    };
    assert_error(
        del(json!({"swapRecord": first["cid"]})),
        400,
        "InvalidSwap",
        &format!("Record was at {}", second["cid"].as_str().unwrap()),
    );
    let (status, out) = del(json!({"swapRecord": second["cid"]}));
    assert_eq!(status, 200, "{out}");
    assert!(out["commit"]["cid"].is_string(), "{out}");
    // Deleting what is not there is a no-op without a commit.
    let head = h.head().unwrap();
    let (status, out) = del(json!({}));
    assert_eq!(status, 200, "{out}");
    assert!(
        out.get("commit").is_none() || out["commit"].is_null(),
        "{out}"
    );
    assert_eq!(h.head().unwrap(), head);
    let (status, _) = h.get(
        "getRecord",
        &format!(
            "repo={}&collection=app.bsky.actor.profile&rkey=self",
            h.did()
        ),
    );
    assert_eq!(status, 400);
}

#[test]
fn put_with_null_swap_record_only_creates() {
    let h = harness("null-swap");
    let put = |name: &str, swap: Json| {
        h.post(
            "putRecord",
            json!({"repo": h.did(), "collection": "app.bsky.actor.profile", "rkey": "self",
                   "record": {"$type": "app.bsky.actor.profile", "displayName": name},
                   "swapRecord": swap}),
        )
    };
    // A CID swap on a record that does not exist names where it was: nowhere.
    let missing = "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq";
    assert_error(
        put("A", json!(missing)),
        400,
        "InvalidSwap",
        "Record was at null",
    );
    // `swapRecord: null` = the record must not exist yet: creating passes...
    let (status, first) = put("A", Json::Null);
    assert_eq!(status, 200, "{first}");
    // ...and once it exists, the same write is refused and commits nothing.
    let head = h.head().unwrap();
    assert_error(
        put("B", Json::Null),
        400,
        "InvalidSwap",
        &format!("Record was at {}", first["cid"].as_str().unwrap()),
    );
    assert_eq!(h.head().unwrap(), head, "refused swaps commit nothing");
}

#[test]
fn apply_writes_is_one_commit_all_or_nothing() {
    let h = harness("batch");
    let create = |rkey: &str, text: &str| {
        json!({"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post",
               "rkey": rkey, "value": post(text)})
    };
    let (status, out) = h.post(
        "applyWrites",
        json!({"repo": h.did(), "writes": [create("3jzfcijpj2z2a", "a"), create("3jzfcijpj2z2b", "b")]}),
    );
    assert_eq!(status, 200, "{out}");
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(
        results[0]["$type"],
        "com.atproto.repo.applyWrites#createResult"
    );
    assert_eq!(results[0]["validationStatus"], "valid");
    let events = storage::events_after(h.account.sql.as_ref(), 0, 10).unwrap();
    let commits = events.iter().filter(|e| e.kind == "commit").count();
    assert_eq!(commits, 1, "one commit for the batch");

    // One bad write (update of a missing record) and nothing of the batch is kept.
    let head = h.head().unwrap();
    let (status, out) = h.post(
        "applyWrites",
        json!({"repo": h.did(), "writes": [
            create("3jzfcijpj2z2c", "c"),
            {"$type": "com.atproto.repo.applyWrites#update", "collection": "app.bsky.feed.post",
             "rkey": "3jzfcijpj2z2z", "value": post("z")},
        ]}),
    );
    assert_eq!(status, 400, "{out}");
    assert_eq!(h.head().unwrap(), head);
    let (status, _) = h.get(
        "getRecord",
        &format!(
            "repo={}&collection=app.bsky.feed.post&rkey=3jzfcijpj2z2c",
            h.did()
        ),
    );
    assert_eq!(status, 400);

    let deletes: Vec<Json> = (0..201)
        .map(|_| json!({"$type": "com.atproto.repo.applyWrites#delete", "collection": "app.bsky.feed.post", "rkey": "3jzfcijpj2z2a"}))
        .collect();
    assert_error(
        h.post("applyWrites", json!({"repo": h.did(), "writes": deletes})),
        400,
        "InvalidRequest",
        "Too many writes. Max: 200",
    );
}

#[test]
fn list_records_pages_without_duplicates_or_gaps() {
    let h = harness("pages");
    let mut uris: Vec<String> = (0..25)
        .map(|i| {
            h.create_post(&format!("post {i}"))["uri"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for reverse in [false, true] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = format!("repo={}&collection=app.bsky.feed.post&limit=10", h.did());
            if reverse {
                q.push_str("&reverse=true");
            }
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = h.get("listRecords", &q);
            assert_eq!(status, 200, "{page}");
            for r in page["records"].as_array().unwrap() {
                seen.push(r["uri"].as_str().unwrap().to_owned());
            }
            match page["cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        // Default order is newest first: TID keys created later sort higher.
        let mut expected = uris.clone();
        if !reverse {
            expected.reverse();
        }
        assert_eq!(seen, expected, "reverse={reverse}");
    }
    uris.clear();
    let (status, _) = h.get(
        "listRecords",
        &format!("repo={}&collection=app.bsky.feed.post&limit=101", h.did()),
    );
    assert_eq!(status, 400);
}

#[test]
fn uploaded_blobs_are_sniffed_stored_and_referenced() {
    let h = harness("blobs");
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(std::iter::repeat_n(7u8, 5000));
    let (status, out) = h.raw(
        HttpMethod::Post,
        "com.atproto.repo.uploadBlob",
        "",
        vec![("content-type".into(), "application/octet-stream".into())],
        png.clone(),
    );
    assert_eq!(status, 200, "{out}");
    let blob = out["blob"].clone();
    assert_eq!(blob["$type"], "blob");
    assert_eq!(blob["mimeType"], "image/png");
    assert_eq!(blob["size"], png.len());
    let cid = pds::data::cid_for_raw(&png).to_string();
    assert_eq!(blob["ref"]["$link"], cid);

    let record = json!({"$type": "app.bsky.actor.profile", "avatar": blob});
    let (status, out) = h.post(
        "putRecord",
        json!({"repo": h.did(), "collection": "app.bsky.actor.profile", "rkey": "self", "record": record}),
    );
    assert_eq!(status, 200, "{out}");
    let referenced =
        storage::blobs::list_referenced_blobs(h.account.sql.as_ref(), None, None, 10).unwrap();
    assert_eq!(
        referenced.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        vec![cid]
    );

    // The reference must describe the stored blob, and the lexicon's accept applies.
    let mut wrong = out_blob_with(&blob, "mimeType", json!("image/jpeg"));
    assert_error(
        h.post(
            "putRecord",
            json!({"repo": h.did(), "collection": "app.bsky.actor.profile", "rkey": "self",
                   "record": {"$type": "app.bsky.actor.profile", "avatar": wrong}}),
        ),
        400,
        "InvalidMimeType",
        "Referenced Mimetype does not match stored blob. Expected: image/png, Got: image/jpeg",
    );
    wrong = out_blob_with(&blob, "size", json!(1));
    let (status, out) = h.post(
        "putRecord",
        json!({"repo": h.did(), "collection": "app.bsky.actor.profile", "rkey": "self",
               "record": {"$type": "app.bsky.actor.profile", "avatar": wrong}}),
    );
    assert_eq!(
        (status, out["error"].as_str()),
        (400, Some("InvalidSize")),
        "{out}"
    );
    let (status, text) = h.raw(
        HttpMethod::Post,
        "com.atproto.repo.uploadBlob",
        "",
        vec![("content-type".into(), "text/plain".into())],
        b"just text".to_vec(),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(text["blob"]["mimeType"], "text/plain");
    let (status, out) = h.post(
        "putRecord",
        json!({"repo": h.did(), "collection": "app.bsky.actor.profile", "rkey": "self",
               "record": {"$type": "app.bsky.actor.profile", "avatar": text["blob"]}}),
    );
    assert_eq!(status, 400, "{out}");
    assert!(out["message"].as_str().unwrap().contains("avatar"), "{out}");

    // A reference to a blob never uploaded is refused.
    let missing = "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy";
    let record = json!({"$type": "app.bsky.actor.profile", "avatar":
        {"$type": "blob", "ref": {"$link": missing}, "mimeType": "image/png", "size": 10}});
    assert_error(
        h.post(
            "putRecord",
            json!({"repo": h.did(), "collection": "app.bsky.actor.profile", "rkey": "self", "record": record}),
        ),
        400,
        "BlobNotFound",
        &format!("Could not find blob: {missing}"),
    );
}

#[test]
fn writes_are_refused_while_deactivated() {
    let h = harness("deactivated");
    let db = h.account.sql.as_ref();
    create_account_row(&h, storage::account::AccountStatus::Active);
    let written = h.create_post("while active");
    let rkey = written["uri"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let get_query = format!("repo=alice.test&collection=app.bsky.feed.post&rkey={rkey}");
    assert_eq!(h.get("getRecord", &get_query).0, 200);
    storage::account::set_account_status(db, storage::account::AccountStatus::Deactivated, 1)
        .unwrap();
    // Records of an inactive account are not served, as the reference's getDidForActor finds
    // no such account.
    assert_error(
        h.get("getRecord", &get_query),
        400,
        "InvalidRequest",
        "Could not locate record",
    );
    assert_error(
        h.get(
            "listRecords",
            "repo=alice.test&collection=app.bsky.feed.post",
        ),
        400,
        "InvalidRequest",
        "Could not find repo: alice.test",
    );
    assert_error(
        h.post(
            "createRecord",
            json!({"repo": h.did(), "collection": "app.bsky.feed.post", "record": post("x")}),
        ),
        401,
        "AccountDeactivated",
        "Account is deactivated",
    );
    assert_error(
        h.get("describeRepo", "repo=alice.test"),
        400,
        "RepoDeactivated",
        "Repo has been deactivated: alice.test",
    );
}

fn out_blob_with(blob: &Json, key: &str, value: Json) -> Json {
    let mut b = blob.clone();
    b[key] = value;
    b
}

/// The account of `h` opened again from its database file (as after a crash or an eviction).
fn reopen(h: &mut Harness) {
    h.account = Account::open(
        Box::new(NativeSql::open(&h.dir.join("pds.sqlite")).unwrap()),
        Box::new(DirBlobStore::open(&h.dir.join("blobs")).unwrap()),
        Box::new(SystemClock),
    );
    h.account.schema.as_ref().unwrap();
}

/// The database of `h`'s account.
fn sql(h: &Harness) -> &dyn storage::Sql {
    h.account.sql.as_ref()
}

/// `json` as DAG-CBOR.
fn cbor_of(json: &Json) -> Vec<u8> {
    pds::data::cbor::encode(&pds::data::Value::from_json(json).unwrap())
}

/// A repository of `n` posts for `did`, signed by another host's key: its CAR and root.
fn foreign_repo(did: &str, n: u64, first: u64) -> (Vec<u8>, String) {
    use pds::repo::car::CarWriter;
    use pds::repo::{MemoryBlockStore, WriteOp};
    let key = pds::crypto::SigningKey::generate(pds::crypto::KeyAlgorithm::K256);
    let writes: Vec<WriteOp> = (0..n)
        .map(|i| WriteOp::Create {
            collection: "app.bsky.feed.post".into(),
            rkey: pds_api::runtime::syntax::Tid::from_u64((1 << 52) + first + i)
                .as_str()
                .to_owned(),
            record: cbor_of(&post(&format!("imported {i}"))),
        })
        .collect();
    let store = MemoryBlockStore::new();
    let rev = pds_api::runtime::syntax::Tid::from_u64(1 << 53);
    let (_, out) = Repo::create(&store, did, &writes, &key, rev.as_str()).unwrap();
    let mut car = CarWriter::new(Vec::new(), &out.cid).unwrap();
    for (cid, bytes) in &out.new_blocks {
        car.write_block(cid, bytes).unwrap();
    }
    (car.finish().unwrap(), out.cid.to_string())
}

/// An import's check goes in steps that each leave the repository as it was: interrupted
/// between steps (the account reopened from its file), the repository and its index are the
/// previous ones; a retry goes on where the walk stopped; an import replaced by another is told
/// so; a walk that meets a missing block fails cleanly and drops its work; and the finished
/// import is the account's repository, signed anew.
#[test]
fn an_import_goes_in_steps_that_each_leave_the_repository_whole() {
    use pds::api::import::{ImportDone, WALK_VISITS_PER_STEP};
    let mut h = harness("import-steps");
    reopen(&mut h);
    h.create_post("before the import");
    create_account_row(&h, storage::account::AccountStatus::Deactivated);
    let before = h.head().unwrap();
    let records = |h: &Harness| {
        storage::repo_store::all_records(h.account.sql.as_ref())
            .unwrap()
            .len()
    };
    assert_eq!(records(&h), 1);

    let (car, root) = foreign_repo(&h.did(), 45_000, 0);
    let api = || Api {
        config: &h.config,
        account: &h.account,
    };
    api().stage_import(&car).unwrap();
    let first = ImportDone {
        root: root.clone(),
        walk: None,
    };
    let step = api().import_step(&first).unwrap();
    assert_eq!(
        (step.visited, step.done),
        (WALK_VISITS_PER_STEP as i64, false)
    );

    // Interrupted: the account starts again from its file, the repository untouched.
    reopen(&mut h);
    let api = || Api {
        config: &h.config,
        account: &h.account,
    };
    assert_eq!(h.head().unwrap(), before);
    assert_eq!(records(&h), 1);
    // The same import again goes on where the walk stopped.
    let step = api().import_step(&first).unwrap();
    assert_eq!(step.visited, 2 * WALK_VISITS_PER_STEP as i64);
    let walk = step.walk.clone();

    // Another import starts: it replaces the walk, and the first is told so when it asks.
    let (small, small_root) = foreign_repo(&h.did(), 3, 100_000);
    api().stage_import(&small).unwrap();
    let other = api()
        .import_step(&ImportDone {
            root: small_root,
            walk: None,
        })
        .unwrap();
    assert_ne!(other.walk, walk);
    let replaced = api()
        .import_step(&ImportDone {
            root: root.clone(),
            walk: Some(walk),
        })
        .unwrap_err();
    assert_eq!(replaced.status, 400);
    assert!(
        replaced
            .message
            .contains("Another import replaced this one"),
        "{replaced:?}"
    );
    assert_eq!(h.head().unwrap(), before);

    // The large one, from the start, to the end.
    let mut done = first.clone();
    let mut steps = 0;
    loop {
        let step = api().import_step(&done).unwrap();
        steps += 1;
        if step.done {
            break;
        }
        done.walk = Some(step.walk);
    }
    assert!(steps >= 4, "{steps} steps");
    let head = h.head().unwrap();
    assert_ne!(head.commit_cid.to_string(), root, "signed anew");
    assert!(head.rev > before.rev);
    assert_eq!(records(&h), 45_000);
    let tally = storage::repo_store::tally(sql(&h)).unwrap();
    assert_eq!(tally.records, 45_000);
    assert_eq!(
        storage::import::staged_count(sql(&h)).unwrap(),
        0,
        "the stage is emptied"
    );

    // A repository with a record block missing: the walk fails when it meets it, cleanly,
    // and drops its work; the repository stays the last one imported.
    let (car, root) = foreign_repo(&h.did(), 30_000, 200_000);
    api().stage_import(&car).unwrap();
    // A record the walk meets late: the one with the greatest key.
    let record_cid = {
        let reader = pds::repo::car::CarReader::new(car.as_slice()).unwrap();
        let blocks: Vec<_> = reader.collect::<Result<Vec<_>, _>>().unwrap();
        let wanted = cbor_of(&post("imported 29999"));
        blocks
            .into_iter()
            .find(|(_, bytes)| *bytes == wanted)
            .unwrap()
            .0
    };
    sql(&h)
        .execute(
            "DELETE FROM import_block WHERE cid = ?",
            &[storage::SqlValue::Text(record_cid.to_string())],
        )
        .unwrap();
    let mut done = ImportDone { root, walk: None };
    let failed = loop {
        match api().import_step(&done) {
            Ok(step) => {
                assert!(!step.done, "an import with a missing block finished");
                done.walk = Some(step.walk);
            }
            Err(e) => break e,
        }
    };
    assert_eq!(failed.status, 400);
    assert!(failed.message.contains("Invalid repository"), "{failed:?}");
    assert_eq!(h.head().unwrap(), head);
    assert_eq!(records(&h), 45_000);
    assert!(storage::import::load_walk(sql(&h)).unwrap().is_none());
}
