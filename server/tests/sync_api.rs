//! com.atproto.sync over HTTP on the native shell, with a repository written through the repo
//! core and storage directly (the write endpoints live on another branch): getRepo verified by
//! the reference npm library (@atproto/repo), `since` diffs, record proofs of presence and
//! absence, blocks, commits, statuses, blob listing and serving, and the errors clients match on.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use cid::Cid;
use pds::account::Account;
use pds::config::Config;
use pds::data::{encode, Map, Value};
use pds::repo::car::CarReader;
use pds::repo::commit::Commit;
use pds::repo::{Repo, WriteOp};
use pds::storage::blobs::{insert_blob_metadata, BlobMetadata, IterChunks};
use pds::storage::repo_store::RecordBlobs;
use pds::storage::{persist_commit, SqlBlockStore};
use support::http::{get, request};
use support::worker::TempDir;

const POSTS: &str = "app.bsky.feed.post";
const BLOB: &[u8] = b"\x89PNG\r\n\x1a\n not really a picture, but bytes all the same";

fn config() -> Config {
    let vars = support::account::vars();
    Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .unwrap()
}

fn post(n: usize) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("$type".into(), Value::String(POSTS.into()));
    m.insert("text".into(), Value::String(format!("post {n}")));
    m.insert(
        "createdAt".into(),
        Value::String("2025-01-01T00:00:00.000Z".into()),
    );
    encode(&Value::Map(m))
}

/// Applies `writes` on the stored head and persists the commit with its event; returns its rev.
fn commit(account: &Account, config: &Config, writes: &[WriteOp], blobs: &RecordBlobs) -> String {
    let db = account.sql.as_ref();
    let root = account.head(config).unwrap();
    let store = SqlBlockStore::new(db);
    let repo = Repo::open(&store, root.commit_cid).unwrap();
    let rev = account.tids.borrow_mut().next(account.clock.as_ref());
    let (_, output) = repo
        .apply_writes(&store, writes, &config.signing_key, rev.as_str())
        .unwrap();
    let event = pds::firehose::commit_event(&config.did, &output, 0).unwrap();
    persist_commit(db, &output, blobs, &event.new_event(0)).unwrap();
    rev.as_str().to_owned()
}

/// A native server over a repository of two commits (`first_rev`, then a second one), one
/// uploaded blob referenced by a record of the first.
struct Seeded {
    base: String,
    _data: TempDir,
    first_rev: String,
    /// `collection/rkey` -> record CID, as the repository holds them now.
    records: BTreeMap<String, Cid>,
    deleted: String,
    blob: Cid,
}

fn seeded() -> Seeded {
    let config = config();
    let data = TempDir::new("pds-sync-api");
    let account = pds::platform::native::open_account(&data.0).unwrap();
    let stored = futures_executor::block_on(
        account
            .blobs
            .put(&mut IterChunks(std::iter::once(BLOB.to_vec())), 1 << 20),
    )
    .unwrap();
    insert_blob_metadata(
        account.sql.as_ref(),
        &BlobMetadata {
            cid: stored.cid,
            mime_type: "image/png".into(),
            size: stored.size,
            created_ms: 0,
            unreferenced_since_ms: None,
        },
    )
    .unwrap();

    let rkey = |n: usize| format!("3l{n:011}");
    let creates = |range: std::ops::Range<usize>| -> Vec<WriteOp> {
        range
            .map(|n| WriteOp::Create {
                collection: POSTS.into(),
                rkey: rkey(n),
                record: post(n),
            })
            .collect()
    };
    let mut blobs = RecordBlobs::new();
    blobs.insert(format!("{POSTS}/{}", rkey(0)), vec![stored.cid]);
    let first_rev = commit(&account, &config, &creates(0..40), &blobs);
    let mut second = creates(40..50);
    second.push(WriteOp::Delete {
        collection: POSTS.into(),
        rkey: rkey(1),
    });
    commit(&account, &config, &second, &RecordBlobs::new());

    let records = (0..50)
        .filter(|n| *n != 1)
        .map(|n| {
            let path = format!("{POSTS}/{}", rkey(n));
            (path, pds::data::cid_for_cbor(&post(n)))
        })
        .collect();
    drop(account);
    let addr =
        pds::platform::native::spawn("127.0.0.1:0".parse().unwrap(), Ok(config), data.0.clone())
            .unwrap();
    Seeded {
        base: format!("http://{addr}"),
        _data: data,
        first_rev,
        records,
        deleted: format!("{POSTS}/{}", rkey(1)),
        blob: stored.cid,
    }
}

/// The blocks of a CAR by CID, and its root.
fn read_car(bytes: &[u8]) -> (Cid, BTreeMap<Cid, Vec<u8>>) {
    let mut reader = CarReader::new(bytes).unwrap();
    assert_eq!(reader.roots().len(), 1);
    let root = reader.roots()[0];
    let mut blocks = BTreeMap::new();
    while let Some((cid, data)) = reader.next_block().unwrap() {
        blocks.insert(cid, data);
    }
    (root, blocks)
}

fn did() -> String {
    support::account::did()
}

fn did_key() -> String {
    config().signing_key.public_key().to_did_key()
}

/// Runs tests/oracle/sync-verify.mjs on `input`; returns its JSON output or fails the test.
fn npm_verify(input: serde_json::Value) -> serde_json::Value {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let node = root.join("node_modules/.bin/node");
    assert!(
        node.exists(),
        "{} missing: run `npm install`",
        node.display()
    );
    assert!(
        root.join("node_modules/@atproto/repo").exists(),
        "node_modules/@atproto/repo is missing: run `npm install`"
    );
    let path = std::env::temp_dir().join(format!(
        "sync-verify-{}-{:?}.json",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, input.to_string()).unwrap();
    let out = std::process::Command::new(node)
        .arg(root.join("server/tests/oracle/sync-verify.mjs"))
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).ok();
    assert!(
        out.status.success(),
        "@atproto/repo rejected our output: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn xrpc(base: &str, method: &str, query: &str) -> support::http::Reply {
    get(base, &format!("/xrpc/com.atproto.sync.{method}?{query}"))
}

#[test]
fn get_repo_and_get_record_verify_with_the_reference_library() {
    let s = seeded();
    let did = did();
    let latest = xrpc(&s.base, "getLatestCommit", &format!("did={did}"));
    assert_eq!(latest.status, 200);
    let latest = latest.json();

    let repo = xrpc(&s.base, "getRepo", &format!("did={did}"));
    assert_eq!(repo.status, 200);
    assert_eq!(
        repo.header("content-type"),
        Some("application/vnd.ipld.car")
    );
    let (root, _) = read_car(&repo.body);
    assert_eq!(root.to_string(), latest["cid"].as_str().unwrap());

    // Proofs: a present record, the deleted one (absence), a key never written (absence).
    let (present, present_cid) = s.records.iter().next().unwrap();
    let mut proofs = Vec::new();
    for (path, cid) in [
        (present.as_str(), Some(present_cid.to_string())),
        (s.deleted.as_str(), None),
        ("app.bsky.feed.like/3lzzzzzzzzzzz", None),
    ] {
        let (collection, rkey) = path.split_once('/').unwrap();
        let res = xrpc(
            &s.base,
            "getRecord",
            &format!("did={did}&collection={collection}&rkey={rkey}"),
        );
        assert_eq!(
            res.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&res.body)
        );
        assert_eq!(res.header("content-type"), Some("application/vnd.ipld.car"));
        let (proof_root, blocks) = read_car(&res.body);
        assert_eq!(proof_root, root);
        if let Some(cid) = &cid {
            assert!(blocks.keys().any(|c| &c.to_string() == cid));
        }
        proofs.push(serde_json::json!({
            "car": b64(&res.body), "collection": collection, "rkey": rkey, "cid": cid,
        }));
    }

    let verified = npm_verify(serde_json::json!({
        "did": did, "didKey": did_key(), "repoCar": b64(&repo.body), "proofs": proofs,
    }));
    assert_eq!(verified["rev"], latest["rev"]);
    assert_eq!(verified["proofs"], 3);
    let got: BTreeMap<String, String> =
        serde_json::from_value(verified["records"].clone()).unwrap();
    let want: BTreeMap<String, String> = s
        .records
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn get_repo_since_returns_only_later_blocks() {
    let s = seeded();
    let did = did();
    let (full_root, full) = read_car(&xrpc(&s.base, "getRepo", &format!("did={did}")).body);
    let res = xrpc(
        &s.base,
        "getRepo",
        &format!("did={did}&since={}", s.first_rev),
    );
    assert_eq!(res.status, 200);
    let (root, diff) = read_car(&res.body);
    assert_eq!(root, full_root);
    // The diff holds the new commit and the records created after `since`, and none of the
    // records written before it.
    assert!(diff.contains_key(&root));
    assert!(diff.len() < full.len());
    for (path, cid) in &s.records {
        let n: usize = path.rsplit_once("3l").unwrap().1.parse().unwrap();
        assert_eq!(diff.contains_key(cid), n >= 40, "{path}");
    }
    let commit = Commit::decode(&diff[&root]).unwrap();
    assert!(commit.rev.as_str() > s.first_rev.as_str());
}

#[test]
fn blocks_commits_and_statuses() {
    let s = seeded();
    let did = did();
    let latest = xrpc(&s.base, "getLatestCommit", &format!("did={did}")).json();
    let head: Cid = latest["cid"].as_str().unwrap().parse().unwrap();
    let record = *s.records.values().next().unwrap();

    let res = xrpc(
        &s.base,
        "getBlocks",
        &format!("did={did}&cids={head}&cids={record}"),
    );
    assert_eq!(res.status, 200);
    let (_, blocks) = read_car(&res.body);
    assert_eq!(
        blocks.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([head, record])
    );
    let missing = pds::data::cid_for_cbor(&post(9999));
    let res = xrpc(
        &s.base,
        "getBlocks",
        &format!("did={did}&cids={head}&cids={missing}"),
    );
    assert_eq!(res.status, 400);
    assert_eq!(
        res.json(),
        serde_json::json!({"error": "BlockNotFound", "message": format!("Could not find cids: {missing}")})
    );

    let status = xrpc(&s.base, "getRepoStatus", &format!("did={did}")).json();
    assert_eq!(
        status,
        serde_json::json!({"did": did, "active": true, "rev": latest["rev"]})
    );
    let repos = get(&s.base, "/xrpc/com.atproto.sync.listRepos").json();
    assert_eq!(repos["repos"].as_array().unwrap().len(), 1);
    assert_eq!(repos["repos"][0]["did"], did.as_str());
    assert_eq!(repos["repos"][0]["head"], latest["cid"]);
    assert_eq!(repos["repos"][0]["rev"], latest["rev"]);
    assert_eq!(repos["repos"][0]["active"], true);
    let cursor = repos["cursor"].as_str().unwrap();
    let next = get(
        &s.base,
        &format!("/xrpc/com.atproto.sync.listRepos?cursor={cursor}"),
    )
    .json();
    assert_eq!(next["repos"], serde_json::json!([]));
}

#[test]
fn blobs_listed_and_served() {
    let s = seeded();
    let did = did();
    let list = xrpc(&s.base, "listBlobs", &format!("did={did}")).json();
    assert_eq!(list["cids"], serde_json::json!([s.blob.to_string()]));
    // Referenced by a record of the first commit only: nothing since it.
    let since = xrpc(
        &s.base,
        "listBlobs",
        &format!("did={did}&since={}", s.first_rev),
    )
    .json();
    assert_eq!(since["cids"], serde_json::json!([]));
    let after = xrpc(
        &s.base,
        "listBlobs",
        &format!("did={did}&cursor={}", s.blob),
    )
    .json();
    assert_eq!(after["cids"], serde_json::json!([]));

    let res = xrpc(&s.base, "getBlob", &format!("did={did}&cid={}", s.blob));
    assert_eq!(res.status, 200);
    assert_eq!(res.body, BLOB);
    assert_eq!(res.header("content-type"), Some("image/png"));
    assert_eq!(
        res.header("content-length"),
        Some(BLOB.len().to_string().as_str())
    );
    assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        res.header("content-security-policy"),
        Some("default-src 'none'; sandbox")
    );

    let path = format!("/xrpc/com.atproto.sync.getBlob?did={did}&cid={}", s.blob);
    let beyond = format!("bytes={}-", BLOB.len());
    let res = request(&s.base, "GET", &path, &[("range", beyond.as_str())], b"");
    assert_eq!(res.status, 416);

    let unknown = pds::data::cid_for_cbor(&post(1));
    let res = xrpc(&s.base, "getBlob", &format!("did={did}&cid={unknown}"));
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"], "BlobNotFound");
}

#[test]
fn blob_ranges_are_served_with_206_and_refused_with_416() {
    let s = seeded();
    let path = format!(
        "/xrpc/com.atproto.sync.getBlob?did={}&cid={}",
        did(),
        s.blob
    );
    let get = |range: &str| request(&s.base, "GET", &path, &[("range", range)], b"");
    let len = BLOB.len();
    let partial = |range: &str, start: usize, end: usize| {
        let res = get(range);
        assert_eq!(res.status, 206, "{range}");
        assert_eq!(res.body, &BLOB[start..end], "{range}");
        assert_eq!(
            res.header("content-range"),
            Some(format!("bytes {start}-{}/{len}", end - 1).as_str()),
            "{range}"
        );
        assert_eq!(
            res.header("content-length"),
            Some((end - start).to_string().as_str()),
            "{range}"
        );
        assert_eq!(res.header("content-type"), Some("image/png"), "{range}");
    };
    partial("bytes=2-5", 2, 6);
    partial("bytes=0-0", 0, 1);
    // Open ranges run to the end; a last byte past the end is clamped to it.
    partial("bytes=10-", 10, len);
    partial(&format!("bytes=3-{}", len + 100), 3, len);
    // Suffix ranges: the last N bytes, or all of them when N exceeds the size.
    partial("bytes=-5", len - 5, len);
    partial(&format!("bytes=-{}", len + 7), 0, len);

    // Nothing satisfiable: 416 with the size, and an XRPC error body.
    for range in [format!("bytes={len}-"), "bytes=-0".to_owned()] {
        let res = get(&range);
        assert_eq!(res.status, 416, "{range}");
        assert_eq!(
            res.header("content-range"),
            Some(format!("bytes */{len}").as_str())
        );
        assert_eq!(res.json()["error"], "InvalidRange");
    }
    // A header HTTP says to ignore (several ranges, another unit) gets the whole blob.
    for range in ["bytes=0-1,4-5", "items=0-3"] {
        let res = get(range);
        assert_eq!(res.status, 200, "{range}");
        assert_eq!(res.body, BLOB);
        assert_eq!(res.header("content-range"), None);
    }
}

#[test]
fn other_dids_and_deactivated_accounts() {
    let s = seeded();
    let other = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
    for method in ["getRepo", "getLatestCommit", "getRepoStatus", "listBlobs"] {
        let res = xrpc(&s.base, method, &format!("did={other}"));
        assert_eq!(res.status, 400, "{method}");
        assert_eq!(
            res.json(),
            serde_json::json!({"error": "RepoNotFound", "message": format!("Could not find repo for DID: {other}")}),
            "{method}"
        );
    }

    let did = did();
    let (access, _) = support::account::login(&s.base);
    let bearer = format!("Bearer {access}");
    let res = request(
        &s.base,
        "POST",
        "/xrpc/com.atproto.server.deactivateAccount",
        &[
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ],
        b"{}",
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));

    for method in ["getRepo", "getLatestCommit", "listBlobs"] {
        let res = xrpc(&s.base, method, &format!("did={did}"));
        assert_eq!(res.status, 400, "{method}");
        assert_eq!(
            res.json(),
            serde_json::json!({"error": "RepoDeactivated", "message": format!("Repo has been deactivated: {did}")}),
            "{method}"
        );
    }
    // The account itself still reads its repository.
    let own = request(
        &s.base,
        "GET",
        &format!("/xrpc/com.atproto.sync.getRepo?did={did}"),
        &[("authorization", bearer.as_str())],
        b"",
    );
    assert_eq!(own.status, 200);
    let status = xrpc(&s.base, "getRepoStatus", &format!("did={did}")).json();
    assert_eq!(
        status,
        serde_json::json!({"did": did, "active": false, "status": "deactivated"})
    );
}
