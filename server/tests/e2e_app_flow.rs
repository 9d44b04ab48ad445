//! The Bluesky app's day through this PDS, on both shells, driven by `@atproto/api`'s agent
//! (`server/tests/oracle/app-flow.mjs`) as the app drives it, against an AppView, chat service
//! and moderation service played on loopback with lexicon-valid canned answers. The agent checks
//! every answer against the lexicons; the services verify every token.

#[macro_use]
mod support;

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use support::fake_service::{someone_elses_post, Call, FakeService, Reply, Services};
use support::ShellKind;

const OTHER: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
const FEEDGEN: &str = "did:web:feedgen.test";
const FEED_URI: &str = "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.generator/hot";
const OLD: &str = "2020-01-01T00:00:00.000Z";

/// The AppView as of revision `rev`: behind the post the flow writes.
fn appview(rev: Arc<Mutex<String>>) -> impl Fn(&Call) -> Reply + Send + Sync {
    move |call: &Call| {
        let did = support::account::did();
        let reply = match call.nsid() {
            "app.bsky.actor.getProfile" => Reply::json(
                200,
                json!({ "did": did, "handle": support::account::HANDLE, "displayName": "Alice" }),
            ),
            "app.bsky.feed.getTimeline" => Reply::json(
                200,
                json!({ "feed": [{ "post": someone_elses_post(OTHER, "3kabc") }] }),
            ),
            // The account's earlier post, which the AppView has.
            "app.bsky.feed.getAuthorFeed" => {
                let mut earlier = someone_elses_post(OTHER, "3kabc");
                earlier["uri"] = json!(format!("at://{did}/app.bsky.feed.post/3kearlier"));
                earlier["author"] = json!({ "did": did, "handle": support::account::HANDLE });
                Reply::json(200, json!({ "feed": [{ "post": earlier }] }))
            }
            "app.bsky.feed.getFeed" => Reply::json(200, json!({ "feed": [] })),
            "app.bsky.feed.getPostThread" => Reply::json(
                400,
                json!({ "error": "NotFound", "message": "Post not found" }),
            ),
            "app.bsky.notification.listNotifications" => {
                Reply::json(200, json!({ "notifications": [] }))
            }
            "app.bsky.ageassurance.getState" => Reply::json(
                200,
                json!({ "state": { "status": "unknown", "access": "full" }, "metadata": {} }),
            ),
            "com.atproto.repo.getRecord" => Reply::json(
                200,
                json!({ "uri": FEED_URI, "value": { "did": FEEDGEN, "displayName": "Hot", "createdAt": OLD } }),
            ),
            _ => Reply::json(
                501,
                json!({ "error": "MethodNotImplemented", "message": "no" }),
            ),
        };
        reply.header("atproto-repo-rev", &rev.lock().unwrap())
    }
}

on_both_kinds!(app_flow);

/// The moderation service's answer to a report: the report, accepted.
fn report_reply(call: &Call) -> Reply {
    let input: Value = serde_json::from_slice(&call.body).unwrap_or_default();
    Reply::json(
        200,
        json!({
            "id": 1,
            "reasonType": input["reasonType"],
            "subject": input["subject"],
            "reportedBy": support::account::did(),
            "createdAt": OLD,
        }),
    )
}

fn app_flow(kind: ShellKind) {
    let rev = Arc::new(Mutex::new(String::new()));
    let s = &Services::start(
        appview(rev.clone()),
        |_: &Call| Reply::json(200, json!({ "convos": [] })),
        report_reply,
    );
    let server = s.start_pds(kind, &[]);
    let base = server.base();
    // A profile the AppView has seen: it is as of the repository's revision after it.
    let (access, _) = support::account::login(base);
    let res = support::http::xrpc(
        base,
        "POST",
        "com.atproto.repo.putRecord",
        &access,
        Some(&json!({
            "repo": support::account::did(), "collection": "app.bsky.actor.profile", "rkey": "self",
            "record": { "$type": "app.bsky.actor.profile", "displayName": "Alice" },
        })),
    );
    assert_eq!(res.status, 200, "{}", res.json());
    let latest = support::http::get(
        base,
        &format!(
            "/xrpc/com.atproto.sync.getLatestCommit?did={}",
            support::account::did()
        ),
    );
    *rev.lock().unwrap() = latest.json()["rev"].as_str().unwrap().to_owned();

    let out = support::oracle::run_node(
        "app-flow.mjs",
        &json!({
            "base": base,
            "handle": support::account::HANDLE,
            "password": support::account::PASSWORD,
            "appviewDid": s.appview.did,
            "chatDid": s.chat.did,
            "reportDid": s.report.did,
            "feedUri": FEED_URI,
        }),
    );
    let did = support::account::did();
    assert_eq!(out["profile"]["displayName"], "Alice");
    assert_eq!(
        out["timeline"]["feed"][0]["post"]["author"]["handle"],
        "bob.test"
    );
    assert_eq!(out["ageAssurance"]["state"]["access"], "full");
    let post_uri = out["post"]["uri"].as_str().unwrap();
    // The AppView has not seen the post yet: read-after-write shows it in the author feed and
    // builds its thread.
    assert_eq!(
        out["authorFeed"]["feed"][0]["post"]["uri"], post_uri,
        "{out:#}"
    );
    assert_eq!(out["authorFeed"]["feed"][0]["post"]["author"]["did"], did);
    assert_eq!(out["authorFeed"]["feed"].as_array().unwrap().len(), 2);
    assert_eq!(out["thread"]["thread"]["post"]["uri"], post_uri);
    assert_eq!(out["notifications"]["notifications"], json!([]));
    assert_eq!(out["convos"]["convos"], json!([]));
    assert_eq!(out["feed"]["feed"], json!([]));
    assert_eq!(out["report"]["id"], 1);
    assert!(out["preferences"]["preferences"].is_array());

    // Every call reached the right service with a token it verified.
    let token_of = |service: &FakeService, nsid: &str| {
        service
            .calls()
            .into_iter()
            .find(|c| c.nsid() == nsid)
            .unwrap_or_else(|| panic!("{nsid} never reached its service"))
            .verified_token()
    };
    // Audiences are bare DIDs, as the current reference sends them.
    let appview_aud = s.appview.did.clone();
    assert_eq!(
        token_of(&s.appview, "app.bsky.actor.getProfile").aud,
        appview_aud
    );
    assert_eq!(
        token_of(&s.appview, "app.bsky.feed.getTimeline").aud,
        appview_aud
    );
    let feed_token = token_of(&s.appview, "app.bsky.feed.getFeed");
    assert_eq!(feed_token.aud, FEEDGEN);
    assert_eq!(
        feed_token.lxm.as_deref(),
        Some("app.bsky.feed.getFeedSkeleton")
    );
    assert_eq!(
        token_of(&s.chat, "chat.bsky.convo.listConvos").aud,
        s.chat.did
    );
    assert_eq!(
        token_of(&s.report, "com.atproto.moderation.createReport").aud,
        s.report.did
    );
}
