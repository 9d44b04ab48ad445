//! Single-use tokens that confirm account actions, shaped as the reference's email tokens
//! (`XXXXX-XXXXX`, 50 random bits, valid 15 minutes, compared case-insensitively). One is live
//! per purpose, stored as a hash. With no mail to send them, the owner reads them through an
//! authenticated method instead.

use pds_api::runtime::xrpc::XrpcError;
use sha2::{Digest, Sha256};

use crate::storage::{self, Sql};

/// The purpose of tokens that sign PLC operations.
pub const PLC_OPERATION: &str = "plc_operation";
/// How long a token is valid: 15 minutes, as the reference's.
pub const LIFETIME_MS: i64 = 15 * 60 * 1000;

/// A fresh token for `purpose`, replacing any live one.
pub fn issue(db: &dyn Sql, purpose: &str, now_ms: i64) -> Result<String, XrpcError> {
    let bytes: [u8; 7] = super::random_bytes()?;
    let token = super::app_password::base32_groups(&bytes, 10, 5).to_ascii_uppercase();
    storage::account::put_account_token(
        db,
        purpose,
        &token_hash(&token),
        now_ms.saturating_add(LIFETIME_MS),
    )?;
    Ok(token)
}

/// Checks `token` against the live token for `purpose`, leaving it live (see [`consume`]).
pub fn check(db: &dyn Sql, purpose: &str, token: &str, now_ms: i64) -> Result<(), XrpcError> {
    match storage::account::account_token_expiry(db, purpose, &token_hash(token))? {
        None => Err(invalid_token()),
        Some(expires_ms) if expires_ms <= now_ms => {
            Err(XrpcError::declared("ExpiredToken", "Token is expired"))
        }
        Some(_) => Ok(()),
    }
}

/// Spends a token [`check`] accepted: of two uses that both passed the check, one fails here.
pub fn consume(db: &dyn Sql, purpose: &str, token: &str) -> Result<(), XrpcError> {
    if storage::account::take_account_token(db, purpose, &token_hash(token))? {
        Ok(())
    } else {
        Err(invalid_token())
    }
}

fn invalid_token() -> XrpcError {
    XrpcError::declared("InvalidToken", "Token is invalid")
}

/// The stored form: SHA-256 of the upper-cased, trimmed token. A token has 50 random bits and
/// lives 15 minutes, so a fast hash keeps a leaked database from yielding a usable token.
fn token_hash(token: &str) -> String {
    crate::hex::encode(&Sha256::digest(
        token.trim().to_ascii_uppercase().as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::native::NativeSql;

    fn db() -> NativeSql {
        let db = NativeSql::open_in_memory().unwrap();
        crate::storage::migrate(&db).unwrap();
        db
    }

    #[test]
    fn tokens_are_reference_shaped_single_use_and_expire() {
        let db = db();
        let token = issue(&db, PLC_OPERATION, 1_000).unwrap();
        assert_eq!(token.len(), 11);
        assert_eq!(&token[5..6], "-");
        assert!(token
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));

        // Case and surrounding space do not matter; another purpose's check does not see it.
        let typed = format!(" {} ", token.to_ascii_lowercase());
        check(&db, PLC_OPERATION, &typed, 2_000).unwrap();
        assert_eq!(
            check(&db, "other", &token, 2_000).unwrap_err().error,
            "InvalidToken"
        );
        assert_eq!(
            check(&db, PLC_OPERATION, "AAAAA-AAAAA", 2_000)
                .unwrap_err()
                .error,
            "InvalidToken"
        );
        let expired = check(&db, PLC_OPERATION, &token, 1_000 + LIFETIME_MS).unwrap_err();
        assert_eq!(
            (expired.status, expired.error.as_str()),
            (400, "ExpiredToken")
        );

        consume(&db, PLC_OPERATION, &typed).unwrap();
        assert_eq!(
            consume(&db, PLC_OPERATION, &token).unwrap_err().error,
            "InvalidToken"
        );
        assert_eq!(
            check(&db, PLC_OPERATION, &token, 2_000).unwrap_err().error,
            "InvalidToken"
        );

        // A new token retires the one before.
        let first = issue(&db, PLC_OPERATION, 1_000).unwrap();
        let second = issue(&db, PLC_OPERATION, 1_000).unwrap();
        assert_ne!(first, second);
        assert!(check(&db, PLC_OPERATION, &first, 2_000).is_err());
        check(&db, PLC_OPERATION, &second, 2_000).unwrap();
    }
}
