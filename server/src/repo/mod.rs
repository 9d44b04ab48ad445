//! The account repository: Merkle Search Tree, signed v3 commits, CAR streams,
//! inclusion proofs, commit diffs (sync v1.1) and a full-repository verifier.
//!
//! Everything here is pure: blocks come from a [`BlockStore`] port and nothing
//! touches the platform, so the same code runs in the Worker and natively.

pub mod blockstore;
pub mod car;
pub mod cbor;
pub mod commit;
pub mod diff;
pub mod error;
pub mod mst;
pub mod proof;
pub mod repository;
pub mod verify;

pub use blockstore::{BlockMap, BlockStore, MemoryBlockStore, TrackingStore};
pub use commit::{Commit, CommitSigner, CommitVerifier, UnsignedCommit};
pub use error::RepoError;
pub use mst::Mst;
pub use repository::{CommitOutput, Repo, RepoOp, WriteOp};
