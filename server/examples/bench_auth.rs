//! Prints timings of the authentication paths: the per-request check (access token, service
//! token), refresh rotation, and sign-in (argon2id). Run with
//! `cargo run --release -p pds --example bench_auth`.

use std::hint::black_box;
use std::time::Instant;

use pds::auth::{Auth, AuthStore, Caller, MemoryAuthStore};
use pds::clock::ManualClock;
use pds::config::Config;
use pds::crypto::{KeyAlgorithm, SigningKey};
use pds_api::com::atproto::server::{create_session, get_service_auth};
use pds_api::runtime::syntax::{Did, Handle, Nsid};
use pds_api::runtime::xrpc::AuthRequirement;

fn time<R>(label: &str, iters: u32, mut f: impl FnMut() -> R) {
    for _ in 0..iters / 10 + 1 {
        black_box(f());
    }
    let start = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    let per = start.elapsed().as_nanos() as f64 / f64::from(iters);
    println!("{label:<44} {:>10.1} µs/op", per / 1000.0);
}

fn main() {
    let password = "correct horse battery staple";
    let config = Config {
        hostname: "pds.example.com".into(),
        did: Did::new("did:plc:ewvi7nxzyoun6zhxrhs64oiz").expect("did"),
        handle: Handle::new("alice.example.com").expect("handle"),
        signing_key: SigningKey::generate(KeyAlgorithm::K256),
        plc_rotation_key: None,
        password_hash: pds::password::hash(password).expect("hash"),
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
    };
    let store = MemoryAuthStore::new();
    let clock = ManualClock::new(1_700_000_000 * 1_000_000);
    let auth = Auth::new(&config, &store, &clock);
    let login = create_session::Input {
        allow_takendown: None,
        auth_factor_token: None,
        identifier: "alice.example.com".into(),
        password: password.into(),
    };

    let session = auth.create_session(&login).expect("login");
    let bearer = format!("Bearer {}", session.access_jwt);
    time("authenticate(access token)", 20_000, || {
        auth.authenticate(
            AuthRequirement::Access,
            Some(&bearer),
            "com.atproto.repo.createRecord",
        )
    });

    let caller = auth
        .authenticate(AuthRequirement::Access, Some(&bearer), "x")
        .expect("caller");
    let params = get_service_auth::Params {
        aud: "did:web:pds.example.com".into(),
        exp: None,
        lxm: Some(Nsid::new("com.atproto.repo.uploadBlob").expect("nsid")),
    };
    time("getServiceAuth (ES256K sign)", 2_000, || {
        auth.get_service_auth(&caller, &params)
    });
    let service = format!(
        "Bearer {}",
        auth.get_service_auth(&caller, &params)
            .expect("token")
            .token
    );
    time("authenticate(service token, ES256K verify)", 2_000, || {
        auth.authenticate(
            AuthRequirement::AccessOrService,
            Some(&service),
            "com.atproto.repo.uploadBlob",
        )
    });

    let mut refresh = session.refresh_jwt.clone();
    time("refreshSession (verify + rotate)", 5_000, || {
        let header = format!("Bearer {refresh}");
        let c = auth
            .authenticate(
                AuthRequirement::Refresh,
                Some(&header),
                "com.atproto.server.refreshSession",
            )
            .expect("refresh caller");
        let out = auth.refresh_session(&c).expect("rotate");
        refresh = out.refresh_jwt;
        matches!(c, Caller::Refresh(_))
    });

    time("createSession (argon2id verify)", 20, || {
        auth.create_session(&login)
    });

    // The same paths with the session state in SQLite (the Durable Object's engine), over a
    // table already holding 1,000 other sessions' tokens.
    let db = pds::platform::native::NativeSql::open_in_memory().expect("sqlite");
    pds::storage::migrate(&db).expect("migrate");
    let sql_store = pds::auth::SqlAuthStore::new(&db, "did:plc:ewvi7nxzyoun6zhxrhs64oiz");
    for i in 0..1000u64 {
        let sid = format!("{i:032x}");
        let token = pds::auth::RefreshTokenRecord {
            id: pds::auth::store::refresh_token_key(&sid, "jti"),
            app_password_name: None,
            scope: pds::auth::AccessScope::Full,
            created_ms: 0,
            expires_ms: 1 << 52,
            next_id: None,
            session_started_ms: 0,
        };
        sql_store.insert_refresh_token(&token).expect("insert");
    }
    let sql_auth = Auth::new(&config, &sql_store, &clock);
    let sql_session = sql_auth.create_session(&login).expect("login");
    let sql_bearer = format!("Bearer {}", sql_session.access_jwt);
    time("authenticate(access token), SQLite store", 20_000, || {
        sql_auth.authenticate(
            AuthRequirement::Access,
            Some(&sql_bearer),
            "com.atproto.repo.createRecord",
        )
    });
    let mut sql_refresh = sql_session.refresh_jwt.clone();
    time(
        "refreshSession (verify + rotate), SQLite store",
        2_000,
        || {
            let header = format!("Bearer {sql_refresh}");
            let c = sql_auth
                .authenticate(
                    AuthRequirement::Refresh,
                    Some(&header),
                    "com.atproto.server.refreshSession",
                )
                .expect("refresh caller");
            let out = sql_auth.refresh_session(&c).expect("rotate");
            sql_refresh = out.refresh_jwt;
        },
    );
}
