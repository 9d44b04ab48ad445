//! [`AuthStore`] over the storage schema's `refresh_token`, `app_password` and `account` tables,
//! through the SQL port (Durable Object SQLite on Workers, a SQLite file natively). Plain row
//! access comes from [`crate::storage::account`]; the session queries live here because they
//! rest on this layer's key layout: a refresh token's id is `"{session}.{hash}"`, so a session's
//! tokens are the primary-key range `["{session}.", "{session}/")` ('/' follows '.').

use crate::firehose::EventBody;
use crate::storage::account::{self, Account, AppPassword, RefreshToken};
use crate::storage::{append_event, Sql, SqlExt, SqlValue, StorageError};

use super::store::{
    AccountState, AccountStatus, AppPasswordRecord, AuthStore, RefreshTokenRecord, StoreError,
};
use super::tokens::AccessScope;

/// The auth state in the account's SQL database.
pub struct SqlAuthStore<'a> {
    db: &'a dyn Sql,
    /// Written into the account row if a status change finds none yet.
    account_did: &'a str,
}

impl<'a> SqlAuthStore<'a> {
    /// A store over `db` (migrated) for the account `account_did`.
    pub fn new(db: &'a dyn Sql, account_did: &'a str) -> SqlAuthStore<'a> {
        SqlAuthStore { db, account_did }
    }
}

fn err(e: StorageError) -> StoreError {
    StoreError(e.to_string())
}

fn ms(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError(format!("time {v} out of range")))
}

fn from_ms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The key range of session `session_id`'s tokens.
fn session_range(session_id: &str) -> [SqlValue; 2] {
    [
        SqlValue::from(format!("{session_id}.")),
        SqlValue::from(format!("{session_id}/")),
    ]
}

fn to_row(t: &RefreshTokenRecord) -> Result<RefreshToken, StoreError> {
    Ok(RefreshToken {
        id: t.id.clone(),
        app_password_name: t.app_password_name.clone(),
        scope: t.scope.as_str().to_owned(),
        created_ms: ms(t.created_ms)?,
        expires_ms: ms(t.expires_ms)?,
        next_id: t.next_id.clone(),
        session_started_ms: ms(t.session_started_ms)?,
    })
}

fn from_row(t: RefreshToken) -> Result<RefreshTokenRecord, StoreError> {
    let scope = AccessScope::parse(&t.scope)
        .ok_or_else(|| StoreError(format!("refresh token {} has scope {:?}", t.id, t.scope)))?;
    Ok(RefreshTokenRecord {
        id: t.id,
        app_password_name: t.app_password_name,
        scope,
        created_ms: from_ms(t.created_ms),
        expires_ms: from_ms(t.expires_ms),
        next_id: t.next_id,
        session_started_ms: from_ms(t.session_started_ms),
    })
}

impl AuthStore for SqlAuthStore<'_> {
    fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> Result<(), StoreError> {
        account::insert_refresh_token(self.db, &to_row(token)?).map_err(err)
    }

    fn refresh_token(&self, id: &str) -> Result<Option<RefreshTokenRecord>, StoreError> {
        account::get_refresh_token(self.db, id)
            .map_err(err)?
            .map(from_row)
            .transpose()
    }

    fn rotate_refresh_token(
        &self,
        id: &str,
        next: &RefreshTokenRecord,
    ) -> Result<bool, StoreError> {
        match account::rotate_refresh_token(self.db, id, &to_row(next)?) {
            Ok(()) => Ok(true),
            // Unknown or already rotated: nothing was written.
            Err(StorageError::Conflict(_)) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    fn rotate_refresh_token_and_prune(
        &self,
        id: &str,
        next: &RefreshTokenRecord,
        now_ms: u64,
        spent_issued_before_ms: u64,
    ) -> Result<bool, StoreError> {
        let row = to_row(next)?;
        let (now, spent_before) = (ms(now_ms)?, ms(spent_issued_before_ms)?);
        self.db
            .transaction(|| match account::rotate_refresh_token(self.db, id, &row) {
                Ok(()) => {
                    account::prune_refresh_tokens(self.db, now, spent_before)?;
                    Ok(true)
                }
                // Unknown or already rotated: nothing was written.
                Err(StorageError::Conflict(_)) => Ok(false),
                Err(e) => Err(e),
            })
            .map_err(err)
    }

    fn session_exists(&self, session_id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let [lo, hi] = session_range(session_id);
        // The time is compared here, not in SQL: the statement is then the same on every
        // request, and the account database's memo answers it until something is written.
        let row = self
            .db
            .query_opt(
                "SELECT MAX(expires_ms) FROM refresh_token WHERE id > ? AND id < ?",
                &[lo, hi],
            )
            .map_err(err)?;
        let latest_expiry = match row {
            Some(row) => row.opt_integer(0).map_err(err)?,
            None => None,
        };
        let now = ms(now_ms)?;
        Ok(latest_expiry.is_some_and(|expires| expires > now))
    }

    fn delete_session(&self, session_id: &str) -> Result<(), StoreError> {
        let [lo, hi] = session_range(session_id);
        self.db
            .execute(
                "DELETE FROM refresh_token WHERE id > ? AND id < ?",
                &[lo, hi],
            )
            .map(|_| ())
            .map_err(err)
    }

    fn prune_refresh_tokens(
        &self,
        now_ms: u64,
        spent_issued_before_ms: u64,
    ) -> Result<(), StoreError> {
        account::prune_refresh_tokens(self.db, ms(now_ms)?, ms(spent_issued_before_ms)?)
            .map(drop)
            .map_err(err)
    }

    fn prune_and_insert_refresh_token(
        &self,
        token: &RefreshTokenRecord,
        now_ms: u64,
        spent_issued_before_ms: u64,
    ) -> Result<(), StoreError> {
        let row = to_row(token)?;
        let (now, spent_before) = (ms(now_ms)?, ms(spent_issued_before_ms)?);
        self.db
            .transaction(|| {
                account::prune_refresh_tokens(self.db, now, spent_before)?;
                account::insert_refresh_token(self.db, &row)
            })
            .map_err(err)
    }

    fn insert_app_password(&self, record: &AppPasswordRecord) -> Result<bool, StoreError> {
        let row = AppPassword {
            name: record.name.clone(),
            password_hash: record.password_hash.clone(),
            privileged: record.privileged,
            created_ms: ms(record.created_ms)?,
            lookup: record.lookup.clone(),
        };
        match account::create_app_password(self.db, &row) {
            Ok(()) => Ok(true),
            Err(StorageError::Conflict(_)) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    fn app_passwords(&self) -> Result<Vec<AppPasswordRecord>, StoreError> {
        // Newest first, then by name: the order the storage query gives.
        let all: Vec<AppPasswordRecord> = account::list_app_passwords(self.db)
            .map_err(err)?
            .into_iter()
            .map(|p| AppPasswordRecord {
                name: p.name,
                password_hash: p.password_hash,
                privileged: p.privileged,
                created_ms: from_ms(p.created_ms),
                lookup: p.lookup,
            })
            .collect();
        Ok(all)
    }

    fn delete_app_password(&self, name: &str) -> Result<bool, StoreError> {
        account::delete_app_password(self.db, name).map_err(err)
    }

    fn rehash_password(&self, phc: &str) -> Result<(), StoreError> {
        account::rehash_password(self.db, phc).map_err(err)
    }

    fn change_password(&self, phc: &str) -> Result<(), StoreError> {
        account::set_password_hash(self.db, phc).map_err(err)
    }

    fn account_state(&self) -> Result<AccountState, StoreError> {
        let Some(a) = account::get_account(self.db).map_err(err)? else {
            return Ok(AccountState::default());
        };
        Ok(AccountState {
            status: a.status,
            email: a.email,
            email_confirmed: a.email_confirmed_ms.is_some(),
        })
    }

    fn set_account_status(
        &self,
        status: AccountStatus,
        now_ms: u64,
        events: &[EventBody],
    ) -> Result<(), StoreError> {
        let now = ms(now_ms)?;
        self.db
            .transaction(|| {
                for event in events {
                    append_event(self.db, &event.new_event(now))?;
                }
                if account::get_account(self.db)?.is_none() {
                    account::create_account(
                        self.db,
                        &Account {
                            did: self.account_did.to_owned(),
                            handle: None,
                            email: None,
                            email_confirmed_ms: None,
                            password_hash: None,
                            status,
                            status_changed_ms: Some(now),
                            created_ms: now,
                        },
                    )
                } else {
                    account::set_account_status(self.db, status, now)
                }
            })
            .map_err(err)
    }
}
