//! Storage: one SQL schema behind a synchronous SQL port, the repository's
//! blocks/index/head/sequencer on top of it, and the blob store port.
//!
//! Platforms provide the ports ([`Sql`], [`BlobStore`]):
//! Durable Object SQLite and R2 on Workers ([`crate::platform::worker`]), a
//! SQLite file and a directory natively ([`crate::platform::native`]).
//!
//! The write path of the server, in order:
//! 1. [`migrate`] once when the database is opened;
//! 2. [`load_root`] → `Repo::open(&SqlBlockStore::new(db), root.commit_cid)`;
//! 3. `repo.apply_writes(&SqlBlockStore::new(db), ..)` builds a commit
//!    (nothing stored yet);
//! 4. [`persist_commit`] stores it with the record index, blob references,
//!    head and sequencer event in one transaction, or nothing at all.

pub mod account;
pub mod blobs;
pub mod blocks;
pub mod error;
pub mod repo_store;
pub mod schema;
pub mod sequencer;
pub mod sql;

pub use blobs::{BlobBody, BlobError, BlobStore, ByteRange, ChunkSource, StoredBlob};
pub use blocks::{BlockCache, SqlBlockStore};
pub use error::{Result, StorageError};
pub use repo_store::{
    get_record, list_collections, list_records, load_root, persist_commit, replace_repo,
    IndexedRecord, PersistedCommit, RecordBlobs, RepoRoot,
};
pub use schema::{migrate, MigrationOutcome};
pub use sequencer::{append_event, events_after, latest_seq, NewEvent, StoredEvent};
pub use sql::{Row, Sql, SqlExt, SqlValue};
