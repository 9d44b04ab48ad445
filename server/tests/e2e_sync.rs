//! com.atproto.sync end to end on both shells (native, and the Worker under workerd with
//! `--ignored`), over the account's repository as the server creates it on first
//! use: the write endpoints live on another branch, so the data-rich checks are in sync_api.rs.

#[macro_use]
mod support;

use pds::repo::car::CarReader;
use pds::repo::commit::Commit;
use support::http::get;

on_both_shells!(
    sync_reads_of_the_fresh_repository,
    sync_errors_clients_match_on,
    get_repo_streams_a_verifiable_export,
);

fn sync(base: &str, method: &str, query: &str) -> support::http::Reply {
    get(base, &format!("/xrpc/com.atproto.sync.{method}?{query}"))
}

/// The CAR's root and blocks.
fn car(bytes: &[u8]) -> (cid::Cid, Vec<(cid::Cid, Vec<u8>)>) {
    let mut reader = CarReader::new(bytes).unwrap();
    let root = reader.roots()[0];
    let mut blocks = Vec::new();
    while let Some(block) = reader.next_block().unwrap() {
        blocks.push(block);
    }
    (root, blocks)
}

fn sync_reads_of_the_fresh_repository(base: &str) {
    let did = support::account::did();
    let latest = sync(base, "getLatestCommit", &format!("did={did}"));
    assert_eq!(
        latest.status,
        200,
        "{}",
        String::from_utf8_lossy(&latest.body)
    );
    let latest = latest.json();

    let repo = sync(base, "getRepo", &format!("did={did}"));
    assert_eq!(repo.status, 200);
    assert_eq!(
        repo.header("content-type"),
        Some("application/vnd.ipld.car")
    );
    let (root, blocks) = car(&repo.body);
    assert_eq!(root.to_string(), latest["cid"].as_str().unwrap());
    let (_, commit) = blocks.iter().find(|(c, _)| *c == root).unwrap();
    let commit = Commit::decode(commit).unwrap();
    assert_eq!(commit.did.as_str(), did);
    assert_eq!(commit.rev.as_str(), latest["rev"].as_str().unwrap());
    // Commit and empty MST root.
    assert_eq!(blocks.len(), 2);

    // Absence proof: the commit and the (empty) root node.
    let proof = sync(
        base,
        "getRecord",
        &format!("did={did}&collection=app.bsky.feed.post&rkey=3l00000000000"),
    );
    assert_eq!(proof.status, 200);
    let (proof_root, proof_blocks) = car(&proof.body);
    assert_eq!(proof_root, root);
    assert_eq!(proof_blocks.len(), 2);

    let status = sync(base, "getRepoStatus", &format!("did={did}")).json();
    assert_eq!(
        status,
        serde_json::json!({"did": did, "active": true, "rev": latest["rev"]})
    );
    let repos = get(base, "/xrpc/com.atproto.sync.listRepos").json();
    assert_eq!(repos["repos"][0]["head"], latest["cid"]);
    assert_eq!(
        sync(base, "listBlobs", &format!("did={did}")).json()["cids"],
        serde_json::json!([])
    );
}

fn sync_errors_clients_match_on(base: &str) {
    let other = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
    let res = sync(base, "getRepo", &format!("did={other}"));
    assert_eq!(res.status, 400);
    assert_eq!(
        res.json(),
        serde_json::json!({"error": "RepoNotFound", "message": format!("Could not find repo for DID: {other}")})
    );
    let did = support::account::did();
    let blob = "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy";
    let res = sync(base, "getBlob", &format!("did={did}&cid={blob}"));
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"], "BlobNotFound");
    let res = sync(base, "getBlocks", &format!("did={did}&cids={blob}"));
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"], "BlockNotFound");
}

/// A 2,000-record export arrives streamed (chunked, no Content-Length: never assembled in memory
/// first) and `@atproto/repo` verifies every block, the tree and the signature.
fn get_repo_streams_a_verifiable_export(base: &str) {
    let (access, _) = support::account::login(base);
    let did = support::account::did();
    for batch in 0..10 {
        let writes: Vec<serde_json::Value> = (0..200)
            .map(|i| {
                serde_json::json!({
                    "$type": "com.atproto.repo.applyWrites#create",
                    "collection": "app.bsky.feed.post",
                    "value": { "$type": "app.bsky.feed.post", "text": format!("post {batch}/{i}"), "createdAt": "2026-11-24T08:00:00.000Z" }
                })
            })
            .collect();
        let res = support::http::xrpc(
            base,
            "POST",
            "com.atproto.repo.applyWrites",
            &access,
            Some(&serde_json::json!({ "repo": did, "writes": writes })),
        );
        assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    }
    let car = sync(base, "getRepo", &format!("did={did}"));
    assert_eq!(car.status, 200);
    assert_eq!(car.header("content-type"), Some("application/vnd.ipld.car"));
    assert_eq!(
        car.header("content-length"),
        None,
        "a streamed export has no length up front"
    );
    assert_eq!(car.header("transfer-encoding"), Some("chunked"));

    let verified = support::oracle::verify_repo_car(&car.body);
    assert_eq!(verified["records"].as_object().unwrap().len(), 2000);
}
