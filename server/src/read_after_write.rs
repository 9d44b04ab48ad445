//! Read-after-write: the account's own writes appear in the AppView's answers before the AppView
//! has indexed them, as the reference PDS does it (bluesky-social/atproto
//! `packages/pds/src/read-after-write`).
//!
//! For six methods ([`METHODS`]) the proxy grant carries the repository's head revision. When the
//! AppView answers with an `atproto-repo-rev` older than it, the front asks the account for its
//! writes since that revision ([`local_writes`], at most [`MAX_RECORDS`]); when there are any, the
//! front buffers the answer (JSON, capped) and patches it ([`patch`], [`thread_fallback`]): the
//! account's new posts are inserted into feeds and threads, its profile changes show, and the
//! `Atproto-Upstream-Lag` header says how far behind the AppView is. Answers the account has
//! nothing newer for pass through untouched.

use std::time::Duration;

use pds_api::runtime::syntax::{Datetime, Tid};
use pds_api::runtime::xrpc::XrpcError;
use serde_json::{json, Map, Value};

use crate::account::Account;
use crate::api::internal;
use crate::config::Config;
use crate::data::json::{JsonMessage, JsonObject, JsonWriter};
use crate::first_error::FirstError;
use crate::proxy::ProxyGrant;
use crate::storage::{Sql, SqlExt, SqlValue};

/// The methods whose answers are patched.
pub const METHODS: &[&str] = &[
    GET_TIMELINE,
    GET_AUTHOR_FEED,
    GET_POST_THREAD,
    GET_ACTOR_LIKES,
    GET_PROFILE,
    GET_PROFILES,
];
const GET_TIMELINE: &str = "app.bsky.feed.getTimeline";
const GET_AUTHOR_FEED: &str = "app.bsky.feed.getAuthorFeed";
const GET_POST_THREAD: &str = "app.bsky.feed.getPostThread";
const GET_ACTOR_LIKES: &str = "app.bsky.feed.getActorLikes";
const GET_PROFILE: &str = "app.bsky.actor.getProfile";
const GET_PROFILES: &str = "app.bsky.actor.getProfiles";
const GET_POSTS: &str = "app.bsky.feed.getPosts";
const GET_FEED_GENERATOR: &str = "app.bsky.feed.getFeedGenerator";
const POST: &str = "app.bsky.feed.post";
const PROFILE: &str = "app.bsky.actor.profile";
const THREAD_VIEW_POST: &str = "app.bsky.feed.defs#threadViewPost";

/// The most writes since a revision that are looked at (the reference's limit).
pub const MAX_RECORDS: usize = 10;
/// The header that says, in milliseconds, how far the AppView is behind the account's writes.
pub const LAG_HEADER: &str = "atproto-upstream-lag";

/// What the front asks the account after an answer with an older revision.
#[derive(Debug, Clone)]
pub struct LocalWritesAsk {
    /// The method whose answer is patched.
    pub nsid: String,
    /// The answer's `atproto-repo-rev`.
    pub rev: String,
    /// getPostThread whose post the AppView did not find: its `uri` parameter.
    pub thread_uri: Option<String>,
    /// That call's `parentHeight`, passed on when the thread's parent is read.
    pub parent_height: Option<String>,
}

impl JsonMessage for LocalWritesAsk {
    fn write(&self) -> Value {
        JsonWriter::new()
            .str("nsid", &self.nsid)
            .str("rev", &self.rev)
            .opt_str("threadUri", self.thread_uri.as_deref())
            .opt_str("parentHeight", self.parent_height.as_deref())
            .finish()
    }

    fn read(o: &JsonObject) -> Result<LocalWritesAsk, String> {
        let mut e = FirstError::new();
        let v = LocalWritesAsk {
            nsid: e.keep(o.str("nsid")),
            rev: e.keep(o.str("rev")),
            thread_uri: e.keep(o.opt_str("threadUri")),
            parent_height: e.keep(o.opt_str("parentHeight")),
        };
        e.finish(v)
    }
}

/// The account's writes after a revision, as views ready to insert.
#[derive(Debug, Clone, Default)]
pub struct LocalWrites {
    /// The account's DID.
    pub did: String,
    /// How many records changed after the revision (any collection); 0: patch nothing.
    pub count: usize,
    /// The profile as it now is, if it changed.
    pub profile: Option<ProfileUpdate>,
    /// New posts as `app.bsky.feed.defs#postView`s, oldest first.
    pub posts: Vec<Value>,
    /// How long ago the oldest of them was written, in milliseconds.
    pub lag_ms: Option<u64>,
    /// getPostThread whose post the AppView did not find: the post's URI, when it is the
    /// account's (its handle replaced by its DID).
    pub thread_uri: Option<String>,
    /// getPostThread of a post only the account knows: where its parent's thread is read.
    pub parent: Option<ProxyGrant>,
}

impl JsonMessage for LocalWrites {
    fn write(&self) -> Value {
        JsonWriter::new()
            .str("did", &self.did)
            .u64("count", self.count as u64)
            .opt_value("profile", self.profile.as_ref().map(ProfileUpdate::write))
            .value("posts", Value::Array(self.posts.clone()))
            .opt_u64("lagMs", self.lag_ms)
            .opt_str("threadUri", self.thread_uri.as_deref())
            .opt_value("parent", self.parent.as_ref().map(ProxyGrant::write))
            .finish()
    }

    fn read(o: &JsonObject) -> Result<LocalWrites, String> {
        let mut e = FirstError::new();
        let v = LocalWrites {
            did: e.keep(o.str("did")),
            count: e.keep(
                o.u64("count")
                    .and_then(|n| usize::try_from(n).map_err(|err| err.to_string())),
            ),
            profile: e.keep(
                o.opt_object("profile")
                    .and_then(|p| p.map(|p| ProfileUpdate::read(&p)).transpose()),
            ),
            posts: e.keep(o.array("posts")),
            lag_ms: e.keep(o.opt_u64("lagMs")),
            thread_uri: e.keep(o.opt_str("threadUri")),
            parent: e.keep(
                o.opt_object("parent")
                    .and_then(|p| p.map(|p| ProxyGrant::read(&p)).transpose()),
            ),
        };
        e.finish(v)
    }
}

/// The methods whose answers get the account's new posts (the others only its profile).
const POST_METHODS: &[&str] = &[GET_TIMELINE, GET_AUTHOR_FEED, GET_POST_THREAD];

/// The profile fields the views carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    /// `displayName`.
    pub display_name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// The avatar's image URL.
    pub avatar: Option<String>,
    /// The banner's image URL.
    pub banner: Option<String>,
}

impl JsonMessage for ProfileUpdate {
    fn write(&self) -> Value {
        JsonWriter::new()
            .opt_str("displayName", self.display_name.as_deref())
            .opt_str("description", self.description.as_deref())
            .opt_str("avatar", self.avatar.as_deref())
            .opt_str("banner", self.banner.as_deref())
            .finish()
    }

    fn read(o: &JsonObject) -> Result<ProfileUpdate, String> {
        let mut e = FirstError::new();
        let v = ProfileUpdate {
            display_name: e.keep(o.opt_str("displayName")),
            description: e.keep(o.opt_str("description")),
            avatar: e.keep(o.opt_str("avatar")),
            banner: e.keep(o.opt_str("banner")),
        };
        e.finish(v)
    }
}

/// The account's writes after `ask.rev` (see the module docs); nothing when the AppView's
/// revision predates every record (a migrated account) or a view cannot be built.
pub async fn local_writes(
    config: &Config,
    account: &Account,
    ask: &LocalWritesAsk,
) -> Result<LocalWrites, XrpcError> {
    let db = account.sql.as_ref();
    let did = config.did.as_str().to_owned();
    let rows = db
        .execute(
            "SELECT collection, rkey, cid, rev FROM record WHERE rev > ? ORDER BY rev ASC LIMIT ?",
            &[
                SqlValue::from(ask.rev.as_str()),
                SqlValue::Integer(MAX_RECORDS as i64),
            ],
        )
        .map_err(internal)?;
    let none = LocalWrites {
        did: did.clone(),
        ..LocalWrites::default()
    };
    if rows.is_empty() {
        return Ok(none);
    }
    let older = db
        .query_opt(
            "SELECT 1 FROM record WHERE rev <= ? LIMIT 1",
            &[SqlValue::from(ask.rev.as_str())],
        )
        .map_err(internal)?;
    if older.is_none() {
        return Ok(none);
    }
    let mut writes = LocalWrites {
        did: did.clone(),
        count: rows.len(),
        ..LocalWrites::default()
    };
    let author = author_view(config, db)?;
    let mut oldest: Option<u64> = None;
    let mut posts = Vec::new();
    for row in rows {
        let collection = row.text(0).map_err(internal)?;
        let rkey = row.text(1).map_err(internal)?;
        let cid = row.text(2).map_err(internal)?;
        let rev = row.text(3).map_err(internal)?;
        let written = Tid::new(rev).map(|t| t.timestamp_micros()).unwrap_or(0);
        let is_profile = collection == PROFILE && rkey == "self";
        if !is_profile && collection != POST {
            continue;
        }
        oldest = Some(oldest.map_or(written, |o| o.min(written)));
        let Some(record) = record_json(db, &collection, &rkey)? else {
            continue;
        };
        if is_profile {
            writes.profile = Some(profile_update(config, &record));
        } else if POST_METHODS.contains(&ask.nsid.as_str()) {
            posts.push((
                format!("at://{did}/{collection}/{rkey}"),
                cid,
                record,
                written,
            ));
        }
    }
    // Quoted posts are read from the AppView, all within one proxy timeout.
    let deadline = account.clock.now_millis() + config.proxy.timeout_seconds * 1000;
    for (uri, cid, record, written) in posts {
        let embed = match record.get("embed") {
            Some(embed) => match embed_view(config, account, embed, deadline).await {
                Ok(view) => view,
                // As the reference: a view that cannot be built leaves the answer untouched.
                Err(_) => return Ok(none),
            },
            None => None,
        };
        let mut view = json!({
            "uri": uri,
            "cid": cid,
            "author": author,
            "record": record,
            "replyCount": 0,
            "repostCount": 0,
            "likeCount": 0,
            "quoteCount": 0,
            "indexedAt": datetime(written),
        });
        if let (Some(embed), Some(obj)) = (embed, view.as_object_mut()) {
            obj.insert("embed".into(), embed);
        }
        writes.posts.push(view);
    }
    let now = account.clock.now_micros();
    writes.lag_ms = oldest.map(|o| now.saturating_sub(o) / 1000);
    if ask.nsid == GET_POST_THREAD {
        writes.thread_uri = ask.thread_uri.as_deref().and_then(|u| own_uri(config, u));
        writes.parent = writes
            .thread_uri
            .as_deref()
            .and_then(|uri| parent_grant(config, account, &writes, uri, ask));
    }
    Ok(writes)
}

fn datetime(micros: u64) -> String {
    Datetime::from_unix_micros(micros).as_str().to_owned()
}

/// A stored record as JSON.
fn record_json(db: &dyn Sql, collection: &str, rkey: &str) -> Result<Option<Value>, XrpcError> {
    let Some((_, bytes)) = crate::storage::get_record(db, collection, rkey).map_err(internal)?
    else {
        return Ok(None);
    };
    let value = crate::data::decode(&bytes).map_err(internal)?;
    serde_json::to_value(&value).map(Some).map_err(internal)
}

/// The CID of a blob reference in a record's JSON.
fn blob_cid(blob: Option<&Value>) -> Option<&str> {
    blob?.pointer("/ref/$link")?.as_str()
}

/// The URL of one of the account's images: through the AppView's CDN when a pattern is
/// configured, else the blob from this PDS.
fn image_url(config: &Config, kind: &str, cid: &str) -> String {
    let did = config.did.as_str();
    match &config.proxy.cdn_url_pattern {
        Some(pattern) => {
            let mut out = pattern.clone();
            for part in [kind, did, cid] {
                out = out.replacen("%s", part, 1);
            }
            out
        }
        None => format!(
            "{}/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}",
            config.public_url()
        ),
    }
}

fn profile_update(config: &Config, record: &Value) -> ProfileUpdate {
    let text = |k: &str| record.get(k).and_then(Value::as_str).map(str::to_owned);
    let image = |k: &str, kind: &str| blob_cid(record.get(k)).map(|c| image_url(config, kind, c));
    ProfileUpdate {
        display_name: text("displayName"),
        description: text("description"),
        avatar: image("avatar", "avatar"),
        banner: image("banner", "banner"),
    }
}

/// The account as an `app.bsky.actor.defs#profileViewBasic`, from its current profile.
fn author_view(config: &Config, db: &dyn Sql) -> Result<Value, XrpcError> {
    let mut author = Map::new();
    author.insert("did".into(), json!(config.did.as_str()));
    author.insert("handle".into(), json!(config.handle.as_str()));
    if let Some(profile) = record_json(db, PROFILE, "self")? {
        let update = profile_update(config, &profile);
        if let Some(name) = update.display_name {
            author.insert("displayName".into(), json!(name));
        }
        if let Some(avatar) = update.avatar {
            author.insert("avatar".into(), json!(avatar));
        }
    }
    Ok(Value::Object(author))
}

/// The view of a post's embed: images, external links, quoted posts and both together, as the
/// reference builds them (anything else has no view). A quoted post is read from the AppView.
async fn embed_view(
    config: &Config,
    account: &Account,
    embed: &Value,
    deadline_ms: u64,
) -> Result<Option<Value>, XrpcError> {
    let kind = embed.get("$type").and_then(Value::as_str).unwrap_or("");
    Ok(match kind {
        "app.bsky.embed.images" | "app.bsky.embed.external" => media_view(config, embed),
        "app.bsky.embed.record" => Some(json!({
            "$type": "app.bsky.embed.record#view",
            "record": quoted_view(config, account, embed.get("record"), deadline_ms).await?,
        })),
        "app.bsky.embed.recordWithMedia" => {
            let Some(media) = embed.get("media").and_then(|m| media_view(config, m)) else {
                return Ok(None);
            };
            let record = embed.pointer("/record/record");
            Some(json!({
                "$type": "app.bsky.embed.recordWithMedia#view",
                "record": {
                    "$type": "app.bsky.embed.record#view",
                    "record": quoted_view(config, account, record, deadline_ms).await?,
                },
                "media": media,
            }))
        }
        _ => None,
    })
}

fn media_view(config: &Config, embed: &Value) -> Option<Value> {
    match embed.get("$type")?.as_str()? {
        "app.bsky.embed.images" => {
            let images: Vec<Value> = embed
                .get("images")?
                .as_array()?
                .iter()
                .filter_map(|img| {
                    let cid = blob_cid(img.get("image"))?;
                    let mut view = json!({
                        "thumb": image_url(config, "feed_thumbnail", cid),
                        "fullsize": image_url(config, "feed_fullsize", cid),
                        "alt": img.get("alt").cloned().unwrap_or(json!("")),
                    });
                    if let (Some(ratio), Some(obj)) = (img.get("aspectRatio"), view.as_object_mut())
                    {
                        obj.insert("aspectRatio".into(), ratio.clone());
                    }
                    Some(view)
                })
                .collect();
            Some(json!({ "$type": "app.bsky.embed.images#view", "images": images }))
        }
        "app.bsky.embed.external" => {
            let external = embed.get("external")?;
            let mut view = json!({
                "uri": external.get("uri")?,
                "title": external.get("title").cloned().unwrap_or(json!("")),
                "description": external.get("description").cloned().unwrap_or(json!("")),
            });
            if let (Some(cid), Some(obj)) = (blob_cid(external.get("thumb")), view.as_object_mut())
            {
                obj.insert(
                    "thumb".into(),
                    json!(image_url(config, "feed_thumbnail", cid)),
                );
            }
            Some(json!({ "$type": "app.bsky.embed.external#view", "external": view }))
        }
        _ => None,
    }
}

/// A quoted record (a strong ref) as the inner view of an `app.bsky.embed.record#view`: a post,
/// feed generator or list read from the AppView, else "not found".
async fn quoted_view(
    config: &Config,
    account: &Account,
    strong_ref: Option<&Value>,
    deadline_ms: u64,
) -> Result<Value, XrpcError> {
    let uri = strong_ref
        .and_then(|r| r.get("uri"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let not_found = json!({
        "$type": "app.bsky.embed.record#viewNotFound",
        "uri": uri,
        "notFound": true,
    });
    // What the AppView is asked for each kind of quoted record, and where its view is.
    let (method, param, view_at) = match uri.split('/').nth(3) {
        Some(POST) => (GET_POSTS, "uris", "/posts/0"),
        Some("app.bsky.feed.generator") => (GET_FEED_GENERATOR, "feed", "/view"),
        Some("app.bsky.graph.list") => ("app.bsky.graph.getList", "list", "/list"),
        _ => return Ok(not_found),
    };
    let left = deadline_ms.saturating_sub(account.clock.now_millis());
    if left == 0 {
        return Err(internal("no time left to read quoted records"));
    }
    let url = crate::proxy::xrpc_url(
        &config.proxy.appview.url,
        method,
        &format!("{param}={}", crate::proxy::encode_component(uri)),
    );
    let token = crate::proxy::sign_token(config, account, &config.proxy.appview.did, method)?;
    let auth = format!("Bearer {token}");
    let (status, found) = crate::proxy::get_json(
        account.http.as_ref(),
        url,
        Some(&auth),
        Duration::from_millis(left),
    )
    .await
    .map_err(internal)?;
    if !(200..300).contains(&status) {
        return Err(internal(format!("{method} answered {status}")));
    }
    let Some(found) = found.pointer(view_at) else {
        return Ok(not_found);
    };
    if method != GET_POSTS {
        let kind = if method == GET_FEED_GENERATOR {
            "app.bsky.feed.defs#generatorView"
        } else {
            "app.bsky.graph.defs#listView"
        };
        let mut view = found.clone();
        if let Some(obj) = view.as_object_mut() {
            obj.insert("$type".into(), json!(kind));
        }
        return Ok(view);
    }
    let post = found;
    let mut view = json!({
        "$type": "app.bsky.embed.record#viewRecord",
        "uri": post.get("uri"),
        "cid": post.get("cid"),
        "author": post.get("author"),
        "value": post.get("record"),
        "indexedAt": post.get("indexedAt"),
    });
    if let Some(obj) = view.as_object_mut() {
        if let Some(labels) = post.get("labels") {
            obj.insert("labels".into(), labels.clone());
        }
        if let Some(embed) = post.get("embed") {
            obj.insert("embeds".into(), json!([embed]));
        }
    }
    Ok(view)
}

/// For a thread only the account knows: the grant to read its post's parent thread from the
/// AppView (no replies), when the post is a reply.
fn parent_grant(
    config: &Config,
    account: &Account,
    writes: &LocalWrites,
    uri: &str,
    ask: &LocalWritesAsk,
) -> Option<ProxyGrant> {
    let post = writes.posts.iter().find(|p| p["uri"] == uri)?;
    let parent = post.pointer("/record/reply/parent/uri")?.as_str()?;
    let token =
        crate::proxy::sign_token(config, account, &config.proxy.appview.did, GET_POST_THREAD)
            .ok()?;
    Some(ProxyGrant {
        url: crate::proxy::xrpc_url(
            &config.proxy.appview.url,
            GET_POST_THREAD,
            &parent_query(parent, ask.parent_height.as_deref()),
        ),
        authorization: Some(format!("Bearer {token}")),
        timeout_seconds: config.proxy.timeout_seconds,
        read_after_write: None,
    })
}

/// The query reading a parent's thread: no replies, as many parents as the client asked for.
fn parent_query(parent: &str, parent_height: Option<&str>) -> String {
    let mut query = format!("uri={}&depth=0", crate::proxy::encode_component(parent));
    if let Some(height) =
        parent_height.filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_digit()))
    {
        query.push_str(&format!("&parentHeight={height}"));
    }
    query
}

/// `uri` with the account's handle replaced by its DID; `None` when it names someone else.
fn own_uri(config: &Config, uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("at://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    config
        .names_account(host)
        .then(|| format!("at://{}/{path}", config.did.as_str()))
}

// ---- Patching, at the front ----

/// Patches an AppView answer of `nsid` with the account's writes (see the module docs).
pub fn patch(nsid: &str, body: &mut Value, writes: &LocalWrites) {
    let did = writes.did.as_str();
    match nsid {
        GET_TIMELINE => {
            if let Some(feed) = body.get_mut("feed").and_then(Value::as_array_mut) {
                insert_posts(feed, &writes.posts);
            }
        }
        GET_AUTHOR_FEED => {
            let Some(feed) = body.get_mut("feed").and_then(Value::as_array_mut) else {
                return;
            };
            if !is_users_feed(feed, did) {
                return;
            }
            if let Some(profile) = &writes.profile {
                update_authors(feed, did, profile);
            }
            insert_posts(feed, &writes.posts);
        }
        GET_ACTOR_LIKES => {
            if let (Some(feed), Some(profile)) = (
                body.get_mut("feed").and_then(Value::as_array_mut),
                &writes.profile,
            ) {
                update_authors(feed, did, profile);
            }
        }
        GET_PROFILE => {
            if let Some(profile) = &writes.profile {
                if body["did"] == did {
                    update_profile(body, profile, Detail::Detailed);
                }
            }
        }
        GET_PROFILES => {
            if let (Some(profiles), Some(profile)) = (
                body.get_mut("profiles").and_then(Value::as_array_mut),
                &writes.profile,
            ) {
                for view in profiles.iter_mut().filter(|v| v["did"] == did) {
                    update_profile(view, profile, Detail::Detailed);
                }
            }
        }
        GET_POST_THREAD => {
            if let Some(thread) = body.get_mut("thread") {
                if thread["$type"] == THREAD_VIEW_POST {
                    add_replies(thread, &writes.posts);
                }
            }
        }
        _ => {}
    }
}

/// getPostThread of a post the AppView does not know yet: the thread built from the account's
/// writes (`parent`: the parent's thread, if it could be read), or `None` when the post is not
/// the account's or not among them.
pub fn thread_fallback(writes: &LocalWrites, parent: Option<Value>) -> Option<Value> {
    let uri = writes.thread_uri.as_deref()?;
    let post = writes.posts.iter().find(|p| p["uri"] == uri)?;
    let mut thread = json!({ "$type": THREAD_VIEW_POST, "post": post });
    let others: Vec<Value> = writes
        .posts
        .iter()
        .filter(|p| p["uri"] != uri)
        .cloned()
        .collect();
    add_replies(&mut thread, &others);
    if let (Some(parent), Some(obj)) = (parent, thread.as_object_mut()) {
        obj.insert("parent".into(), parent);
    }
    Some(json!({ "thread": thread }))
}

fn indexed_at(item: &Value) -> &str {
    item.pointer("/post/indexedAt")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Inserts the posts written after the page's last item, newest first, each before the first
/// item indexed earlier than it.
fn insert_posts(feed: &mut Vec<Value>, posts: &[Value]) {
    let last = feed
        .last()
        .map(|item| indexed_at(item).to_owned())
        .unwrap_or_else(|| datetime(0));
    for post in posts.iter().rev() {
        let at = post["indexedAt"].as_str().unwrap_or("");
        if at <= last.as_str() {
            continue;
        }
        let item = json!({ "post": post });
        match feed.iter().position(|i| indexed_at(i) < at) {
            Some(index) => feed.insert(index, item),
            None => feed.push(item),
        }
    }
}

/// Whether a feed page is the account's own: its first item is the account's post or repost.
fn is_users_feed(feed: &[Value], did: &str) -> bool {
    let Some(first) = feed.first() else {
        return false;
    };
    match first.get("reason") {
        None => first.pointer("/post/author/did").and_then(Value::as_str) == Some(did),
        Some(reason) => {
            reason["$type"] == "app.bsky.feed.defs#reasonRepost"
                && reason.pointer("/by/did").and_then(Value::as_str) == Some(did)
        }
    }
}

fn update_authors(feed: &mut [Value], did: &str, profile: &ProfileUpdate) {
    for item in feed.iter_mut() {
        if let Some(author) = item.pointer_mut("/post/author") {
            if author["did"] == did {
                update_profile(author, profile, Detail::Basic);
            }
        }
    }
}

/// How much of a profile a view carries.
#[derive(PartialEq, Eq)]
enum Detail {
    Basic,
    Detailed,
}

/// Sets the profile fields a view of `detail` carries; a field the profile lacks is removed.
fn update_profile(view: &mut Value, profile: &ProfileUpdate, detail: Detail) {
    let Some(obj) = view.as_object_mut() else {
        return;
    };
    let mut set = |k: &str, v: &Option<String>| match v {
        Some(v) => {
            obj.insert(k.into(), json!(v));
        }
        None => {
            obj.remove(k);
        }
    };
    set("displayName", &profile.display_name);
    set("avatar", &profile.avatar);
    if detail == Detail::Detailed {
        set("description", &profile.description);
        set("banner", &profile.banner);
    }
}

/// Adds the posts that reply within this thread, each under its parent, newest first.
fn add_replies(thread: &mut Value, posts: &[Value]) {
    let root = thread
        .pointer("/post/uri")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let root_of_root = thread
        .pointer("/post/record/reply/root/uri")
        .and_then(Value::as_str)
        .map(str::to_owned);
    for post in posts {
        let Some(post_root) = post
            .pointer("/record/reply/root/uri")
            .and_then(Value::as_str)
        else {
            continue;
        };
        if Some(post_root) == root.as_deref() || Some(post_root) == root_of_root.as_deref() {
            insert_reply(thread, post);
        }
    }
}

fn insert_reply(view: &mut Value, post: &Value) {
    let parent = post
        .pointer("/record/reply/parent/uri")
        .and_then(Value::as_str);
    if parent.is_some() && parent == view.pointer("/post/uri").and_then(Value::as_str) {
        let reply = json!({ "$type": THREAD_VIEW_POST, "post": post });
        match view.get_mut("replies").and_then(Value::as_array_mut) {
            Some(replies) => replies.insert(0, reply),
            None => {
                if let Some(obj) = view.as_object_mut() {
                    obj.insert("replies".into(), json!([reply]));
                }
            }
        }
        return;
    }
    if let Some(replies) = view.get_mut("replies").and_then(Value::as_array_mut) {
        for reply in replies
            .iter_mut()
            .filter(|r| r["$type"] == THREAD_VIEW_POST)
        {
            insert_reply(reply, post);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_writes_survive_their_trip_to_the_edge() {
        use crate::data::json::read_message;
        let writes = LocalWrites {
            did: "did:plc:me".into(),
            count: 2,
            profile: Some(ProfileUpdate {
                display_name: Some("Me".into()),
                avatar: Some("https://cdn.example/a.jpg".into()),
                ..ProfileUpdate::default()
            }),
            posts: vec![post(
                "at://did:plc:me/app.bsky.feed.post/1",
                "2026-12-07T00:00:00Z",
            )],
            lag_ms: Some(1500),
            thread_uri: None,
            parent: Some(ProxyGrant {
                url: "https://appview.example/xrpc/app.bsky.feed.getPostThread?uri=x".into(),
                authorization: Some("Bearer t".into()),
                timeout_seconds: 10,
                read_after_write: None,
            }),
        };
        let back: LocalWrites = read_message(writes.write().to_string().as_bytes()).unwrap();
        assert_eq!(back.did, writes.did);
        assert_eq!(back.count, 2);
        assert_eq!(back.profile, writes.profile);
        assert_eq!(back.posts, writes.posts);
        assert_eq!(back.lag_ms, Some(1500));
        assert_eq!(back.thread_uri, None);
        assert_eq!(back.parent, writes.parent);
        let ask = LocalWritesAsk {
            nsid: "app.bsky.feed.getPostThread".into(),
            rev: "3lrev".into(),
            thread_uri: Some("at://x".into()),
            parent_height: None,
        };
        let back: LocalWritesAsk = read_message(ask.write().to_string().as_bytes()).unwrap();
        assert_eq!(
            (back.nsid, back.rev, back.thread_uri, back.parent_height),
            (ask.nsid, ask.rev, ask.thread_uri, None)
        );
    }

    fn post(uri: &str, at: &str) -> Value {
        json!({ "uri": uri, "indexedAt": at, "author": { "did": "did:plc:me", "handle": "me.test" } })
    }

    fn item(uri: &str, at: &str) -> Value {
        json!({ "post": post(uri, at) })
    }

    #[test]
    fn posts_go_before_older_items_and_not_past_the_page() {
        let mut feed = vec![
            item("a", "2026-01-03T00:00:00.000Z"),
            item("b", "2026-01-01T00:00:00.000Z"),
        ];
        let posts = [
            post("old", "2025-12-31T00:00:00.000Z"),
            post("mid", "2026-01-02T00:00:00.000Z"),
            post("new", "2026-01-04T00:00:00.000Z"),
        ];
        insert_posts(&mut feed, &posts);
        let order: Vec<&str> = feed
            .iter()
            .map(|i| i["post"]["uri"].as_str().unwrap())
            .collect();
        assert_eq!(order, ["new", "a", "mid", "b"]);
    }

    #[test]
    fn profiles_are_updated_and_missing_fields_removed() {
        let mut view = json!({ "did": "did:plc:me", "displayName": "Old", "description": "old", "followersCount": 3 });
        let update = ProfileUpdate {
            display_name: Some("New".into()),
            ..ProfileUpdate::default()
        };
        update_profile(&mut view, &update, Detail::Detailed);
        assert_eq!(
            view,
            json!({ "did": "did:plc:me", "displayName": "New", "followersCount": 3 })
        );
    }

    #[test]
    fn replies_nest_under_their_parents_newest_first() {
        let reply = |uri: &str, parent: &str| json!({ "uri": uri, "record": { "reply": { "root": { "uri": "root" }, "parent": { "uri": parent } } } });
        let mut thread =
            json!({ "$type": THREAD_VIEW_POST, "post": { "uri": "root" }, "replies": [] });
        add_replies(
            &mut thread,
            &[reply("r1", "root"), reply("r2", "root"), reply("r1a", "r1")],
        );
        let replies = thread["replies"].as_array().unwrap();
        assert_eq!(replies[0]["post"]["uri"], "r2");
        assert_eq!(replies[1]["post"]["uri"], "r1");
        assert_eq!(replies[1]["replies"][0]["post"]["uri"], "r1a");
    }

    #[test]
    fn users_feed() {
        let mine = item("a", "x");
        assert!(is_users_feed(std::slice::from_ref(&mine), "did:plc:me"));
        assert!(!is_users_feed(&[mine], "did:plc:other"));
        assert!(!is_users_feed(&[], "did:plc:me"));
        let repost = json!({ "post": { "author": { "did": "did:plc:x" } },
            "reason": { "$type": "app.bsky.feed.defs#reasonRepost", "by": { "did": "did:plc:me" } } });
        assert!(is_users_feed(&[repost], "did:plc:me"));
    }
}
