//! The account's own rows: identity and status, preferences, app passwords
//! and legacy-session refresh tokens. Plain data access; the rules (hashing,
//! token lifetimes, grace periods, scopes) belong to the auth layer.

use super::error::{Result, StorageError};
use super::sql::{Row, Sql, SqlExt, SqlValue};
use crate::first_error::FirstError;

/// The account's hosting status: stored in `account.status`, reported by sessions and sync
/// reads, and announced in `#account` events (whose lexicon also knows `desynchronized` and
/// `throttled`). The one representation of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    /// Deactivated by its owner (e.g. while migrating): reads work, writes are refused.
    Deactivated,
    /// Taken down by the host.
    Takendown,
    /// Temporarily suspended.
    Suspended,
    /// Deleted.
    Deleted,
    /// The host's copy of the repository is out of sync (firehose only).
    Desynchronized,
    /// Rate-limited (firehose only).
    Throttled,
}

impl AccountStatus {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Deactivated => "deactivated",
            AccountStatus::Takendown => "takendown",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Deleted => "deleted",
            AccountStatus::Desynchronized => "desynchronized",
            AccountStatus::Throttled => "throttled",
        }
    }

    /// Parses a stored value.
    pub fn parse(s: &str) -> Option<AccountStatus> {
        Some(match s {
            "active" => AccountStatus::Active,
            "deactivated" => AccountStatus::Deactivated,
            "takendown" => AccountStatus::Takendown,
            "suspended" => AccountStatus::Suspended,
            "deleted" => AccountStatus::Deleted,
            "desynchronized" => AccountStatus::Desynchronized,
            "throttled" => AccountStatus::Throttled,
            _ => return None,
        })
    }
}

/// A status read from the `account` table; anything else is a corrupt row.
pub(crate) fn stored_status(status: &str) -> Result<AccountStatus> {
    AccountStatus::parse(status)
        .ok_or_else(|| StorageError::Corrupt(format!("account status {status:?}")))
}

/// The one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its DID.
    pub did: String,
    /// Its handle, once known.
    pub handle: Option<String>,
    /// Its email, if any.
    pub email: Option<String>,
    /// When the email was confirmed (ms), if it was.
    pub email_confirmed_ms: Option<i64>,
    /// The main password's hash, if a password is set.
    pub password_hash: Option<String>,
    /// Its hosting status.
    pub status: AccountStatus,
    /// When the status last changed (ms).
    pub status_changed_ms: Option<i64>,
    /// When the account was created (ms).
    pub created_ms: i64,
}

const ACCOUNT_COLUMNS: &str = "did, handle, email, email_confirmed_ms, password_hash, status, \
                               status_changed_ms, created_ms";

fn account_row(row: &Row) -> Result<Account> {
    let mut e = FirstError::new();
    let v = Account {
        did: e.keep(row.text(0)),
        handle: e.keep(row.opt_text(1)),
        email: e.keep(row.opt_text(2)),
        email_confirmed_ms: e.keep(row.opt_integer(3)),
        password_hash: e.keep(row.opt_text(4)),
        status: e.keep_or(
            row.text(5).and_then(|t| stored_status(&t)),
            AccountStatus::Active,
        ),
        status_changed_ms: e.keep(row.opt_integer(6)),
        created_ms: e.keep(row.integer(7)),
    };
    e.finish(v)
}

/// The account, or `None` before it is created.
pub fn get_account(db: &dyn Sql) -> Result<Option<Account>> {
    db.query_opt(
        &format!("SELECT {ACCOUNT_COLUMNS} FROM account WHERE id = 1"),
        &[],
    )?
    .as_ref()
    .map(account_row)
    .transpose()
}

/// Creates the account; fails with [`StorageError::Conflict`] if one exists.
pub fn create_account(db: &dyn Sql, account: &Account) -> Result<()> {
    db.transaction(|| {
        if get_account(db)?.is_some() {
            return Err(StorageError::Conflict("the account already exists".into()));
        }
        db.execute(
            &format!(
                "INSERT INTO account (id, {ACCOUNT_COLUMNS}) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            &[
                SqlValue::from(account.did.as_str()),
                SqlValue::from(account.handle.clone()),
                SqlValue::from(account.email.clone()),
                SqlValue::from(account.email_confirmed_ms),
                SqlValue::from(account.password_hash.clone()),
                SqlValue::from(account.status.as_str()),
                SqlValue::from(account.status_changed_ms),
                SqlValue::Integer(account.created_ms),
            ],
        )?;
        Ok(())
    })
}

fn update_account(db: &dyn Sql, set: &str, params: &[SqlValue]) -> Result<()> {
    let changed = db.execute(
        &format!("UPDATE account SET {set} WHERE id = 1 RETURNING id"),
        params,
    )?;
    if changed.is_empty() {
        return Err(StorageError::Conflict("there is no account yet".into()));
    }
    Ok(())
}

/// Sets the account status (`active`, `deactivated`, ...) at `now_ms`; a `deleteAfter` given
/// to an earlier deactivation is forgotten.
pub fn set_account_status(db: &dyn Sql, status: AccountStatus, now_ms: i64) -> Result<()> {
    update_account(
        db,
        "status = ?, status_changed_ms = ?, delete_after = NULL",
        &[SqlValue::from(status.as_str()), SqlValue::Integer(now_ms)],
    )
}

/// Sets (or clears) the `deleteAfter` of the account's deactivation, as given.
pub fn set_delete_after(db: &dyn Sql, delete_after: Option<&str>) -> Result<()> {
    update_account(db, "delete_after = ?", &[SqlValue::from(delete_after)])
}

/// The `deleteAfter` of the account's deactivation, if one was given.
pub fn delete_after(db: &dyn Sql) -> Result<Option<String>> {
    match db.query_opt("SELECT delete_after FROM account WHERE id = 1", &[])? {
        Some(row) => row.opt_text(0),
        None => Ok(None),
    }
}

/// Sets (or clears) the handle.
pub fn set_handle(db: &dyn Sql, handle: Option<&str>) -> Result<()> {
    update_account(db, "handle = ?", &[SqlValue::from(handle)])
}

/// Sets (or clears) the email; a new email is unconfirmed.
pub fn set_email(db: &dyn Sql, email: Option<&str>) -> Result<()> {
    update_account(
        db,
        "email = ?, email_confirmed_ms = NULL",
        &[SqlValue::from(email)],
    )
}

/// Marks the email confirmed at `now_ms`.
pub fn confirm_email(db: &dyn Sql, now_ms: i64) -> Result<()> {
    update_account(db, "email_confirmed_ms = ?", &[SqlValue::Integer(now_ms)])
}

/// Replaces the main password's hash and ends every session, app-password sessions included
/// (whoever changes a password may be shutting out someone who learned it), in one
/// transaction. The app passwords themselves stay.
pub fn set_password_hash(db: &dyn Sql, hash: &str) -> Result<()> {
    db.transaction(|| {
        update_account(db, "password_hash = ?", &[SqlValue::from(hash)])?;
        db.execute("DELETE FROM refresh_token", &[])?;
        Ok(())
    })
}

/// Replaces the main password's hash with another hash of the same password (new parameters),
/// leaving every session alone.
pub fn rehash_password(db: &dyn Sql, hash: &str) -> Result<()> {
    update_account(db, "password_hash = ?", &[SqlValue::from(hash)])
}

/// What the deployment's configuration says the account is.
#[derive(Debug, Clone, Copy)]
pub struct Seeds<'a> {
    pub did: &'a str,
    pub handle: &'a str,
    pub password_hash: &'a str,
}

/// The account's identity and credentials as stored, after [`reconcile_with_seeds`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIdentity {
    pub handle: String,
    pub password_hash: String,
    pub status: AccountStatus,
}

/// The outcome of [`reconcile_with_seeds`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// The stored identity, now the source of truth.
    Identity(StoredIdentity),
    /// The stored account is another DID: this data is not the configured account's.
    OtherDid(String),
}

/// Brings the stored identity in line with the configuration, in one transaction: the first
/// start seeds the account from it; afterwards a configured value replaces the stored one only
/// when it differs from the value it last seeded, so a change made through the API survives
/// restarts while a redeploy with a new value still wins. A replaced password ends the
/// sessions opened with the old one (app-password sessions keep going). The DID never changes.
pub fn reconcile_with_seeds(db: &dyn Sql, seeds: Seeds<'_>, now_ms: i64) -> Result<Reconciled> {
    db.transaction(|| {
        let row = db.query_opt(
            "SELECT did, handle, password_hash, status, seeded_handle, seeded_password_hash \
             FROM account WHERE id = 1",
            &[],
        )?;
        let Some(row) = row else {
            // A did:web of this host is born here; a did:plc account arrives from another PDS
            // (or from `pds init`): deactivated until its migration ends with activateAccount.
            let status = if seeds.did.starts_with("did:plc:") {
                AccountStatus::Deactivated
            } else {
                AccountStatus::Active
            };
            db.execute(
                "INSERT INTO account (id, did, handle, password_hash, status, created_ms, \
                 seeded_handle, seeded_password_hash) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                &[
                    SqlValue::from(seeds.did),
                    SqlValue::from(seeds.handle),
                    SqlValue::from(seeds.password_hash),
                    SqlValue::from(status.as_str()),
                    SqlValue::Integer(now_ms),
                    SqlValue::from(seeds.handle),
                    SqlValue::from(seeds.password_hash),
                ],
            )?;
            return Ok(Reconciled::Identity(StoredIdentity {
                handle: seeds.handle.to_owned(),
                password_hash: seeds.password_hash.to_owned(),
                status,
            }));
        };
        let did = row.text(0)?;
        if did != seeds.did {
            return Ok(Reconciled::OtherDid(did));
        }
        let mut handle = row.opt_text(1)?;
        let mut password_hash = row.opt_text(2)?;
        let status_text = row.text(3)?;
        let status = AccountStatus::parse(&status_text)
            .ok_or_else(|| StorageError::Corrupt(format!("account status {status_text:?}")))?;
        if handle.is_none() || row.opt_text(4)?.as_deref() != Some(seeds.handle) {
            update_account(
                db,
                "handle = ?, seeded_handle = ?",
                &[SqlValue::from(seeds.handle), SqlValue::from(seeds.handle)],
            )?;
            handle = Some(seeds.handle.to_owned());
        }
        if password_hash.is_none() || row.opt_text(5)?.as_deref() != Some(seeds.password_hash) {
            if password_hash
                .as_deref()
                .is_some_and(|old| old != seeds.password_hash)
            {
                set_password_hash(db, seeds.password_hash)?;
            }
            update_account(
                db,
                "password_hash = ?, seeded_password_hash = ?",
                &[
                    SqlValue::from(seeds.password_hash),
                    SqlValue::from(seeds.password_hash),
                ],
            )?;
            password_hash = Some(seeds.password_hash.to_owned());
        }
        Ok(Reconciled::Identity(StoredIdentity {
            handle: handle.unwrap_or_default(),
            password_hash: password_hash.unwrap_or_default(),
            status,
        }))
    })
}

/// The stored preferences (a JSON array), or `None` if never set.
pub fn get_preferences(db: &dyn Sql) -> Result<Option<String>> {
    db.query_opt("SELECT json FROM preferences WHERE id = 1", &[])?
        .map(|row| row.text(0))
        .transpose()
}

/// Replaces the stored preferences (a JSON array, validated by the caller).
pub fn put_preferences(db: &dyn Sql, json: &str) -> Result<()> {
    db.execute(
        "INSERT OR REPLACE INTO preferences (id, json) VALUES (1, ?)",
        &[SqlValue::from(json)],
    )?;
    Ok(())
}

/// Stores the one live token for `purpose` (its hash), replacing any earlier one.
pub fn put_account_token(
    db: &dyn Sql,
    purpose: &str,
    token_hash: &str,
    expires_ms: i64,
) -> Result<()> {
    db.execute(
        "INSERT OR REPLACE INTO account_token (purpose, token_hash, expires_ms) VALUES (?, ?, ?)",
        &[
            SqlValue::from(purpose),
            SqlValue::from(token_hash),
            SqlValue::Integer(expires_ms),
        ],
    )?;
    Ok(())
}

/// When the live token for `purpose` expires, if its hash is `token_hash`.
pub fn account_token_expiry(db: &dyn Sql, purpose: &str, token_hash: &str) -> Result<Option<i64>> {
    db.query_opt(
        "SELECT expires_ms FROM account_token WHERE purpose = ? AND token_hash = ?",
        &[SqlValue::from(purpose), SqlValue::from(token_hash)],
    )?
    .map(|row| row.integer(0))
    .transpose()
}

/// Deletes the live token for `purpose` if its hash is `token_hash`; whether it did (so of two
/// uses of one token, one wins).
pub fn take_account_token(db: &dyn Sql, purpose: &str, token_hash: &str) -> Result<bool> {
    Ok(!db
        .execute(
            "DELETE FROM account_token WHERE purpose = ? AND token_hash = ? RETURNING purpose",
            &[SqlValue::from(purpose), SqlValue::from(token_hash)],
        )?
        .is_empty())
}

/// An app password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPassword {
    /// Its name (unique).
    pub name: String,
    /// The password's hash.
    pub password_hash: String,
    /// Whether it may do privileged operations (DMs, ...).
    pub privileged: bool,
    /// When it was created (ms).
    pub created_ms: i64,
    /// A short tag of the password that finds it at login without trying every hash (none for
    /// app passwords made before tags existed).
    pub lookup: Option<String>,
}

fn app_password_row(row: &Row) -> Result<AppPassword> {
    let mut e = FirstError::new();
    let v = AppPassword {
        name: e.keep(row.text(0)),
        password_hash: e.keep(row.text(1)),
        privileged: e.keep(row.integer(2)) != 0,
        created_ms: e.keep(row.integer(3)),
        lookup: e.keep(row.opt_text(4)),
    };
    e.finish(v)
}

/// Stores a new app password; [`StorageError::Conflict`] if the name is taken.
pub fn create_app_password(db: &dyn Sql, app_password: &AppPassword) -> Result<()> {
    let inserted = db.execute(
        "INSERT OR IGNORE INTO app_password (name, password_hash, privileged, created_ms, lookup) \
         VALUES (?, ?, ?, ?, ?) RETURNING name",
        &[
            SqlValue::from(app_password.name.as_str()),
            SqlValue::from(app_password.password_hash.as_str()),
            SqlValue::from(app_password.privileged),
            SqlValue::Integer(app_password.created_ms),
            app_password
                .lookup
                .as_deref()
                .map_or(SqlValue::Null, SqlValue::from),
        ],
    )?;
    if inserted.is_empty() {
        return Err(StorageError::Conflict(format!(
            "an app password named {:?} exists",
            app_password.name
        )));
    }
    Ok(())
}

/// Every app password, newest first (ties by name).
pub fn list_app_passwords(db: &dyn Sql) -> Result<Vec<AppPassword>> {
    db.execute(
        "SELECT name, password_hash, privileged, created_ms, lookup FROM app_password \
         ORDER BY created_ms DESC, name",
        &[],
    )?
    .iter()
    .map(app_password_row)
    .collect()
}

/// Revokes an app password and ends every session it opened, in one
/// transaction; returns whether it existed.
pub fn delete_app_password(db: &dyn Sql, name: &str) -> Result<bool> {
    db.transaction(|| {
        let removed = db.execute(
            "DELETE FROM app_password WHERE name = ? RETURNING name",
            &[SqlValue::from(name)],
        )?;
        db.execute(
            "DELETE FROM refresh_token WHERE app_password_name = ?",
            &[SqlValue::from(name)],
        )?;
        Ok(!removed.is_empty())
    })
}

/// A legacy-session refresh token (its id is the token's `jti`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// The token id.
    pub id: String,
    /// The app password that opened the session (`None`: the main password).
    pub app_password_name: Option<String>,
    /// The session's scope.
    pub scope: String,
    /// Issued at (ms).
    pub created_ms: i64,
    /// Expires at (ms).
    pub expires_ms: i64,
    /// The token it was rotated to, once used.
    pub next_id: Option<String>,
    /// When the session's first token was issued (ms).
    pub session_started_ms: i64,
}

fn refresh_row(row: &Row) -> Result<RefreshToken> {
    let created_ms = row.integer(3)?;
    let mut e = FirstError::new();
    let v = RefreshToken {
        id: e.keep(row.text(0)),
        app_password_name: e.keep(row.opt_text(1)),
        scope: e.keep(row.text(2)),
        created_ms,
        expires_ms: e.keep(row.integer(4)),
        next_id: e.keep(row.opt_text(5)),
        session_started_ms: e.keep(row.opt_integer(6)).unwrap_or(created_ms),
    };
    e.finish(v)
}

/// Stores a new refresh token.
pub fn insert_refresh_token(db: &dyn Sql, token: &RefreshToken) -> Result<()> {
    db.execute(
        "INSERT INTO refresh_token \
         (id, app_password_name, scope, created_ms, expires_ms, next_id, session_started_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        &[
            SqlValue::from(token.id.as_str()),
            SqlValue::from(token.app_password_name.clone()),
            SqlValue::from(token.scope.as_str()),
            SqlValue::Integer(token.created_ms),
            SqlValue::Integer(token.expires_ms),
            SqlValue::from(token.next_id.clone()),
            SqlValue::Integer(token.session_started_ms),
        ],
    )?;
    Ok(())
}

/// A refresh token by id.
pub fn get_refresh_token(db: &dyn Sql, id: &str) -> Result<Option<RefreshToken>> {
    db.query_opt(
        "SELECT id, app_password_name, scope, created_ms, expires_ms, next_id, \
         session_started_ms FROM refresh_token WHERE id = ?",
        &[SqlValue::from(id)],
    )?
    .as_ref()
    .map(refresh_row)
    .transpose()
}

/// Rotates `old_id` to `new` atomically: records `next_id` on the old token
/// and stores the new one. Fails with [`StorageError::Conflict`] if the old
/// token is gone or was already rotated (a replay: the caller decides what
/// grace applies, using [`get_refresh_token`]).
pub fn rotate_refresh_token(db: &dyn Sql, old_id: &str, new: &RefreshToken) -> Result<()> {
    db.transaction(|| {
        let marked = db.execute(
            "UPDATE refresh_token SET next_id = ? WHERE id = ? AND next_id IS NULL RETURNING id",
            &[SqlValue::from(new.id.as_str()), SqlValue::from(old_id)],
        )?;
        if marked.is_empty() {
            return Err(StorageError::Conflict(format!(
                "refresh token {old_id} is unknown or already rotated"
            )));
        }
        insert_refresh_token(db, new)
    })
}

/// Ends a session: deletes the token and every token rotated from it
/// onwards; returns how many were deleted.
pub fn revoke_refresh_token(db: &dyn Sql, id: &str) -> Result<usize> {
    db.transaction(|| {
        let mut removed = 0;
        let mut next = Some(id.to_owned());
        // A chain is short (one link per refresh that was not yet pruned);
        // the bound guards against a cycle in corrupt data.
        for _ in 0..10_000 {
            let Some(current) = next.take() else { break };
            let rows = db.execute(
                "DELETE FROM refresh_token WHERE id = ? RETURNING next_id",
                &[SqlValue::from(current.as_str())],
            )?;
            if let Some(row) = rows.first() {
                removed += 1;
                next = row.opt_text(0)?;
            }
        }
        Ok(removed)
    })
}

/// Deletes tokens that expired at or before `now_ms` (as the tokens themselves do, at `exp`
/// exactly) and spent ones (with a successor) issued before `spent_issued_before_ms`; returns
/// how many.
pub fn prune_refresh_tokens(
    db: &dyn Sql,
    now_ms: i64,
    spent_issued_before_ms: i64,
) -> Result<usize> {
    Ok(db
        .execute(
            "DELETE FROM refresh_token WHERE expires_ms <= ? \
             OR (next_id IS NOT NULL AND created_ms < ?) RETURNING id",
            &[
                SqlValue::Integer(now_ms),
                SqlValue::Integer(spent_issued_before_ms),
            ],
        )?
        .len())
}
