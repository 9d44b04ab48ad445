//! Read-after-write end to end on both shells: an AppView (played on loopback) that is behind
//! the account's writes answers with an older `atproto-repo-rev`, and the PDS patches its
//! answers with the account's newer posts and profile, as the reference PDS does. Patched views
//! are checked against the generated lexicon schemas and typed outputs.

#[macro_use]
mod support;

use std::sync::{Arc, Mutex};

use pds_api::runtime::schema::validate;
use pds_api::runtime::value::Value as DataValue;
use serde_json::{json, Value};
use support::fake_service::{echo, someone_elses_post, Call, Reply, Services};
use support::http::{request, xrpc};
use support::ShellKind;

const OTHER: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";

/// The AppView's answers: always as of revision `rev` (shared with the test).
fn appview(rev: Arc<Mutex<String>>) -> impl Fn(&Call) -> Reply + Send + Sync {
    move |call: &Call| {
        let rev = rev.lock().unwrap().clone();
        let did = support::account::did();
        let reply = match call.nsid() {
            "app.bsky.feed.getTimeline" => Reply::json(
                200,
                json!({ "feed": [{ "post": someone_elses_post(OTHER, "1") }] }),
            ),
            "app.bsky.feed.getAuthorFeed" => {
                let mut mine = someone_elses_post(OTHER, "2");
                mine["author"] =
                    json!({ "did": did, "handle": "alice.test", "displayName": "Stale" });
                mine["uri"] = json!(format!("at://{did}/app.bsky.feed.post/old"));
                Reply::json(200, json!({ "feed": [{ "post": mine }] }))
            }
            "app.bsky.actor.getProfile" => Reply::json(
                200,
                json!({ "did": did, "handle": "alice.test", "displayName": "Stale", "description": "stale", "followersCount": 7 }),
            ),
            "app.bsky.feed.getPostThread" if call.query.contains("depth=0") => Reply::json(
                200,
                json!({ "thread": { "$type": "app.bsky.feed.defs#threadViewPost", "post": someone_elses_post(OTHER, "parent") } }),
            ),
            "app.bsky.feed.getPostThread" => Reply::json(
                400,
                json!({ "error": "NotFound", "message": "Post not found" }),
            ),
            // Records the account's new posts quote.
            "app.bsky.feed.getPosts" => Reply::json(
                200,
                json!({ "posts": [someone_elses_post(OTHER, "quoted")] }),
            ),
            "app.bsky.feed.getFeedGenerator" => Reply::json(
                200,
                json!({
                    "view": {
                        "uri": format!("at://{OTHER}/app.bsky.feed.generator/hot"),
                        "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
                        "did": "did:web:feedgen.test",
                        "creator": { "did": OTHER, "handle": "bob.test" },
                        "displayName": "Hot",
                        "indexedAt": "2020-01-01T00:00:00.000Z",
                    },
                    "isOnline": true,
                    "isValid": true,
                }),
            ),
            _ => Reply::json(404, json!({ "error": "NotFound", "message": "no" })),
        };
        // Compressed when the caller accepts it (the Workers runtime always does, and decodes).
        let gzip = call
            .header("accept-encoding")
            .is_some_and(|a| a.contains("gzip"));
        let reply = if gzip && reply.status == 200 {
            Reply {
                body: support::fake_service::gzip_stored(&reply.body),
                ..reply
            }
            .header("content-encoding", "gzip")
        } else {
            reply
        };
        reply.header("atproto-repo-rev", &rev)
    }
}

on_both_kinds!(patches_answers);

fn create(base: &str, access: &str, collection: &str, rkey: Option<&str>, record: Value) -> Value {
    let mut input =
        json!({ "repo": support::account::did(), "collection": collection, "record": record });
    let method = match rkey {
        Some(rkey) => {
            input["rkey"] = json!(rkey);
            "com.atproto.repo.putRecord"
        }
        None => "com.atproto.repo.createRecord",
    };
    let res = xrpc(base, "POST", method, access, Some(&input));
    assert_eq!(res.status, 200, "{}", res.json());
    res.json()
}

fn head_rev(base: &str) -> String {
    let res = support::http::get(
        base,
        &format!(
            "/xrpc/com.atproto.sync.getLatestCommit?did={}",
            support::account::did()
        ),
    );
    res.json()["rev"].as_str().unwrap().to_owned()
}

fn call(base: &str, access: &str, path: &str) -> support::http::Reply {
    let auth = format!("Bearer {access}");
    request(base, "GET", path, &[("authorization", &auth)], b"")
}

/// Checks a view against its generated lexicon schema.
fn assert_valid(schema: &pds_api::runtime::schema::Schema, view: &Value, what: &str) {
    let value = DataValue::from_json(view).unwrap_or_else(|e| panic!("{what}: {e:?}"));
    validate(schema, &value, what).unwrap_or_else(|e| panic!("{what}: {e:?}\n{view:#}"));
}

fn patches_answers(kind: ShellKind) {
    use pds_api::app::bsky::feed::defs::{POST_VIEW_SCHEMA, THREAD_VIEW_POST_SCHEMA};
    let rev = &Arc::new(Mutex::new(String::new()));
    let services = Services::start(appview(rev.clone()), echo("chat"), echo("report"));
    let service = &services.appview;
    let server = services.start_pds(kind, &[]);
    let base = server.base();
    let (access, _) = support::account::login(base);
    let did = support::account::did();
    let now = "2026-12-06T00:00:00.000Z";
    create(
        base,
        &access,
        "app.bsky.actor.profile",
        Some("self"),
        json!({
            "$type": "app.bsky.actor.profile", "displayName": "Before", "description": "old words",
        }),
    );
    create(
        base,
        &access,
        "app.bsky.feed.post",
        None,
        json!({
            "$type": "app.bsky.feed.post", "text": "seen by the AppView", "createdAt": now,
        }),
    );

    // The AppView is as new as the repository: answers pass through untouched.
    *rev.lock().unwrap() = head_rev(base);
    let res = call(base, &access, "/xrpc/app.bsky.feed.getTimeline");
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["feed"].as_array().unwrap().len(), 1);
    assert_eq!(
        res.header("atproto-repo-rev"),
        Some(rev.lock().unwrap().as_str())
    );
    assert_eq!(res.header("atproto-upstream-lag"), None);

    // Then the account writes more: a post with a link card, a reply to it, a new profile.
    let seen_rev = rev.lock().unwrap().clone();
    let post = create(
        base,
        &access,
        "app.bsky.feed.post",
        None,
        json!({
            "$type": "app.bsky.feed.post", "text": "new post", "createdAt": now,
            "embed": { "$type": "app.bsky.embed.external", "external": {
                "uri": "https://example.com", "title": "Example", "description": "a page" } },
        }),
    );
    let post_ref = json!({ "uri": post["uri"], "cid": post["cid"] });
    let reply = create(
        base,
        &access,
        "app.bsky.feed.post",
        None,
        json!({
            "$type": "app.bsky.feed.post", "text": "a reply", "createdAt": now,
            "reply": { "root": post_ref, "parent": post_ref },
        }),
    );
    // Posts quoting someone else's post and a feed generator: their views come from the AppView.
    let quote = |uri: String| {
        let quoted = json!({ "uri": uri, "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm" });
        create(
            base,
            &access,
            "app.bsky.feed.post",
            None,
            json!({
                "$type": "app.bsky.feed.post", "text": "look", "createdAt": now,
                "embed": { "$type": "app.bsky.embed.record", "record": quoted },
            }),
        )
    };
    let quotes_post = quote(format!("at://{OTHER}/app.bsky.feed.post/quoted"));
    let quotes_feed = quote(format!("at://{OTHER}/app.bsky.feed.generator/hot"));
    create(
        base,
        &access,
        "app.bsky.actor.profile",
        Some("self"),
        json!({
            "$type": "app.bsky.actor.profile", "displayName": "After",
        }),
    );
    assert!(head_rev(base) > seen_rev);

    // The timeline shows the new posts first, as full post views; the lag is reported.
    let res = call(base, &access, "/xrpc/app.bsky.feed.getTimeline");
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let lag: u64 = res
        .header("atproto-upstream-lag")
        .expect("lag header")
        .parse()
        .unwrap();
    assert!(lag < 600_000, "{lag}");
    assert_eq!(
        res.header("atproto-repo-rev"),
        None,
        "a patched answer is the PDS's own"
    );
    let body = res.json();
    serde_json::from_value::<pds_api::app::bsky::feed::get_timeline::Output>(body.clone())
        .expect("a getTimeline output");
    let uris: Vec<&str> = body["feed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["post"]["uri"].as_str().unwrap())
        .collect();
    assert_eq!(
        uris,
        [
            quotes_feed["uri"].as_str().unwrap(),
            quotes_post["uri"].as_str().unwrap(),
            reply["uri"].as_str().unwrap(),
            post["uri"].as_str().unwrap(),
            &format!("at://{OTHER}/app.bsky.feed.post/1")
        ]
    );
    for item in body["feed"].as_array().unwrap() {
        assert_valid(&POST_VIEW_SCHEMA, &item["post"], "postView");
    }
    let embed = |i: usize| body["feed"][i]["post"]["embed"]["record"].clone();
    assert_eq!(embed(0)["$type"], "app.bsky.feed.defs#generatorView");
    assert_eq!(embed(0)["displayName"], "Hot");
    assert_eq!(embed(1)["$type"], "app.bsky.embed.record#viewRecord");
    assert_eq!(
        embed(1)["uri"],
        format!("at://{OTHER}/app.bsky.feed.post/quoted")
    );
    let new_post = &body["feed"][3]["post"];
    assert_eq!(
        new_post["author"],
        json!({ "did": did, "handle": support::account::HANDLE, "displayName": "After" })
    );
    assert_eq!(new_post["embed"]["$type"], "app.bsky.embed.external#view");
    assert_eq!(new_post["embed"]["external"]["title"], "Example");
    assert_eq!(new_post["likeCount"], 0);

    // The profile shows the new name; fields the record no longer has are gone.
    let res = call(
        base,
        &access,
        &format!("/xrpc/app.bsky.actor.getProfile?actor={did}"),
    );
    let profile = res.json();
    assert_eq!(profile["displayName"], "After");
    assert_eq!(profile.get("description"), None);
    assert_eq!(profile["followersCount"], 7);
    serde_json::from_value::<pds_api::app::bsky::actor::defs::ProfileViewDetailed>(profile)
        .unwrap();

    // The author feed: the account's own items get the new profile, and the new posts.
    let res = call(
        base,
        &access,
        &format!("/xrpc/app.bsky.feed.getAuthorFeed?actor={did}"),
    );
    let feed = res.json()["feed"].as_array().unwrap().clone();
    assert_eq!(feed.len(), 5);
    assert!(
        feed.iter()
            .all(|i| i["post"]["author"]["displayName"] == "After"),
        "{feed:#?}"
    );

    // A thread the AppView does not know yet is built from the account's writes, with the
    // reply under its parent; a reply's thread carries its parent, read from the AppView.
    service.clear();
    let res = call(
        base,
        &access,
        &format!(
            "/xrpc/app.bsky.feed.getPostThread?uri={}",
            post["uri"].as_str().unwrap()
        ),
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let thread = res.json()["thread"].clone();
    assert_valid(&THREAD_VIEW_POST_SCHEMA, &thread, "threadViewPost");
    assert_eq!(thread["post"]["uri"], post["uri"]);
    assert_eq!(thread["replies"][0]["post"]["uri"], reply["uri"]);
    assert!(res.header("atproto-upstream-lag").is_some());
    let res = call(
        base,
        &access,
        &format!(
            "/xrpc/app.bsky.feed.getPostThread?uri={}&parentHeight=5",
            reply["uri"].as_str().unwrap()
        ),
    );
    let thread = res.json()["thread"].clone();
    assert_eq!(thread["post"]["uri"], reply["uri"]);
    assert_eq!(
        thread["parent"]["post"]["uri"],
        format!("at://{OTHER}/app.bsky.feed.post/parent")
    );
    let parent_call = service
        .calls()
        .into_iter()
        .find(|c| c.query.contains("depth=0"))
        .expect("the parent was read");
    assert!(
        parent_call.query.contains("parentHeight=5"),
        "{}",
        parent_call.query
    );
    assert_eq!(
        parent_call.verified_token().lxm.as_deref(),
        Some("app.bsky.feed.getPostThread")
    );
    // Someone else's missing post stays missing, even with the rkey of one of the account's.
    let rkey = post["uri"].as_str().unwrap().rsplit('/').next().unwrap();
    for rkey in [rkey, "x"] {
        let res = call(
            base,
            &access,
            &format!(
                "/xrpc/app.bsky.feed.getPostThread?uri=at://{OTHER}/app.bsky.feed.post/{rkey}"
            ),
        );
        assert_eq!(res.status, 400);
        assert_eq!(res.json()["error"], "NotFound");
    }
}
