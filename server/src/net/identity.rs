//! Identity resolution with a cache: DIDs to documents (did:plc through the PLC directory,
//! did:web over https) and handles to DIDs (DNS TXT `_atproto.<handle>` over DNS-over-HTTPS,
//! then `https://<handle>/.well-known/atproto-did`). Used by proxying, migration and OAuth.
//!
//! Answers are cached for a TTL on the clock port; `refresh_*` skips the cache (a signature that
//! fails against a cached key, say) and stores the new answer. The caches are bounded in entries
//! and each document in bytes, so they stay small inside the Durable Object's 128 MB.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use pds_api::runtime::syntax::{Did, Handle};
use serde_json::Value;

use super::did_doc::DidDocument;
use super::http_client::{ClientRequest, HttpClient, HttpError};
use crate::clock::Clock;
use crate::config::NetworkConfig;

/// The largest DID document (or DNS answer) read.
pub const MAX_DOCUMENT_BYTES: u64 = 64 * 1024;
/// The largest `/.well-known/atproto-did` body read.
pub const MAX_WELL_KNOWN_BYTES: u64 = 2 * 1024;
/// How long an answer is used before it is fetched again.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// How many DIDs (and, separately, handles) are cached.
pub const DEFAULT_CAPACITY: usize = 1000;
/// The time limit of one lookup.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an identity did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// Not a DID or handle, or a kind this PDS does not resolve (other DID methods, did:web
    /// with a path).
    Unsupported(String),
    /// The identity does not exist (no PLC entry, no TXT record and no well-known file).
    NotFound(String),
    /// An answer came but does not make sense (not JSON, not a DID, a document for another DID).
    Malformed(String),
    /// No usable answer: connection failure, an unexpected status.
    Network(String),
    /// The answer is larger than the lookup reads.
    TooLarge {
        /// The cap that was exceeded, in bytes.
        limit: u64,
    },
    /// The lookup did not finish in time.
    Timeout,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::Unsupported(why) => write!(f, "cannot resolve: {why}"),
            IdentityError::NotFound(what) => write!(f, "not found: {what}"),
            IdentityError::Malformed(why) => write!(f, "malformed answer: {why}"),
            IdentityError::Network(why) => write!(f, "resolution failed: {why}"),
            IdentityError::TooLarge { limit } => {
                write!(f, "answer larger than {limit} bytes")
            }
            IdentityError::Timeout => f.write_str("resolution timed out"),
        }
    }
}

impl std::error::Error for IdentityError {}

impl From<HttpError> for IdentityError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::InvalidRequest(why) => IdentityError::Unsupported(why),
            HttpError::Network(why) => IdentityError::Network(why),
            HttpError::Timeout => IdentityError::Timeout,
            HttpError::TooLarge { limit } => IdentityError::TooLarge { limit },
        }
    }
}

/// Where and how the resolver looks things up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSettings {
    /// The PLC directory's base URL (no trailing slash).
    pub plc_url: String,
    /// The DNS-over-HTTPS JSON endpoint.
    pub doh_url: String,
    /// How long answers are cached.
    pub ttl: Duration,
    /// How many entries each cache (DIDs, handles) holds.
    pub capacity: usize,
    /// The time limit of one HTTP lookup.
    pub timeout: Duration,
    /// Documents at hosts the DID or handle names (did:web, `/.well-known/atproto-did`) are
    /// fetched from public addresses only: anyone can make the PDS resolve an identity (OAuth
    /// permission sets are resolved before sign-in). Off for local development, whose
    /// services live on loopback.
    pub public_only: bool,
}

impl ResolverSettings {
    /// The settings for a deployment: its PLC directory and DoH endpoint, default limits.
    pub fn new(network: &NetworkConfig) -> ResolverSettings {
        ResolverSettings {
            plc_url: network.plc_url.trim_end_matches('/').to_owned(),
            doh_url: network.doh_url.clone(),
            ttl: DEFAULT_TTL,
            capacity: DEFAULT_CAPACITY,
            timeout: DEFAULT_TIMEOUT,
            public_only: false,
        }
    }
}

/// A bounded map whose entries expire: full, it drops an expired entry or else the least
/// recently used one.
struct Cache<V> {
    entries: HashMap<String, CacheEntry<V>>,
    capacity: usize,
    ttl_ms: u64,
    /// Counts uses, to find the least recently used entry.
    tick: u64,
}

struct CacheEntry<V> {
    value: V,
    stored_ms: u64,
    used: u64,
}

/// Whether an entry stored at `stored_ms` is still fresh at `now_ms`. A clock set back also
/// invalidates: the entry's age is unknown.
fn fresh(ttl_ms: u64, stored_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(stored_ms) < ttl_ms && stored_ms <= now_ms
}

impl<V: Clone> Cache<V> {
    fn new(capacity: usize, ttl: Duration) -> Cache<V> {
        Cache {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            tick: 0,
        }
    }

    fn fresh(&self, entry: &CacheEntry<V>, now_ms: u64) -> bool {
        fresh(self.ttl_ms, entry.stored_ms, now_ms)
    }

    fn get(&mut self, key: &str, now_ms: u64) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        let ttl_ms = self.ttl_ms;
        let entry = self.entries.get_mut(key)?;
        if !fresh(ttl_ms, entry.stored_ms, now_ms) {
            self.entries.remove(key);
            return None;
        }
        entry.used = tick;
        Some(entry.value.clone())
    }

    fn insert(&mut self, key: String, value: V, now_ms: u64) {
        self.tick += 1;
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let victim = self
                .entries
                .iter()
                .min_by_key(|(_, e)| (self.fresh(e, now_ms), e.used))
                .map(|(k, _)| k.clone());
            if let Some(victim) = victim {
                self.entries.remove(&victim);
            }
        }
        self.entries.insert(
            key,
            CacheEntry {
                value,
                stored_ms: now_ms,
                used: self.tick,
            },
        );
    }

    fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Resolves DIDs and handles over the outbound HTTP port, with a cache.
pub struct IdentityResolver {
    http: Rc<dyn HttpClient>,
    clock: Rc<dyn Clock>,
    settings: ResolverSettings,
    dids: RefCell<Cache<Rc<DidDocument>>>,
    handles: RefCell<Cache<Did>>,
}

impl IdentityResolver {
    /// A resolver asking through `http`, timing its cache by `clock`.
    pub fn new(
        http: Rc<dyn HttpClient>,
        clock: Rc<dyn Clock>,
        settings: ResolverSettings,
    ) -> IdentityResolver {
        IdentityResolver {
            dids: RefCell::new(Cache::new(settings.capacity, settings.ttl)),
            handles: RefCell::new(Cache::new(settings.capacity, settings.ttl)),
            http,
            clock,
            settings,
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_millis()
    }

    /// The DID document of `did`, from the cache while it is fresh.
    pub async fn resolve_did(&self, did: &str) -> Result<Rc<DidDocument>, IdentityError> {
        let did = parse_did(did)?;
        let cached = self.dids.borrow_mut().get(did.as_str(), self.now_ms());
        match cached {
            Some(doc) => Ok(doc),
            None => self.fetch_did(did).await,
        }
    }

    /// The DID document of `did`, fetched anew (and cached).
    pub async fn refresh_did(&self, did: &str) -> Result<Rc<DidDocument>, IdentityError> {
        self.fetch_did(parse_did(did)?).await
    }

    /// The DID `handle` points to, from the cache while it is fresh.
    pub async fn resolve_handle(&self, handle: &str) -> Result<Did, IdentityError> {
        let handle = parse_handle(handle)?;
        let cached = self
            .handles
            .borrow_mut()
            .get(handle.as_str(), self.now_ms());
        match cached {
            Some(did) => Ok(did),
            None => self.fetch_handle(handle).await,
        }
    }

    /// The DID `handle` points to, looked up anew (and cached).
    pub async fn refresh_handle(&self, handle: &str) -> Result<Did, IdentityError> {
        self.fetch_handle(parse_handle(handle)?).await
    }

    /// Forgets what is cached about `did_or_handle`.
    pub fn forget(&self, did_or_handle: &str) {
        self.dids.borrow_mut().remove(did_or_handle);
        self.handles
            .borrow_mut()
            .remove(&did_or_handle.to_ascii_lowercase());
    }

    /// How many DIDs and handles are cached.
    pub fn cached(&self) -> (usize, usize) {
        (self.dids.borrow().len(), self.handles.borrow().len())
    }

    async fn fetch_did(&self, did: Did) -> Result<Rc<DidDocument>, IdentityError> {
        let url = match did.method() {
            "plc" => format!("{}/{}", self.settings.plc_url, did.as_str()),
            "web" => did_web_url(&did)?,
            other => {
                return Err(IdentityError::Unsupported(format!(
                    "did:{other} is not a DID method atproto uses"
                )))
            }
        };
        let mut request = ClientRequest::get(url.as_str())
            .header("accept", "application/did+ld+json, application/json")
            .timeout(self.settings.timeout)
            .max_response_bytes(MAX_DOCUMENT_BYTES);
        // The PLC directory is the operator's choice; a did:web host is anyone's.
        if did.method() == "web" && self.settings.public_only {
            request = request.public_only();
        }
        let body = self.fetch(request, did.as_str()).await?;
        let doc = DidDocument::parse(&body)
            .map_err(|e| IdentityError::Malformed(format!("{url}: {}", e.0)))?;
        if doc.id != did {
            return Err(IdentityError::Malformed(format!(
                "{url} describes {}, not {}",
                doc.id.as_str(),
                did.as_str()
            )));
        }
        let doc = Rc::new(doc);
        self.dids
            .borrow_mut()
            .insert(did.as_str().to_owned(), doc.clone(), self.now_ms());
        Ok(doc)
    }

    /// GETs `request`: the body of a 2xx; 404 and 410 mean `what` does not exist.
    async fn fetch(&self, request: ClientRequest, what: &str) -> Result<Vec<u8>, IdentityError> {
        let url = request.url.clone();
        let response = self.http.send(request).await?;
        match response.status {
            200..=299 => Ok(response.bytes().await?),
            404 | 410 => Err(IdentityError::NotFound(what.to_owned())),
            status => Err(IdentityError::Network(format!("{url}: HTTP {status}"))),
        }
    }

    async fn fetch_handle(&self, handle: Handle) -> Result<Did, IdentityError> {
        // DNS first, as the reference resolver does; the well-known file when DNS has no (single)
        // answer or fails.
        let dns = self.handle_from_dns(&handle).await;
        let did = match dns {
            Ok(Some(did)) => did,
            Ok(None) => self.handle_from_well_known(&handle).await?,
            Err(dns_error) => match self.handle_from_well_known(&handle).await {
                Ok(did) => did,
                // A failing resolver is no proof the handle does not exist: say what failed.
                Err(IdentityError::NotFound(_)) => return Err(dns_error),
                Err(e) => return Err(e),
            },
        };
        self.handles
            .borrow_mut()
            .insert(handle.as_str().to_owned(), did.clone(), self.now_ms());
        Ok(did)
    }

    /// The DID in the `_atproto.<handle>` TXT record, when exactly one is there.
    async fn handle_from_dns(&self, handle: &Handle) -> Result<Option<Did>, IdentityError> {
        self.did_from_txt(&format!("_atproto.{}", handle.as_str()))
            .await
    }

    /// The DID in the `did=` TXT record of DNS name `name` (over DNS-over-HTTPS), when exactly
    /// one is there: handles (`_atproto.<handle>`) and lexicon authorities
    /// (`_lexicon.<authority>`).
    pub async fn did_from_txt(&self, name: &str) -> Result<Option<Did>, IdentityError> {
        let separator = if self.settings.doh_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{}{separator}name={name}&type=TXT", self.settings.doh_url);
        let request = ClientRequest::get(url.as_str())
            .header("accept", "application/dns-json")
            .timeout(self.settings.timeout)
            .max_response_bytes(MAX_DOCUMENT_BYTES);
        let response = self.http.send(request).await?;
        if !response.is_success() {
            return Err(IdentityError::Network(format!(
                "{url}: HTTP {}",
                response.status
            )));
        }
        let body = response.bytes().await?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| IdentityError::Malformed(format!("{url}: not JSON: {e}")))?;
        did_from_dns_answer(&answer)
    }

    /// The DID in `https://<handle>/.well-known/atproto-did`.
    async fn handle_from_well_known(&self, handle: &Handle) -> Result<Did, IdentityError> {
        let url = format!("https://{}/.well-known/atproto-did", handle.as_str());
        let mut request = ClientRequest::get(url.as_str())
            .header("accept", "text/plain")
            .timeout(self.settings.timeout)
            .max_response_bytes(MAX_WELL_KNOWN_BYTES);
        if self.settings.public_only {
            request = request.public_only();
        }
        let body = self.fetch(request, handle.as_str()).await?;
        let text = String::from_utf8_lossy(&body);
        let first = text.lines().next().unwrap_or("").trim();
        Did::new(first)
            .map_err(|_| IdentityError::Malformed(format!("{url} does not hold a DID: {first:?}")))
    }
}

fn parse_did(did: &str) -> Result<Did, IdentityError> {
    Did::new(did).map_err(|e| IdentityError::Unsupported(format!("{did:?} is not a DID: {e}")))
}

fn parse_handle(handle: &str) -> Result<Handle, IdentityError> {
    Handle::new(handle.to_ascii_lowercase())
        .map_err(|e| IdentityError::Unsupported(format!("{handle:?} is not a handle: {e}")))
}

/// Where a did:web's document lives: `https://<host>/.well-known/did.json`, or `http://` for
/// `localhost` (development). A port comes percent-encoded (`localhost%3A2583`); paths
/// (`did:web:host:path`) are not used by atproto and are refused.
pub fn did_web_url(did: &Did) -> Result<String, IdentityError> {
    let id = did
        .as_str()
        .strip_prefix("did:web:")
        .ok_or_else(|| IdentityError::Unsupported(format!("{} is not a did:web", did.as_str())))?;
    if id.contains(':') {
        return Err(IdentityError::Unsupported(format!(
            "{}: did:web with a path is not supported",
            did.as_str()
        )));
    }
    let authority = id
        .replace("%3A", ":")
        .replace("%3a", ":")
        .to_ascii_lowercase();
    if !crate::config::is_hostname(&authority) {
        return Err(IdentityError::Unsupported(format!(
            "{}: not a hostname",
            did.as_str()
        )));
    }
    let host = authority.split(':').next().unwrap_or("");
    let scheme = if host == "localhost" { "http" } else { "https" };
    Ok(format!("{scheme}://{authority}/.well-known/did.json"))
}

/// The DID of a DoH JSON answer's `did=` TXT records: `None` when there is none, or more than
/// one (ambiguous, as the reference resolver treats it).
fn did_from_dns_answer(answer: &Value) -> Result<Option<Did>, IdentityError> {
    // 0 is NOERROR; NXDOMAIN (3) and the rest mean no record.
    if answer.get("Status").and_then(Value::as_u64) != Some(0) {
        return Ok(None);
    }
    let mut found: Vec<String> = Vec::new();
    let records = answer
        .get("Answer")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for record in records {
        // 16 is TXT; a CNAME on the way is also listed.
        if record.get("type").and_then(Value::as_u64) != Some(16) {
            continue;
        }
        let Some(data) = record.get("data").and_then(Value::as_str) else {
            continue;
        };
        if let Some(did) = txt_text(data).strip_prefix("did=") {
            if !found.iter().any(|d| d == did) {
                found.push(did.to_owned());
            }
        }
    }
    match found.as_slice() {
        [did] => Did::new(did.as_str())
            .map(Some)
            .map_err(|_| IdentityError::Malformed(format!("the TXT record holds no DID: {did:?}"))),
        _ => Ok(None),
    }
}

/// A TXT record's text from its presentation form: quoted strings (`"a" "b"`) joined, with
/// backslash escapes undone; unquoted data as it is.
fn txt_text(data: &str) -> String {
    let data = data.trim();
    if !data.starts_with('"') {
        return data.to_owned();
    }
    let mut out = String::new();
    let mut chars = data.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            c if quoted => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn did_web_urls() {
        let url = |d: &str| did_web_url(&Did::new(d).unwrap());
        assert_eq!(
            url("did:web:example.com").unwrap(),
            "https://example.com/.well-known/did.json"
        );
        assert_eq!(
            url("did:web:localhost%3A2583").unwrap(),
            "http://localhost:2583/.well-known/did.json"
        );
        assert_eq!(
            url("did:web:pds.example.com%3A8443").unwrap(),
            "https://pds.example.com:8443/.well-known/did.json"
        );
        assert!(url("did:web:example.com:user:alice").is_err());
        assert!(url("did:web:localhost%3A99999").is_err());
        assert!(url("did:web:ex%2Fample.com").is_err());
    }

    #[test]
    fn dns_answers() {
        let answer = |records: Value| json!({ "Status": 0, "Answer": records });
        let did = |v: &Value| {
            did_from_dns_answer(v)
                .unwrap()
                .map(|d| d.as_str().to_owned())
        };
        let one = answer(json!([
            { "name": "_atproto.alice.test", "type": 5, "data": "elsewhere.test." },
            { "name": "_atproto.alice.test", "type": 16, "data": "\"v=spf1 -all\"" },
            { "name": "_atproto.alice.test", "type": 16, "data": "\"did=did:plc:\" \"abc123\"" }
        ]));
        assert_eq!(did(&one).as_deref(), Some("did:plc:abc123"));
        let two = answer(json!([
            { "type": 16, "data": "\"did=did:plc:aaa\"" },
            { "type": 16, "data": "\"did=did:plc:bbb\"" }
        ]));
        assert_eq!(did(&two), None, "ambiguous");
        assert_eq!(did(&json!({ "Status": 3 })), None, "NXDOMAIN");
        assert_eq!(did(&answer(json!([]))), None);
        let bad = answer(json!([{ "type": 16, "data": "\"did=nonsense\"" }]));
        assert!(matches!(
            did_from_dns_answer(&bad),
            Err(IdentityError::Malformed(_))
        ));
    }

    #[test]
    fn the_cache_expires_and_evicts_the_least_recently_used() {
        let mut cache: Cache<u32> = Cache::new(2, Duration::from_secs(10));
        cache.insert("a".into(), 1, 0);
        cache.insert("b".into(), 2, 0);
        assert_eq!(cache.get("a", 1_000), Some(1));
        cache.insert("c".into(), 3, 1_000);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("b", 1_000), None, "b was least recently used");
        assert_eq!(cache.get("a", 9_999), Some(1));
        assert_eq!(cache.get("a", 10_000), None, "expired");
        assert_eq!(cache.get("c", 500), None, "clock set back");
    }
}
