//! The one SQL schema, as an ordered list of versioned migrations.
//!
//! The same statements run on Durable Object SQLite and on a native SQLite
//! file, so they stay within what both accept: no `BEGIN`/`SAVEPOINT`/`PRAGMA`
//! (the DO rejects them; transactions come from [`SqlExt::transaction`]), no
//! foreign-key actions (enforcement differs), integers below 2^53.
//!
//! Conventions: CIDs are stored as their canonical string (readable, and
//! comparable across tables, e.g. a record's block and its index row); times
//! are integer milliseconds since the Unix epoch from the clock port (`_ms`).
//!
//! To change the schema, append a migration; never edit a released one.

use super::error::{Result, StorageError};
use super::sql::{Sql, SqlExt, SqlValue};

/// One schema step: applied once, in one transaction, with its version row.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// 1, 2, 3, ... in order, no gaps.
    pub version: i64,
    /// What it does, for the migrations table and error messages.
    pub name: &'static str,
    /// Statements run in order.
    pub statements: &'static [&'static str],
}

/// Every table of version 1, one line each.
const V1_STATEMENTS: &[&str] = &[
    // Repository blocks (commits, MST nodes, records) by CID; `rev` is the
    // commit that added the block (sync.getRepo `since`).
    "CREATE TABLE repo_block (
        cid TEXT PRIMARY KEY NOT NULL,
        bytes BLOB NOT NULL,
        rev TEXT NOT NULL
    )",
    "CREATE INDEX repo_block_rev ON repo_block (rev)",
    // The current repository head: one row, replaced by every commit.
    "CREATE TABLE repo_root (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        did TEXT NOT NULL,
        commit_cid TEXT NOT NULL,
        rev TEXT NOT NULL,
        data_cid TEXT NOT NULL
    )",
    // The record index: what the MST holds, by (collection, rkey), for
    // listRecords/describeRepo without walking the tree.
    "CREATE TABLE record (
        collection TEXT NOT NULL,
        rkey TEXT NOT NULL,
        cid TEXT NOT NULL,
        rev TEXT NOT NULL,
        PRIMARY KEY (collection, rkey)
    )",
    "CREATE INDEX record_cid ON record (cid)",
    // Sequencer: firehose events. AUTOINCREMENT: a seq is never reused, even
    // after old events are pruned. `event` is the event body's DAG-CBOR as
    // given (without seq); `kind` is commit, sync, identity or account.
    "CREATE TABLE sequencer_event (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        event BLOB NOT NULL,
        time_ms INTEGER NOT NULL
    )",
    "CREATE INDEX sequencer_event_time ON sequencer_event (time_ms)",
    // Legacy-session refresh tokens: server-side so they can be revoked;
    // `next_id` is the token it was rotated to; `app_password_name` ties a
    // session to the credential that opened it (NULL: the main password).
    "CREATE TABLE refresh_token (
        id TEXT PRIMARY KEY NOT NULL,
        app_password_name TEXT,
        scope TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        next_id TEXT
    )",
    "CREATE INDEX refresh_token_app_password ON refresh_token (app_password_name)",
    "CREATE INDEX refresh_token_expires ON refresh_token (expires_ms)",
    // App passwords: name, password hash, privileged flag.
    "CREATE TABLE app_password (
        name TEXT PRIMARY KEY NOT NULL,
        password_hash TEXT NOT NULL,
        privileged INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL
    )",
    // Uploaded blobs (bytes are in the blob store, keyed by the same CID).
    "CREATE TABLE blob_metadata (
        cid TEXT PRIMARY KEY NOT NULL,
        mime_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    )",
    // Which record references which blob (blob GC, deletes); `rev` is the
    // commit that wrote the reference (sync.listBlobs `since`).
    "CREATE TABLE record_blob (
        collection TEXT NOT NULL,
        rkey TEXT NOT NULL,
        blob_cid TEXT NOT NULL,
        rev TEXT NOT NULL,
        PRIMARY KEY (collection, rkey, blob_cid)
    )",
    "CREATE INDEX record_blob_blob ON record_blob (blob_cid)",
    // app.bsky preferences: the JSON array as putPreferences stored it.
    "CREATE TABLE preferences (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        json TEXT NOT NULL
    )",
    // The one account: identity, credentials, status (active, deactivated,
    // takendown, suspended, deleted).
    "CREATE TABLE account (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        did TEXT NOT NULL,
        handle TEXT,
        email TEXT,
        email_confirmed_ms INTEGER,
        password_hash TEXT,
        status TEXT NOT NULL DEFAULT 'active',
        status_changed_ms INTEGER,
        created_ms INTEGER NOT NULL
    )",
];

/// Version 2: what background maintenance must remember across Durable
/// Object evictions and restarts.
const V2_STATEMENTS: &[&str] = &[
    // One row: the handle last announced with `#identity` (NULL: never),
    // when events were last pruned, and when relays were last asked to
    // crawl with the newest seq at that moment (later events are news).
    "CREATE TABLE maintenance_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        announced_handle TEXT,
        last_prune_ms INTEGER,
        last_crawl_ms INTEGER,
        last_crawl_seq INTEGER
    )",
    // requestCrawl calls not yet delivered, one per relay (its base URL):
    // when the request was queued (it is given up a day later), failed
    // attempts so far, and when to try next.
    "CREATE TABLE relay_crawl (
        relay TEXT PRIMARY KEY NOT NULL,
        queued_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_ms INTEGER NOT NULL,
        last_error TEXT
    )",
];

/// Version 3: the account's identity and credentials are state. What the
/// configuration last seeded is remembered, so a configured value overrides
/// the stored one only when the configuration itself changed (a handle set
/// through the API survives restarts; a redeploy with a new one wins).
const V3_STATEMENTS: &[&str] = &[
    "ALTER TABLE account ADD COLUMN seeded_handle TEXT",
    "ALTER TABLE account ADD COLUMN seeded_password_hash TEXT",
];

/// Version 4: records by the revision that wrote them, for read-after-write (the account's
/// writes newer than what the AppView has seen).
const V4_STATEMENTS: &[&str] = &["CREATE INDEX record_rev ON record (rev)"];

/// Version 5: abuse resistance. Rate-limit counters (one row per limit and key, dropped when
/// its window ends); a lookup tag for app passwords, so a login verifies one stored hash
/// instead of trying each (NULL for app passwords made before: those are still tried); and
/// when each legacy session started, for its absolute lifetime (a session open before this
/// version counts from its newest token).
const V5_STATEMENTS: &[&str] = &[
    "CREATE TABLE rate_limit (
        key TEXT PRIMARY KEY NOT NULL,
        used INTEGER NOT NULL,
        window_end_ms INTEGER NOT NULL
    )",
    "CREATE INDEX rate_limit_end ON rate_limit (window_end_ms)",
    "ALTER TABLE app_password ADD COLUMN lookup TEXT",
    "CREATE INDEX app_password_lookup ON app_password (lookup)",
    "ALTER TABLE refresh_token ADD COLUMN session_started_ms INTEGER",
    "UPDATE refresh_token SET session_started_ms = created_ms",
];

/// Version 6: blob garbage collection. Since when each blob has had no record referencing it
/// (NULL while one does): a blob unreferenced for longer than the grace window is no longer
/// served and is then deleted. Blobs unreferenced today count from their upload. And when the
/// blob store was last swept for what interrupted uploads left.
const V6_STATEMENTS: &[&str] = &[
    "ALTER TABLE maintenance_state ADD COLUMN last_blob_sweep_ms INTEGER",
    "ALTER TABLE blob_metadata ADD COLUMN unreferenced_since_ms INTEGER",
    "UPDATE blob_metadata SET unreferenced_since_ms = created_ms WHERE NOT EXISTS \
     (SELECT 1 FROM record_blob WHERE record_blob.blob_cid = blob_metadata.cid)",
    "CREATE INDEX blob_unreferenced ON blob_metadata (unreferenced_since_ms) \
     WHERE unreferenced_since_ms IS NOT NULL",
];

/// Version 7: single-use tokens that confirm account actions, one live per purpose (the
/// reference mails them; here the owner reads them through an authenticated method). Only a
/// hash is stored.
const V7_STATEMENTS: &[&str] = &["CREATE TABLE account_token (
        purpose TEXT PRIMARY KEY NOT NULL,
        token_hash TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
    )"];

/// Version 8: repository imports. The blocks of an import stream in here, checked against
/// their CIDs, before the repository is verified and swapped in whole; a repeated import reuses
/// them. `keep` marks the blocks the imported repository reaches; `staged_ms` says when a block
/// last arrived, so an abandoned stage can be purged.
const V8_STATEMENTS: &[&str] = &[
    "CREATE TABLE import_block (
        cid TEXT PRIMARY KEY NOT NULL,
        bytes BLOB NOT NULL,
        keep INTEGER NOT NULL DEFAULT 0,
        staged_ms INTEGER NOT NULL DEFAULT 0
    )",
    // The stage's expiry is read after each batch: an index keeps that one step.
    "CREATE INDEX import_block_staged ON import_block (staged_ms)",
];

/// Version 9: imports verified in steps. The walk of an imported tree stops after a bounded
/// number of visits and goes on in the next call, so no call holds the Durable Object for long:
/// where it stands is kept here (one row), and the records it met are indexed into a stage of
/// the record index (same columns as `record` and `record_blob`), swapped in at the end.
const V9_STATEMENTS: &[&str] = &[
    "CREATE TABLE import_walk (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        root TEXT NOT NULL,
        rev TEXT NOT NULL,
        state TEXT NOT NULL,
        visited INTEGER NOT NULL
    )",
    "CREATE TABLE import_record (
        collection TEXT NOT NULL,
        rkey TEXT NOT NULL,
        cid TEXT NOT NULL,
        rev TEXT NOT NULL,
        PRIMARY KEY (collection, rkey)
    )",
    "CREATE TABLE import_record_blob (
        collection TEXT NOT NULL,
        rkey TEXT NOT NULL,
        blob_cid TEXT NOT NULL,
        rev TEXT NOT NULL,
        PRIMARY KEY (collection, rkey, blob_cid)
    )",
];

/// Version 10: the repository's counts kept as it changes (`checkAccountStatus` reads them
/// instead of counting): blocks, records, the distinct blobs records reference, and how many of
/// those are stored. Triggers keep them, so no writer can forget to; they count rows that are
/// really inserted or deleted, so writers to these tables use upserts, never `INSERT OR
/// REPLACE` (whose implicit delete fires no trigger).
const V10_STATEMENTS: &[&str] = &[
    "CREATE TABLE repo_tally (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        blocks INTEGER NOT NULL,
        records INTEGER NOT NULL,
        expected_blobs INTEGER NOT NULL,
        imported_blobs INTEGER NOT NULL
    )",
    "INSERT INTO repo_tally (id, blocks, records, expected_blobs, imported_blobs) SELECT 1, \
     (SELECT COUNT(*) FROM repo_block), (SELECT COUNT(*) FROM record), \
     (SELECT COUNT(DISTINCT blob_cid) FROM record_blob), \
     (SELECT COUNT(DISTINCT rb.blob_cid) FROM record_blob rb \
      JOIN blob_metadata b ON b.cid = rb.blob_cid)",
    "CREATE TRIGGER tally_block_added AFTER INSERT ON repo_block BEGIN \
     UPDATE repo_tally SET blocks = blocks + 1; END",
    "CREATE TRIGGER tally_block_removed AFTER DELETE ON repo_block BEGIN \
     UPDATE repo_tally SET blocks = blocks - 1; END",
    "CREATE TRIGGER tally_record_added AFTER INSERT ON record BEGIN \
     UPDATE repo_tally SET records = records + 1; END",
    "CREATE TRIGGER tally_record_removed AFTER DELETE ON record BEGIN \
     UPDATE repo_tally SET records = records - 1; END",
    // A blob's first reference (no other record's row names it).
    "CREATE TRIGGER tally_blob_referenced AFTER INSERT ON record_blob \
     WHEN NOT EXISTS (SELECT 1 FROM record_blob WHERE blob_cid = new.blob_cid \
       AND (collection <> new.collection OR rkey <> new.rkey)) BEGIN \
     UPDATE repo_tally SET expected_blobs = expected_blobs + 1, imported_blobs = imported_blobs \
       + EXISTS (SELECT 1 FROM blob_metadata WHERE cid = new.blob_cid); END",
    // A blob's last reference.
    "CREATE TRIGGER tally_blob_unreferenced AFTER DELETE ON record_blob \
     WHEN NOT EXISTS (SELECT 1 FROM record_blob WHERE blob_cid = old.blob_cid) BEGIN \
     UPDATE repo_tally SET expected_blobs = expected_blobs - 1, imported_blobs = imported_blobs \
       - EXISTS (SELECT 1 FROM blob_metadata WHERE cid = old.blob_cid); END",
    "CREATE TRIGGER tally_blob_stored AFTER INSERT ON blob_metadata \
     WHEN EXISTS (SELECT 1 FROM record_blob WHERE blob_cid = new.cid) BEGIN \
     UPDATE repo_tally SET imported_blobs = imported_blobs + 1; END",
    "CREATE TRIGGER tally_blob_forgotten AFTER DELETE ON blob_metadata \
     WHEN EXISTS (SELECT 1 FROM record_blob WHERE blob_cid = old.cid) BEGIN \
     UPDATE repo_tally SET imported_blobs = imported_blobs - 1; END",
];

/// Version 11: the `deleteAfter` a deactivation was given, kept while the account stays
/// deactivated, to show its owner (nothing deletes on it).
const V11_STATEMENTS: &[&str] = &["ALTER TABLE account ADD COLUMN delete_after TEXT"];

/// Version 12: what the status page shows without counting: records per collection, stored
/// blobs and their bytes, commits per UTC day (kept past the firehose's retention), all kept by
/// triggers; and the last outcome of each background check (handle, DID document, relays).
const V12_STATEMENTS: &[&str] = &[
    "CREATE TABLE collection_tally (
        collection TEXT PRIMARY KEY NOT NULL,
        records INTEGER NOT NULL
    )",
    "INSERT INTO collection_tally (collection, records) \
     SELECT collection, COUNT(*) FROM record GROUP BY collection",
    "CREATE TRIGGER tally_collection_added AFTER INSERT ON record BEGIN \
     INSERT INTO collection_tally (collection, records) VALUES (new.collection, 1) \
     ON CONFLICT (collection) DO UPDATE SET records = records + 1; END",
    "CREATE TRIGGER tally_collection_removed AFTER DELETE ON record BEGIN \
     UPDATE collection_tally SET records = records - 1 WHERE collection = old.collection; \
     DELETE FROM collection_tally WHERE collection = old.collection AND records <= 0; END",
    "ALTER TABLE repo_tally ADD COLUMN stored_blobs INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE repo_tally ADD COLUMN stored_blob_bytes INTEGER NOT NULL DEFAULT 0",
    "UPDATE repo_tally SET stored_blobs = (SELECT COUNT(*) FROM blob_metadata), \
     stored_blob_bytes = (SELECT COALESCE(SUM(size), 0) FROM blob_metadata)",
    // A blob's size never changes: its row is inserted once (an upsert updates nothing else).
    "CREATE TRIGGER tally_blob_bytes_added AFTER INSERT ON blob_metadata BEGIN \
     UPDATE repo_tally SET stored_blobs = stored_blobs + 1, \
     stored_blob_bytes = stored_blob_bytes + new.size; END",
    "CREATE TRIGGER tally_blob_bytes_removed AFTER DELETE ON blob_metadata BEGIN \
     UPDATE repo_tally SET stored_blobs = stored_blobs - 1, \
     stored_blob_bytes = stored_blob_bytes - old.size; END",
    "CREATE TABLE commit_day (
        day INTEGER PRIMARY KEY,
        commits INTEGER NOT NULL
    )",
    "INSERT INTO commit_day (day, commits) SELECT time_ms / 86400000, COUNT(*) \
     FROM sequencer_event WHERE kind = 'commit' GROUP BY time_ms / 86400000",
    "CREATE TRIGGER commit_day_counted AFTER INSERT ON sequencer_event \
     WHEN new.kind = 'commit' BEGIN \
     INSERT INTO commit_day (day, commits) VALUES (new.time_ms / 86400000, 1) \
     ON CONFLICT (day) DO UPDATE SET commits = commits + 1; END",
    "CREATE TABLE status_check (
        name TEXT PRIMARY KEY NOT NULL,
        level TEXT NOT NULL,
        summary TEXT NOT NULL,
        fix TEXT,
        checked_ms INTEGER NOT NULL
    )",
];

/// Version 13: OAuth. Authorization requests (pushed, then authorized with a code), sessions
/// (one access and one refresh token each, stored as SHA-256 hashes), spent refresh tokens (a
/// reuse revokes the session), single-use values (DPoP proof ids, client assertion ids, PKCE
/// challenges) until they expire, and fetched client metadata.
const V13_STATEMENTS: &[&str] = &[
    "CREATE TABLE oauth_request (
        id TEXT PRIMARY KEY NOT NULL,
        client_id TEXT NOT NULL,
        client_auth TEXT NOT NULL,
        params TEXT NOT NULL,
        dpop_jkt TEXT NOT NULL,
        expires_ms INTEGER NOT NULL,
        failed_attempts INTEGER NOT NULL DEFAULT 0,
        code_hash TEXT UNIQUE,
        code_expires_ms INTEGER,
        auth_method TEXT
    )",
    "CREATE TABLE oauth_session (
        id TEXT PRIMARY KEY NOT NULL,
        client_id TEXT NOT NULL,
        client_auth TEXT NOT NULL,
        dpop_jkt TEXT NOT NULL,
        scope TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        refreshed_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        refresh_idle_ms INTEGER NOT NULL,
        access_hash TEXT NOT NULL UNIQUE,
        access_expires_ms INTEGER NOT NULL,
        refresh_hash TEXT UNIQUE,
        code_hash TEXT NOT NULL UNIQUE,
        auth_method TEXT NOT NULL
    )",
    "CREATE TABLE oauth_spent_refresh (
        refresh_hash TEXT PRIMARY KEY NOT NULL,
        session_id TEXT NOT NULL
    )",
    "CREATE INDEX oauth_spent_refresh_session ON oauth_spent_refresh (session_id)",
    "CREATE TABLE oauth_used (
        key TEXT PRIMARY KEY NOT NULL,
        expires_ms INTEGER NOT NULL
    )",
    "CREATE INDEX oauth_used_expiry ON oauth_used (expires_ms)",
    "CREATE TABLE oauth_client (
        client_id TEXT PRIMARY KEY NOT NULL,
        metadata TEXT NOT NULL,
        fetched_ms INTEGER NOT NULL
    )",
];

/// Version 14: OAuth permission sets. Resolved lexicons (`include:` scopes), with when they were
/// fetched; and the scope a session was asked for, from which its granted scope is computed
/// again at every refresh.
const V14_STATEMENTS: &[&str] = &[
    "CREATE TABLE lexicon_cache (
        nsid TEXT PRIMARY KEY NOT NULL,
        lexicon TEXT NOT NULL,
        fetched_ms INTEGER NOT NULL
    )",
    "ALTER TABLE oauth_session ADD COLUMN requested_scope TEXT",
];

/// Version 15: passkeys. The owner's WebAuthn credentials (the public key as a small JSON
/// document, the signature counter), and the one-time registration links the command line
/// makes (by hash).
const V15_STATEMENTS: &[&str] = &[
    "CREATE TABLE passkey (
        id TEXT PRIMARY KEY NOT NULL,
        public_key TEXT NOT NULL,
        name TEXT NOT NULL,
        sign_count INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        last_used_ms INTEGER
    )",
    "CREATE TABLE passkey_link (
        token_hash TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
    )",
];

/// The schema of this build, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "repository, sequencer, sessions, app passwords, blobs, preferences, account",
        statements: V1_STATEMENTS,
    },
    Migration {
        version: 2,
        name: "maintenance state: announced handle, pruning, relay crawl requests",
        statements: V2_STATEMENTS,
    },
    Migration {
        version: 3,
        name: "account identity seeded from configuration",
        statements: V3_STATEMENTS,
    },
    Migration {
        version: 4,
        name: "record index by revision",
        statements: V4_STATEMENTS,
    },
    Migration {
        version: 5,
        name: "rate limits, app password lookup, session start",
        statements: V5_STATEMENTS,
    },
    Migration {
        version: 6,
        name: "blob garbage collection",
        statements: V6_STATEMENTS,
    },
    Migration {
        version: 7,
        name: "account action tokens",
        statements: V7_STATEMENTS,
    },
    Migration {
        version: 8,
        name: "repository import staging",
        statements: V8_STATEMENTS,
    },
    Migration {
        version: 9,
        name: "repository imports verified in steps",
        statements: V9_STATEMENTS,
    },
    Migration {
        version: 10,
        name: "repository counts kept by triggers",
        statements: V10_STATEMENTS,
    },
    Migration {
        version: 11,
        name: "a deactivation's deleteAfter",
        statements: V11_STATEMENTS,
    },
    Migration {
        version: 12,
        name: "status page: counts by collection, blob bytes, commits per day, checks",
        statements: V12_STATEMENTS,
    },
    Migration {
        version: 13,
        name: "OAuth requests, sessions, single-use values, client metadata",
        statements: V13_STATEMENTS,
    },
    Migration {
        version: 14,
        name: "OAuth permission sets",
        statements: V14_STATEMENTS,
    },
    Migration {
        version: 15,
        name: "passkeys",
        statements: V15_STATEMENTS,
    },
];

/// The schema version of this build.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationOutcome {
    /// Version found before migrating (0: empty database).
    pub from: i64,
    /// Version after migrating.
    pub to: i64,
}

/// Brings the database to this build's schema. Safe to call on every start:
/// applied migrations are skipped. Refuses a database newer than the code.
pub fn migrate(db: &dyn Sql) -> Result<MigrationOutcome> {
    migrate_with(db, MIGRATIONS)
}

/// [`migrate`] with an explicit list (tests exercise future versions).
pub fn migrate_with(db: &dyn Sql, migrations: &[Migration]) -> Result<MigrationOutcome> {
    for (i, m) in migrations.iter().enumerate() {
        if m.version != i as i64 + 1 {
            return Err(StorageError::Sql(format!(
                "migration {:?} has version {} (want {})",
                m.name,
                m.version,
                i + 1
            )));
        }
    }
    let code = migrations.last().map_or(0, |m| m.version);
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migration (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL
        )",
        &[],
    )?;
    let from = current_version(db)?;
    if from > code {
        return Err(StorageError::SchemaTooNew {
            database: from,
            code,
        });
    }
    for m in migrations.iter().filter(|m| m.version > from) {
        db.transaction(|| -> Result<()> {
            // Re-checked inside the transaction: another process (natively)
            // may have applied it since we looked.
            if current_version(db)? >= m.version {
                return Ok(());
            }
            for statement in m.statements {
                db.execute(statement, &[])?;
            }
            db.execute(
                "INSERT INTO schema_migration (version, name) VALUES (?, ?)",
                &[SqlValue::Integer(m.version), SqlValue::from(m.name)],
            )?;
            Ok(())
        })?;
    }
    Ok(MigrationOutcome {
        from,
        to: current_version(db)?,
    })
}

/// The highest applied migration (0 when none).
pub fn current_version(db: &dyn Sql) -> Result<i64> {
    let rows = db.execute("SELECT MAX(version) FROM schema_migration", &[])?;
    match rows.first() {
        Some(row) => Ok(row.opt_integer(0)?.unwrap_or(0)),
        None => Ok(0),
    }
}
