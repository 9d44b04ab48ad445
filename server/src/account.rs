//! The account's state and the platform ports it lives behind. One `Account` exists per Durable
//! Object (or native server) and outlives requests; handlers borrow it through [`crate::api::Api`].

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;

use pds_api::runtime::syntax::{Handle, Tid};
use pds_api::runtime::xrpc::XrpcError;

use crate::api::internal;
use crate::clock::Clock;
use crate::config::Config;
use crate::net::http_client::{
    ClientRequest, ClientResponse, HttpClient, HttpError, LocalBoxFuture,
};
use crate::net::identity::{IdentityResolver, ResolverSettings};
use crate::repo::Repo;
use crate::storage::account::{reconcile_with_seeds, Reconciled, Seeds};
use crate::storage::{load_root, persist_commit, RecordBlobs, RepoRoot, SqlBlockStore};
use crate::storage::{BlobStore, MigrationOutcome, Sql, StorageError};
use crate::tid::TidGenerator;

/// The most bytes of blocks [`Account::block_cache`] holds: a commit's path through a
/// 100k-record tree is about ten small nodes, and the Durable Object has 128 MB.
const BLOCK_CACHE_BYTES: usize = 256 * 1024;

/// The ports and long-lived state behind every request of the account.
pub struct Account {
    /// The SQL port: DO SQLite on Workers, a SQLite file natively. Shared, so a streamed
    /// response (a CAR export) can keep reading after its handler returned.
    pub sql: Rc<dyn Sql>,
    /// The blob store: R2 on Workers, a directory natively.
    pub blobs: Box<dyn BlobStore>,
    /// Time, from the platform.
    pub clock: Rc<dyn Clock>,
    /// Outbound HTTP (identity resolution, the proxy's lookups); none until the shell gives one
    /// ([`Account::with_http`]).
    pub http: Rc<dyn HttpClient>,
    /// DIDs and handles, cached; built on first use from the configuration's network settings.
    resolver: OnceCell<IdentityResolver>,
    /// The platform's faster signature checks (WebCrypto on Workers), if any.
    fast_verify: Option<Rc<dyn crate::crypto::FastVerify>>,
    /// SHA-256 of the last DPoP proofs whose signatures [`Account::precheck_dpop`] verified.
    verified_proofs: RefCell<std::collections::VecDeque<[u8; 32]>>,
    /// The repository blocks the last commits read and wrote: the next commit starts from its
    /// commit block and the MST nodes on the paths it changes, usually all found here.
    pub block_cache: crate::storage::BlockCache,
    /// Revisions and record keys; seeded from the stored head before first use.
    pub tids: RefCell<TidGenerator>,
    /// Whether the schema could be brought up to date when the account was opened.
    pub schema: Result<MigrationOutcome, StorageError>,
    /// The newest event seq the last maintenance check after a request saw (none before the
    /// first check of this instance): requests that stored nothing skip the check.
    pub maintenance_seen_seq: Cell<Option<i64>>,
    /// Write points admitted by the account's write limits and not yet stored: they go into
    /// storage with the next repository commit, in its transaction (see
    /// [`crate::rate_limit::admit_call`]). Counted as used by every check meanwhile.
    pub held_write_points: Cell<u32>,
    /// The configuration as requests see it (see [`Account::effective_config`]), built on the
    /// first request of this instance.
    effective: RefCell<Option<Rc<Config>>>,
    /// Blobs this instance's maintenance collected, and when: an upload of the same bytes
    /// meanwhile may have had them deleted under it.
    collected: RefCell<std::collections::HashMap<cid::Cid, i64>>,
}

impl Account {
    /// The repository's head. On first use this creates the empty repository: one signed
    /// commit, persisted with a `#sync` event so relays can start from it.
    pub fn head(&self, config: &Config) -> Result<RepoRoot, XrpcError> {
        let db = self.sql.as_ref();
        if let Some(root) = load_root(db).map_err(internal)? {
            self.tids
                .borrow_mut()
                .ensure_after(&Tid::new(root.rev.clone()).map_err(internal)?);
            return Ok(root);
        }
        let rev = self.tids.borrow_mut().next(self.clock.as_ref());
        let store = SqlBlockStore::new(db);
        let (_, output) = Repo::create(
            &store,
            config.did.as_str(),
            &[],
            &config.signing_key,
            rev.as_str(),
        )
        .map_err(internal)?;
        let commit_block = output
            .new_blocks
            .get(&output.cid)
            .ok_or_else(|| internal("the new commit has no block"))?;
        let event =
            crate::firehose::sync_event(commit_block, self.clock.now_micros()).map_err(internal)?;
        persist_commit(
            db,
            &output,
            &RecordBlobs::new(),
            &event.new_event(self.clock.now_millis() as i64),
        )
        .map_err(internal)?;
        load_root(db)
            .map_err(internal)?
            .ok_or_else(|| internal("the new repository has no head"))
    }

    /// The answer for every request when the schema could not be brought up to date: nothing
    /// can run on a database this build cannot use.
    pub fn check_schema(&self) -> Result<(), XrpcError> {
        match &self.schema {
            Ok(_) => Ok(()),
            Err(e) => Err(XrpcError::new(
                500,
                "InternalServerError",
                format!("The account's database is unusable: {e}"),
            )),
        }
    }

    /// Opens the account over its ports, bringing the schema up to date.
    pub fn open(sql: Box<dyn Sql>, blobs: Box<dyn BlobStore>, clock: Box<dyn Clock>) -> Account {
        let schema = crate::storage::migrate(sql.as_ref());
        Account {
            sql: Rc::new(crate::storage::memo::MemoSql::new(sql)),
            blobs,
            clock: Rc::from(clock),
            http: Rc::new(NoNetwork),
            resolver: OnceCell::new(),
            fast_verify: None,
            verified_proofs: RefCell::new(std::collections::VecDeque::new()),
            block_cache: crate::storage::BlockCache::new(BLOCK_CACHE_BYTES),
            tids: RefCell::new(TidGenerator::new()),
            schema,
            maintenance_seen_seq: Cell::new(None),
            held_write_points: Cell::new(0),
            collected: RefCell::new(std::collections::HashMap::new()),
            effective: RefCell::new(None),
        }
    }

    /// The account with `http` as its outbound HTTP port.
    pub fn with_http(mut self, http: Rc<dyn HttpClient>) -> Account {
        self.http = http;
        self.resolver = OnceCell::new();
        self
    }

    /// The account with the platform's faster signature checks.
    pub fn with_fast_verify(mut self, fast: Rc<dyn crate::crypto::FastVerify>) -> Account {
        self.fast_verify = Some(fast);
        self
    }

    /// Verifies the signature of the request's DPoP proof with the platform's faster check,
    /// ahead of the (synchronous) authentication that then trusts it
    /// ([`Account::proof_verified`]). Only a P-256 proof, and only where the platform has such a
    /// check; otherwise, or when it fails, authentication verifies the proof itself.
    pub async fn precheck_dpop(&self, req: &crate::http::HttpRequest) -> Option<()> {
        let fast = self.fast_verify.as_ref()?;
        let [proof] = crate::oauth::dpop::proof_headers(req)[..] else {
            return None;
        };
        let (input, key, sig) = crate::oauth::dpop::signed_parts(proof)?;
        if key.algorithm() != crate::crypto::KeyAlgorithm::P256 {
            return None;
        }
        let point = key.to_sec1_uncompressed();
        if fast.verify_es256(&point, input.as_bytes(), &sig).await? {
            use sha2::Digest;
            let mut verified = self.verified_proofs.borrow_mut();
            verified.push_back(sha2::Sha256::digest(proof.as_bytes()).into());
            while verified.len() > 32 {
                verified.pop_front();
            }
        }
        Some(())
    }

    /// The platform's signature checks, if it has any.
    pub fn fast_verify(&self) -> Option<&dyn crate::crypto::FastVerify> {
        self.fast_verify.as_deref()
    }

    /// Whether this exact DPoP proof's signature was verified by [`Account::precheck_dpop`].
    pub fn proof_verified(&self, proof: &str) -> bool {
        use sha2::Digest;
        let hash: [u8; 32] = sha2::Sha256::digest(proof.as_bytes()).into();
        self.verified_proofs.borrow().contains(&hash)
    }

    /// The identity resolver, over the outbound HTTP port, with the network settings of
    /// `config` (they only change with a deployment, which starts a new instance).
    pub fn resolver(&self, config: &Config) -> &IdentityResolver {
        self.resolver.get_or_init(|| {
            IdentityResolver::new(
                self.http.clone(),
                self.clock.clone(),
                ResolverSettings {
                    public_only: !config.is_local_development(),
                    ..ResolverSettings::new(&config.network)
                },
            )
        })
    }

    /// The configuration as requests see it: the deployment's settings with the account's
    /// stored identity (handle, password hash), which is the source of truth. The first call
    /// of an instance reconciles storage with the configuration
    /// ([`crate::storage::account::reconcile_with_seeds`]); later calls cost nothing. A
    /// deployment configured for another DID than the stored account's is refused.
    pub fn effective_config(&self, deployed: &Config) -> Result<Rc<Config>, XrpcError> {
        if let Some(config) = self.effective.borrow().as_ref() {
            return Ok(config.clone());
        }
        self.check_schema()?;
        let seeds = Seeds {
            did: deployed.did.as_str(),
            handle: deployed.handle.as_str(),
            password_hash: &deployed.password_hash,
        };
        let now_ms = i64::try_from(self.clock.now_millis()).unwrap_or(i64::MAX);
        let identity = match reconcile_with_seeds(self.sql.as_ref(), seeds, now_ms)? {
            Reconciled::Identity(identity) => identity,
            Reconciled::OtherDid(stored) => {
                return Err(XrpcError::internal_message(format!(
                    "{}configuration variable {} is {} but this account's data belongs to {stored}",
                    crate::routes::MISCONFIGURED,
                    crate::config::vars::DID,
                    deployed.did.as_str(),
                )))
            }
        };
        let mut config = deployed.clone();
        config.handle = Handle::new(identity.handle).map_err(internal)?;
        config.password_hash = identity.password_hash;
        let config = Rc::new(config);
        *self.effective.borrow_mut() = Some(config.clone());
        Ok(config)
    }

    /// Notes that blob `cid` is being collected at `now_ms` (its bytes about to be deleted);
    /// notes older than `forget_before_ms` are dropped.
    pub fn note_collected(&self, cid: cid::Cid, now_ms: i64, forget_before_ms: i64) {
        let mut collected = self.collected.borrow_mut();
        collected.retain(|_, at| *at >= forget_before_ms);
        collected.insert(cid, now_ms);
    }

    /// Whether blob `cid` was collected at or after `since_ms`.
    pub fn was_collected_since(&self, cid: &cid::Cid, since_ms: i64) -> bool {
        self.collected
            .borrow()
            .get(cid)
            .is_some_and(|at| *at >= since_ms)
    }

    /// Drops the cached [`Account::effective_config`] after the stored identity changed.
    pub fn forget_effective_config(&self) {
        self.effective.borrow_mut().take();
    }
}

/// The outbound HTTP port of an account whose shell gave none: every exchange fails.
struct NoNetwork;

impl HttpClient for NoNetwork {
    fn send(
        &self,
        _request: ClientRequest,
    ) -> LocalBoxFuture<'_, Result<ClientResponse, HttpError>> {
        Box::pin(async {
            Err(HttpError::Network(
                "this account has no outbound HTTP port".into(),
            ))
        })
    }
}
