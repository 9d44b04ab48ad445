//! The authentication layer end to end over its ports: real HS256/ES256K tokens, real argon2id,
//! an in-memory store and a manual clock.

use pds::auth::jwt;
use pds::auth::store::refresh_token_key;
use pds::auth::tokens::{ACCESS_TOKEN_TTL_SECS, REFRESH_TOKEN_TTL_SECS};
use pds::auth::{
    AccessScope, AccountStatus, AppPasswordRecord, Auth, AuthStore, Caller, MemoryAuthStore,
    RefreshTokenRecord, SqlAuthStore,
};
use pds::clock::{Clock, ManualClock};
use pds::config::Config;
use pds::crypto::{KeyAlgorithm, SigningKey};
use pds_api::com::atproto::server::{
    create_app_password, create_session, deactivate_account, get_service_auth, revoke_app_password,
};
use pds_api::runtime::syntax::{Did, Handle, Nsid};
use pds_api::runtime::xrpc::{AuthRequirement as R, XrpcError};
use serde_json::{json, Map, Value};

const PASSWORD: &str = "correct horse battery staple";
const T0: u64 = 1_700_000_000;

/// Status changes in these tests announce nothing (the events are the API layer's concern).
fn no_events() -> Result<Vec<pds::firehose::EventBody>, XrpcError> {
    Ok(Vec::new())
}
const GET_SESSION: &str = "com.atproto.server.getSession";
const REFRESH: &str = "com.atproto.server.refreshSession";
const DELETE_SESSION: &str = "com.atproto.server.deleteSession";
const CREATE_RECORD: &str = "com.atproto.repo.createRecord";
const UPLOAD_BLOB: &str = "com.atproto.repo.uploadBlob";

struct Fixture {
    config: Config,
    store: MemoryAuthStore,
    clock: ManualClock,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            config: Config {
                hostname: "pds.example.com".into(),
                did: Did::new("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap(),
                handle: Handle::new("alice.example.com").unwrap(),
                signing_key: SigningKey::generate(KeyAlgorithm::K256),
                plc_rotation_key: None,
                password_hash: pds::password::hash(PASSWORD).unwrap(),
                jwt_secret: vec![7; 32],
                blob_upload_limit: pds::config::DEFAULT_BLOB_UPLOAD_LIMIT,
                blob_grace_seconds: pds::config::DEFAULT_BLOB_GRACE_SECONDS,
                edge_cache_seconds: pds::config::DEFAULT_EDGE_CACHE_SECONDS,
                upload_bytes_per_day: pds::config::DEFAULT_UPLOAD_BYTES_PER_DAY,
                session_lifetime_days: pds::config::DEFAULT_SESSION_LIFETIME_DAYS,
                oauth_trusted_clients: Vec::new(),
                firehose: Default::default(),
                writes: Default::default(),
                maintenance: Default::default(),
                network: Default::default(),
                proxy: Default::default(),
            },
            store: MemoryAuthStore::new(),
            clock: ManualClock::new(T0 * 1_000_000),
        }
    }

    fn auth(&self) -> Auth<'_> {
        Auth::new(&self.config, &self.store, &self.clock)
    }

    fn login(&self, identifier: &str, password: &str) -> Result<create_session::Output, XrpcError> {
        self.auth().create_session(&create_session::Input {
            allow_takendown: None,
            auth_factor_token: None,
            identifier: identifier.into(),
            password: password.into(),
        })
    }

    fn check(&self, req: R, token: &str, nsid: &str) -> Result<Caller, XrpcError> {
        self.auth()
            .authenticate(req, Some(&format!("Bearer {token}")), nsid)
    }

    fn app_password(
        &self,
        caller: &Caller,
        name: &str,
        privileged: bool,
    ) -> Result<String, XrpcError> {
        self.auth()
            .create_app_password(
                caller,
                &create_app_password::Input {
                    name: name.into(),
                    privileged: Some(privileged),
                },
            )
            .map(|o| o.password)
    }

    fn advance_secs(&self, secs: u64) {
        self.clock.advance(secs * 1_000_000);
    }
}

fn assert_err(r: Result<impl std::fmt::Debug, XrpcError>, status: u16, error: &str) -> XrpcError {
    match r {
        Err(e) => {
            assert_eq!((e.status, e.error.as_str()), (status, error), "{e}");
            e
        }
        Ok(v) => panic!("expected {status} {error}, got {v:?}"),
    }
}

fn claims(token: &str) -> Map<String, Value> {
    jwt::decode(token).unwrap().claims
}

fn header(token: &str) -> Map<String, Value> {
    jwt::decode(token).unwrap().header
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[test]
fn login_with_handle_did_and_password() {
    let f = Fixture::new();
    let s = f.login("Alice.Example.COM", PASSWORD).unwrap();
    assert_eq!(s.did.as_str(), "did:plc:ewvi7nxzyoun6zhxrhs64oiz");
    assert_eq!(s.handle.as_str(), "alice.example.com");
    assert_eq!(s.active, Some(true));
    assert_eq!(s.status, None);
    f.login("did:plc:ewvi7nxzyoun6zhxrhs64oiz", PASSWORD)
        .unwrap();

    let e = assert_err(
        f.login("alice.example.com", "wrong"),
        401,
        "AuthenticationRequired",
    );
    assert_eq!(e.message, "Invalid identifier or password");
    assert_err(
        f.login("bob.example.com", PASSWORD),
        401,
        "AuthenticationRequired",
    );
    assert_err(
        f.login("alice.example.com", &"x".repeat(513)),
        401,
        "AuthenticationRequired",
    );
    // An app-password-shaped string that is no app password.
    assert_err(
        f.login("alice.example.com", "abcd-efgh-ijkl-mnop"),
        401,
        "AuthenticationRequired",
    );
}

#[test]
fn token_shapes_match_the_reference() {
    let f = Fixture::new();
    let s = f.login("alice.example.com", PASSWORD).unwrap();
    let (ah, ac) = (header(&s.access_jwt), claims(&s.access_jwt));
    assert_eq!(ah.get("typ"), Some(&json!("at+jwt")));
    assert_eq!(ah.get("alg"), Some(&json!("HS256")));
    assert_eq!(ac.get("scope"), Some(&json!("com.atproto.access")));
    assert_eq!(ac.get("aud"), Some(&json!("did:web:pds.example.com")));
    assert_eq!(
        ac.get("sub"),
        Some(&json!("did:plc:ewvi7nxzyoun6zhxrhs64oiz"))
    );
    assert_eq!(ac.get("iat"), Some(&json!(T0)));
    assert_eq!(ac.get("exp"), Some(&json!(T0 + 7200)));
    assert_eq!(ACCESS_TOKEN_TTL_SECS, 7200);

    let (rh, rc) = (header(&s.refresh_jwt), claims(&s.refresh_jwt));
    assert_eq!(rh.get("typ"), Some(&json!("refresh+jwt")));
    assert_eq!(rh.get("alg"), Some(&json!("HS256")));
    assert_eq!(rc.get("scope"), Some(&json!("com.atproto.refresh")));
    assert_eq!(rc.get("exp"), Some(&json!(T0 + 90 * 86_400)));
    assert_eq!(REFRESH_TOKEN_TTL_SECS, 90 * 86_400);
    let jti = rc.get("jti").and_then(Value::as_str).unwrap();
    let sid = rc.get("sid").and_then(Value::as_str).unwrap();
    assert_eq!(ac.get("sid"), rc.get("sid"));
    // Stored under the hash of the jti, never the jti itself.
    let key = refresh_token_key(sid, jti);
    assert!(!key.contains(jti));
    let stored = f.store.refresh_token(&key).unwrap().unwrap();
    assert_eq!(stored.scope, AccessScope::Full);
    assert_eq!(stored.expires_ms, (T0 + 90 * 86_400) * 1000);
    assert_eq!(stored.next_id, None);

    // Two logins: two sessions, distinct token ids.
    let s2 = f.login("alice.example.com", PASSWORD).unwrap();
    assert_ne!(claims(&s2.refresh_jwt).get("sid"), rc.get("sid"));
    assert_ne!(claims(&s2.refresh_jwt).get("jti"), rc.get("jti"));
}

#[test]
fn access_token_accepted_then_expires_at_the_boundary() {
    let f = Fixture::new();
    let s = f.login("alice.example.com", PASSWORD).unwrap();
    match f.check(R::Access, &s.access_jwt, GET_SESSION).unwrap() {
        Caller::Access(a) => {
            assert_eq!(a.scope, AccessScope::Full);
            assert_eq!(a.did, "did:plc:ewvi7nxzyoun6zhxrhs64oiz");
        }
        other => panic!("{other:?}"),
    }
    let caller = f.check(R::AccessFull, &s.access_jwt, GET_SESSION).unwrap();
    let out = f.auth().get_session(&caller).unwrap();
    assert_eq!(out.handle.as_str(), "alice.example.com");

    f.advance_secs(ACCESS_TOKEN_TTL_SECS - 1);
    f.check(R::Access, &s.access_jwt, GET_SESSION).unwrap();
    f.advance_secs(1);
    let e = assert_err(
        f.check(R::Access, &s.access_jwt, GET_SESSION),
        400,
        "ExpiredToken",
    );
    assert_eq!(e.message, "Token has expired");
}

#[test]
fn header_and_scheme_errors() {
    let f = Fixture::new();
    let a = f.auth();
    let e = assert_err(
        a.authenticate(R::Access, None, GET_SESSION),
        401,
        "AuthMissing",
    );
    assert_eq!(e.message, "Authentication Required");
    assert_err(
        a.authenticate(R::Access, Some(""), GET_SESSION),
        401,
        "AuthMissing",
    );
    let e = assert_err(
        a.authenticate(R::Access, Some("Bearer"), GET_SESSION),
        400,
        "InvalidToken",
    );
    assert_eq!(e.message, "Malformed authorization header");
    assert_err(
        a.authenticate(R::Access, Some("Bearer a b"), GET_SESSION),
        400,
        "InvalidToken",
    );
    let e = assert_err(
        a.authenticate(R::Access, Some("Token abc"), GET_SESSION),
        400,
        "InvalidToken",
    );
    assert_eq!(e.message, "Unsupported authorization type: Token");
    let e = assert_err(
        a.authenticate(R::Access, Some("Basic YWRtaW46eA=="), GET_SESSION),
        400,
        "InvalidToken",
    );
    assert_eq!(e.message, "Unexpected authorization type");
    assert_err(
        a.authenticate(R::Access, Some("DPoP abc"), GET_SESSION),
        400,
        "InvalidToken",
    );
    let e = assert_err(
        a.authenticate(R::Access, Some("Bearer abc"), GET_SESSION),
        400,
        "InvalidToken",
    );
    assert_eq!(e.message, "Token could not be verified");
    // Public methods ignore credentials; optional ones verify what is sent.
    assert_eq!(
        a.authenticate(R::None, Some("Bearer junk"), "x.y.z"),
        Ok(Caller::Anonymous)
    );
    assert_eq!(
        a.authenticate(R::Optional, None, "com.atproto.sync.getRepo"),
        Ok(Caller::Anonymous)
    );
    assert_err(
        a.authenticate(R::Optional, Some("Bearer junk"), "com.atproto.sync.getRepo"),
        400,
        "InvalidToken",
    );
    assert_err(
        a.authenticate(R::Admin, Some("Basic YWRtaW46eA=="), "com.atproto.admin.x"),
        401,
        "AuthenticationRequired",
    );
    let e = assert_err(
        a.authenticate(R::Service, None, UPLOAD_BLOB),
        401,
        "MissingJwt",
    );
    assert_eq!(e.message, "missing jwt");
    // Scheme names are case-insensitive.
    let s = f.login("alice.example.com", PASSWORD).unwrap();
    a.authenticate(
        R::Access,
        Some(&format!("bEaReR {}", s.access_jwt)),
        GET_SESSION,
    )
    .unwrap();
}

#[test]
fn forged_and_confused_tokens_are_refused() {
    let f = Fixture::new();
    let s = f.login("alice.example.com", PASSWORD).unwrap();
    let c = claims(&s.access_jwt);

    // Same claims, another secret.
    let other = jwt::sign_hs256(
        header(&s.access_jwt),
        &c,
        b"another secret of thirty-two byte",
    );
    let e = assert_err(f.check(R::Access, &other, GET_SESSION), 400, "InvalidToken");
    assert_eq!(e.message, "Token could not be verified");

    // alg none.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt"})),
        b64(&Value::Object(c.clone()))
    );
    assert_err(f.check(R::Access, &none, GET_SESSION), 400, "InvalidToken");

    // Claims edited after signing (scope upgrade attempt on an app-password token).
    let parts: Vec<&str> = s.access_jwt.split('.').collect();
    let mut upgraded = c.clone();
    upgraded.insert("exp".into(), json!(T0 + 10 * 7200));
    let edited = format!(
        "{}.{}.{}",
        parts[0],
        b64(&Value::Object(upgraded)),
        parts[2]
    );
    assert_err(
        f.check(R::Access, &edited, GET_SESSION),
        400,
        "InvalidToken",
    );

    // ES256K token signed with the account key, dressed as an access token.
    let mut h = Map::new();
    h.insert("typ".into(), json!("at+jwt"));
    let es = jwt::sign_es(h.clone(), &c, &f.config.signing_key);
    assert_err(f.check(R::Access, &es, GET_SESSION), 400, "InvalidToken");
    // HS256 keyed with the public key (the classic confusion), where service tokens go.
    let pk = f.config.signing_key.public_key().to_sec1_compressed();
    let mut svc = Map::new();
    svc.insert("iss".into(), json!(f.config.did.as_str()));
    svc.insert("aud".into(), json!("did:web:pds.example.com"));
    svc.insert("lxm".into(), json!(UPLOAD_BLOB));
    svc.insert("exp".into(), json!(T0 + 60));
    let confused = jwt::sign_hs256(Map::new(), &svc, &pk);
    assert!(f.check(R::AccessOrService, &confused, UPLOAD_BLOB).is_err());
    assert!(f.check(R::Service, &confused, UPLOAD_BLOB).is_err());

    // A token for another audience or subject.
    let mut aud = c.clone();
    aud.insert("aud".into(), json!("did:web:other.example.com"));
    let t = jwt::sign_hs256(header(&s.access_jwt), &aud, &f.config.jwt_secret);
    assert_err(f.check(R::Access, &t, GET_SESSION), 400, "InvalidToken");
    let mut sub = c.clone();
    sub.insert("sub".into(), json!("did:plc:someoneelse"));
    let t = jwt::sign_hs256(header(&s.access_jwt), &sub, &f.config.jwt_secret);
    assert_err(f.check(R::Access, &t, GET_SESSION), 400, "InvalidToken");
    // A properly signed token with an unknown scope.
    let mut scope = c.clone();
    scope.insert("scope".into(), json!("com.atproto.admin"));
    let t = jwt::sign_hs256(header(&s.access_jwt), &scope, &f.config.jwt_secret);
    let e = assert_err(f.check(R::Access, &t, GET_SESSION), 400, "InvalidToken");
    assert_eq!(e.message, "Bad token scope");
    // A signed token carrying lxm (service-auth shaped) is not a session.
    let mut lxm = c.clone();
    lxm.insert("lxm".into(), json!(GET_SESSION));
    let t = jwt::sign_hs256(header(&s.access_jwt), &lxm, &f.config.jwt_secret);
    let e = assert_err(f.check(R::Access, &t, GET_SESSION), 400, "InvalidToken");
    assert_eq!(e.message, "Malformed token");
}

#[test]
fn token_kinds_do_not_cross() {
    let f = Fixture::new();
    let s = f.login("alice.example.com", PASSWORD).unwrap();
    let e = assert_err(
        f.check(R::Access, &s.refresh_jwt, GET_SESSION),
        400,
        "InvalidToken",
    );
    assert_eq!(e.message, "Token could not be verified");
    assert_err(
        f.check(R::Refresh, &s.access_jwt, REFRESH),
        400,
        "InvalidToken",
    );
    // Handlers refuse the wrong caller kind too.
    let access = f.check(R::Access, &s.access_jwt, GET_SESSION).unwrap();
    assert_err(f.auth().refresh_session(&access), 400, "InvalidToken");
    let refresh = f.check(R::Refresh, &s.refresh_jwt, REFRESH).unwrap();
    assert_err(f.auth().get_session(&refresh), 400, "InvalidToken");
    // A refresh token without jti.
    let mut c = claims(&s.refresh_jwt);
    c.remove("jti");
    let t = jwt::sign_hs256(header(&s.refresh_jwt), &c, &f.config.jwt_secret);
    assert_err(f.check(R::Refresh, &t, REFRESH), 401, "MissingTokenId");
}

#[test]
fn a_retried_refresh_gets_the_same_successor_within_the_grace_window() {
    let f = Fixture::new();
    let s1 = f.login("alice.example.com", PASSWORD).unwrap();
    let refresh = |token: &str| {
        let caller = f.check(R::Refresh, token, REFRESH)?;
        f.auth().refresh_session(&caller)
    };
    let s2 = refresh(&s1.refresh_jwt).unwrap();
    // A concurrent or retried refresh with the same token, seconds later: the same successor.
    f.advance_secs(20);
    let again = refresh(&s1.refresh_jwt).unwrap();
    assert_eq!(again.refresh_jwt, s2.refresh_jwt);
    f.check(R::Access, &again.access_jwt, GET_SESSION).unwrap();
    // The client moved on (s2 spent): a late retry of s1 gets the newest token of the chain.
    let s3 = refresh(&s2.refresh_jwt).unwrap();
    f.advance_secs(20);
    assert_eq!(
        refresh(&s1.refresh_jwt).unwrap().refresh_jwt,
        s3.refresh_jwt
    );
    // After the window, s1 again is reuse: the session ends.
    f.advance_secs(21);
    assert_err(refresh(&s1.refresh_jwt), 400, "ExpiredToken");
    assert_err(refresh(&s3.refresh_jwt), 400, "ExpiredToken");
    assert_err(
        f.check(R::Access, &s3.access_jwt, GET_SESSION),
        400,
        "ExpiredToken",
    );
}

#[test]
fn sessions_end_at_their_absolute_lifetime() {
    let mut f = Fixture::new();
    f.config.session_lifetime_days = 100;
    let s1 = f.login("alice.example.com", PASSWORD).unwrap();
    let refresh = |token: &str| {
        let caller = f.check(R::Refresh, token, REFRESH)?;
        f.auth().refresh_session(&caller)
    };
    // Refreshed every 60 days: each token alone would last 90 days more, but the session
    // ends 100 days after sign-in.
    f.advance_secs(60 * 86400);
    let s2 = refresh(&s1.refresh_jwt).unwrap();
    f.advance_secs(39 * 86400);
    let s3 = refresh(&s2.refresh_jwt).unwrap();
    f.check(R::Access, &s3.access_jwt, GET_SESSION).unwrap();
    f.advance_secs(86400);
    assert_err(refresh(&s3.refresh_jwt), 400, "ExpiredToken");
    assert_err(
        f.check(R::Access, &s3.access_jwt, GET_SESSION),
        400,
        "ExpiredToken",
    );
    // A new sign-in starts a new session.
    f.login("alice.example.com", PASSWORD).unwrap();
}

#[test]
fn refresh_rotates_and_reuse_revokes_the_session() {
    let f = Fixture::new();
    let s1 = f.login("alice.example.com", PASSWORD).unwrap();
    let bystander = f.login("alice.example.com", PASSWORD).unwrap();
    f.advance_secs(3600);
    let r1 = f.check(R::Refresh, &s1.refresh_jwt, REFRESH).unwrap();
    let s2 = f.auth().refresh_session(&r1).unwrap();
    assert_ne!(s2.refresh_jwt, s1.refresh_jwt);
    assert_eq!(
        claims(&s2.refresh_jwt).get("sid"),
        claims(&s1.refresh_jwt).get("sid")
    );
    assert_eq!(claims(&s2.access_jwt).get("iat"), Some(&json!(T0 + 3600)));
    assert_eq!(
        claims(&s2.refresh_jwt).get("exp"),
        Some(&json!(T0 + 3600 + REFRESH_TOKEN_TTL_SECS))
    );
    assert_eq!(s2.active, Some(true));
    // Both access tokens of the live session work.
    f.check(R::Access, &s1.access_jwt, GET_SESSION).unwrap();
    f.check(R::Access, &s2.access_jwt, GET_SESSION).unwrap();

    // The spent token again, past the grace window: refused, and the whole session is gone.
    f.advance_secs(61);
    let replay = f.check(R::Refresh, &s1.refresh_jwt, REFRESH).unwrap();
    let e = assert_err(f.auth().refresh_session(&replay), 400, "ExpiredToken");
    assert!(e.message.contains("already been used"), "{}", e.message);
    let e = assert_err(
        f.check(R::Access, &s2.access_jwt, GET_SESSION),
        400,
        "ExpiredToken",
    );
    assert_eq!(e.message, "Token has been revoked");
    assert_err(
        f.check(R::Access, &s1.access_jwt, GET_SESSION),
        400,
        "ExpiredToken",
    );
    let r2 = f.check(R::Refresh, &s2.refresh_jwt, REFRESH).unwrap();
    let e = assert_err(f.auth().refresh_session(&r2), 400, "ExpiredToken");
    assert_eq!(e.message, "Token has been revoked");
    // Other sessions are untouched.
    f.check(R::Access, &bystander.access_jwt, GET_SESSION)
        .unwrap();
    let rb = f
        .check(R::Refresh, &bystander.refresh_jwt, REFRESH)
        .unwrap();
    f.auth().refresh_session(&rb).unwrap();
}

#[test]
fn refresh_chain_and_expiry() {
    let f = Fixture::new();
    let mut s = f.login("alice.example.com", PASSWORD).unwrap();
    let mut refresh = s.refresh_jwt.clone();
    for _ in 0..5 {
        f.advance_secs(7200);
        let r = f.check(R::Refresh, &refresh, REFRESH).unwrap();
        let next = f.auth().refresh_session(&r).unwrap();
        f.check(R::Access, &next.access_jwt, GET_SESSION).unwrap();
        refresh = next.refresh_jwt;
    }
    s.refresh_jwt = refresh;
    // An unused refresh token expires at its exp, exactly.
    f.advance_secs(REFRESH_TOKEN_TTL_SECS - 1);
    f.check(R::Refresh, &s.refresh_jwt, REFRESH).unwrap();
    f.advance_secs(1);
    let e = assert_err(
        f.check(R::Refresh, &s.refresh_jwt, REFRESH),
        400,
        "ExpiredToken",
    );
    assert_eq!(e.message, "Token has expired");
    // Logging in again sweeps the expired rows: only the new session's token remains.
    f.login("alice.example.com", PASSWORD).unwrap();
    assert_eq!(f.store.refresh_token_count(), 1);
}

#[test]
fn delete_session_revokes_even_with_an_expired_refresh_token() {
    let f = Fixture::new();
    let s = f.login("alice.example.com", PASSWORD).unwrap();
    let r = f.check(R::Refresh, &s.refresh_jwt, DELETE_SESSION).unwrap();
    f.auth().delete_session(&r).unwrap();
    assert_err(
        f.check(R::Access, &s.access_jwt, GET_SESSION),
        400,
        "ExpiredToken",
    );
    let r = f.check(R::Refresh, &s.refresh_jwt, REFRESH).unwrap();
    assert_err(f.auth().refresh_session(&r), 400, "ExpiredToken");

    let s = f.login("alice.example.com", PASSWORD).unwrap();
    f.advance_secs(REFRESH_TOKEN_TTL_SECS + 10);
    // refreshSession refuses the expired token; deleteSession still accepts it.
    assert_err(
        f.check(R::Refresh, &s.refresh_jwt, REFRESH),
        400,
        "ExpiredToken",
    );
    let r = f.check(R::Refresh, &s.refresh_jwt, DELETE_SESSION).unwrap();
    assert!(matches!(&r, Caller::Refresh(c) if c.expired));
    assert_err(f.auth().refresh_session(&r), 400, "ExpiredToken");
    f.auth().delete_session(&r).unwrap();
    // A forged refresh token is still refused by deleteSession.
    let forged = jwt::sign_hs256(
        header(&s.refresh_jwt),
        &claims(&s.refresh_jwt),
        b"not the secret",
    );
    assert_err(
        f.check(R::Refresh, &forged, DELETE_SESSION),
        400,
        "InvalidToken",
    );
}

#[test]
fn app_passwords_create_list_login_revoke() {
    let f = Fixture::new();
    let full = f.login("alice.example.com", PASSWORD).unwrap();
    let owner = f
        .check(
            R::AccessFull,
            &full.access_jwt,
            "com.atproto.server.createAppPassword",
        )
        .unwrap();

    let created = f
        .auth()
        .create_app_password(
            &owner,
            &create_app_password::Input {
                name: "  phone ".into(),
                privileged: None,
            },
        )
        .unwrap();
    assert_eq!(created.name, "phone");
    assert_eq!(created.privileged, Some(false));
    assert_eq!(created.created_at.as_str(), "2023-11-14T22:13:20.000Z");
    assert!(pds::auth::app_password::is_app_password_format(
        &created.password
    ));
    f.advance_secs(5);
    let chat = f.app_password(&owner, "chat client", true).unwrap();
    let e = assert_err(f.app_password(&owner, "phone", true), 400, "InvalidRequest");
    assert!(e.message.contains("already exists"));
    assert_err(f.app_password(&owner, "   ", false), 400, "InvalidRequest");

    let list = f.auth().list_app_passwords(&owner).unwrap();
    let names: Vec<_> = list
        .passwords
        .iter()
        .map(|p| (p.name.as_str(), p.privileged))
        .collect();
    assert_eq!(names, [("chat client", Some(true)), ("phone", Some(false))]);
    // Only hashes are stored.
    let stored = f.store.app_passwords().unwrap();
    assert!(stored
        .iter()
        .all(|p| p.password_hash.starts_with("$argon2id$") && p.password_hash != created.password));

    // Sessions from app passwords carry their scope.
    let phone = f.login("alice.example.com", &created.password).unwrap();
    assert_eq!(
        claims(&phone.access_jwt).get("scope"),
        Some(&json!("com.atproto.appPass"))
    );
    let privileged = f.login("alice.example.com", &chat).unwrap();
    assert_eq!(
        claims(&privileged.access_jwt).get("scope"),
        Some(&json!("com.atproto.appPassPrivileged"))
    );

    // Privilege rules at the check...
    f.check(R::Access, &phone.access_jwt, CREATE_RECORD)
        .unwrap();
    let e = assert_err(
        f.check(
            R::AccessPrivileged,
            &phone.access_jwt,
            "chat.bsky.convo.listConvos",
        ),
        400,
        "InvalidToken",
    );
    assert_eq!(e.message, "Bad token scope");
    assert_err(
        f.check(
            R::AccessFull,
            &phone.access_jwt,
            "com.atproto.server.listAppPasswords",
        ),
        400,
        "InvalidToken",
    );
    f.check(
        R::AccessPrivileged,
        &privileged.access_jwt,
        "chat.bsky.convo.listConvos",
    )
    .unwrap();
    assert_err(
        f.check(
            R::AccessFull,
            &privileged.access_jwt,
            "com.atproto.server.deactivateAccount",
        ),
        400,
        "InvalidToken",
    );
    // ...and again in the handlers, should a method be wired with a weaker requirement.
    let phone_caller = f.check(R::Access, &phone.access_jwt, GET_SESSION).unwrap();
    let priv_caller = f
        .check(R::Access, &privileged.access_jwt, GET_SESSION)
        .unwrap();
    for c in [&phone_caller, &priv_caller] {
        assert_err(f.app_password(c, "sneaky", true), 400, "InvalidToken");
        assert_err(f.auth().list_app_passwords(c), 400, "InvalidToken");
        assert_err(
            f.auth().revoke_app_password(
                c,
                &revoke_app_password::Input {
                    name: "phone".into(),
                },
            ),
            400,
            "InvalidToken",
        );
        assert_err(
            f.auth().deactivate_account(
                c,
                &deactivate_account::Input { delete_after: None },
                no_events,
            ),
            400,
            "InvalidToken",
        );
        assert_err(f.auth().activate_account(c, no_events), 400, "InvalidToken");
    }
    // Refreshing keeps the app-password scope.
    let r = f.check(R::Refresh, &phone.refresh_jwt, REFRESH).unwrap();
    let phone2 = f.auth().refresh_session(&r).unwrap();
    assert_eq!(
        claims(&phone2.access_jwt).get("scope"),
        Some(&json!("com.atproto.appPass"))
    );

    // Revoking ends the password and every session it opened, at once.
    f.auth()
        .revoke_app_password(
            &owner,
            &revoke_app_password::Input {
                name: "phone".into(),
            },
        )
        .unwrap();
    assert_err(
        f.login("alice.example.com", &created.password),
        401,
        "AuthenticationRequired",
    );
    assert_err(
        f.check(R::Access, &phone.access_jwt, GET_SESSION),
        400,
        "ExpiredToken",
    );
    assert_err(
        f.check(R::Access, &phone2.access_jwt, GET_SESSION),
        400,
        "ExpiredToken",
    );
    let r = f.check(R::Refresh, &phone2.refresh_jwt, REFRESH).unwrap();
    assert_err(f.auth().refresh_session(&r), 400, "ExpiredToken");
    // Others live on; revoking an unknown name succeeds.
    f.check(R::Access, &privileged.access_jwt, GET_SESSION)
        .unwrap();
    f.check(R::Access, &full.access_jwt, GET_SESSION).unwrap();
    f.auth()
        .revoke_app_password(
            &owner,
            &revoke_app_password::Input {
                name: "nope".into(),
            },
        )
        .unwrap();
    assert_eq!(
        f.auth().list_app_passwords(&owner).unwrap().passwords.len(),
        1
    );
}

fn service_params(aud: &str, lxm: Option<&str>, exp: Option<i64>) -> get_service_auth::Params {
    get_service_auth::Params {
        aud: aud.into(),
        exp,
        lxm: lxm.map(|m| Nsid::new(m).unwrap()),
    }
}

#[test]
fn get_service_auth_mints_bounded_es256k_tokens() {
    let f = Fixture::new();
    let s = f.login("alice.example.com", PASSWORD).unwrap();
    let caller = f
        .check(
            R::Access,
            &s.access_jwt,
            "com.atproto.server.getServiceAuth",
        )
        .unwrap();
    let a = f.auth();

    let t = a
        .get_service_auth(
            &caller,
            &service_params(
                "did:web:api.bsky.app#bsky_appview",
                Some("app.bsky.feed.getTimeline"),
                None,
            ),
        )
        .unwrap()
        .token;
    let h = header(&t);
    assert_eq!(h.get("alg"), Some(&json!("ES256K")));
    assert_eq!(h.get("typ"), Some(&json!("JWT")));
    let c = jwt::decode(&t)
        .unwrap()
        .verify_es(&f.config.signing_key.public_key())
        .unwrap()
        .claims;
    assert_eq!(
        c.get("iss"),
        Some(&json!("did:plc:ewvi7nxzyoun6zhxrhs64oiz"))
    );
    assert_eq!(
        c.get("aud"),
        Some(&json!("did:web:api.bsky.app#bsky_appview"))
    );
    assert_eq!(c.get("lxm"), Some(&json!("app.bsky.feed.getTimeline")));
    assert_eq!(c.get("iat"), Some(&json!(T0)));
    assert_eq!(c.get("exp"), Some(&json!(T0 + 60)));
    assert_eq!(c.get("jti").and_then(Value::as_str).map(str::len), Some(32));

    // exp bounds.
    let now = T0 as i64;
    let ok = a
        .get_service_auth(
            &caller,
            &service_params("did:plc:abc", Some(UPLOAD_BLOB), Some(now + 3600)),
        )
        .unwrap();
    assert_eq!(claims(&ok.token).get("exp"), Some(&json!(T0 + 3600)));
    let e = assert_err(
        a.get_service_auth(
            &caller,
            &service_params("did:plc:abc", Some(UPLOAD_BLOB), Some(now + 3601)),
        ),
        400,
        "BadExpiration",
    );
    assert!(e.message.contains("more than an hour"));
    assert_err(
        a.get_service_auth(
            &caller,
            &service_params("did:plc:abc", Some(UPLOAD_BLOB), Some(now - 1)),
        ),
        400,
        "BadExpiration",
    );
    a.get_service_auth(
        &caller,
        &service_params("did:plc:abc", None, Some(now + 60)),
    )
    .unwrap();
    let e = assert_err(
        a.get_service_auth(
            &caller,
            &service_params("did:plc:abc", None, Some(now + 61)),
        ),
        400,
        "BadExpiration",
    );
    assert!(e.message.contains("method-less"));

    // Audience and method rules.
    for aud in [
        "https://example.com",
        "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
        "did:web:x#",
        "did:web:x#a#b",
    ] {
        assert_err(
            a.get_service_auth(&caller, &service_params(aud, None, None)),
            400,
            "InvalidRequest",
        );
    }
    let e = assert_err(
        a.get_service_auth(
            &caller,
            &service_params(
                "did:plc:abc",
                Some("com.atproto.server.createAppPassword"),
                None,
            ),
        ),
        400,
        "InvalidRequest",
    );
    assert!(e.message.contains("protected method"));
    a.get_service_auth(
        &caller,
        &service_params(
            "did:web:api.bsky.chat",
            Some("chat.bsky.convo.sendMessage"),
            None,
        ),
    )
    .unwrap();

    // A plain app password may not mint tokens for privileged methods.
    let full = f.check(R::AccessFull, &s.access_jwt, "x").unwrap();
    let pw = f.app_password(&full, "app", false).unwrap();
    let app = f.login("alice.example.com", &pw).unwrap();
    let app_caller = f
        .check(
            R::Access,
            &app.access_jwt,
            "com.atproto.server.getServiceAuth",
        )
        .unwrap();
    let e = assert_err(
        a.get_service_auth(
            &app_caller,
            &service_params(
                "did:web:api.bsky.chat",
                Some("chat.bsky.convo.sendMessage"),
                None,
            ),
        ),
        400,
        "InvalidRequest",
    );
    assert!(e.message.contains("insufficient access"));
    assert_err(
        a.get_service_auth(
            &app_caller,
            &service_params(
                "did:plc:abc",
                Some("com.atproto.server.createAccount"),
                None,
            ),
        ),
        400,
        "InvalidRequest",
    );
    a.get_service_auth(
        &app_caller,
        &service_params("did:plc:abc", Some(UPLOAD_BLOB), None),
    )
    .unwrap();
}

/// A service token for this PDS, signed by `key`, with `claims` overriding the defaults.
fn service_token(f: &Fixture, key: &SigningKey, overrides: Value) -> String {
    let mut c = Map::new();
    c.insert("iss".into(), json!(f.config.did.as_str()));
    c.insert("aud".into(), json!("did:web:pds.example.com"));
    c.insert("lxm".into(), json!(UPLOAD_BLOB));
    c.insert("iat".into(), json!(T0));
    c.insert("exp".into(), json!(T0 + 60));
    c.insert("jti".into(), json!("00112233445566778899aabbccddeeff"));
    if let Value::Object(o) = overrides {
        for (k, v) in o {
            if v.is_null() {
                c.remove(&k);
            } else {
                c.insert(k, v);
            }
        }
    }
    let mut h = Map::new();
    h.insert("typ".into(), json!("JWT"));
    jwt::sign_es(h, &c, key)
}

#[test]
fn inbound_service_auth() {
    let f = Fixture::new();
    let key = f.config.signing_key.clone();

    // A token the account minted through getServiceAuth, used by the service it went to.
    let s = f.login("alice.example.com", PASSWORD).unwrap();
    let caller = f
        .check(
            R::Access,
            &s.access_jwt,
            "com.atproto.server.getServiceAuth",
        )
        .unwrap();
    let minted = f
        .auth()
        .get_service_auth(
            &caller,
            &service_params(
                "did:web:pds.example.com",
                Some(UPLOAD_BLOB),
                Some(T0 as i64 + 1800),
            ),
        )
        .unwrap()
        .token;
    match f.check(R::AccessOrService, &minted, UPLOAD_BLOB).unwrap() {
        Caller::Service(c) => {
            assert_eq!(c.did, "did:plc:ewvi7nxzyoun6zhxrhs64oiz");
            assert_eq!(c.lxm.as_deref(), Some(UPLOAD_BLOB));
            assert_eq!(c.aud, "did:web:pds.example.com");
        }
        other => panic!("{other:?}"),
    }
    f.check(R::Service, &minted, UPLOAD_BLOB).unwrap();
    // Access tokens still work where service tokens do.
    assert!(matches!(
        f.check(R::AccessOrService, &s.access_jwt, UPLOAD_BLOB),
        Ok(Caller::Access(_))
    ));
    // A service token is no access token.
    assert_err(
        f.check(R::Access, &minted, UPLOAD_BLOB),
        400,
        "InvalidToken",
    );

    let cases: Vec<(Value, &str)> = vec![
        (json!({"lxm": CREATE_RECORD}), "BadJwtLexiconMethod"),
        (json!({"lxm": null}), "BadJwtLexiconMethod"),
        (
            json!({"aud": "did:web:other.example.com"}),
            "BadJwtAudience",
        ),
        (json!({"exp": T0}), "JwtExpired"),
        (json!({"exp": T0 + 3600 + 31}), "BadJwt"),
        (json!({"exp": null}), "BadJwt"),
        (json!({"exp": "soon"}), "BadJwt"),
        (json!({"iat": T0 + 31}), "BadJwt"),
        (json!({"iss": "did:plc:someoneelse"}), "UntrustedIss"),
        (
            json!({"iss": "did:plc:ewvi7nxzyoun6zhxrhs64oiz#atproto_labeler"}),
            "UntrustedIss",
        ),
        (json!({"iss": "not a did"}), "BadJwtIss"),
        (
            json!({"iss": "did:plc:ewvi7nxzyoun6zhxrhs64oiz#"}),
            "BadJwtIss",
        ),
        (json!({"lxm": 5}), "BadJwt"),
    ];
    for (overrides, error) in cases {
        let t = service_token(&f, &key, overrides.clone());
        assert_err(f.check(R::AccessOrService, &t, UPLOAD_BLOB), 401, error);
        assert_err(f.check(R::Service, &t, UPLOAD_BLOB), 401, error);
    }
    // iss with a service fragment is the account.
    let t = service_token(
        &f,
        &key,
        json!({"iss": "did:plc:ewvi7nxzyoun6zhxrhs64oiz#atproto"}),
    );
    f.check(R::Service, &t, UPLOAD_BLOB).unwrap();
    // Expiry boundary.
    let t = service_token(&f, &key, json!({"exp": T0 + 10}));
    f.advance_secs(9);
    f.check(R::Service, &t, UPLOAD_BLOB).unwrap();
    f.advance_secs(1);
    assert_err(f.check(R::Service, &t, UPLOAD_BLOB), 401, "JwtExpired");
    f.clock.set(T0 * 1_000_000);

    // Signed by another key, or on another curve.
    let stranger = SigningKey::generate(KeyAlgorithm::K256);
    let t = service_token(&f, &stranger, json!({}));
    let e = assert_err(f.check(R::Service, &t, UPLOAD_BLOB), 401, "BadJwtSignature");
    assert_eq!(e.message, "jwt signature does not match jwt issuer");
    let p256 = SigningKey::generate(KeyAlgorithm::P256);
    let t = service_token(&f, &p256, json!({}));
    assert_err(f.check(R::Service, &t, UPLOAD_BLOB), 401, "BadJwtSignature");
    // A session typ on a service token.
    let mut c = claims(&service_token(&f, &key, json!({})));
    c.remove("typ");
    let mut h = Map::new();
    h.insert("typ".into(), json!("at+jwt"));
    let t = jwt::sign_es(h, &c, &key);
    assert_err(f.check(R::Service, &t, UPLOAD_BLOB), 401, "BadJwtType");
    // HS256 with our own session secret claiming to be a service token.
    let t = jwt::sign_hs256(Map::new(), &c, &f.config.jwt_secret);
    assert!(f.check(R::Service, &t, UPLOAD_BLOB).is_err());
    // alg none.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none"})),
        b64(&Value::Object(c))
    );
    assert_err(
        f.check(R::Service, &none, UPLOAD_BLOB),
        401,
        "BadJwtSignature",
    );
}

#[test]
fn deactivation_refuses_writes_until_reactivated() {
    let f = Fixture::new();
    let s = f.login("alice.example.com", PASSWORD).unwrap();
    let full = f
        .check(
            R::AccessFull,
            &s.access_jwt,
            "com.atproto.server.deactivateAccount",
        )
        .unwrap();
    assert!(f
        .auth()
        .deactivate_account(
            &full,
            &deactivate_account::Input { delete_after: None },
            no_events
        )
        .unwrap());
    assert!(!f
        .auth()
        .deactivate_account(
            &full,
            &deactivate_account::Input { delete_after: None },
            no_events
        )
        .unwrap());

    for write in [
        "com.atproto.repo.createRecord",
        "com.atproto.repo.putRecord",
        "com.atproto.repo.deleteRecord",
        "com.atproto.repo.applyWrites",
    ] {
        let e = assert_err(
            f.check(R::Access, &s.access_jwt, write),
            401,
            "AccountDeactivated",
        );
        assert_eq!(e.message, "Account is deactivated");
    }
    // Reads, blob uploads and imports (migration) still work; the session says inactive.
    f.check(R::Access, &s.access_jwt, "com.atproto.repo.importRepo")
        .unwrap();
    let caller = f.check(R::Access, &s.access_jwt, GET_SESSION).unwrap();
    let out = f.auth().get_session(&caller).unwrap();
    assert_eq!(out.active, Some(false));
    assert_eq!(out.status.map(String::from).as_deref(), Some("deactivated"));
    // Signing in still works (to reactivate), reporting the status.
    let s2 = f.login("alice.example.com", PASSWORD).unwrap();
    assert_eq!(s2.active, Some(false));
    let r = f.check(R::Refresh, &s2.refresh_jwt, REFRESH).unwrap();
    assert_eq!(f.auth().refresh_session(&r).unwrap().active, Some(false));

    assert!(f.auth().activate_account(&full, no_events).unwrap());
    f.check(R::Access, &s.access_jwt, CREATE_RECORD).unwrap();
    assert_eq!(
        f.store.account_state().unwrap().status,
        AccountStatus::Active
    );
}

#[test]
fn takendown_accounts_cannot_sign_in() {
    let f = Fixture::new();
    f.store
        .set_account_status(AccountStatus::Takendown, 0, &[])
        .unwrap();
    let e = assert_err(
        f.login("alice.example.com", PASSWORD),
        401,
        "AccountTakedown",
    );
    assert_eq!(e.message, "Account has been taken down");
}

#[test]
fn email_identifies_the_account_when_set() {
    let f = Fixture::new();
    assert_err(
        f.login("alice@example.com", PASSWORD),
        401,
        "AuthenticationRequired",
    );
    f.store.set_email(Some("Alice@Example.com".into()), true);
    let s = f.login("alice@example.com", PASSWORD).unwrap();
    assert_eq!(s.email.as_deref(), Some("Alice@Example.com"));
    assert_eq!(s.email_confirmed, Some(true));
}

/// The store contract every implementation must meet.
fn store_contract(store: &dyn AuthStore) {
    let token = |sid: &str, jti: &str, app: Option<&str>, expires_ms: u64| RefreshTokenRecord {
        id: refresh_token_key(sid, jti),
        app_password_name: app.map(str::to_owned),
        scope: AccessScope::AppPass,
        created_ms: 1,
        expires_ms,
        next_id: None,
        session_started_ms: 1,
    };
    let a = "a".repeat(32);
    let b = "b".repeat(32);
    let a1 = token(&a, "1", None, 1000);
    let a2 = token(&a, "2", None, 2000);
    store.insert_refresh_token(&a1).unwrap();
    assert!(
        store.insert_refresh_token(&a1).is_err(),
        "duplicate ids are refused"
    );
    assert_eq!(store.refresh_token(&a1.id).unwrap().as_ref(), Some(&a1));
    assert_eq!(a1.session_id(), a);
    assert!(store.rotate_refresh_token(&a1.id, &a2).unwrap());
    assert!(
        !store
            .rotate_refresh_token(&a1.id, &token(&a, "3", None, 3000))
            .unwrap(),
        "spent twice"
    );
    assert_eq!(
        store.refresh_token(&a1.id).unwrap().unwrap().next_id,
        Some(a2.id.clone())
    );
    assert_eq!(
        store.refresh_token(&refresh_token_key(&a, "3")).unwrap(),
        None
    );
    assert!(!store
        .rotate_refresh_token("missing", &token(&a, "4", None, 1))
        .unwrap());
    assert!(store.session_exists(&a, 1500).unwrap());
    assert!(!store.session_exists(&a, 2000).unwrap());
    assert!(!store.session_exists(&b, 0).unwrap());

    store
        .insert_refresh_token(&token(&b, "1", Some("phone"), 5000))
        .unwrap();
    store.delete_session(&a).unwrap();
    assert!(!store.session_exists(&a, 0).unwrap());
    assert!(store.session_exists(&b, 0).unwrap());

    let pw = |name: &str, created_ms: u64| AppPasswordRecord {
        name: name.into(),
        password_hash: "$argon2id$x".into(),
        privileged: name == "chat",
        created_ms,
        lookup: None,
    };
    assert!(store.insert_app_password(&pw("phone", 10)).unwrap());
    assert!(store.insert_app_password(&pw("chat", 20)).unwrap());
    assert!(!store.insert_app_password(&pw("phone", 30)).unwrap());
    let names: Vec<_> = store
        .app_passwords()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["chat", "phone"]);
    assert!(store.delete_app_password("phone").unwrap());
    assert!(!store.delete_app_password("phone").unwrap());
    assert!(
        !store.session_exists(&b, 0).unwrap(),
        "its sessions went with it"
    );

    store
        .insert_refresh_token(&token(&b, "2", None, 100))
        .unwrap();
    store
        .insert_refresh_token(&token(&b, "3", None, 300))
        .unwrap();
    store.prune_refresh_tokens(100, 0).unwrap();
    assert_eq!(
        store.refresh_token(&refresh_token_key(&b, "2")).unwrap(),
        None
    );
    assert!(store
        .refresh_token(&refresh_token_key(&b, "3"))
        .unwrap()
        .is_some());
    // A spent token goes once it was issued long enough ago; a live one of the same age stays.
    let spent = RefreshTokenRecord {
        next_id: Some(refresh_token_key(&b, "3")),
        ..token(&b, "4", None, 300)
    };
    store.insert_refresh_token(&spent).unwrap();
    store.prune_refresh_tokens(100, 1).unwrap();
    assert!(store.refresh_token(&spent.id).unwrap().is_some());
    store.prune_refresh_tokens(100, 2).unwrap();
    assert_eq!(store.refresh_token(&spent.id).unwrap(), None);
    assert!(store
        .refresh_token(&refresh_token_key(&b, "3"))
        .unwrap()
        .is_some());
    // Rotation prunes in the same commit, and only when it rotated.
    store
        .insert_refresh_token(&token(&b, "5", None, 150))
        .unwrap();
    let next = token(&b, "6", None, 400);
    assert!(!store
        .rotate_refresh_token_and_prune("unknown", &next, 200, 0)
        .unwrap());
    assert!(store
        .refresh_token(&refresh_token_key(&b, "5"))
        .unwrap()
        .is_some());
    let current = refresh_token_key(&b, "3");
    assert!(store
        .rotate_refresh_token_and_prune(&current, &next, 200, 0)
        .unwrap());
    assert_eq!(
        store.refresh_token(&refresh_token_key(&b, "5")).unwrap(),
        None,
        "expired at 150, pruned by the rotation at 200"
    );
    assert_eq!(
        store.refresh_token(&current).unwrap().unwrap().next_id,
        Some(next.id.clone())
    );

    assert_eq!(store.account_state().unwrap().status, AccountStatus::Active);
    store
        .set_account_status(AccountStatus::Deactivated, 5, &[])
        .unwrap();
    assert_eq!(
        store.account_state().unwrap().status,
        AccountStatus::Deactivated
    );
}

#[test]
fn memory_store_meets_the_contract() {
    store_contract(&MemoryAuthStore::new());
}

fn sqlite() -> pds::platform::native::NativeSql {
    let db = pds::platform::native::NativeSql::open_in_memory().unwrap();
    pds::storage::migrate(&db).unwrap();
    db
}

#[test]
fn sql_store_meets_the_contract() {
    let db = sqlite();
    store_contract(&SqlAuthStore::new(&db, "did:plc:ewvi7nxzyoun6zhxrhs64oiz"));
    // The status change created the account row.
    let account = pds::storage::account::get_account(&db).unwrap().unwrap();
    assert_eq!(account.status, AccountStatus::Deactivated);
}

/// The main flows over any store: sign-in, rotation, reuse, app-password revocation,
/// deactivation.
fn scenario(store: &dyn AuthStore) {
    let f = Fixture::new();
    let auth = Auth::new(&f.config, store, &f.clock);
    let login = |password: &str| {
        auth.create_session(&create_session::Input {
            allow_takendown: None,
            auth_factor_token: None,
            identifier: "alice.example.com".into(),
            password: password.into(),
        })
    };
    let check = |req: R, token: &str, nsid: &str| {
        auth.authenticate(req, Some(&format!("Bearer {token}")), nsid)
    };

    let s1 = login(PASSWORD).unwrap();
    let r1 = check(R::Refresh, &s1.refresh_jwt, REFRESH).unwrap();
    let s2 = auth.refresh_session(&r1).unwrap();
    check(R::Access, &s2.access_jwt, GET_SESSION).unwrap();
    // Within the grace window the spent token gets the same successor; after it, reuse.
    assert_eq!(
        auth.refresh_session(&r1).unwrap().refresh_jwt,
        s2.refresh_jwt
    );
    f.advance_secs(61);
    assert_err(auth.refresh_session(&r1), 400, "ExpiredToken");
    assert_err(
        check(R::Access, &s2.access_jwt, GET_SESSION),
        400,
        "ExpiredToken",
    );

    let s3 = login(PASSWORD).unwrap();
    let owner = check(R::AccessFull, &s3.access_jwt, "x").unwrap();
    let pw = auth
        .create_app_password(
            &owner,
            &create_app_password::Input {
                name: "phone".into(),
                privileged: None,
            },
        )
        .unwrap()
        .password;
    assert_err(
        auth.create_app_password(
            &owner,
            &create_app_password::Input {
                name: "phone".into(),
                privileged: None,
            },
        ),
        400,
        "InvalidRequest",
    );
    let app = login(&pw).unwrap();
    assert_err(
        check(R::AccessFull, &app.access_jwt, "x"),
        400,
        "InvalidToken",
    );
    check(R::Access, &app.access_jwt, CREATE_RECORD).unwrap();
    assert_eq!(auth.list_app_passwords(&owner).unwrap().passwords.len(), 1);
    auth.revoke_app_password(
        &owner,
        &revoke_app_password::Input {
            name: "phone".into(),
        },
    )
    .unwrap();
    assert_err(
        check(R::Access, &app.access_jwt, GET_SESSION),
        400,
        "ExpiredToken",
    );
    assert_err(login(&pw), 401, "AuthenticationRequired");

    assert!(auth
        .deactivate_account(
            &owner,
            &deactivate_account::Input { delete_after: None },
            no_events
        )
        .unwrap());
    assert_err(
        check(R::Access, &s3.access_jwt, CREATE_RECORD),
        401,
        "AccountDeactivated",
    );
    assert!(auth.activate_account(&owner, no_events).unwrap());
    check(R::Access, &s3.access_jwt, CREATE_RECORD).unwrap();

    let d = check(R::Refresh, &s3.refresh_jwt, DELETE_SESSION).unwrap();
    auth.delete_session(&d).unwrap();
    assert_err(
        check(R::Access, &s3.access_jwt, GET_SESSION),
        400,
        "ExpiredToken",
    );
}

#[test]
fn scenario_over_memory_and_sqlite() {
    scenario(&MemoryAuthStore::new());
    let db = sqlite();
    scenario(&SqlAuthStore::new(&db, "did:plc:ewvi7nxzyoun6zhxrhs64oiz"));
}

#[test]
fn clock_drives_every_time() {
    // No token is minted from the system clock: a clock in 2001 mints 2001 tokens.
    let f = Fixture::new();
    f.clock.set(1_000_000_000 * 1_000_000);
    let s = f.login("alice.example.com", PASSWORD).unwrap();
    assert_eq!(
        claims(&s.access_jwt).get("iat"),
        Some(&json!(1_000_000_000u64))
    );
    assert_eq!(f.clock.now_secs(), 1_000_000_000);
}

#[test]
fn methods_are_checked_against_the_policy_table() {
    use pds_api::com::atproto::server::{create_app_password, get_session};
    let f = Fixture::new();
    let full = f.login("alice.example.com", PASSWORD).unwrap();
    let owner = f.check(R::AccessFull, &full.access_jwt, "x").unwrap();
    let pw = f.app_password(&owner, "phone", false).unwrap();
    let app = f.login("alice.example.com", &pw).unwrap();
    let bearer = |token: &str| format!("Bearer {token}");
    let a = f.auth();
    // getSession: any access token; createAppPassword: the full account only.
    a.authenticate_method(get_session::NSID, Some(&bearer(&app.access_jwt)))
        .unwrap();
    a.authenticate_method(create_app_password::NSID, Some(&bearer(&full.access_jwt)))
        .unwrap();
    assert_err(
        a.authenticate_method(create_app_password::NSID, Some(&bearer(&app.access_jwt))),
        400,
        "InvalidToken",
    );
}

#[test]
fn spent_tokens_are_remembered_for_their_lifetime() {
    let f = Fixture::new();
    let s1 = f.login("alice.example.com", PASSWORD).unwrap();
    let r = f.check(R::Refresh, &s1.refresh_jwt, REFRESH).unwrap();
    let s2 = f.auth().refresh_session(&r).unwrap();
    // A month later the stolen first token shows up: still detected as reuse.
    f.advance_secs(30 * 86_400);
    let replay = f.check(R::Refresh, &s1.refresh_jwt, REFRESH).unwrap();
    let e = assert_err(f.auth().refresh_session(&replay), 400, "ExpiredToken");
    assert!(e.message.contains("already been used"));
    let r2 = f.check(R::Refresh, &s2.refresh_jwt, REFRESH).unwrap();
    assert_err(f.auth().refresh_session(&r2), 400, "ExpiredToken");
}

#[test]
fn optional_credentials_are_verified_when_present() {
    let f = Fixture::new();
    let s = f.login("alice.example.com", PASSWORD).unwrap();
    let sync = "com.atproto.sync.getRepo";
    assert!(matches!(
        f.check(R::Optional, &s.access_jwt, sync),
        Ok(Caller::Access(_))
    ));
    let t = service_token(&f, &f.config.signing_key, json!({"lxm": sync}));
    assert!(matches!(
        f.check(R::Optional, &t, sync),
        Ok(Caller::Service(_))
    ));
    f.advance_secs(ACCESS_TOKEN_TTL_SECS);
    assert_err(
        f.check(R::Optional, &s.access_jwt, sync),
        400,
        "ExpiredToken",
    );
    assert_err(f.check(R::Optional, &t, sync), 401, "JwtExpired");
}

/// A password hash at older parameters (19 MiB) still signs in, and the login stores a fresh
/// hash of the same password at the current ones, which signs in too.
#[test]
fn a_login_replaces_an_outdated_password_hash() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut f = Fixture::new();
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap();
    f.config.password_hash =
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(
                PASSWORD.as_bytes(),
                &SaltString::encode_b64(&[9; 16]).unwrap(),
            )
            .unwrap()
            .to_string();
    f.login("alice.example.com", PASSWORD).unwrap();
    let fresh = f
        .store
        .rehashed_password()
        .expect("the login stored a new hash");
    assert!(
        fresh.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"),
        "{fresh}"
    );
    assert!(pds::password::verify(PASSWORD, &fresh));

    // At current parameters nothing is replaced.
    let f = Fixture::new();
    f.login("alice.example.com", PASSWORD).unwrap();
    assert_eq!(f.store.rehashed_password(), None);
}
