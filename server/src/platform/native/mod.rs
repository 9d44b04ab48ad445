//! The native shell's storage ports: a SQLite file and a blob directory
//! (tests, and self-hosting off Cloudflare).

pub mod blob_dir;
pub mod sqlite;

pub use blob_dir::DirBlobStore;
pub use sqlite::NativeSql;
