//! The one error type of the repository core.

use cid::Cid;
use std::fmt;

/// Why a repository operation failed. Every variant comes from data or storage,
/// never from a bug the caller could not have caused: none of these panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoError {
    /// A block the operation needs is not in the block store.
    MissingBlock(Cid),
    /// The block store itself failed (I/O, SQL).
    Storage(String),
    /// A block is not the DAG-CBOR shape expected (MST node, commit, CAR header).
    Decode(String),
    /// An MST key is not `collection/rkey` with allowed characters.
    InvalidKey(String),
    /// The MST breaks an invariant (ordering, heights, empty nodes, prefixes).
    InvalidMst(String),
    /// A commit is malformed, has a bad signature, or its rev does not grow.
    InvalidCommit(String),
    /// A write conflicts with the tree: create of an existing key, update or
    /// delete of a missing one.
    WriteConflict(String),
    /// A CAR stream is malformed.
    Car(String),
}

impl fmt::Display for RepoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoError::MissingBlock(cid) => {
                write!(f, "missing block {}", crate::data::cid_string(cid))
            }
            RepoError::Storage(m) => write!(f, "block store: {m}"),
            RepoError::Decode(m) => write!(f, "decode: {m}"),
            RepoError::InvalidKey(k) => write!(f, "invalid MST key: {k:?}"),
            RepoError::InvalidMst(m) => write!(f, "invalid MST: {m}"),
            RepoError::InvalidCommit(m) => write!(f, "invalid commit: {m}"),
            RepoError::WriteConflict(m) => write!(f, "write conflict: {m}"),
            RepoError::Car(m) => write!(f, "CAR: {m}"),
        }
    }
}

impl std::error::Error for RepoError {}

/// Shorthand for results of the repository core.
pub type Result<T> = std::result::Result<T, RepoError>;
