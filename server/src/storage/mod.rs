//! Storage: one SQL schema behind a synchronous SQL port, the repository's
//! blocks/index/head/sequencer on top of it, the account's own rows, and the
//! blob store port.
//!
//! Platforms provide the ports ([`Sql`], [`BlobStore`]): Durable Object
//! SQLite and R2 on Workers (`platform::worker::{sql::DurableSql,
//! r2::R2BlobStore}`), a SQLite file and a directory natively
//! (`platform::native::{NativeSql, DirBlobStore}`).
//!
//! The write path of the server, in order:
//! 1. [`migrate`] once when the database is opened (the Durable Object does
//!    it in its constructor);
//! 2. [`load_root`], then `Repo::open(&store, root.commit_cid)` with
//!    `store = SqlBlockStore::new(db)` (plus `.with_cache(&cache)` for a
//!    [`BlockCache`] the Durable Object keeps across requests);
//! 3. `repo.apply_writes(&store, ..)` builds a commit (nothing stored yet);
//! 4. [`persist_commit`] stores it with the record index, blob references,
//!    head and sequencer event in one transaction, or nothing at all. A
//!    commit built on a stale head is refused ([`StorageError::Conflict`]).
//!
//! Reads: [`get_record`], [`list_records`] and [`list_collections`] use the
//! record index; `sync.getBlocks` uses [`SqlBlockStore::get_many`]; the
//! sequencer is read with [`events_after`]. Importing a whole repository is
//! [`replace_repo`]; blob metadata lives in [`blobs`], account rows in
//! [`account`].

pub mod account;
pub mod blobs;
pub mod blocks;
pub mod error;
pub mod import;
pub mod maintenance;
pub mod memo;
pub mod repo_store;
pub mod schema;
pub mod sequencer;
pub mod sql;
pub mod status;

pub use blobs::{BlobBody, BlobError, BlobStore, ByteRange, ChunkSource, StoredBlob};
pub use blocks::{BlockCache, SqlBlockStore};
pub use error::{Result, StorageError};
pub use repo_store::{
    get_record, list_collections, list_records, load_root, persist_commit, persist_commit_with,
    replace_repo, IndexedRecord, PersistedCommit, RecordBlobs, RepoRoot,
};
pub use schema::{migrate, MigrationOutcome};
pub use sequencer::{append_event, events_after, latest_seq, NewEvent, StoredEvent};
pub use sql::{Row, Sql, SqlExt, SqlValue};
