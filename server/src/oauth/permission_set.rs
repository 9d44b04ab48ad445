//! Permission sets: the `include:<nsid>` scope names a lexicon of type `permission-set`, whose
//! `repo` and `rpc` permissions the token gets (the atproto permission spec).
//!
//! Resolution (the lexicon spec): the NSID's authority (`app.example.authFull` →
//! `example.app`) names a DID in the `_lexicon.<authority>` DNS TXT record; that DID's PDS serves
//! the lexicon as a `com.atproto.lexicon.schema` record, proven by a signed commit and its MST
//! path (`com.atproto.sync.getRecord`), checked here against the DID's key.
//!
//! Cache (`lexicon_cache`): a set fetched within 24 hours is used as it is; an older one is
//! fetched again, and when that fails the old copy is still used for up to 90 days.
//!
//! Expansion: only `repo` and `rpc` entries count; each collection and method must sit under
//! the set's own namespace (`app.example.` for `app.example.authFull`); an `rpc` entry takes
//! `aud: "*"`, or inherits the `include:`'s `aud` (`inheritAud`). Anything else is dropped.

use serde_json::Value;

use super::OAuthError;
use crate::account::Account;
use crate::config::Config;
use crate::net::http_client::ClientRequest;
use crate::storage::{SqlExt, SqlValue};

/// A set fetched this recently is used without asking again.
const FRESH_MS: i64 = 24 * 3600 * 1000;
/// A set that cannot be fetched again is still used this long after it was.
const USABLE_MS: i64 = 90 * 24 * 3600 * 1000;
/// The most permission sets one request may ask for (each may cost fetches).
const MAX_INCLUDES: usize = 8;
/// The most collections, actions or methods one permission entry may name; a larger entry is
/// dropped (it would make a scope too long to carry, and costs quadratic time to sort here).
const MAX_ENTRY_NAMES: usize = 64;
/// The largest record proof read.
const MAX_PROOF_BYTES: u64 = 1024 * 1024;
/// The collection lexicons are published in.
pub const LEXICON_COLLECTION: &str = "com.atproto.lexicon.schema";

/// A resolved permission set.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionSet {
    pub nsid: String,
    /// What the consent page shows for it.
    pub title: Option<String>,
    pub detail: Option<String>,
    /// The set's `permissions` entries, as published.
    pub permissions: Vec<Value>,
}

impl PermissionSet {
    /// A lexicon document as a permission set: its `id` must be `nsid` and its main definition a
    /// `permission-set`.
    pub fn from_lexicon(nsid: &str, doc: &Value) -> Result<PermissionSet, String> {
        if doc.get("id").and_then(Value::as_str) != Some(nsid) {
            return Err(format!("the lexicon is not {nsid}"));
        }
        let main = doc
            .pointer("/defs/main")
            .filter(|m| m.get("type").and_then(Value::as_str) == Some("permission-set"))
            .ok_or_else(|| format!("{nsid} is not a permission set"))?;
        let text = |k: &str| main.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(PermissionSet {
            nsid: nsid.to_owned(),
            title: text("title"),
            detail: text("detail"),
            permissions: main
                .get("permissions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// The granular scopes this set grants under an `include:` with audience `aud`.
    pub fn expand(&self, aud: Option<&str>) -> Vec<String> {
        let prefix = match self.nsid.rsplit_once('.') {
            Some((group, _)) => format!("{group}."),
            None => return Vec::new(),
        };
        // A full NSID under the set's namespace: nothing else may reach a scope string.
        let under = |v: &Value| {
            v.as_str().is_some_and(|s| {
                s.starts_with(&prefix) && pds_api::runtime::syntax::Nsid::new(s.to_owned()).is_ok()
            })
        };
        let mut out = Vec::new();
        for p in &self.permissions {
            let Some(entry) = p.as_object() else { continue };
            if entry.get("type").and_then(Value::as_str) != Some("permission") {
                continue;
            }
            match entry.get("resource").and_then(Value::as_str) {
                Some("repo") => {
                    if entry.keys().any(|k| {
                        !matches!(k.as_str(), "type" | "resource" | "collection" | "action")
                    }) {
                        continue;
                    }
                    let Some(collections) = entry.get("collection").and_then(Value::as_array)
                    else {
                        continue;
                    };
                    if collections.is_empty()
                        || collections.len() > MAX_ENTRY_NAMES
                        || !collections.iter().all(under)
                    {
                        continue;
                    }
                    let actions = match entry.get("action") {
                        None => Vec::new(),
                        Some(Value::Array(a)) if a.len() <= MAX_ENTRY_NAMES => sorted_unique(a),
                        Some(_) => continue,
                    };
                    if !actions
                        .iter()
                        .all(|a| matches!(*a, "create" | "update" | "delete"))
                    {
                        continue;
                    }
                    let all_actions = actions.is_empty() || actions.len() == 3;
                    let names = sorted_unique(collections);
                    let mut params: Vec<String> = Vec::new();
                    let head = if let [one] = names.as_slice() {
                        format!("repo:{one}")
                    } else {
                        params.extend(names.iter().map(|c| format!("collection={c}")));
                        "repo".to_owned()
                    };
                    if !all_actions {
                        params.extend(actions.iter().map(|a| format!("action={a}")));
                    }
                    out.push(with_params(head, &params));
                }
                Some("rpc") => {
                    if entry.keys().any(|k| {
                        !matches!(
                            k.as_str(),
                            "type" | "resource" | "lxm" | "aud" | "inheritAud"
                        )
                    }) {
                        continue;
                    }
                    let Some(lxms) = entry.get("lxm").and_then(Value::as_array) else {
                        continue;
                    };
                    if lxms.is_empty() || lxms.len() > MAX_ENTRY_NAMES || !lxms.iter().all(under) {
                        continue;
                    }
                    let inherit = match entry.get("inheritAud") {
                        None => false,
                        Some(Value::Bool(b)) => *b,
                        Some(_) => continue,
                    };
                    let own = entry.get("aud").and_then(Value::as_str);
                    let audience = match (inherit, own, aud) {
                        (true, None, Some(a)) => a.to_owned(),
                        (false, Some("*"), _) => "*".to_owned(),
                        _ => continue,
                    };
                    let names = sorted_unique(lxms);
                    let encoded = audience.replace('%', "%25").replace('#', "%23");
                    let mut params: Vec<String> = Vec::new();
                    let head = if let [one] = names.as_slice() {
                        format!("rpc:{one}")
                    } else {
                        params.extend(names.iter().map(|l| format!("lxm={l}")));
                        "rpc".to_owned()
                    };
                    params.push(format!("aud={encoded}"));
                    out.push(with_params(head, &params));
                }
                _ => {}
            }
        }
        // Every token must read back as the one permission it was built as.
        out.retain(|t| super::scope::parse_permission(t).is_some());
        out
    }
}

/// The strings of `values`, sorted and without duplicates. Callers pass at most
/// [`MAX_ENTRY_NAMES`], so each can go to its place as it comes (a slice sort would add
/// kilobytes of wasm for a handful).
fn sorted_unique(values: &[Value]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for v in values.iter().filter_map(Value::as_str) {
        if let Err(at) = out.binary_search(&v) {
            out.insert(at, v);
        }
    }
    out
}

fn with_params(head: String, params: &[String]) -> String {
    if params.is_empty() {
        head
    } else {
        format!("{head}?{}", params.join("&"))
    }
}

/// The `include:` tokens of a scope: (NSID, audience).
pub fn includes(scope: &str) -> Vec<(String, Option<String>)> {
    scope
        .split(' ')
        .filter_map(|t| match super::scope::parse_permission(t) {
            Some(super::scope::Permission::Include { nsid, aud }) => Some((nsid, aud)),
            _ => None,
        })
        .collect()
}

/// The scope a token gets for the requested `scope`: each `include:` replaced by what its set
/// grants, everything else as asked. A set that cannot be resolved fails the request.
pub async fn expand_scope(
    config: &Config,
    account: &Account,
    scope: &str,
) -> Result<String, OAuthError> {
    if includes(scope).len() > MAX_INCLUDES {
        return Err(OAuthError::invalid_scope(format!(
            "At most {MAX_INCLUDES} permission sets per request"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for token in scope.split(' ') {
        match super::scope::parse_permission(token) {
            Some(super::scope::Permission::Include { nsid, aud }) => {
                let set = resolve(config, account, &nsid).await.map_err(|why| {
                    // The detail stays in the log: resolution reaches other hosts, and its
                    // errors must not make this server a probe of them.
                    crate::log::error(&format!("permission set {nsid}: {why}"));
                    OAuthError::invalid_scope(format!(
                        "Permission set \"{nsid}\" could not be resolved"
                    ))
                })?;
                out.extend(set.expand(aud.as_deref()));
            }
            _ => out.push(token.to_owned()),
        }
    }
    let mut seen = Vec::new();
    out.retain(|t| {
        let new = !seen.contains(t);
        seen.push(t.clone());
        new
    });
    Ok(out.join(" "))
}

/// The permission set `nsid`: from the cache while fresh, else from the network (the old copy
/// when that fails, for a while).
/// Forgets cached sets too old to be used ([`USABLE_MS`]); maintenance runs it.
pub fn prune_cache(db: &dyn crate::storage::Sql, now_ms: i64) -> crate::storage::Result<()> {
    db.execute(
        "DELETE FROM lexicon_cache WHERE fetched_ms < ?",
        &[SqlValue::Integer(now_ms.saturating_sub(USABLE_MS))],
    )
    .map(|_| ())
}

pub async fn resolve(
    config: &Config,
    account: &Account,
    nsid: &str,
) -> Result<PermissionSet, String> {
    let now = crate::maintenance::now_ms(account);
    let db = account.sql.as_ref();
    let cached = db
        .query_opt(
            "SELECT lexicon, fetched_ms FROM lexicon_cache WHERE nsid = ?",
            &[nsid.into()],
        )
        .map_err(|e| e.to_string())?
        .map(|row| -> Result<(String, i64), String> {
            Ok((
                row.text(0).map_err(|e| e.to_string())?,
                row.integer(1).map_err(|e| e.to_string())?,
            ))
        })
        .transpose()?;
    if let Some((lexicon, fetched)) = &cached {
        if now - fetched < FRESH_MS {
            let doc: Value =
                serde_json::from_slice(lexicon.as_bytes()).map_err(|e| e.to_string())?;
            return PermissionSet::from_lexicon(nsid, &doc);
        }
    }
    match fetch(config, account, nsid).await {
        Ok(doc) => {
            let set = PermissionSet::from_lexicon(nsid, &doc)?;
            db.execute(
                "INSERT INTO lexicon_cache (nsid, lexicon, fetched_ms) VALUES (?, ?, ?) \
                 ON CONFLICT (nsid) DO UPDATE SET lexicon = excluded.lexicon, \
                 fetched_ms = excluded.fetched_ms",
                &[nsid.into(), doc.to_string().into(), SqlValue::Integer(now)],
            )
            .map_err(|e| e.to_string())?;
            Ok(set)
        }
        Err(why) => match cached {
            Some((lexicon, fetched)) if now - fetched < USABLE_MS => {
                crate::log::error(&format!(
                    "permission set {nsid}: using the cached copy: {why}"
                ));
                let doc: Value =
                    serde_json::from_slice(lexicon.as_bytes()).map_err(|e| e.to_string())?;
                PermissionSet::from_lexicon(nsid, &doc)
            }
            _ => Err(why),
        },
    }
}

/// The authority of an NSID as a DNS name: its segments but the last, reversed.
pub fn authority(nsid: &str) -> Option<String> {
    let (group, _) = nsid.rsplit_once('.')?;
    Some(group.split('.').rev().collect::<Vec<_>>().join("."))
}

/// Fetches and checks the lexicon `nsid`: DNS, the DID document, the signed record proof.
async fn fetch(config: &Config, account: &Account, nsid: &str) -> Result<Value, String> {
    let authority = authority(nsid).ok_or("not an NSID")?;
    let resolver = account.resolver(config);
    let did = resolver
        .did_from_txt(&format!("_lexicon.{authority}"))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no single did= TXT record at _lexicon.{authority}"))?;
    let doc = resolver
        .resolve_did(did.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let pds = doc
        .service_endpoint("#atproto_pds", crate::net::did_doc::PDS_SERVICE_TYPE)
        .ok_or("the authority's DID document names no PDS")?
        .trim_end_matches('/')
        .to_owned();
    let key = doc
        .signing_key()
        .ok_or("the authority's DID document has no signing key")?;
    let url = format!(
        "{pds}/xrpc/com.atproto.sync.getRecord?did={}&collection={LEXICON_COLLECTION}&rkey={nsid}",
        super::encode_component(did.as_str())
    );
    let mut request = ClientRequest::get(url)
        .timeout(std::time::Duration::from_secs(10))
        .max_response_bytes(MAX_PROOF_BYTES);
    if !config.is_local_development() {
        request = request.public_only();
    }
    let response = account
        .http
        .send(request)
        .await
        .map_err(|e| e.to_string())?;
    if response.status != 200 {
        return Err(format!("getRecord: HTTP {}", response.status));
    }
    let car = response.bytes().await.map_err(|e| e.to_string())?;
    record_from_proof(&car, did.as_str(), &key, nsid)
}

/// The lexicon record a `sync.getRecord` CAR proves: the commit is `did`'s and signed by `key`,
/// and its tree holds the record at `com.atproto.lexicon.schema/<nsid>`.
pub fn record_from_proof(
    car: &[u8],
    did: &str,
    key: &crate::crypto::PublicKey,
    nsid: &str,
) -> Result<Value, String> {
    use crate::repo::{BlockStore, MemoryBlockStore};
    let mut store = MemoryBlockStore::new();
    let root = crate::repo::verify::import_car(car, &mut store).map_err(|e| e.to_string())?;
    let commit =
        crate::repo::verify::decode_commit(&store, root, Some(did)).map_err(|e| e.to_string())?;
    commit.verify(key).map_err(|e| e.to_string())?;
    let mut tree = crate::repo::mst::Mst::load(&store, commit.data).map_err(|e| e.to_string())?;
    let cid = tree
        .get(&store, &format!("{LEXICON_COLLECTION}/{nsid}"))
        .map_err(|e| e.to_string())?
        .ok_or("the proof does not hold the lexicon record")?;
    let block = store
        .get(&cid)
        .map_err(|e| e.to_string())?
        .ok_or("the proof lacks the record block")?;
    if crate::data::cid_for_cbor(&block) != cid {
        return Err("the record block does not match its CID".into());
    }
    let value = crate::data::cbor::decode(&block).map_err(|e| e.to_string())?;
    let json = value.to_json();
    if json.get("$type").and_then(Value::as_str) != Some(LEXICON_COLLECTION) {
        return Err("the record is not a lexicon schema".into());
    }
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn only_copies_too_old_to_use_are_pruned() {
        use crate::storage::Sql;
        let db = crate::platform::native::NativeSql::open_in_memory().unwrap();
        crate::storage::migrate(&db).unwrap();
        let now = 1_800_000_000_000;
        for (nsid, age) in [("a.b.old", USABLE_MS + 1), ("a.b.stale", USABLE_MS - 1)] {
            db.execute(
                "INSERT INTO lexicon_cache (nsid, lexicon, fetched_ms) VALUES (?, '{}', ?)",
                &[nsid.into(), SqlValue::Integer(now - age)],
            )
            .unwrap();
        }
        prune_cache(&db, now).unwrap();
        let left = db.execute("SELECT nsid FROM lexicon_cache", &[]).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].text(0).unwrap(), "a.b.stale");
    }

    fn catalog() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/interop-tests/lexicon/catalog/permission-set.json"
        );
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("interop vector missing at {path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn the_interop_set_grants_nothing_outside_its_namespace() {
        let doc = catalog();
        let set = PermissionSet::from_lexicon("example.lexicon.permissionset", &doc).unwrap();
        assert_eq!(set.title.as_deref(), Some("Example for Moderation"));
        assert_eq!(
            set.expand(Some("did:web:api.example.com#svc")),
            Vec::<String>::new()
        );
        assert!(PermissionSet::from_lexicon("example.lexicon.other", &doc).is_err());
    }

    #[test]
    fn entries_under_the_namespace_expand_to_granular_scopes() {
        let mut doc = catalog();
        doc["id"] = "com.example.calendar.authFull".into();
        let set = PermissionSet::from_lexicon("com.example.calendar.authFull", &doc).unwrap();
        let expanded = set.expand(Some("did:web:api.example.com#svc"));
        assert_eq!(
            expanded,
            vec![
                "repo?collection=com.example.calendar.event&collection=com.example.calendar.rsvp&action=create&action=delete",
                "repo:com.example.calendar.eventV2?action=create",
                "rpc:com.example.calendar.listEvents?aud=*",
                "rpc:com.example.calendar.listEvents?aud=did:web:api.example.com%23svc",
            ]
        );
        // What it expands to is what the scope parser reads, and grants what the set says.
        let scopes = super::super::scope::Scopes::parse(&expanded.join(" "));
        assert_eq!(scopes.permissions.len(), 4);
        use super::super::scope::RepoAction;
        assert!(scopes
            .repo("com.example.calendar.rsvp", RepoAction::Delete)
            .is_ok());
        assert!(scopes
            .repo("com.example.calendar.rsvp", RepoAction::Update)
            .is_err());
        assert!(scopes
            .repo("app.bsky.feed.post", RepoAction::Create)
            .is_err());
        assert!(scopes
            .rpc(
                "com.example.calendar.listEvents",
                "did:web:api.example.com#svc"
            )
            .is_ok());
        // Strings that are not NSIDs never reach a scope: no smuggled tokens or parameters.
        let mut evil = doc.clone();
        evil["defs"]["main"]["permissions"] = serde_json::json!([
            { "type": "permission", "resource": "repo", "collection": ["com.example.calendar.x identity:*"] },
            { "type": "permission", "resource": "repo", "collection": ["com.example.calendar.a", "com.example.calendar.b&collection=*"] },
            { "type": "permission", "resource": "rpc", "lxm": ["com.example.calendar.x?aud=*"], "aud": "*" },
        ]);
        let evil = PermissionSet::from_lexicon("com.example.calendar.authFull", &evil).unwrap();
        assert_eq!(
            evil.expand(Some("did:web:api.example.com#svc")),
            Vec::<String>::new()
        );
        // Without the include's audience, the inheriting entry is dropped.
        assert_eq!(set.expand(None).len(), 3);
        assert_eq!(
            authority("app.example.authFull").as_deref(),
            Some("example.app")
        );
    }

    #[test]
    fn names_are_sorted_once_each_and_an_oversized_entry_is_dropped() {
        let mut doc = catalog();
        doc["id"] = "com.example.calendar.authFull".into();
        let names = |n: usize| -> Vec<String> {
            (0..n)
                .rev()
                .map(|i| format!("com.example.calendar.c{i:03}"))
                .collect()
        };
        // The cap counts the entries as listed, duplicates included.
        let mut listed = names(MAX_ENTRY_NAMES - 1);
        listed.push(listed[0].clone());
        doc["defs"]["main"]["permissions"] = serde_json::json!([
            { "type": "permission", "resource": "repo", "collection": listed,
              "action": ["update", "create", "update"] },
            { "type": "permission", "resource": "rpc", "lxm": names(MAX_ENTRY_NAMES + 1), "aud": "*" },
        ]);
        let set = PermissionSet::from_lexicon("com.example.calendar.authFull", &doc).unwrap();
        let expanded = set.expand(None);
        let mut want: Vec<String> = names(MAX_ENTRY_NAMES - 1)
            .into_iter()
            .rev()
            .map(|c| format!("collection={c}"))
            .collect();
        want.extend(["action=create".to_owned(), "action=update".to_owned()]);
        assert_eq!(expanded, vec![format!("repo?{}", want.join("&"))]);
    }
}
