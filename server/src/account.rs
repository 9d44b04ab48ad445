//! The account's state and the platform ports it lives behind. One `Account` exists per Durable
//! Object (or native server) and outlives requests; handlers borrow it through [`crate::api::Api`].

use std::cell::RefCell;

use crate::clock::Clock;
use crate::storage::{BlobStore, MigrationOutcome, Sql, StorageError};
use crate::tid::TidGenerator;

/// The ports and long-lived state behind every request of the account.
pub struct Account {
    /// The SQL port: DO SQLite on Workers, a SQLite file natively.
    pub sql: Box<dyn Sql>,
    /// The blob store: R2 on Workers, a directory natively.
    pub blobs: Box<dyn BlobStore>,
    /// Time, from the platform.
    pub clock: Box<dyn Clock>,
    /// Revisions and record keys; seeded from the stored head before first use.
    pub tids: RefCell<TidGenerator>,
    /// Whether the schema could be brought up to date when the account was opened.
    pub schema: Result<MigrationOutcome, StorageError>,
}

impl Account {
    /// Opens the account over its ports, bringing the schema up to date.
    pub fn open(sql: Box<dyn Sql>, blobs: Box<dyn BlobStore>, clock: Box<dyn Clock>) -> Account {
        let schema = crate::storage::migrate(sql.as_ref());
        Account {
            sql,
            blobs,
            clock,
            tids: RefCell::new(TidGenerator::new()),
            schema,
        }
    }
}
