//! The one error type of the storage layer.

use crate::repo::RepoError;
use std::fmt;

/// Why a storage operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The database itself failed (I/O, constraint, syntax, busy).
    Sql(String),
    /// An integer outside what Durable Object SQL stores exactly (±2^53).
    IntegerOutOfRange(i64),
    /// The database was written by a newer version of this code.
    SchemaTooNew {
        /// The database's schema version.
        database: i64,
        /// The newest version this code knows.
        code: i64,
    },
    /// Stored data does not have the expected shape (bad CID, wrong type).
    Corrupt(String),
    /// The repository moved since the commit was built (another write won);
    /// nothing was stored.
    Conflict(String),
    /// A repository operation failed.
    Repo(RepoError),
    /// The transaction was rolled back because its body returned an error
    /// (internal marker; callers see the body's own error).
    RolledBack,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Sql(m) => write!(f, "SQL: {m}"),
            StorageError::IntegerOutOfRange(v) => {
                write!(
                    f,
                    "integer {v} is outside the exactly storable range (±2^53)"
                )
            }
            StorageError::SchemaTooNew { database, code } => write!(
                f,
                "the database schema is version {database} but this build only knows up to \
                 version {code}: run a newer build (refusing to touch a newer database)"
            ),
            StorageError::Corrupt(m) => write!(f, "stored data is corrupt: {m}"),
            StorageError::Conflict(m) => write!(f, "conflict: {m}"),
            StorageError::Repo(e) => write!(f, "repository: {e}"),
            StorageError::RolledBack => write!(f, "transaction rolled back"),
        }
    }
}

impl std::error::Error for StorageError {}

impl From<RepoError> for StorageError {
    fn from(e: RepoError) -> Self {
        StorageError::Repo(e)
    }
}

/// Storage errors reach the repository core through the block store port.
impl From<StorageError> for RepoError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Repo(inner) => inner,
            other => RepoError::Storage(other.to_string()),
        }
    }
}

/// Shorthand for results of the storage layer.
pub type Result<T> = std::result::Result<T, StorageError>;

/// A storage failure reaching a client is a server fault: its detail is logged, never sent
/// (see [`crate::lifecycle::conceal_internal_error`]).
impl From<StorageError> for pds_api::runtime::xrpc::XrpcError {
    fn from(e: StorageError) -> Self {
        pds_api::runtime::xrpc::XrpcError::internal_message(format!("storage: {e}"))
    }
}
