//! The commit pipeline: one batch of record writes becomes one signed commit, stored atomically
//! with its record index, blob references, head and sequencer event. Handlers validate records;
//! this module only turns accepted writes into a durable commit.

use std::fmt;

use cid::Cid;

use crate::account::Account;
use crate::config::Config;
use crate::firehose::FirehoseError;
use crate::repo::{Repo, RepoError, WriteOp};
use crate::storage::{self, RecordBlobs, SqlBlockStore, StorageError};
use crate::syntax::Tid;

/// Why a batch could not be committed.
#[derive(Debug)]
pub enum WriteError {
    /// `swapCommit` did not name the current commit; carries the current one (if any).
    CommitSwap(Option<Cid>),
    /// The batch conflicts with the tree (create of an existing key, update or delete of a
    /// missing one).
    Conflict(String),
    /// The commit is above a firehose limit (ops, bytes of blocks).
    TooLarge(String),
    /// The repository or its storage failed.
    Internal(String),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The reference PDS's message for a failed commit swap.
            WriteError::CommitSwap(cid) => match cid {
                Some(c) => write!(f, "Commit was at {}", crate::data::cid_string(c)),
                None => f.write_str("Commit was at null"),
            },
            WriteError::Conflict(m) | WriteError::TooLarge(m) | WriteError::Internal(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for WriteError {}

impl From<StorageError> for WriteError {
    fn from(e: StorageError) -> Self {
        WriteError::Internal(format!("storage: {e}"))
    }
}

impl From<RepoError> for WriteError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::WriteConflict(m) => WriteError::Conflict(m),
            other => WriteError::Internal(format!("repository: {other}")),
        }
    }
}

/// What a stored commit is known by.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The new commit's CID.
    pub cid: Cid,
    /// Its revision.
    pub rev: String,
    /// The sequence number of its firehose event.
    pub seq: i64,
    /// The record CID each write produced, in batch order (`None` for deletes).
    pub record_cids: Vec<Option<Cid>>,
}

/// A fresh TID that sorts after the stored head's rev (a restarted Durable Object may have a
/// clock behind the last commit). Used for revisions and for generated record keys.
pub fn next_tid(account: &Account) -> Result<Tid, WriteError> {
    let root = storage::load_root(account.sql.as_ref())?;
    let mut tids = account.tids.borrow_mut();
    if let Some(root) = &root {
        if let Ok(rev) = Tid::new(root.rev.clone()) {
            tids.ensure_after(&rev);
        }
    }
    Ok(tids.next(account.clock.as_ref()))
}

/// Commits `writes` as one commit: takes the head (creating the empty repository on first
/// use), checks `swap_commit` against it, builds and signs the commit, and persists blocks,
/// record index, `blobs` references, head and the firehose `#commit` event in one transaction.
pub fn commit_writes(
    config: &Config,
    account: &Account,
    writes: &[WriteOp],
    blobs: &RecordBlobs,
    swap_commit: Option<Cid>,
) -> Result<Committed, WriteError> {
    let db = account.sql.as_ref();
    let root = account
        .head(config)
        .map_err(|e| WriteError::Internal(e.message))?;
    if let Some(expected) = swap_commit {
        if root.commit_cid != expected {
            return Err(WriteError::CommitSwap(Some(root.commit_cid)));
        }
    }
    // `head` has already moved the generator past the stored rev.
    let rev = account.tids.borrow_mut().next(account.clock.as_ref());
    let store = SqlBlockStore::new(db).with_cache(&account.block_cache);
    let (_, output) = Repo::open(&store, root.commit_cid)?.apply_writes(
        &store,
        writes,
        &config.signing_key,
        rev.as_str(),
    )?;
    let event = crate::firehose::commit_event(&config.did, &output, account.clock.now_micros())
        .map_err(|e| match e {
            FirehoseError::TooLarge(m) => WriteError::TooLarge(m),
            other => WriteError::Internal(format!("commit event: {other}")),
        })?;
    let time_ms = i64::try_from(account.clock.now_millis())
        .map_err(|_| WriteError::Internal("clock out of range".into()))?;
    // The write points the account's limits admitted go into storage with the commit, in its
    // transaction: one commit to storage for both.
    let mut stored_points = 0;
    let persisted =
        storage::persist_commit_with(db, &output, blobs, &event.new_event(time_ms), &mut || {
            stored_points = crate::rate_limit::store_held_writes_in(db, config, account)?;
            Ok(())
        })?;
    crate::rate_limit::release_held_writes(account, stored_points);
    // Stored: the next commit reads this commit block and these nodes first. Records are left
    // out; writes do not read them back. A set, not a scan of the ops per block: a batch of 200
    // creates has about 600 new blocks.
    // A `BlockMap` of empty blocks serves as the set: its code is in the build already.
    let mut records = crate::repo::blockstore::BlockMap::new();
    for op in &output.ops {
        if let Some(cid) = op.cid {
            records.insert(cid, Vec::new());
        }
    }
    for (cid, bytes) in &output.new_blocks {
        if !records.contains_key(cid) {
            account.block_cache.insert(*cid, bytes);
        }
    }
    Ok(Committed {
        cid: output.cid,
        rev: output.rev.clone(),
        seq: persisted.seq,
        record_cids: output.ops.iter().map(|op| op.cid).collect(),
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::data::{encode, Map, Value};
    use crate::platform::native::{DirBlobStore, NativeSql};
    use crate::storage::{Row, Sql, SqlValue};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Passes statements on, remembering their text.
    struct Recording {
        inner: NativeSql,
        statements: Rc<RefCell<Vec<String>>>,
    }

    impl Sql for Recording {
        fn execute(&self, sql: &str, params: &[SqlValue]) -> storage::Result<Vec<Row>> {
            self.statements.borrow_mut().push(sql.to_owned());
            self.inner.execute(sql, params)
        }
        fn transaction_dyn(
            &self,
            body: &mut dyn FnMut() -> storage::Result<()>,
        ) -> storage::Result<()> {
            self.inner.transaction_dyn(body)
        }
    }

    fn config() -> Config {
        let vars = [
            (crate::config::vars::HOSTNAME, "pds.example.com"),
            (crate::config::vars::DID, "did:web:pds.example.com"),
            (crate::config::vars::HANDLE, "alice.example.com"),
            (crate::config::vars::SIGNING_KEY, &"09".repeat(32)),
            (
                crate::config::vars::PASSWORD_HASH,
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            ),
            (crate::config::vars::JWT_SECRET, &"00".repeat(32)),
        ];
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    /// An account on in-memory SQL that records every statement it runs.
    fn recording_account(dir: &std::path::Path) -> (Account, Rc<RefCell<Vec<String>>>) {
        let statements = Rc::new(RefCell::new(Vec::new()));
        let sql = Recording {
            inner: NativeSql::open_in_memory().unwrap(),
            statements: statements.clone(),
        };
        let account = Account::open(
            Box::new(sql),
            Box::new(DirBlobStore::open(dir).unwrap()),
            Box::new(SystemClock),
        );
        (account, statements)
    }

    /// How many recorded statements start with `prefix`.
    fn count(statements: &RefCell<Vec<String>>, prefix: &str) -> usize {
        statements
            .borrow()
            .iter()
            .filter(|s| s.starts_with(prefix))
            .count()
    }

    fn create(n: i64) -> WriteOp {
        let mut record = Map::new();
        record.insert("$type".into(), Value::String("com.example.record".into()));
        record.insert("n".into(), Value::Integer(n));
        WriteOp::Create {
            collection: "com.example.record".into(),
            rkey: format!("r{n:04}"),
            record: encode(&Value::Map(record)),
        }
    }

    #[test]
    fn held_write_points_are_stored_with_the_commit() {
        let dir = std::env::temp_dir().join(format!("pds-writes-held-{}", std::process::id()));
        let (account, statements) = recording_account(&dir);
        let config = config();
        commit_writes(&config, &account, &[create(0)], &RecordBlobs::new(), None).unwrap();
        let used = || {
            account
                .sql
                .execute("SELECT key, used FROM rate_limit ORDER BY key", &[])
                .unwrap()
                .iter()
                .map(|r| (r.text(0).unwrap(), r.integer(1).unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(used(), [], "nothing held, nothing stored");
        // Counters of windows that ended: the points start new windows.
        account
            .sql
            .execute(
                "INSERT INTO rate_limit (key, used, window_end_ms) VALUES \
                 ('write-hour:account', 100, 1), ('write-day:account', 100, 1)",
                &[],
            )
            .unwrap();
        account.held_write_points.set(3);
        statements.borrow_mut().clear();
        commit_writes(&config, &account, &[create(1)], &RecordBlobs::new(), None).unwrap();
        assert_eq!(account.held_write_points.get(), 0);
        let both = |n| {
            vec![
                ("write-day:account".to_owned(), n),
                ("write-hour:account".to_owned(), n),
            ]
        };
        assert_eq!(used(), both(3));
        // Both counters in one statement.
        assert_eq!(count(&statements, "INSERT INTO rate_limit"), 1);
        // Live windows add up.
        account.held_write_points.set(1);
        commit_writes(&config, &account, &[create(2)], &RecordBlobs::new(), None).unwrap();
        assert_eq!(used(), both(4));
        // A commit that fails stores nothing and keeps the points held.
        account.held_write_points.set(2);
        assert!(commit_writes(&config, &account, &[create(1)], &RecordBlobs::new(), None).is_err());
        assert_eq!(account.held_write_points.get(), 2);
        assert_eq!(used(), both(4));

        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_commit_reads_what_the_previous_commits_wrote_from_memory() {
        let dir = std::env::temp_dir().join(format!("pds-writes-{}", std::process::id()));
        let (account, statements) = recording_account(&dir);
        let config = config();
        let block_reads = || count(&statements, "SELECT bytes FROM repo_block");
        // Enough records for a tree of several levels, each its own commit.
        for n in 0..200 {
            commit_writes(&config, &account, &[create(n)], &RecordBlobs::new(), None).unwrap();
        }
        statements.borrow_mut().clear();
        let committed =
            commit_writes(&config, &account, &[create(200)], &RecordBlobs::new(), None).unwrap();
        assert_eq!(block_reads(), 0, "{:#?}", statements.borrow());
        assert_eq!(account.head(&config).unwrap().commit_cid, committed.cid);

        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn creates_are_indexed_in_batches_and_ops_on_one_path_keep_their_order() {
        let dir = std::env::temp_dir().join(format!("pds-writes-batch-{}", std::process::id()));
        let (account, statements) = recording_account(&dir);
        let config = config();
        let count = |prefix: &str| count(&statements, prefix);
        let indexed = |rkey: &str| {
            account
                .sql
                .execute(
                    "SELECT cid FROM record WHERE collection = ? AND rkey = ?",
                    &[SqlValue::from("com.example.record"), SqlValue::from(rkey)],
                )
                .unwrap()
                .first()
                .map(|row| row.text(0).unwrap())
        };

        // 60 creates: three index statements (25 rows each at most), no blob-reference deletes.
        let creates: Vec<WriteOp> = (0..60).map(create).collect();
        commit_writes(&config, &account, &creates, &RecordBlobs::new(), None).unwrap();
        assert_eq!(
            count("INSERT INTO record "),
            3,
            "{:#?}",
            statements.borrow()
        );
        assert_eq!(count("DELETE FROM record_blob"), 0);
        assert!(indexed("r0059").is_some());

        // A key deleted and created again in one commit ends indexed with the new record;
        // a key created and deleted ends absent.
        let delete = |rkey: &str| WriteOp::Delete {
            collection: "com.example.record".into(),
            rkey: rkey.into(),
        };
        let recreated = match create(1000) {
            WriteOp::Create {
                collection, record, ..
            } => WriteOp::Create {
                collection,
                rkey: "r0000".into(),
                record,
            },
            _ => unreachable!(),
        };
        let committed = commit_writes(
            &config,
            &account,
            &[delete("r0000"), recreated, create(2000), delete("r2000")],
            &RecordBlobs::new(),
            None,
        )
        .unwrap();
        let new_cid = committed.record_cids[1].unwrap();
        assert_eq!(indexed("r0000"), Some(crate::data::cid_string(&new_cid)));
        assert_eq!(indexed("r2000"), None);
        let rows = account
            .sql
            .execute("SELECT COUNT(*) FROM record", &[])
            .unwrap();
        assert_eq!(rows[0].integer(0).unwrap(), 60);

        let _ = std::fs::remove_dir_all(&dir);
    }
}
