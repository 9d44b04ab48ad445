//! What the `com.atproto.server` handlers call: sessions, app passwords, service tokens and the
//! account's activation, each returning the lexicon's output type. The caller passed in is the
//! one [`Auth::authenticate`] produced for the method; each function re-checks the kind it
//! needs, so a wiring mistake fails closed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use pds_api::com::atproto::server::{
    create_app_password, create_session, deactivate_account, get_service_auth, get_session,
    list_app_passwords, refresh_session, revoke_app_password,
};
use pds_api::runtime::syntax::Datetime;
use pds_api::runtime::xrpc::XrpcError;

use super::app_password;
use super::service::{self, ServiceTokenRequest};
use super::store::{
    refresh_token_key, AccountState, AccountStatus, AppPasswordRecord, RefreshTokenRecord,
};
use super::tokens::{AccessScope, REFRESH_TOKEN_TTL_SECS};
use super::verifier::{revoked, Caller, Permission};
use super::Auth;
use crate::firehose::EventBody;
use crate::password;

/// Longest password tried at login (the reference's limit); argon2 over megabytes is a DoS.
pub const MAX_PASSWORD_LEN: usize = 512;
/// Shortest new account password accepted, in characters.
pub const MIN_NEW_PASSWORD_CHARS: usize = 8;
/// Longest app password name, in bytes.
pub const MAX_APP_PASSWORD_NAME_LEN: usize = 255;

/// How long after a refresh token was spent presenting it again re-issues its successor
/// instead of counting as reuse: a retried or concurrent refresh keeps the user signed in.
pub const REFRESH_GRACE_MS: u64 = 60_000;
/// How long a spent refresh token is kept (from its issue) so that its reuse is recognised and
/// revokes the session; after that its row is pruned and reuse is only an invalid token.
pub const SPENT_REFRESH_RETENTION_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Methods a service token may never be minted for: account management must be called
/// directly (reference `PROTECTED_METHODS`).
pub const PROTECTED_METHODS: &[&str] = &[
    "com.atproto.admin.sendEmail",
    "com.atproto.identity.requestPlcOperationSignature",
    "com.atproto.identity.signPlcOperation",
    "com.atproto.identity.updateHandle",
    "com.atproto.server.activateAccount",
    "com.atproto.server.confirmEmail",
    "com.atproto.server.createAppPassword",
    "com.atproto.server.deactivateAccount",
    "com.atproto.server.getAccountInviteCodes",
    "com.atproto.server.getSession",
    "com.atproto.server.listAppPasswords",
    "com.atproto.server.requestAccountDelete",
    "com.atproto.server.requestEmailConfirmation",
    "com.atproto.server.requestEmailUpdate",
    "com.atproto.server.revokeAppPassword",
    "com.atproto.server.updateEmail",
    "dev.rustpds.identity.getPlcOperationToken",
    "dev.rustpds.server.changePassword",
];

/// Whether a service token for `lxm` needs a privileged session (reference
/// `PRIVILEGED_METHODS`: chat, and createAccount for migration). Methods compare
/// case-insensitively, as the reference's method sets do.
pub fn is_privileged_method(lxm: &str) -> bool {
    let lxm = lxm.to_ascii_lowercase();
    lxm.starts_with("chat.bsky.") || lxm == "com.atproto.server.createaccount"
}

/// Whether `lxm` is one of [`PROTECTED_METHODS`].
pub fn is_protected_method(lxm: &str) -> bool {
    PROTECTED_METHODS
        .iter()
        .any(|m| m.eq_ignore_ascii_case(lxm))
}

fn invalid_login() -> XrpcError {
    XrpcError::authentication_required("Invalid identifier or password")
}

fn bad_scope() -> XrpcError {
    XrpcError::declared("InvalidToken", "Bad token scope")
}

fn takendown() -> XrpcError {
    XrpcError::unauthorized("AccountTakedown", "Account has been taken down")
}

/// `active` and `status` as session outputs carry them.
fn active_and_status(state: &AccountState) -> (bool, Option<String>) {
    match state.status {
        AccountStatus::Active => (true, None),
        other => (false, Some(other.as_str().to_owned())),
    }
}

/// A freshly minted pair.
pub struct TokenPair {
    /// The access token.
    pub access_jwt: String,
    /// The refresh token.
    pub refresh_jwt: String,
}

impl Auth<'_> {
    /// The session caller behind `caller`, which must hold a full-account session.
    fn full_session(caller: &Caller) -> Result<(), XrpcError> {
        if caller.can(Permission::Full) {
            Ok(())
        } else {
            Err(bad_scope())
        }
    }

    fn account_state(&self) -> Result<AccountState, XrpcError> {
        Ok(self.store.account_state()?)
    }

    /// When a session that started at `started_ms` ends, however often it is refreshed.
    fn session_end_ms(&self, started_ms: u64) -> u64 {
        let lifetime_ms = self
            .config
            .session_lifetime_days
            .saturating_mul(24 * 60 * 60 * 1000);
        started_ms.saturating_add(lifetime_ms)
    }

    /// Mints a pair for session `session_id` (started at `started_ms`, none: now) and returns
    /// it with the refresh token's record, which expires with the session at the latest. The
    /// refresh token's `jti` is `jti`, or random for a new session.
    fn mint_pair(
        &self,
        session_id: &str,
        scope: AccessScope,
        app_password_name: Option<String>,
        started_ms: Option<u64>,
        jti: Option<String>,
    ) -> Result<(TokenPair, RefreshTokenRecord), XrpcError> {
        let now_secs = self.clock.now_secs();
        let jti = match jti {
            Some(jti) => jti,
            None => URL_SAFE_NO_PAD.encode(super::random_bytes::<32>()?),
        };
        let keys = self.session_keys();
        let did = self.config.did.as_str();
        let pair = TokenPair {
            access_jwt: keys.mint_access(did, scope, session_id, now_secs),
            refresh_jwt: keys.mint_refresh(did, session_id, &jti, now_secs),
        };
        let session_started_ms = started_ms.unwrap_or(now_secs * 1000);
        let record = RefreshTokenRecord {
            id: refresh_token_key(session_id, &jti),
            app_password_name,
            scope,
            created_ms: now_secs * 1000,
            expires_ms: ((now_secs + REFRESH_TOKEN_TTL_SECS) * 1000)
                .min(self.session_end_ms(session_started_ms)),
            next_id: None,
            session_started_ms,
        };
        Ok((pair, record))
    }

    /// Whether `identifier` names the account: its handle (any case), DID, or email.
    fn is_account_identifier(&self, identifier: &str, state: &AccountState) -> bool {
        let id = identifier.to_ascii_lowercase();
        id == self.config.handle.as_str().to_ascii_lowercase()
            || identifier == self.config.did.as_str()
            || id == self.config.did.as_str()
            || state
                .email
                .as_deref()
                .is_some_and(|e| e.to_ascii_lowercase() == id)
    }

    /// What the login throttle counts an identifier as: the account, whichever of its names
    /// (handle in any case, DID, email) is given; any other identifier as itself, lower-cased
    /// and cut to a bounded length.
    pub fn login_subject(&self, identifier: &str) -> Result<String, XrpcError> {
        let state = self.account_state()?;
        if self.is_account_identifier(identifier, &state) {
            return Ok("account".into());
        }
        let mut other = identifier.to_ascii_lowercase();
        let mut end = other.len().min(256);
        while !other.is_char_boundary(end) {
            end -= 1;
        }
        other.truncate(end);
        Ok(format!("other:{other}"))
    }

    /// Checks a password: the account password first, then (only for strings shaped like
    /// one) each app password. `Ok(None)`: the account password; `Ok(Some(p))`: app password
    /// `p`.
    fn check_password(
        &self,
        password: &str,
        state: &AccountState,
    ) -> Result<Option<AppPasswordRecord>, XrpcError> {
        if password::verify(password, &self.config.password_hash) {
            // A hash at older parameters is replaced while the password is at hand. A failure
            // to store it costs nothing but another try at the next login.
            if password::needs_rehash(&self.config.password_hash) {
                if let Ok(fresh) = password::hash(password) {
                    let _ = self.store.rehash_password(&fresh);
                }
            }
            return Ok(None);
        }
        // Taken-down accounts may not sign in with app passwords (reference).
        if matches!(
            state.status,
            AccountStatus::Takendown | AccountStatus::Suspended
        ) || !app_password::is_app_password_format(password)
        {
            return Err(invalid_login());
        }
        // Only the app password with this tag is verified (and any made before tags existed).
        let tag = app_password::lookup_tag(password);
        let candidates = self
            .store
            .app_passwords()?
            .into_iter()
            .filter(|p| p.lookup.as_ref().is_none_or(|l| *l == tag));
        for candidate in candidates {
            // argon2 compares its output in constant time.
            if password::verify(password, &candidate.password_hash) {
                return Ok(Some(candidate));
            }
        }
        Err(invalid_login())
    }

    /// `dev.rustpds.server.changePassword`: with a full session (the method's requirement) and
    /// the current account password, stores the new one and ends every session. Only the
    /// account password is accepted as the current one, never an app password.
    pub fn change_password(
        &self,
        caller: &Caller,
        current: &str,
        new: &str,
    ) -> Result<(), XrpcError> {
        if !matches!(caller, Caller::Access(_)) {
            return Err(bad_scope());
        }
        if new.chars().count() < MIN_NEW_PASSWORD_CHARS {
            return Err(XrpcError::invalid_request(format!(
                "The new password must have at least {MIN_NEW_PASSWORD_CHARS} characters."
            )));
        }
        if current.len() > MAX_PASSWORD_LEN
            || new.len() > MAX_PASSWORD_LEN
            || !password::verify(current, &self.config.password_hash)
        {
            return Err(XrpcError::declared(
                "InvalidPassword",
                "The current password is not the account password.",
            ));
        }
        let hash = password::hash(new).map_err(XrpcError::internal_message)?;
        self.store.change_password(&hash)?;
        Ok(())
    }

    /// Checks `password` is the account password (never an app password), asked again before
    /// an action a stolen session alone must not take.
    pub fn confirm_account_password(&self, password: &str) -> Result<(), XrpcError> {
        if password.len() > MAX_PASSWORD_LEN
            || !password::verify(password, &self.config.password_hash)
        {
            return Err(XrpcError::declared(
                "InvalidPassword",
                "The password is not the account password.",
            ));
        }
        Ok(())
    }

    /// Opens a session with `scope` (an app password's when `app_password_name` is given): its
    /// first token pair, stored with the pruning of old rows in one commit.
    pub fn open_session(
        &self,
        scope: AccessScope,
        app_password_name: Option<String>,
    ) -> Result<TokenPair, XrpcError> {
        let now_ms = self.clock.now_millis();
        let session_id = crate::hex::encode(&super::random_bytes::<16>()?);
        let (pair, record) = self.mint_pair(&session_id, scope, app_password_name, None, None)?;
        self.store.prune_and_insert_refresh_token(
            &record,
            now_ms,
            now_ms.saturating_sub(SPENT_REFRESH_RETENTION_MS),
        )?;
        Ok(pair)
    }

    /// `com.atproto.server.createSession`: signs in with the handle, DID or email and the
    /// account password or an app password.
    pub fn create_session(
        &self,
        input: &create_session::Input,
    ) -> Result<create_session::Output, XrpcError> {
        if input.password.len() > MAX_PASSWORD_LEN {
            return Err(XrpcError::authentication_required(
                "Password too long. Consider resetting your password.",
            ));
        }
        let state = self.account_state()?;
        if !self.is_account_identifier(&input.identifier, &state)
            || state.status == AccountStatus::Deleted
        {
            // The password is still checked so both failures take as long.
            let _ = password::verify(&input.password, &self.config.password_hash);
            return Err(invalid_login());
        }
        let app_password = self.check_password(&input.password, &state)?;
        if matches!(
            state.status,
            AccountStatus::Takendown | AccountStatus::Suspended
        ) {
            // allowTakendown would ask for a narrowly scoped session; we offer none.
            return Err(takendown());
        }
        let scope = AccessScope::for_app_password(app_password.as_ref().map(|p| p.privileged));
        let pair = self.open_session(scope, app_password.map(|p| p.name))?;

        let (active, status) = active_and_status(&state);
        Ok(create_session::Output {
            access_jwt: pair.access_jwt,
            refresh_jwt: pair.refresh_jwt,
            active: Some(active),
            did: self.config.did.clone(),
            did_doc: None,
            email: state.email.clone(),
            email_auth_factor: None,
            email_confirmed: Some(state.email_confirmed),
            handle: self.config.handle.clone(),
            status: status.map(create_session::OutputStatus::from),
        })
    }

    /// `com.atproto.server.refreshSession`: spends the presented refresh token and returns a
    /// new pair in the same session. A spent token presented again within
    /// [`REFRESH_GRACE_MS`] of its successor's issue gets that same successor again (a retried
    /// or concurrent refresh); later, it revokes the session.
    pub fn refresh_session(&self, caller: &Caller) -> Result<refresh_session::Output, XrpcError> {
        let Caller::Refresh(r) = caller else {
            return Err(bad_scope());
        };
        if r.expired {
            return Err(XrpcError::declared("ExpiredToken", "Token has expired"));
        }
        let now_ms = self.clock.now_millis();
        let id = refresh_token_key(&r.session_id, &r.token_id);
        let Some(current) = self.store.refresh_token(&id)? else {
            return Err(revoked());
        };
        if current.expires_ms <= now_ms {
            return Err(revoked());
        }
        let state = self.account_state()?;
        if matches!(
            state.status,
            AccountStatus::Takendown | AccountStatus::Suspended
        ) {
            return Err(takendown());
        }
        let keys = self.session_keys();
        let pair = match &current.next_id {
            Some(next_id) => match self.successor_in_grace(&r.token_id, next_id, now_ms)? {
                Some((jti, successor)) => self.reissue(&r.session_id, &jti, &successor),
                None => return Err(self.reuse_detected(&r.session_id)),
            },
            None => {
                let (pair, next) = self.mint_pair(
                    &r.session_id,
                    current.scope,
                    current.app_password_name.clone(),
                    Some(current.session_started_ms),
                    Some(keys.successor_jti(&r.token_id)),
                )?;
                // Old rows are pruned as tokens rotate, in the same commit.
                let spent_before = now_ms.saturating_sub(SPENT_REFRESH_RETENTION_MS);
                if !self
                    .store
                    .rotate_refresh_token_and_prune(&id, &next, now_ms, spent_before)?
                {
                    // Someone spent it between our read and write: the same reuse.
                    return Err(self.reuse_detected(&r.session_id));
                }
                pair
            }
        };

        let (active, status) = active_and_status(&state);
        Ok(refresh_session::Output {
            access_jwt: pair.access_jwt,
            refresh_jwt: pair.refresh_jwt,
            active: Some(active),
            did: self.config.did.clone(),
            did_doc: None,
            email: state.email.clone(),
            email_auth_factor: None,
            email_confirmed: Some(state.email_confirmed),
            handle: self.config.handle.clone(),
            status: status.map(refresh_session::OutputStatus::from),
        })
    }

    /// For a spent token (`jti`, rotated to `next_id`) presented again: the live token its
    /// chain leads to, with that token's `jti`, if the successor was issued within
    /// [`REFRESH_GRACE_MS`]. That is the successor itself, or, when it was spent in turn (the
    /// retry arrived after the client moved on), the newest token of the chain.
    fn successor_in_grace(
        &self,
        jti: &str,
        next_id: &str,
        now_ms: u64,
    ) -> Result<Option<(String, RefreshTokenRecord)>, XrpcError> {
        let Some(mut successor) = self.store.refresh_token(next_id)? else {
            return Ok(None);
        };
        if successor.created_ms.saturating_add(REFRESH_GRACE_MS) <= now_ms {
            return Ok(None);
        }
        let keys = self.session_keys();
        let session_id = successor.session_id().to_owned();
        let mut successor_jti = keys.successor_jti(jti);
        // A chain grows one link per refresh; within the grace window it stays short.
        for _ in 0..8 {
            // The derived jti must be the one stored: tokens of sessions rotated before jtis
            // were derived have random ones, and get no grace.
            if refresh_token_key(&session_id, &successor_jti) != successor.id {
                return Ok(None);
            }
            let Some(next) = successor.next_id.clone() else {
                return Ok((successor.expires_ms > now_ms).then_some((successor_jti, successor)));
            };
            match self.store.refresh_token(&next)? {
                Some(t) => successor = t,
                None => return Ok(None),
            }
            successor_jti = keys.successor_jti(&successor_jti);
        }
        Ok(None)
    }

    /// The pair for `token` (whose `jti` is `jti`) again: the very refresh token it was issued
    /// as (the JWT is minted from the same claims), with a fresh access token.
    fn reissue(&self, session_id: &str, jti: &str, token: &RefreshTokenRecord) -> TokenPair {
        let keys = self.session_keys();
        let did = self.config.did.as_str();
        TokenPair {
            access_jwt: keys.mint_access(did, token.scope, session_id, self.clock.now_secs()),
            refresh_jwt: keys.mint_refresh(did, session_id, jti, token.created_ms / 1000),
        }
    }

    fn reuse_detected(&self, session_id: &str) -> XrpcError {
        if let Err(e) = self.store.delete_session(session_id) {
            return e.into();
        }
        XrpcError::declared(
            "ExpiredToken",
            "Token has already been used: the session has been revoked",
        )
    }

    /// `com.atproto.server.getSession`.
    pub fn get_session(&self, caller: &Caller) -> Result<get_session::Output, XrpcError> {
        if !matches!(caller, Caller::Access(_) | Caller::OAuth(_)) {
            return Err(bad_scope());
        }
        let state = self.account_state()?;
        let (active, status) = active_and_status(&state);
        // An OAuth token sees the email only with `account:email` or `transition:email`.
        let email_visible = caller.can(Permission::EmailRead);
        Ok(get_session::Output {
            active: Some(active),
            did: self.config.did.clone(),
            did_doc: None,
            email: state.email.clone().filter(|_| email_visible),
            email_auth_factor: None,
            email_confirmed: Some(state.email_confirmed).filter(|_| email_visible),
            handle: self.config.handle.clone(),
            status: status.map(get_session::OutputStatus::from),
        })
    }

    /// `com.atproto.server.deleteSession`: revokes the refresh token's whole session (its
    /// access tokens stop working at once).
    pub fn delete_session(&self, caller: &Caller) -> Result<(), XrpcError> {
        let Caller::Refresh(r) = caller else {
            return Err(bad_scope());
        };
        Ok(self.store.delete_session(&r.session_id)?)
    }

    /// `com.atproto.server.createAppPassword` (full-account sessions only).
    pub fn create_app_password(
        &self,
        caller: &Caller,
        input: &create_app_password::Input,
    ) -> Result<create_app_password::Output, XrpcError> {
        Self::full_session(caller)?;
        let name = input.name.trim();
        if name.is_empty() {
            return Err(XrpcError::invalid_request(
                "App password name must not be empty",
            ));
        }
        if name.len() > MAX_APP_PASSWORD_NAME_LEN {
            return Err(XrpcError::invalid_request(format!(
                "App password name must be at most {MAX_APP_PASSWORD_NAME_LEN} bytes"
            )));
        }
        let privileged = input.privileged.unwrap_or(false);
        let secret = app_password::generate()?;
        let password_hash = password::hash(&secret).map_err(XrpcError::internal_message)?;
        let now_micros = self.clock.now_micros();
        let created_ms = now_micros / 1000;
        let inserted = self.store.insert_app_password(&AppPasswordRecord {
            name: name.to_owned(),
            password_hash,
            privileged,
            created_ms,
            lookup: Some(app_password::lookup_tag(&secret)),
        })?;
        if !inserted {
            return Err(XrpcError::invalid_request(format!(
                "An app password named {name:?} already exists"
            )));
        }
        Ok(create_app_password::AppPassword {
            created_at: Datetime::from_unix_micros(created_ms * 1000),
            name: name.to_owned(),
            password: secret,
            privileged: Some(privileged),
        })
    }

    /// `com.atproto.server.listAppPasswords`: names, creation times, privilege; newest first.
    pub fn list_app_passwords(
        &self,
        caller: &Caller,
    ) -> Result<list_app_passwords::Output, XrpcError> {
        Self::full_session(caller)?;
        let passwords = self
            .store
            .app_passwords()?
            .into_iter()
            .map(|p| list_app_passwords::AppPassword {
                created_at: Datetime::from_unix_micros(p.created_ms * 1000),
                name: p.name,
                privileged: Some(p.privileged),
            })
            .collect();
        Ok(list_app_passwords::Output { passwords })
    }

    /// `com.atproto.server.revokeAppPassword`: deletes the password and ends every session it
    /// opened. Revoking an unknown name succeeds (as the reference does).
    pub fn revoke_app_password(
        &self,
        caller: &Caller,
        input: &revoke_app_password::Input,
    ) -> Result<(), XrpcError> {
        Self::full_session(caller)?;
        self.store.delete_app_password(input.name.trim())?;
        Ok(())
    }

    /// `com.atproto.server.getServiceAuth`: a token signed with the account key for `aud`,
    /// optionally bound to `lxm`, expiring at `exp` (default 60 s, at most 1 hour; 1 minute
    /// without `lxm`).
    pub fn get_service_auth(
        &self,
        caller: &Caller,
        params: &get_service_auth::Params,
    ) -> Result<get_service_auth::Output, XrpcError> {
        caller.require(Permission::Session)?;
        if !service::is_valid_audience(&params.aud) {
            return Err(XrpcError::invalid_request(
                "aud must be a valid atproto DID or did#serviceId reference",
            ));
        }
        let lxm = params.lxm.as_ref().map(|n| n.as_str());
        // An OAuth token needs `rpc:<lxm, or * without one>?aud=<aud>` (403 without).
        if matches!(caller, Caller::OAuth(_)) {
            caller.require(Permission::ServiceToken {
                lxm,
                aud: &params.aud,
            })?;
        }
        if let Some(m) = lxm {
            if !caller.can(Permission::ServiceToken {
                lxm: Some(m),
                aud: &params.aud,
            }) {
                return Err(XrpcError::invalid_request(format!(
                    "insufficient access to request a service auth token for the following method: {m}"
                )));
            }
        }
        let now_ms = self.clock.now_millis();
        if let Some(exp) = params.exp {
            let bad = |m: &str| XrpcError::declared("BadExpiration", m);
            let diff_ms = i128::from(exp) * 1000 - i128::from(now_ms);
            if diff_ms < 0 {
                return Err(bad("expiration is in past"));
            } else if diff_ms > i128::from(service::MAX_SERVICE_TOKEN_TTL_SECS) * 1000 {
                return Err(bad(
                    "cannot request a token with an expiration more than an hour in the future",
                ));
            } else if lxm.is_none()
                && diff_ms > i128::from(service::MAX_METHODLESS_TOKEN_TTL_SECS) * 1000
            {
                return Err(bad(
                    "cannot request a method-less token with an expiration more than a minute in the future",
                ));
            }
        }
        if let Some(m) = lxm.filter(|m| is_protected_method(m)) {
            return Err(XrpcError::invalid_request(format!(
                "cannot request a service auth token for the following protected method: {m}"
            )));
        }
        let iat = now_ms / 1000;
        let exp = match params.exp {
            // Checked non-negative above.
            Some(e) => u64::try_from(e).unwrap_or(iat),
            None => iat + service::DEFAULT_SERVICE_TOKEN_TTL_SECS,
        };
        let jti = crate::hex::encode(&super::random_bytes::<16>()?);
        let token = service::mint(
            &ServiceTokenRequest {
                iss: self.config.did.as_str(),
                aud: &params.aud,
                lxm,
                iat,
                exp,
                jti: &jti,
            },
            &self.config.signing_key,
        );
        Ok(get_service_auth::Output { token })
    }

    /// `com.atproto.server.activateAccount`. `events` builds what the change announces
    /// (`#account`, `#identity`, `#sync`); it runs only if the status changes, and its events
    /// are stored in the status change's transaction. Returns whether the status changed.
    pub fn activate_account(
        &self,
        caller: &Caller,
        events: impl FnOnce() -> Result<Vec<EventBody>, XrpcError>,
    ) -> Result<bool, XrpcError> {
        Self::full_session(caller)?;
        self.set_status(AccountStatus::Active, events)
    }

    /// `com.atproto.server.deactivateAccount`: repo writes are refused until reactivation.
    /// `deleteAfter` is the caller's to keep (nothing deletes accounts on a schedule here).
    /// `events` (the `#account` event) as for [`Auth::activate_account`]. Returns whether the
    /// status changed.
    pub fn deactivate_account(
        &self,
        caller: &Caller,
        _input: &deactivate_account::Input,
        events: impl FnOnce() -> Result<Vec<EventBody>, XrpcError>,
    ) -> Result<bool, XrpcError> {
        Self::full_session(caller)?;
        self.set_status(AccountStatus::Deactivated, events)
    }

    fn set_status(
        &self,
        status: AccountStatus,
        events: impl FnOnce() -> Result<Vec<EventBody>, XrpcError>,
    ) -> Result<bool, XrpcError> {
        let state = self.account_state()?;
        if state.status == status {
            return Ok(false);
        }
        if matches!(
            state.status,
            AccountStatus::Takendown | AccountStatus::Suspended | AccountStatus::Deleted
        ) {
            return Err(takendown());
        }
        let events = events()?;
        self.store
            .set_account_status(status, self.clock.now_millis(), &events)?;
        Ok(true)
    }
}
