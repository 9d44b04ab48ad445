//! The state authentication keeps: refresh tokens (server-side, so sessions can be rotated and
//! revoked), app passwords, and the account's status. A small port so the logic runs over the
//! platform's SQL database or, in tests, over [`MemoryAuthStore`].
//!
//! The record shapes follow the storage schema's `refresh_token`, `app_password` and `account`
//! tables. A refresh token's `id` is `"{session_id}.{sha256(jti) as hex}"`: the session is the
//! key's prefix, so a session's tokens are one primary-key range, and a database dump holds no
//! usable token id.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use super::tokens::AccessScope;
use crate::firehose::EventBody;

/// A storage failure (always a server error for the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "auth store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// An auth-store failure reaching a client is a server fault (its detail is logged, never
/// sent: see [`crate::lifecycle::conceal_internal_error`]).
impl From<StoreError> for pds_api::runtime::xrpc::XrpcError {
    fn from(e: StoreError) -> Self {
        pds_api::runtime::xrpc::XrpcError::internal_message(e.to_string())
    }
}

/// One refresh token of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// [`refresh_token_key`] of the session id and the token's `jti`.
    pub id: String,
    /// The app password that opened the session (`None`: the account password).
    pub app_password_name: Option<String>,
    /// The access scope of the session.
    pub scope: AccessScope,
    pub created_ms: u64,
    /// When the token expires (the JWT's `exp`, in milliseconds).
    pub expires_ms: u64,
    /// Set once the token has been used: the id of the token it was rotated to. A token with
    /// a successor is spent; presenting it again is reuse.
    pub next_id: Option<String>,
    /// When the session's first token was issued (ms): sessions end a fixed time after.
    pub session_started_ms: u64,
}

impl RefreshTokenRecord {
    /// The session this token belongs to (the key's prefix).
    pub fn session_id(&self) -> &str {
        self.id.split('.').next().unwrap_or("")
    }
}

/// The storage key of refresh token `jti` in session `session_id`.
pub fn refresh_token_key(session_id: &str, jti: &str) -> String {
    let digest = Sha256::digest(jti.as_bytes());
    format!("{session_id}.{}", crate::hex::encode(&digest))
}

/// One app password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPasswordRecord {
    /// Unique name, as given at creation (trimmed).
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub privileged: bool,
    pub created_ms: u64,
    /// The password's lookup tag ([`super::app_password::lookup_tag`]); none for app passwords
    /// made before tags existed.
    pub lookup: Option<String>,
}

pub use crate::storage::account::AccountStatus;

/// What sessions report about the account besides its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountState {
    pub status: AccountStatus,
    pub email: Option<String>,
    pub email_confirmed: bool,
}

impl Default for AccountState {
    fn default() -> Self {
        AccountState {
            status: AccountStatus::Active,
            email: None,
            email_confirmed: false,
        }
    }
}

/// The auth state port. Implementations make each method atomic; no `Send` bound (Durable
/// Object code is single-threaded).
pub trait AuthStore {
    /// Stores a new refresh token.
    fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> Result<(), StoreError>;

    /// The refresh token stored under `id`.
    fn refresh_token(&self, id: &str) -> Result<Option<RefreshTokenRecord>, StoreError>;

    /// Atomically marks token `id` spent (its `next_id` becomes `next.id`) and stores `next`,
    /// only if `id` exists and is unspent. Returns whether it did (false: lost a race or reuse).
    fn rotate_refresh_token(&self, id: &str, next: &RefreshTokenRecord)
        -> Result<bool, StoreError>;

    /// Whether session `session_id` has a token (spent or not) that has not expired: a
    /// revoked session has none.
    fn session_exists(&self, session_id: &str, now_ms: u64) -> Result<bool, StoreError>;

    /// Deletes every token of session `session_id`.
    fn delete_session(&self, session_id: &str) -> Result<(), StoreError>;

    /// Deletes tokens that expired at or before `now_ms`, and spent tokens (with a successor)
    /// issued before `spent_issued_before_ms`.
    fn prune_refresh_tokens(
        &self,
        now_ms: u64,
        spent_issued_before_ms: u64,
    ) -> Result<(), StoreError>;

    /// [`Self::rotate_refresh_token`], then, if it rotated, [`Self::prune_refresh_tokens`],
    /// all or nothing (one storage commit where commits cost).
    fn rotate_refresh_token_and_prune(
        &self,
        id: &str,
        next: &RefreshTokenRecord,
        now_ms: u64,
        spent_issued_before_ms: u64,
    ) -> Result<bool, StoreError> {
        let rotated = self.rotate_refresh_token(id, next)?;
        if rotated {
            self.prune_refresh_tokens(now_ms, spent_issued_before_ms)?;
        }
        Ok(rotated)
    }

    /// [`Self::prune_refresh_tokens`], then [`Self::insert_refresh_token`] for a new session,
    /// all or nothing (one storage commit where commits cost).
    fn prune_and_insert_refresh_token(
        &self,
        token: &RefreshTokenRecord,
        now_ms: u64,
        spent_issued_before_ms: u64,
    ) -> Result<(), StoreError> {
        self.prune_refresh_tokens(now_ms, spent_issued_before_ms)?;
        self.insert_refresh_token(token)
    }

    /// Stores a new app password; false (nothing stored) if the name is taken.
    fn insert_app_password(&self, record: &AppPasswordRecord) -> Result<bool, StoreError>;

    /// Every app password, newest first.
    fn app_passwords(&self) -> Result<Vec<AppPasswordRecord>, StoreError>;

    /// Atomically deletes app password `name` and every session it opened. Returns whether
    /// the password existed.
    fn delete_app_password(&self, name: &str) -> Result<bool, StoreError>;

    /// The account's status and email (defaults when the account row does not exist yet).
    fn account_state(&self) -> Result<AccountState, StoreError>;

    /// Stores a new hash of the same account password (fresh parameters); sessions stay.
    fn rehash_password(&self, phc: &str) -> Result<(), StoreError>;

    /// Stores the hash of a new account password and ends every session (app-password ones
    /// included), all or nothing.
    fn change_password(&self, phc: &str) -> Result<(), StoreError>;

    /// Sets the account's status and appends `events` to the firehose sequencer, all or
    /// nothing: a status change and its `#account` (and `#identity`, `#sync`) events commit
    /// together, so subscribers never miss one nor see one that did not happen.
    fn set_account_status(
        &self,
        status: AccountStatus,
        now_ms: u64,
        events: &[EventBody],
    ) -> Result<(), StoreError>;
}

/// An in-memory [`AuthStore`] for tests and tools.
#[derive(Debug, Default)]
pub struct MemoryAuthStore {
    inner: RefCell<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    tokens: BTreeMap<String, RefreshTokenRecord>,
    app_passwords: Vec<AppPasswordRecord>,
    account: AccountState,
    events: Vec<EventBody>,
    rehashed: Option<String>,
}

impl MemoryAuthStore {
    /// An empty store: no sessions, no app passwords, an active account.
    pub fn new() -> MemoryAuthStore {
        MemoryAuthStore::default()
    }

    /// The hash the last login stored in place of an outdated one, if any.
    pub fn rehashed_password(&self) -> Option<String> {
        self.inner.borrow().rehashed.clone()
    }

    /// Number of stored refresh tokens (tests inspect cleanup).
    pub fn refresh_token_count(&self) -> usize {
        self.inner.borrow().tokens.len()
    }

    /// The events appended with status changes, oldest first (tests).
    pub fn appended_events(&self) -> Vec<EventBody> {
        self.inner.borrow().events.clone()
    }

    /// Sets the account's email (tests).
    pub fn set_email(&self, email: Option<String>, confirmed: bool) {
        let mut m = self.inner.borrow_mut();
        m.account.email = email;
        m.account.email_confirmed = confirmed;
    }
}

impl AuthStore for MemoryAuthStore {
    fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> Result<(), StoreError> {
        let mut m = self.inner.borrow_mut();
        if m.tokens.contains_key(&token.id) {
            return Err(StoreError(format!("duplicate refresh token {}", token.id)));
        }
        m.tokens.insert(token.id.clone(), token.clone());
        Ok(())
    }

    fn refresh_token(&self, id: &str) -> Result<Option<RefreshTokenRecord>, StoreError> {
        Ok(self.inner.borrow().tokens.get(id).cloned())
    }

    fn rotate_refresh_token(
        &self,
        id: &str,
        next: &RefreshTokenRecord,
    ) -> Result<bool, StoreError> {
        let mut m = self.inner.borrow_mut();
        match m.tokens.get_mut(id) {
            Some(t) if t.next_id.is_none() => t.next_id = Some(next.id.clone()),
            _ => return Ok(false),
        }
        m.tokens.insert(next.id.clone(), next.clone());
        Ok(true)
    }

    fn session_exists(&self, session_id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let m = self.inner.borrow();
        Ok(m.tokens
            .values()
            .any(|t| t.session_id() == session_id && t.expires_ms > now_ms))
    }

    fn delete_session(&self, session_id: &str) -> Result<(), StoreError> {
        self.inner
            .borrow_mut()
            .tokens
            .retain(|_, t| t.session_id() != session_id);
        Ok(())
    }

    fn prune_refresh_tokens(
        &self,
        now_ms: u64,
        spent_issued_before_ms: u64,
    ) -> Result<(), StoreError> {
        self.inner.borrow_mut().tokens.retain(|_, t| {
            t.expires_ms > now_ms && (t.next_id.is_none() || t.created_ms >= spent_issued_before_ms)
        });
        Ok(())
    }

    fn insert_app_password(&self, record: &AppPasswordRecord) -> Result<bool, StoreError> {
        let mut m = self.inner.borrow_mut();
        if m.app_passwords.iter().any(|p| p.name == record.name) {
            return Ok(false);
        }
        m.app_passwords.push(record.clone());
        Ok(true)
    }

    fn app_passwords(&self) -> Result<Vec<AppPasswordRecord>, StoreError> {
        let mut all = self.inner.borrow().app_passwords.clone();
        all.sort_by(|a, b| {
            b.created_ms
                .cmp(&a.created_ms)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(all)
    }

    fn delete_app_password(&self, name: &str) -> Result<bool, StoreError> {
        let mut m = self.inner.borrow_mut();
        let before = m.app_passwords.len();
        m.app_passwords.retain(|p| p.name != name);
        let existed = m.app_passwords.len() != before;
        m.tokens
            .retain(|_, t| t.app_password_name.as_deref() != Some(name));
        Ok(existed)
    }

    fn rehash_password(&self, phc: &str) -> Result<(), StoreError> {
        self.inner.borrow_mut().rehashed = Some(phc.to_owned());
        Ok(())
    }

    fn change_password(&self, phc: &str) -> Result<(), StoreError> {
        let mut m = self.inner.borrow_mut();
        m.rehashed = Some(phc.to_owned());
        m.tokens.clear();
        Ok(())
    }

    fn account_state(&self) -> Result<AccountState, StoreError> {
        Ok(self.inner.borrow().account.clone())
    }

    fn set_account_status(
        &self,
        status: AccountStatus,
        _now_ms: u64,
        events: &[EventBody],
    ) -> Result<(), StoreError> {
        let mut m = self.inner.borrow_mut();
        m.account.status = status;
        m.events.extend_from_slice(events);
        Ok(())
    }
}
