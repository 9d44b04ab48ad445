//! The identity resolver against services played on 127.0.0.1: a PLC directory, did:web on
//! localhost and over https, handles through a DNS-over-HTTPS server and the well-known file;
//! the cache (hits, TTL on a test clock, forced refresh, its bound) and the typed errors.

mod net_support;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use net_support::{handler, reply, runtime, serve, TestServer, TestTls};
use pds::clock::ManualClock;
use pds::config::NetworkConfig;
use pds::crypto::{KeyAlgorithm, SigningKey};
use pds::net::identity::{IdentityError, IdentityResolver, ResolverSettings};
use pds::platform::native::http_client::NativeHttpClient;
use serde_json::{json, Value};

const PLC_DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
const T0_MICROS: u64 = 1_700_000_000_000_000;

fn document(did: &str, handle: &str, pds: &str) -> Value {
    let key = SigningKey::from_bytes(KeyAlgorithm::K256, &[4; 32]).unwrap();
    json!({
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": did,
        "alsoKnownAs": [format!("at://{handle}")],
        "verificationMethod": [{
            "id": format!("{did}#atproto"),
            "type": "Multikey",
            "controller": did,
            "publicKeyMultibase": key.public_key().to_multibase(),
        }],
        "service": [{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": pds,
        }]
    })
}

/// A PLC directory's documents, by DID, changeable while it serves them.
type Docs = Arc<Mutex<Vec<(String, Value)>>>;

/// A PLC directory serving the documents in `docs` (by DID); 404 for others.
async fn plc_directory(docs: Docs) -> TestServer {
    serve(
        handler(move |parts| {
            let did = parts.uri.path().trim_start_matches('/');
            match docs.lock().unwrap().iter().find(|(d, _)| d == did) {
                Some((_, doc)) => reply(200, "application/did+ld+json", doc.to_string()),
                None => reply(
                    404,
                    "application/json",
                    r#"{"message":"DID not registered"}"#,
                ),
            }
        }),
        None,
    )
    .await
}

/// A DNS-over-HTTPS JSON server answering TXT questions from `records` (name -> TXT data).
async fn doh_server(records: Vec<(&'static str, &'static str)>) -> TestServer {
    serve(
        handler(move |parts| {
            let query = parts.uri.query().unwrap_or("");
            let name = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("name="))
                .unwrap_or("");
            let answers: Vec<Value> = records
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(n, data)| json!({ "name": n, "type": 16, "TTL": 300, "data": data }))
                .collect();
            let status = if answers.is_empty() { 3 } else { 0 };
            let body = json!({ "Status": status, "Answer": answers });
            reply(200, "application/dns-json", body.to_string())
        }),
        None,
    )
    .await
}

struct Setup {
    resolver: IdentityResolver,
    clock: Rc<ManualClock>,
}

/// A resolver over the native client, default settings, a test clock.
fn resolver(plc: &TestServer, doh: &TestServer) -> Setup {
    resolver_with(plc, doh, NativeHttpClient::new().unwrap(), |_| {})
}

fn resolver_with(
    plc: &TestServer,
    doh: &TestServer,
    client: NativeHttpClient,
    tweak: impl FnOnce(&mut ResolverSettings),
) -> Setup {
    let mut settings = ResolverSettings::new(&NetworkConfig {
        plc_url: plc.url("http"),
        doh_url: format!("{}/dns-query", doh.url("http")),
    });
    tweak(&mut settings);
    let clock = Rc::new(ManualClock::new(T0_MICROS));
    Setup {
        resolver: IdentityResolver::new(Rc::new(client), clock.clone(), settings),
        clock,
    }
}

/// The directory's documents, a directory holding `PLC_DID` (handle alice.test, PDS at `pds`),
/// an empty DoH server and a resolver over both.
async fn one_plc_account(pds: &str) -> (Docs, TestServer, TestServer, Setup) {
    let docs = Arc::new(Mutex::new(vec![(
        PLC_DID.to_owned(),
        document(PLC_DID, "alice.test", pds),
    )]));
    let plc = plc_directory(docs.clone()).await;
    let doh = doh_server(vec![]).await;
    let s = resolver(&plc, &doh);
    (docs, plc, doh, s)
}

#[test]
fn did_plc_resolves_through_the_directory_and_is_cached() {
    runtime().block_on(async {
        let (docs, plc, _doh, s) = one_plc_account("https://pds.alice.test").await;

        let doc = s.resolver.resolve_did(PLC_DID).await.unwrap();
        assert_eq!(doc.handle().unwrap().as_str(), "alice.test");
        assert_eq!(doc.pds_endpoint(), Some("https://pds.alice.test"));
        let key = SigningKey::from_bytes(KeyAlgorithm::K256, &[4; 32]).unwrap();
        assert_eq!(doc.signing_key(), Some(key.public_key()));
        assert_eq!(plc.hits_on(&format!("/{PLC_DID}")), 1);

        // Within the TTL: from the cache, no second request.
        s.clock.advance(3_599 * 1_000_000);
        let again = s.resolver.resolve_did(PLC_DID).await.unwrap();
        assert_eq!(again.handle().unwrap().as_str(), "alice.test");
        assert_eq!(plc.hits().len(), 1);

        // The handle changes at the directory; the cache still answers the old one until the
        // TTL runs out, then the new one is fetched.
        docs.lock().unwrap()[0].1 = document(PLC_DID, "alice2.test", "https://pds.alice.test");
        assert_eq!(
            s.resolver
                .resolve_did(PLC_DID)
                .await
                .unwrap()
                .handle()
                .unwrap()
                .as_str(),
            "alice.test"
        );
        s.clock.advance(1_000_000);
        assert_eq!(
            s.resolver
                .resolve_did(PLC_DID)
                .await
                .unwrap()
                .handle()
                .unwrap()
                .as_str(),
            "alice2.test"
        );
        assert_eq!(plc.hits().len(), 2);
    });
}

#[test]
fn a_forced_refresh_skips_the_cache_and_updates_it() {
    runtime().block_on(async {
        let (docs, plc, _doh, s) = one_plc_account("https://old.pds.test").await;
        s.resolver.resolve_did(PLC_DID).await.unwrap();
        docs.lock().unwrap()[0].1 = document(PLC_DID, "alice.test", "https://new.pds.test");

        let fresh = s.resolver.refresh_did(PLC_DID).await.unwrap();
        assert_eq!(fresh.pds_endpoint(), Some("https://new.pds.test"));
        assert_eq!(plc.hits().len(), 2);
        // The refreshed answer is what the cache now holds.
        let cached = s.resolver.resolve_did(PLC_DID).await.unwrap();
        assert_eq!(cached.pds_endpoint(), Some("https://new.pds.test"));
        assert_eq!(plc.hits().len(), 2);
        // Forgetting drops it.
        s.resolver.forget(PLC_DID);
        s.resolver.resolve_did(PLC_DID).await.unwrap();
        assert_eq!(plc.hits().len(), 3);
    });
}

#[test]
fn the_cache_is_bounded() {
    runtime().block_on(async {
        let dids: Vec<String> = (0..3)
            .map(|i| format!("did:plc:boundedcachetest{i}aaaaaaaa"))
            .collect();
        let docs = Arc::new(Mutex::new(
            dids.iter()
                .map(|d| (d.clone(), document(d, "x.test", "https://pds.test")))
                .collect::<Vec<_>>(),
        ));
        let plc = plc_directory(docs).await;
        let doh = doh_server(vec![]).await;
        let s = resolver_with(&plc, &doh, NativeHttpClient::new().unwrap(), |settings| {
            settings.capacity = 2
        });
        for did in &dids {
            s.resolver.resolve_did(did).await.unwrap();
        }
        assert_eq!(s.resolver.cached().0, 2);
        // The first was the least recently used, so it went; the last is still there.
        s.resolver.resolve_did(&dids[2]).await.unwrap();
        assert_eq!(plc.hits_on(&format!("/{}", dids[2])), 1);
        s.resolver.resolve_did(&dids[0]).await.unwrap();
        assert_eq!(plc.hits_on(&format!("/{}", dids[0])), 2);
        assert_eq!(s.resolver.cached().0, 2);
    });
}

#[test]
fn did_web_on_localhost_uses_http() {
    runtime().block_on(async {
        let did_slot: Arc<Mutex<String>> = Arc::default();
        let slot = did_slot.clone();
        let web = serve(
            handler(move |parts| {
                let did = slot.lock().unwrap().clone();
                if parts.uri.path() == "/.well-known/did.json" {
                    reply(
                        200,
                        "application/json",
                        document(&did, "web.test", "http://localhost:1").to_string(),
                    )
                } else {
                    reply(404, "text/plain", "")
                }
            }),
            None,
        )
        .await;
        let did = format!("did:web:localhost%3A{}", web.addr.port());
        *did_slot.lock().unwrap() = did.clone();
        let plc = doh_server(vec![]).await;
        let s = resolver(&plc, &plc);
        let doc = s.resolver.resolve_did(&did).await.unwrap();
        assert_eq!(doc.id.as_str(), did);
        assert_eq!(doc.handle().unwrap().as_str(), "web.test");
        assert_eq!(web.hits_on("/.well-known/did.json"), 1);

        // Outside local development, a did:web host is anyone's choice: one that resolves to a
        // loopback address is not fetched, while the PLC directory (the operator's) still is.
        let public = resolver_with(&plc, &plc, NativeHttpClient::new().unwrap(), |s| {
            s.public_only = true
        });
        let err = public.resolver.resolve_did(&did).await.unwrap_err();
        assert!(err.to_string().contains("not a public address"), "{err}");
        assert_eq!(web.hits_on("/.well-known/did.json"), 1, "no second fetch");
    });
}

#[test]
fn did_web_and_well_known_handles_use_https() {
    let tls = TestTls::new(&["web.test", "bob.test"]);
    runtime().block_on(async {
        let https = serve(
            handler(|parts| match parts.uri.path() {
                "/.well-known/did.json" => reply(
                    200,
                    "application/json",
                    document("did:web:web.test", "bob.test", "https://pds.test").to_string(),
                ),
                "/.well-known/atproto-did" => reply(200, "text/plain", "did:web:web.test\n"),
                _ => reply(404, "text/plain", ""),
            }),
            Some(tls.server.clone()),
        )
        .await;
        let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        // The names stand for the loopback server; the port comes from the override.
        let client = NativeHttpClient::builder()
            .add_root_certificate_der(&tls.ca_der)
            .resolve("web.test", at(https.addr.port()))
            .resolve("bob.test", at(https.addr.port()))
            .build()
            .unwrap();
        let plc = doh_server(vec![]).await;
        let doh = doh_server(vec![]).await;
        let s = resolver_with(&plc, &doh, client, |_| {});

        let doc = s.resolver.resolve_did("did:web:web.test").await.unwrap();
        assert_eq!(doc.pds_endpoint(), Some("https://pds.test"));
        // No TXT record: the well-known file answers.
        let did = s.resolver.resolve_handle("Bob.Test").await.unwrap();
        assert_eq!(did.as_str(), "did:web:web.test");
        assert_eq!(doh.hits_on("/dns-query"), 1);
        assert_eq!(https.hits_on("/.well-known/atproto-did"), 1);
        // Cached under the normalized handle.
        s.resolver.resolve_handle("bob.test").await.unwrap();
        assert_eq!(https.hits_on("/.well-known/atproto-did"), 1);
    });
}

#[test]
fn handles_resolve_through_dns_over_https() {
    runtime().block_on(async {
        let doh = doh_server(vec![(
            "_atproto.alice.test",
            "\"did=did:plc:ewvi7nxzyoun6zhxrhs64oiz\"",
        )])
        .await;
        let plc = doh_server(vec![]).await;
        let s = resolver(&plc, &doh);

        let did = s.resolver.resolve_handle("alice.test").await.unwrap();
        assert_eq!(did.as_str(), PLC_DID);
        let hit = &doh.hits()[0];
        assert!(hit.target.contains("name=_atproto.alice.test"), "{hit:?}");
        assert!(hit.target.contains("type=TXT"), "{hit:?}");
        assert!(
            hit.headers
                .iter()
                .any(|(k, v)| k == "accept" && v == "application/dns-json"),
            "{hit:?}"
        );
        // Cached; then past the TTL asked again; a forced refresh asks at once.
        s.resolver.resolve_handle("alice.test").await.unwrap();
        assert_eq!(doh.hits().len(), 1);
        s.clock.advance(3_600 * 1_000_000);
        s.resolver.resolve_handle("alice.test").await.unwrap();
        assert_eq!(doh.hits().len(), 2);
        s.resolver.refresh_handle("alice.test").await.unwrap();
        assert_eq!(doh.hits().len(), 3);
    });
}

#[test]
fn failures_are_typed() {
    runtime().block_on(async {
        let other = "did:plc:someoneelse00000000000000";
        let mismatched = "did:plc:mismatched0000000000000000";
        let plc = serve(
            handler(move |parts| {
                let path = parts.uri.path().trim_start_matches('/').to_owned();
                match path.as_str() {
                    "did:plc:malformed00000000000000000" => {
                        reply(200, "application/json", "{not json")
                    }
                    "did:plc:toolarge000000000000000000" => {
                        reply(200, "application/json", vec![b' '; 100 * 1024])
                    }
                    "did:plc:tombstoned0000000000000000" => reply(410, "text/plain", ""),
                    "did:plc:brokendirectory00000000000" => reply(503, "text/plain", ""),
                    p if p == mismatched => reply(
                        200,
                        "application/json",
                        document(other, "x.test", "https://pds.test").to_string(),
                    ),
                    _ => reply(404, "text/plain", ""),
                }
            }),
            None,
        )
        .await;
        let doh = doh_server(vec![]).await;
        let s = resolver(&plc, &doh);
        let err = |did: &'static str| {
            let resolver = &s.resolver;
            async move { resolver.resolve_did(did).await.unwrap_err() }
        };
        type Expected = fn(&IdentityError) -> bool;
        let not_found: Expected = |e| matches!(e, IdentityError::NotFound(_));
        let malformed: Expected = |e| matches!(e, IdentityError::Malformed(_));
        let too_large: Expected = |e| matches!(e, IdentityError::TooLarge { .. });
        let network: Expected = |e| matches!(e, IdentityError::Network(_));
        let unsupported: Expected = |e| matches!(e, IdentityError::Unsupported(_));
        let cases: &[(&'static str, Expected)] = &[
            ("did:plc:unknown000000000000000000", not_found),
            ("did:plc:tombstoned0000000000000000", not_found),
            ("did:plc:malformed00000000000000000", malformed),
            (mismatched, malformed),
            ("did:plc:toolarge000000000000000000", too_large),
            ("did:plc:brokendirectory00000000000", network),
            (
                "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
                unsupported,
            ),
            ("not-a-did", unsupported),
            ("did:web:example.com:user:alice", unsupported),
        ];
        for (did, expected) in cases {
            let e = err(did).await;
            assert!(expected(&e), "{did}: {e:?}");
        }
        assert_eq!(s.resolver.cached(), (0, 0), "failures are not cached");
        // A handle with neither a TXT record nor a well-known file (nothing listens on its
        // port's https either: the name is pointed at a closed loopback port).
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let client = NativeHttpClient::builder()
            .resolve("nobody.test", closed)
            .build()
            .unwrap();
        let s2 = resolver_with(&plc, &doh, client, |_| {});
        let e = s2.resolver.resolve_handle("nobody.test").await.unwrap_err();
        assert!(matches!(e, IdentityError::Network(_)), "{e:?}");
        assert!(matches!(
            s2.resolver
                .resolve_handle("not a handle")
                .await
                .unwrap_err(),
            IdentityError::Unsupported(_)
        ));
    });
}

#[test]
fn a_directory_that_never_answers_times_out() {
    runtime().block_on(async {
        let plc = serve(
            Arc::new(|_req| Box::pin(futures_util::future::pending())),
            None,
        )
        .await;
        let doh = doh_server(vec![]).await;
        let s = resolver_with(&plc, &doh, NativeHttpClient::new().unwrap(), |settings| {
            settings.timeout = Duration::from_millis(300)
        });
        assert_eq!(
            s.resolver.resolve_did(PLC_DID).await.unwrap_err(),
            IdentityError::Timeout
        );
    });
}
