//! An atproto service (AppView, chat, moderation, feed generator) played by a small HTTP server on
//! loopback, with a did:web identity on localhost. It serves its DID document, records every
//! XRPC call, verifies each call's service token with the account's key from the account's DID
//! document, and answers with what the test's reply function says.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// A verified service token, as the service saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub iss: String,
    pub aud: String,
    pub lxm: Option<String>,
    pub iat: u64,
    pub exp: u64,
}

/// One call the service received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The raw query.
    pub query: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The bearer token, verified with the account's key (`Err`: why it failed; `None`: none
    /// was sent).
    pub token: Option<Result<Token, String>>,
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The NSID called.
    pub fn nsid(&self) -> &str {
        self.path.strip_prefix("/xrpc/").unwrap_or(&self.path)
    }

    /// The verified token; panics when there is none or it did not verify.
    pub fn verified_token(&self) -> Token {
        match &self.token {
            Some(Ok(t)) => t.clone(),
            other => panic!("{} carried no valid service token: {other:?}", self.path),
        }
    }
}

/// What the service answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (a hanging service).
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type ReplyFn = dyn Fn(&Call) -> Reply + Send + Sync;

/// A running fake service.
pub struct FakeService {
    pub port: u16,
    /// `did:web:localhost%3A<port>`.
    pub did: String,
    /// `http://localhost:<port>`: its endpoint, as its DID document lists it.
    pub url: String,
    calls: Arc<Mutex<Vec<Call>>>,
    pds_base: Arc<Mutex<String>>,
}

/// The service ids its DID document lists, all at its own endpoint; `#dead` points at a port
/// where nothing listens.
pub const SERVICE_IDS: &[(&str, &str)] = &[
    ("#bsky_appview", "BskyAppView"),
    ("#bsky_chat", "BskyChatService"),
    ("#atproto_labeler", "AtprotoLabeler"),
    ("#bsky_fg", "BskyFeedGenerator"),
    ("#bsky_notif", "BskyNotificationService"),
];

impl FakeService {
    /// Starts the service on 127.0.0.1 (and `[::1]` when it can, so `localhost` reaches it
    /// either way). Tokens verify once [`FakeService::set_pds`] says where the account's DID
    /// document is served.
    pub fn start(reply: impl Fn(&Call) -> Reply + Send + Sync + 'static) -> FakeService {
        FakeService::start_inner(reply, None)
    }

    /// [`FakeService::start`] with its own DID document, made from its DID and URL.
    pub fn start_with_document(
        document: impl Fn(&str, &str) -> Value + Send + Sync + 'static,
        reply: impl Fn(&Call) -> Reply + Send + Sync + 'static,
    ) -> FakeService {
        FakeService::start_inner(reply, Some(Box::new(document)))
    }

    fn start_inner(
        reply: impl Fn(&Call) -> Reply + Send + Sync + 'static,
        document: Option<Box<DocumentFn>>,
    ) -> FakeService {
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        let v6 = TcpListener::bind(("::1", port)).ok();
        let did = format!("did:web:localhost%3A{port}");
        let url = format!("http://localhost:{port}");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let pds_base = Arc::new(Mutex::new(String::new()));
        let shared = Arc::new(Shared {
            did: did.clone(),
            url: url.clone(),
            pds_base: pds_base.clone(),
            calls: calls.clone(),
            reply: Box::new(reply),
            document,
        });
        for listener in std::iter::once(v4).chain(v6) {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let shared = shared.clone();
                    std::thread::spawn(move || shared.serve(stream));
                }
            });
        }
        FakeService {
            port,
            did,
            url,
            calls,
            pds_base,
        }
    }

    /// Where the PDS whose account signs the tokens serves its DID document.
    pub fn set_pds(&self, base: &str) {
        *self.pds_base.lock().unwrap() = base.to_owned();
    }

    /// The calls received so far (DID document fetches not included).
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Forgets the calls received so far.
    pub fn clear(&self) {
        self.calls.lock().unwrap().clear();
    }

    /// The last call received; panics when there is none.
    pub fn last(&self) -> Call {
        self.calls().pop().expect("the service received no call")
    }

    /// `<did>#<id>` for an `atproto-proxy` header.
    pub fn proxy_header(&self, id: &str) -> String {
        format!("{}#{id}", self.did)
    }
}

struct Shared {
    did: String,
    url: String,
    pds_base: Arc<Mutex<String>>,
    calls: Arc<Mutex<Vec<Call>>>,
    reply: Box<ReplyFn>,
    /// Its own DID document, from (its DID, its URL); none: the default one.
    document: Option<Box<DocumentFn>>,
}

type DocumentFn = dyn Fn(&str, &str) -> Value + Send + Sync;

impl Shared {
    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.is_empty() {
            return;
        }
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).is_err() {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let reply = if path == "/.well-known/did.json" {
            match &self.document {
                Some(document) => Reply::json(200, document(&self.did, &self.url)),
                None => Reply::json(200, self.did_document()),
            }
        } else {
            let token = headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| self.verify(v));
            let call = Call {
                method,
                path: path.to_owned(),
                query: query.to_owned(),
                headers,
                body,
                token,
            };
            let reply = (self.reply)(&call);
            self.calls.lock().unwrap().push(call);
            reply
        };
        std::thread::sleep(reply.delay);
        let mut out = stream;
        let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
        for (k, v) in &reply.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            reply.body.len()
        ));
        let _ = out.write_all(head.as_bytes());
        let _ = out.write_all(&reply.body);
    }

    fn did_document(&self) -> serde_json::Value {
        let mut services: Vec<serde_json::Value> = SERVICE_IDS
            .iter()
            .map(|(id, kind)| {
                serde_json::json!({ "id": id, "type": kind, "serviceEndpoint": self.url })
            })
            .collect();
        services.push(serde_json::json!({
            "id": "#dead", "type": "BskyAppView", "serviceEndpoint": "http://localhost:9"
        }));
        serde_json::json!({
            "@context": ["https://www.w3.org/ns/did/v1"],
            "id": self.did,
            "service": services,
        })
    }

    /// Checks a bearer token as a service does: an ES256K JWT signed by the key in the issuer's
    /// DID document (the account's, served by the PDS), unexpired.
    fn verify(&self, authorization: &str) -> Result<Token, String> {
        let jwt = authorization
            .strip_prefix("Bearer ")
            .ok_or("not a bearer token")?;
        let parts: Vec<&str> = jwt.split('.').collect();
        let [header, payload, signature] = parts[..] else {
            return Err("not a JWT".into());
        };
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let decode = |s: &str| b64.decode(s).map_err(|e| e.to_string());
        let header: serde_json::Value =
            serde_json::from_slice(&decode(header)?).map_err(|e| e.to_string())?;
        if header["alg"] != "ES256K" {
            return Err(format!("alg {}", header["alg"]));
        }
        let claims: serde_json::Value =
            serde_json::from_slice(&decode(payload)?).map_err(|e| e.to_string())?;
        let iss = claims["iss"].as_str().ok_or("no iss")?.to_owned();
        // The issuer's key, from its DID document.
        let base = self.pds_base.lock().unwrap().clone();
        let doc = super::http::get(&base, "/.well-known/did.json").json();
        if doc["id"] != iss.as_str() {
            return Err(format!("iss {iss} is not the account {}", doc["id"]));
        }
        let multibase = doc["verificationMethod"][0]["publicKeyMultibase"]
            .as_str()
            .ok_or("no key in the DID document")?;
        let key = pds::crypto::PublicKey::from_multibase(multibase).map_err(|e| e.to_string())?;
        let signed = format!("{}.{}", parts[0], parts[1]);
        key.verify(signed.as_bytes(), &decode(signature)?)
            .map_err(|e| format!("signature: {e}"))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let exp = claims["exp"].as_u64().ok_or("no exp")?;
        if exp < now {
            return Err("expired".into());
        }
        Ok(Token {
            iss,
            aud: claims["aud"].as_str().ok_or("no aud")?.to_owned(),
            lxm: claims["lxm"].as_str().map(str::to_owned),
            iat: claims["iat"].as_u64().ok_or("no iat")?,
            exp,
        })
    }
}

/// Waits (up to 10 s) until `service` has received `n` calls.
pub fn wait_for_calls(service: &FakeService, n: usize) -> Vec<Call> {
    let start = Instant::now();
    loop {
        let calls = service.calls();
        if calls.len() >= n || start.elapsed() > Duration::from_secs(10) {
            return calls;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `data` as a gzip member with one stored (uncompressed) deflate block: what a service sends
/// with `content-encoding: gzip`, without a compression library.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    assert!(data.len() < 65536);
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let len = data.len() as u16;
    out.push(1); // final block, stored
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The AppView, chat and moderation services a PDS is configured with, each played on loopback.
pub struct Services {
    pub appview: FakeService,
    pub chat: FakeService,
    pub report: FakeService,
}

impl Services {
    /// Starts the three services with their answers.
    pub fn start(
        appview: impl Fn(&Call) -> Reply + Send + Sync + 'static,
        chat: impl Fn(&Call) -> Reply + Send + Sync + 'static,
        report: impl Fn(&Call) -> Reply + Send + Sync + 'static,
    ) -> Services {
        Services {
            appview: FakeService::start(appview),
            chat: FakeService::start(chat),
            report: FakeService::start(report),
        }
    }

    /// The PDS variables that point at them.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        use pds::config::vars;
        vec![
            (vars::APPVIEW_URL, self.appview.url.clone()),
            (vars::APPVIEW_DID, self.appview.did.clone()),
            (vars::CHAT_URL, self.chat.url.clone()),
            (vars::CHAT_DID, self.chat.did.clone()),
            (vars::REPORT_SERVICE_URL, self.report.url.clone()),
            (vars::REPORT_SERVICE_DID, self.report.did.clone()),
        ]
    }

    /// Starts a PDS of `kind` configured with them (and `extra` variables), and points their
    /// token checks at it.
    pub fn start_pds(
        &self,
        kind: super::ShellKind,
        extra: &[(&'static str, &str)],
    ) -> Box<dyn super::Shell> {
        let vars = self.vars();
        let mut overrides: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        overrides.extend_from_slice(extra);
        let server = super::start_shell(kind, &overrides);
        for s in [&self.appview, &self.chat, &self.report] {
            s.set_pds(server.base());
            s.clear();
        }
        server
    }
}

/// An answer that is the same for every call: `{"served": <nsid>, "by": <who>}`.
pub fn echo(who: &'static str) -> impl Fn(&Call) -> Reply + Send + Sync + 'static {
    move |call: &Call| Reply::json(200, json!({ "served": call.nsid(), "by": who }))
}

/// Someone else's post as an AppView's `postView`.
pub fn someone_elses_post(did: &str, rkey: &str) -> Value {
    json!({
        "uri": format!("at://{did}/app.bsky.feed.post/{rkey}"),
        "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
        "author": { "did": did, "handle": "bob.test" },
        "record": { "$type": "app.bsky.feed.post", "text": "hi", "createdAt": "2020-01-01T00:00:00.000Z" },
        "indexedAt": "2020-01-01T00:00:00.000Z",
    })
}
