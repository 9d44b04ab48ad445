//! OAuth state in the account's database (schema version 13): pushed authorization requests,
//! sessions with their current token hashes, spent refresh tokens, single-use values and the
//! client metadata cache. Tokens and codes are stored as SHA-256 hashes, never as themselves.

use sha2::{Digest, Sha256};

use crate::data::json::{read_message, JsonMessage, JsonObject, JsonWriter};
use crate::first_error::FirstError;
use crate::storage::{Result, Row, Sql, SqlExt, SqlValue, StorageError};

/// How the client authenticated when the request was pushed; a session keeps it for life
/// (the spec binds a confidential client's session to its key).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientAuth {
    /// `none` or `private_key_jwt`.
    pub method: String,
    /// The assertion key's `kid` (confidential clients).
    pub kid: Option<String>,
}

/// The parameters of a pushed request the flow needs later.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestParams {
    pub redirect_uri: String,
    pub scope: String,
    pub state: String,
    pub code_challenge: String,
    /// `query` or `fragment`.
    pub response_mode: String,
    pub login_hint: Option<String>,
    pub prompt: Option<String>,
}

/// A pushed authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    pub id: String,
    pub client_id: String,
    pub client_auth: ClientAuth,
    pub params: RequestParams,
    /// The thumbprint of the DPoP key the request was pushed with.
    pub dpop_jkt: String,
    pub expires_ms: i64,
    pub failed_attempts: i64,
    /// Set once the owner approved: the code's expiry.
    pub code_expires_ms: Option<i64>,
    /// `password` or `passkey`, once approved.
    pub auth_method: Option<String>,
}

/// An OAuth session: one client's grant, with its current tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub client_id: String,
    pub client_auth: ClientAuth,
    pub dpop_jkt: String,
    pub scope: String,
    pub created_ms: i64,
    pub refreshed_ms: i64,
    /// The session's end, however often it is refreshed.
    pub expires_ms: i64,
    /// How long a refresh token stays usable unused.
    pub refresh_idle_ms: i64,
    pub access_expires_ms: i64,
    pub auth_method: String,
    /// The scope asked for, when it differs from the granted one (it has `include:` sets,
    /// expanded again at every refresh).
    pub requested_scope: Option<String>,
}

/// A registered passkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPasskey {
    /// The credential id, base64url.
    pub id: String,
    /// [`super::passkey::CredentialKey::to_stored`].
    pub public_key: String,
    pub name: String,
    pub sign_count: i64,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
}

fn passkey_of(row: &Row) -> Result<StoredPasskey> {
    let mut e = FirstError::new();
    let v = StoredPasskey {
        id: e.keep(row.text(0)),
        public_key: e.keep(row.text(1)),
        name: e.keep(row.text(2)),
        sign_count: e.keep(row.integer(3)),
        created_ms: e.keep(row.integer(4)),
        last_used_ms: e.keep(row.opt_integer(5)),
    };
    e.finish(v)
}

const PASSKEY_COLUMNS: &str = "id, public_key, name, sign_count, created_ms, last_used_ms";

/// SHA-256 of a token or code, hex: what is stored and looked up.
pub fn token_hash(token: &str) -> String {
    crate::hex::encode(&Sha256::digest(token.as_bytes()))
}

/// A record stored as JSON text (written by its [`JsonMessage::write`]).
fn stored<T: JsonMessage>(text: &str) -> Result<T> {
    read_message(text.as_bytes()).map_err(|e| StorageError::Sql(format!("stored OAuth state: {e}")))
}

impl JsonMessage for ClientAuth {
    fn write(&self) -> serde_json::Value {
        JsonWriter::new()
            .str("method", &self.method)
            .opt_str("kid", self.kid.as_deref())
            .finish()
    }

    fn read(o: &JsonObject) -> std::result::Result<ClientAuth, String> {
        let mut e = FirstError::new();
        let v = ClientAuth {
            method: e.keep(o.str("method")),
            kid: e.keep(o.opt_str("kid")),
        };
        e.finish(v)
    }
}

impl JsonMessage for RequestParams {
    fn write(&self) -> serde_json::Value {
        JsonWriter::new()
            .str("redirect_uri", &self.redirect_uri)
            .str("scope", &self.scope)
            .str("state", &self.state)
            .str("code_challenge", &self.code_challenge)
            .str("response_mode", &self.response_mode)
            .opt_str("login_hint", self.login_hint.as_deref())
            .opt_str("prompt", self.prompt.as_deref())
            .finish()
    }

    fn read(o: &JsonObject) -> std::result::Result<RequestParams, String> {
        let mut e = FirstError::new();
        let v = RequestParams {
            redirect_uri: e.keep(o.str("redirect_uri")),
            scope: e.keep(o.str("scope")),
            state: e.keep(o.str("state")),
            code_challenge: e.keep(o.str("code_challenge")),
            response_mode: e.keep(o.str("response_mode")),
            login_hint: e.keep(o.opt_str("login_hint")),
            prompt: e.keep(o.opt_str("prompt")),
        };
        e.finish(v)
    }
}

const REQUEST_COLUMNS: &str = "id, client_id, client_auth, params, dpop_jkt, expires_ms, \
                               failed_attempts, code_expires_ms, auth_method";

fn request_of(row: &Row) -> Result<StoredRequest> {
    let mut e = FirstError::new();
    let v = StoredRequest {
        id: e.keep(row.text(0)),
        client_id: e.keep(row.text(1)),
        client_auth: e.keep(row.text(2).and_then(|t| stored(&t))),
        params: e.keep(row.text(3).and_then(|t| stored(&t))),
        dpop_jkt: e.keep(row.text(4)),
        expires_ms: e.keep(row.integer(5)),
        failed_attempts: e.keep(row.integer(6)),
        code_expires_ms: e.keep(row.opt_integer(7)),
        auth_method: e.keep(row.opt_text(8)),
    };
    e.finish(v)
}

const SESSION_COLUMNS: &str = "id, client_id, client_auth, dpop_jkt, scope, created_ms, \
                               refreshed_ms, expires_ms, refresh_idle_ms, access_expires_ms, \
                               auth_method, requested_scope";

fn session_of(row: &Row) -> Result<Session> {
    let mut e = FirstError::new();
    let v = Session {
        id: e.keep(row.text(0)),
        client_id: e.keep(row.text(1)),
        client_auth: e.keep(row.text(2).and_then(|t| stored(&t))),
        dpop_jkt: e.keep(row.text(3)),
        scope: e.keep(row.text(4)),
        created_ms: e.keep(row.integer(5)),
        refreshed_ms: e.keep(row.integer(6)),
        expires_ms: e.keep(row.integer(7)),
        refresh_idle_ms: e.keep(row.integer(8)),
        access_expires_ms: e.keep(row.integer(9)),
        auth_method: e.keep(row.text(10)),
        requested_scope: e.keep(row.opt_text(11)),
    };
    e.finish(v)
}

/// The OAuth tables of one account database.
pub struct OAuthStore<'a> {
    db: &'a dyn Sql,
}

impl<'a> OAuthStore<'a> {
    /// The store over `db`.
    pub fn new(db: &'a dyn Sql) -> OAuthStore<'a> {
        OAuthStore { db }
    }

    /// Records `value` (namespaced by the caller: `dpop:`, `assertion:`, `challenge:`) as used
    /// until `expires_ms`. `false`: it was already used. Expired values are dropped first.
    pub fn use_once(&self, value: &str, expires_ms: i64, now_ms: i64) -> Result<bool> {
        self.db.execute(
            "DELETE FROM oauth_used WHERE expires_ms < ?",
            &[SqlValue::Integer(now_ms)],
        )?;
        let inserted = self.db.execute(
            "INSERT INTO oauth_used (key, expires_ms) VALUES (?, ?) \
             ON CONFLICT (key) DO NOTHING RETURNING key",
            &[value.into(), SqlValue::Integer(expires_ms)],
        )?;
        Ok(!inserted.is_empty())
    }

    /// Spends a DPoP proof's `jti`: a proof is good once.
    pub fn spend_proof(
        &self,
        jti: &str,
        now_ms: i64,
    ) -> std::result::Result<(), super::dpop::DpopError> {
        let keep = now_ms + i64::try_from(super::dpop::JTI_RETENTION_MS).unwrap_or(i64::MAX);
        match self.use_once(&format!("dpop:{jti}"), keep, now_ms) {
            Ok(true) => Ok(()),
            Ok(false) => Err(super::dpop::DpopError::Invalid(
                "DPoP proof replayed".into(),
            )),
            Err(e) => {
                crate::log::error(&format!("oauth: {e}"));
                Err(super::dpop::DpopError::Invalid(
                    "DPoP proof could not be checked".into(),
                ))
            }
        }
    }

    /// Stores a pushed request, dropping expired ones that never became sessions.
    pub fn insert_request(&self, r: &StoredRequest, now_ms: i64) -> Result<()> {
        self.db.execute(
            "DELETE FROM oauth_request WHERE expires_ms < ? \
             AND (code_expires_ms IS NULL OR code_expires_ms < ?)",
            &[SqlValue::Integer(now_ms), SqlValue::Integer(now_ms)],
        )?;
        self.db.execute(
            "INSERT INTO oauth_request (id, client_id, client_auth, params, dpop_jkt, expires_ms) \
             VALUES (?, ?, ?, ?, ?, ?)",
            &[
                r.id.as_str().into(),
                r.client_id.as_str().into(),
                r.client_auth.write().to_string().into(),
                r.params.write().to_string().into(),
                r.dpop_jkt.as_str().into(),
                SqlValue::Integer(r.expires_ms),
            ],
        )?;
        Ok(())
    }

    /// A pushed request by id.
    pub fn request(&self, id: &str) -> Result<Option<StoredRequest>> {
        self.db
            .query_opt(
                &format!("SELECT {REQUEST_COLUMNS} FROM oauth_request WHERE id = ?"),
                &[id.into()],
            )?
            .map(|row| request_of(&row))
            .transpose()
    }

    /// Forgets a request.
    pub fn delete_request(&self, id: &str) -> Result<()> {
        self.db
            .execute("DELETE FROM oauth_request WHERE id = ?", &[id.into()])?;
        Ok(())
    }

    /// Counts a wrong credential on a request; returns the count.
    pub fn fail_request(&self, id: &str) -> Result<i64> {
        let rows = self.db.execute(
            "UPDATE oauth_request SET failed_attempts = failed_attempts + 1 WHERE id = ? \
             RETURNING failed_attempts",
            &[id.into()],
        )?;
        rows.first().map_or(Ok(0), |r| r.integer(0))
    }

    /// Marks a request approved with a code (by its hash). `false`: it already was.
    pub fn approve_request(
        &self,
        id: &str,
        code_hash: &str,
        code_expires_ms: i64,
        auth_method: &str,
    ) -> Result<bool> {
        let rows = self.db.execute(
            "UPDATE oauth_request SET code_hash = ?, code_expires_ms = ?, auth_method = ? \
             WHERE id = ? AND code_hash IS NULL RETURNING id",
            &[
                code_hash.into(),
                SqlValue::Integer(code_expires_ms),
                auth_method.into(),
                id.into(),
            ],
        )?;
        Ok(!rows.is_empty())
    }

    /// The approved request a code belongs to, left in place.
    pub fn request_by_code(&self, code_hash: &str) -> Result<Option<StoredRequest>> {
        self.db
            .query_opt(
                &format!("SELECT {REQUEST_COLUMNS} FROM oauth_request WHERE code_hash = ?"),
                &[code_hash.into()],
            )?
            .map(|row| request_of(&row))
            .transpose()
    }

    /// Takes (deletes and returns) the approved request a code belongs to: a code is
    /// exchanged once.
    pub fn take_code(&self, code_hash: &str) -> Result<Option<StoredRequest>> {
        let rows = self.db.execute(
            &format!("DELETE FROM oauth_request WHERE code_hash = ? RETURNING {REQUEST_COLUMNS}"),
            &[code_hash.into()],
        )?;
        rows.first().map(request_of).transpose()
    }

    /// Creates a session with its first tokens (by hash).
    #[allow(clippy::too_many_arguments)]
    pub fn insert_session(
        &self,
        s: &Session,
        access_hash: &str,
        refresh_hash: Option<&str>,
        code_hash: &str,
    ) -> Result<()> {
        self.db.execute(
            "INSERT INTO oauth_session (id, client_id, client_auth, dpop_jkt, scope, created_ms, \
             refreshed_ms, expires_ms, refresh_idle_ms, access_hash, access_expires_ms, \
             refresh_hash, code_hash, auth_method, requested_scope) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            &[
                s.id.as_str().into(),
                s.client_id.as_str().into(),
                s.client_auth.write().to_string().into(),
                s.dpop_jkt.as_str().into(),
                s.scope.as_str().into(),
                SqlValue::Integer(s.created_ms),
                SqlValue::Integer(s.refreshed_ms),
                SqlValue::Integer(s.expires_ms),
                SqlValue::Integer(s.refresh_idle_ms),
                access_hash.into(),
                SqlValue::Integer(s.access_expires_ms),
                refresh_hash.into(),
                code_hash.into(),
                s.auth_method.as_str().into(),
                s.requested_scope.as_deref().into(),
            ],
        )?;
        Ok(())
    }

    /// The session an access token (by hash) belongs to.
    pub fn session_by_access(&self, access_hash: &str) -> Result<Option<Session>> {
        self.session_where("access_hash", access_hash)
    }

    /// The session a current refresh token (by hash) belongs to.
    pub fn session_by_refresh(&self, refresh_hash: &str) -> Result<Option<Session>> {
        self.session_where("refresh_hash", refresh_hash)
    }

    /// The session issued from a code (by hash): a second exchange of the code revokes it.
    pub fn session_by_code(&self, code_hash: &str) -> Result<Option<Session>> {
        self.session_where("code_hash", code_hash)
    }

    fn session_where(&self, column: &str, value: &str) -> Result<Option<Session>> {
        self.db
            .query_opt(
                &format!("SELECT {SESSION_COLUMNS} FROM oauth_session WHERE {column} = ?"),
                &[value.into()],
            )?
            .map(|row| session_of(&row))
            .transpose()
    }

    /// The session a spent refresh token (by hash) belonged to, if any.
    pub fn spent_refresh_session(&self, refresh_hash: &str) -> Result<Option<String>> {
        self.db
            .query_opt(
                "SELECT session_id FROM oauth_spent_refresh WHERE refresh_hash = ?",
                &[refresh_hash.into()],
            )?
            .map(|row| row.text(0))
            .transpose()
    }

    /// Replaces a session's tokens, if `old_refresh_hash` is still its refresh token (a
    /// compare-and-swap: of two concurrent refreshes, one wins). The old one is remembered as
    /// spent. `false`: it was not current any more.
    #[allow(clippy::too_many_arguments)]
    pub fn rotate(
        &self,
        session_id: &str,
        old_refresh_hash: &str,
        access_hash: &str,
        access_expires_ms: i64,
        refresh_hash: &str,
        scope: &str,
        now_ms: i64,
    ) -> Result<bool> {
        self.db.transaction(|| -> Result<bool> {
            let rows = self.db.execute(
                "UPDATE oauth_session SET access_hash = ?, access_expires_ms = ?, \
                 refresh_hash = ?, scope = ?, refreshed_ms = ? \
                 WHERE id = ? AND refresh_hash = ? RETURNING id",
                &[
                    access_hash.into(),
                    SqlValue::Integer(access_expires_ms),
                    refresh_hash.into(),
                    scope.into(),
                    SqlValue::Integer(now_ms),
                    session_id.into(),
                    old_refresh_hash.into(),
                ],
            )?;
            if rows.is_empty() {
                return Ok(false);
            }
            self.db.execute(
                "INSERT INTO oauth_spent_refresh (refresh_hash, session_id) VALUES (?, ?) \
                 ON CONFLICT (refresh_hash) DO NOTHING",
                &[old_refresh_hash.into(), session_id.into()],
            )?;
            Ok(true)
        })
    }

    /// Ends a session: its tokens stop working at once.
    pub fn delete_session(&self, session_id: &str) -> Result<()> {
        self.db.transaction(|| -> Result<()> {
            self.db.execute(
                "DELETE FROM oauth_session WHERE id = ?",
                &[session_id.into()],
            )?;
            self.db.execute(
                "DELETE FROM oauth_spent_refresh WHERE session_id = ?",
                &[session_id.into()],
            )?;
            Ok(())
        })
    }

    /// Every session, newest first.
    pub fn sessions(&self) -> Result<Vec<Session>> {
        self.db
            .execute(
                &format!("SELECT {SESSION_COLUMNS} FROM oauth_session ORDER BY created_ms DESC"),
                &[],
            )?
            .iter()
            .map(session_of)
            .collect()
    }

    /// Drops sessions past their end or idle past their refresh lifetime.
    pub fn prune_sessions(&self, now_ms: i64) -> Result<()> {
        let ended = self.db.execute(
            "SELECT id FROM oauth_session WHERE expires_ms < ? OR refreshed_ms + refresh_idle_ms < ?",
            &[SqlValue::Integer(now_ms), SqlValue::Integer(now_ms)],
        )?;
        for row in ended {
            self.delete_session(&row.text(0)?)?;
        }
        Ok(())
    }

    /// Cached client metadata fetched at or after `fresh_after_ms`.
    pub fn cached_client(&self, client_id: &str, fresh_after_ms: i64) -> Result<Option<String>> {
        self.db
            .query_opt(
                "SELECT metadata FROM oauth_client WHERE client_id = ? AND fetched_ms >= ?",
                &[client_id.into(), SqlValue::Integer(fresh_after_ms)],
            )?
            .map(|row| row.text(0))
            .transpose()
    }

    /// Caches a client's metadata document.
    pub fn cache_client(&self, client_id: &str, metadata: &str, now_ms: i64) -> Result<()> {
        self.db.execute(
            "INSERT INTO oauth_client (client_id, metadata, fetched_ms) VALUES (?, ?, ?) \
             ON CONFLICT (client_id) DO UPDATE SET metadata = excluded.metadata, \
             fetched_ms = excluded.fetched_ms",
            &[client_id.into(), metadata.into(), SqlValue::Integer(now_ms)],
        )?;
        Ok(())
    }

    /// The owner's passkeys, oldest first.
    pub fn passkeys(&self) -> Result<Vec<StoredPasskey>> {
        self.db
            .execute(
                &format!("SELECT {PASSKEY_COLUMNS} FROM passkey ORDER BY created_ms"),
                &[],
            )?
            .iter()
            .map(passkey_of)
            .collect()
    }

    /// One passkey by credential id.
    pub fn passkey(&self, id: &str) -> Result<Option<StoredPasskey>> {
        self.db
            .query_opt(
                &format!("SELECT {PASSKEY_COLUMNS} FROM passkey WHERE id = ?"),
                &[id.into()],
            )?
            .map(|row| passkey_of(&row))
            .transpose()
    }

    /// Stores a new passkey. `false`: one with this credential id exists.
    pub fn insert_passkey(&self, p: &StoredPasskey) -> Result<bool> {
        let rows = self.db.execute(
            "INSERT INTO passkey (id, public_key, name, sign_count, created_ms) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING RETURNING id",
            &[
                p.id.as_str().into(),
                p.public_key.as_str().into(),
                p.name.as_str().into(),
                SqlValue::Integer(p.sign_count),
                SqlValue::Integer(p.created_ms),
            ],
        )?;
        Ok(!rows.is_empty())
    }

    /// Records a sign-in with a passkey: its new counter, if the stored one is still `old`
    /// (of two sign-ins racing with one counter value, one wins).
    pub fn passkey_used(&self, id: &str, old: i64, new: i64, now_ms: i64) -> Result<bool> {
        let rows = self.db.execute(
            "UPDATE passkey SET sign_count = ?, last_used_ms = ? WHERE id = ? AND sign_count = ? \
             RETURNING id",
            &[
                SqlValue::Integer(new),
                SqlValue::Integer(now_ms),
                id.into(),
                SqlValue::Integer(old),
            ],
        )?;
        Ok(!rows.is_empty())
    }

    /// Removes a passkey. `false`: there was none with this id.
    pub fn delete_passkey(&self, id: &str) -> Result<bool> {
        let rows = self.db.execute(
            "DELETE FROM passkey WHERE id = ? RETURNING id",
            &[id.into()],
        )?;
        Ok(!rows.is_empty())
    }

    /// Stores a registration link (by its token's hash), dropping expired ones.
    pub fn insert_passkey_link(
        &self,
        token_hash: &str,
        name: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        self.db.execute(
            "DELETE FROM passkey_link WHERE expires_ms < ?",
            &[SqlValue::Integer(now_ms)],
        )?;
        self.db.execute(
            "INSERT INTO passkey_link (token_hash, name, expires_ms) VALUES (?, ?, ?)",
            &[
                token_hash.into(),
                name.into(),
                SqlValue::Integer(expires_ms),
            ],
        )?;
        Ok(())
    }

    /// A registration link's passkey name, while it is valid.
    pub fn passkey_link(&self, token_hash: &str, now_ms: i64) -> Result<Option<String>> {
        self.db
            .query_opt(
                "SELECT name FROM passkey_link WHERE token_hash = ? AND expires_ms >= ?",
                &[token_hash.into(), SqlValue::Integer(now_ms)],
            )?
            .map(|row| row.text(0))
            .transpose()
    }

    /// Spends a registration link.
    pub fn spend_passkey_link(&self, token_hash: &str) -> Result<()> {
        self.db.execute(
            "DELETE FROM passkey_link WHERE token_hash = ?",
            &[token_hash.into()],
        )?;
        Ok(())
    }
}
