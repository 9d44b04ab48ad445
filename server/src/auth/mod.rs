//! Authentication: legacy sessions (HS256 access/refresh JWTs with server-side, single-use
//! refresh tokens), app passwords (privileged or not), service-auth JWTs (minted for the
//! account, accepted back), and the one check every XRPC call passes before its handler
//! ([`Auth::authenticate`]).
//!
//! Pure logic over three ports: the [`Config`] (account identity, secrets, keys), an
//! [`AuthStore`] (sessions, app passwords, account status: [`SqlAuthStore`] over the account's
//! database, [`MemoryAuthStore`] in tests) and a [`Clock`]. Nothing here blocks,
//! spawns or reads the system time, so it runs the same in the Worker and natively.
//!
//! Sessions, and where they do better than the reference PDS:
//! - every session has an id (`sid` in both tokens); its refresh tokens are stored (hashed)
//!   under that id, and an access token is honoured only while its session exists, so
//!   deleteSession and revoking an app password end access at once, not up to 2 hours later;
//! - refresh tokens are single-use: refreshSession marks the presented token spent and returns
//!   a new pair. Presenting a spent token again is refused and revokes the whole session (it
//!   means the token leaked, or a client replayed it). The reference instead re-issues the same
//!   successor for 2 hours; we choose strict rotation (OAuth 2.1 reuse detection), at the cost
//!   that a client that loses a refresh response must sign in again;
//! - deleteSession revokes the whole session (accepting an expired refresh token, as logging
//!   out must always work);
//! - sessions remember the app password that opened them; revoking it deletes them.

pub mod account_token;
pub mod app_password;
pub mod jwt;
pub mod policy;
pub mod service;
pub mod session;
pub mod sql_store;
pub mod store;
pub mod tokens;
pub mod verifier;

pub use sql_store::SqlAuthStore;
pub use store::{
    AccountState, AccountStatus, AppPasswordRecord, AuthStore, MemoryAuthStore, RefreshTokenRecord,
    StoreError,
};
pub use tokens::AccessScope;
pub use verifier::{
    AccessCaller, Caller, OAuthCaller, Permission, Presented, RefreshCaller, ServiceCaller,
};

use pds_api::runtime::xrpc::XrpcError;

use crate::clock::Clock;
use crate::config::Config;

/// Everything authentication needs, borrowed for one request.
pub struct Auth<'a> {
    config: &'a Config,
    store: &'a dyn AuthStore,
    clock: &'a dyn Clock,
    service_did: String,
    /// The OAuth tables, for DPoP-bound tokens (none: they are refused).
    oauth_db: Option<&'a dyn crate::storage::Sql>,
    /// Whether a DPoP proof's signature was already verified by the platform.
    proof_verified: Option<&'a dyn Fn(&str) -> bool>,
}

impl<'a> Auth<'a> {
    /// Authentication over a configuration, a state store and a clock.
    pub fn new(config: &'a Config, store: &'a dyn AuthStore, clock: &'a dyn Clock) -> Auth<'a> {
        Auth {
            config,
            store,
            clock,
            service_did: config.service_did(),
            oauth_db: None,
            proof_verified: None,
        }
    }

    /// The same, accepting OAuth tokens, whose sessions live in `db`; `proof_verified` says
    /// which DPoP proofs the platform already verified ([`crate::account::Account::precheck_dpop`]).
    pub fn with_oauth(
        mut self,
        db: &'a dyn crate::storage::Sql,
        proof_verified: &'a dyn Fn(&str) -> bool,
    ) -> Auth<'a> {
        self.oauth_db = Some(db);
        self.proof_verified = Some(proof_verified);
        self
    }

    /// The keys and audience of session tokens.
    pub fn session_keys(&self) -> tokens::SessionKeys<'_> {
        tokens::SessionKeys {
            secret: &self.config.jwt_secret,
            service_did: &self.service_did,
        }
    }

    /// This server's DID (`aud` of its session tokens and of service tokens sent to it).
    pub fn service_did(&self) -> &str {
        &self.service_did
    }
}

/// `N` bytes from the platform's CSPRNG, or a server error (never a panic).
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], XrpcError> {
    let mut bytes = [0u8; N];
    getrandom02::getrandom(&mut bytes)
        .map_err(|e| XrpcError::internal_message(format!("no randomness: {e}")))?;
    Ok(bytes)
}
