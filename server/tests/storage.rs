//! The storage layer natively: migrations, transactions, commits persisted
//! and verified after reopening, the record index, the sequencer, blobs.

mod storage_support;

use cid::Cid;
use pds::data::{cid_for_raw, cid_string};
use pds::platform::native::{DirBlobStore, NativeSql};
use pds::repo::verify::verify_repo;
use pds::repo::{Repo, WriteOp};
use pds::storage::blobs::{
    collectable_blobs, insert_blob_metadata, list_referenced_blobs, read_all, BlobMetadata,
    IterChunks,
};
use pds::storage::repo_store::all_records;
use pds::storage::schema::{current_version, latest_version, migrate_with, Migration, MIGRATIONS};
use pds::storage::sequencer::events_after;
use pds::storage::*;
use std::collections::BTreeMap;
use storage_support::*;

fn count(db: &dyn Sql, table: &str) -> i64 {
    db.execute(&format!("SELECT COUNT(*) FROM {table}"), &[])
        .unwrap()[0]
        .integer(0)
        .unwrap()
}

fn memory_db() -> NativeSql {
    let db = NativeSql::open_in_memory().unwrap();
    migrate(&db).unwrap();
    db
}

#[test]
fn migrations_apply_once_and_rerunning_is_a_no_op() {
    let dir = TempDir::new("migrate");
    let path = dir.path().join("pds.sqlite");
    let db = NativeSql::open(&path).unwrap();
    let latest = latest_version();
    assert_eq!(
        migrate(&db).unwrap(),
        MigrationOutcome {
            from: 0,
            to: latest
        }
    );
    assert_eq!(
        migrate(&db).unwrap(),
        MigrationOutcome {
            from: latest,
            to: latest
        }
    );
    drop(db);
    let db = NativeSql::open(&path).unwrap();
    assert_eq!(
        migrate(&db).unwrap(),
        MigrationOutcome {
            from: latest,
            to: latest
        }
    );
    assert_eq!(count(&db, "schema_migration"), latest);
    for table in [
        "repo_block",
        "repo_root",
        "record",
        "sequencer_event",
        "refresh_token",
        "app_password",
        "blob_metadata",
        "record_blob",
        "preferences",
        "account",
        "maintenance_state",
        "relay_crawl",
    ] {
        assert_eq!(count(&db, table), 0, "{table} exists and is empty");
    }
}

const V2: &[&str] = &["CREATE TABLE later_feature (id INTEGER PRIMARY KEY, note TEXT)"];
const V2_BROKEN: &[&str] = &[
    "CREATE TABLE half_done (id INTEGER PRIMARY KEY)",
    "CREATE TABLE record (oops TEXT)",
];

/// This build's migrations plus one more (called "v2" below: the next version).
fn with_v2(statements: &'static [&'static str]) -> Vec<Migration> {
    let mut all = MIGRATIONS.to_vec();
    all.push(Migration {
        version: latest_version() + 1,
        name: "later feature",
        statements,
    });
    all
}

#[test]
fn a_new_migration_applies_only_itself_and_a_newer_database_is_refused() {
    let db = memory_db();
    db.execute("INSERT INTO preferences (id, json) VALUES (1, '[]')", &[])
        .unwrap();
    let v2 = with_v2(V2);
    let latest = latest_version();
    assert_eq!(
        migrate_with(&db, &v2).unwrap(),
        MigrationOutcome {
            from: latest,
            to: latest + 1
        }
    );
    assert_eq!(count(&db, "later_feature"), 0);
    assert_eq!(count(&db, "preferences"), 1, "data kept across migrations");
    assert_eq!(migrate_with(&db, &v2).unwrap().from, latest + 1);

    // This build does not know the next version: it must not touch such a database.
    let err = migrate(&db).unwrap_err();
    assert_eq!(
        err,
        StorageError::SchemaTooNew {
            database: latest + 1,
            code: latest
        }
    );
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn a_failing_migration_leaves_the_previous_version_intact() {
    let db = memory_db();
    assert!(migrate_with(&db, &with_v2(V2_BROKEN)).is_err());
    assert_eq!(current_version(&db).unwrap(), latest_version());
    assert!(
        db.execute("SELECT COUNT(*) FROM half_done", &[]).is_err(),
        "the broken migration's first statement was rolled back"
    );
}

fn insert_pref(db: &dyn Sql, id: i64) -> Result<Vec<Row>> {
    db.execute(
        "INSERT INTO preferences (id, json) VALUES (?, '[]')",
        &[SqlValue::Integer(id)],
    )
}

#[test]
fn transactions_commit_on_ok_and_roll_back_on_err() {
    let db = memory_db();
    let failed: std::result::Result<(), StorageError> = db.transaction(|| {
        insert_pref(&db, 1)?;
        db.execute(
            "INSERT INTO app_password (name, password_hash, created_ms) VALUES ('a', 'h', 1)",
            &[],
        )?;
        Err(StorageError::Conflict("the body gave up".into()))
    });
    assert_eq!(
        failed,
        Err(StorageError::Conflict("the body gave up".into())),
        "the body's own error comes back"
    );
    assert_eq!(count(&db, "preferences"), 0);
    assert_eq!(count(&db, "app_password"), 0);

    // A failing statement inside the body rolls back the earlier ones too.
    let failed: Result<()> = db.transaction(|| {
        insert_pref(&db, 1)?;
        insert_pref(&db, 2)?; // violates CHECK (id = 1)
        Ok(())
    });
    assert!(matches!(failed, Err(StorageError::Sql(_))));
    assert_eq!(count(&db, "preferences"), 0);

    let value: Result<i64> = db.transaction(|| {
        insert_pref(&db, 1)?;
        Ok(42)
    });
    assert_eq!(value, Ok(42));
    assert_eq!(count(&db, "preferences"), 1);
}

#[test]
fn nested_transactions_roll_back_alone_and_panics_roll_back() {
    let db = memory_db();
    let outer: Result<()> = db.transaction(|| {
        db.execute(
            "INSERT INTO app_password (name, password_hash, created_ms) VALUES ('kept', 'h', 1)",
            &[],
        )?;
        let inner: Result<()> = db.transaction(|| {
            db.execute(
                "INSERT INTO app_password (name, password_hash, created_ms) VALUES ('gone', 'h', 1)",
                &[],
            )?;
            Err(StorageError::Conflict("inner fails".into()))
        });
        assert!(inner.is_err());
        Ok(())
    });
    outer.unwrap();
    let names: Vec<String> = db
        .execute("SELECT name FROM app_password", &[])
        .unwrap()
        .iter()
        .map(|r| r.text(0).unwrap())
        .collect();
    assert_eq!(names, ["kept"]);

    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: Result<()> = db.transaction(|| {
            insert_pref(&db, 1)?;
            panic!("body panics");
        });
    }));
    assert!(panicked.is_err());
    assert_eq!(count(&db, "preferences"), 0, "rolled back on panic");
    // The connection is usable and outside any transaction afterwards.
    let after: Result<()> = db.transaction(|| insert_pref(&db, 1).map(drop));
    after.unwrap();
    assert_eq!(count(&db, "preferences"), 1);
}

#[test]
fn integers_beyond_2_pow_53_are_refused() {
    let db = memory_db();
    let max = pds::storage::sql::MAX_SAFE_INTEGER;
    let ok = db.execute("SELECT ?", &[SqlValue::Integer(max)]).unwrap();
    assert_eq!(ok[0].integer(0).unwrap(), max);
    assert_eq!(
        db.execute("SELECT ?", &[SqlValue::Integer(max + 1)]),
        Err(StorageError::IntegerOutOfRange(max + 1))
    );
    assert!(db
        .execute("SELECT ?", &[SqlValue::Integer(-max - 1)])
        .is_err());
}

/// Builds and persists a commit of `writes` on the stored head.
fn commit(db: &dyn Sql, key: &Key, writes: &[WriteOp], rev: u64) -> (Repo, PersistedCommit) {
    commit_with_blobs(db, key, writes, rev, &RecordBlobs::new())
}

fn commit_with_blobs(
    db: &dyn Sql,
    key: &Key,
    writes: &[WriteOp],
    rev: u64,
    blobs: &RecordBlobs,
) -> (Repo, PersistedCommit) {
    let store = SqlBlockStore::new(db);
    let rev = tid(rev);
    let (repo, output) = match load_root(db).unwrap() {
        None => Repo::create(&store, DID, writes, key, &rev).unwrap(),
        Some(root) => Repo::open(&store, root.commit_cid)
            .unwrap()
            .apply_writes(&store, writes, key, &rev)
            .unwrap(),
    };
    let event = rev.as_bytes().to_vec();
    let persisted = persist_commit(
        db,
        &output,
        blobs,
        &NewEvent {
            kind: "commit",
            event: &event,
            time_ms: 1_700_000_000_000,
        },
    )
    .unwrap();
    (repo, persisted)
}

fn create(collection: &str, rkey: &str, n: u64) -> WriteOp {
    WriteOp::Create {
        collection: collection.into(),
        rkey: rkey.into(),
        record: record(collection, &format!("record {n}"), n),
    }
}

const POST: &str = "app.bsky.feed.post";
const LIKE: &str = "app.bsky.feed.like";

#[test]
fn commits_persisted_to_a_file_verify_after_reopening() {
    let dir = TempDir::new("persist");
    let path = dir.path().join("pds.sqlite");
    let key = Key::fixed();
    let base = 1u64 << 50;
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    {
        let db = NativeSql::open(&path).unwrap();
        migrate(&db).unwrap();
        let first: Vec<WriteOp> = (0..60)
            .map(|i| create(POST, &tid(base + i * 1000), i))
            .collect();
        let (_, p) = commit(&db, &key, &first, base);
        assert_eq!(p.seq, 1);
        for (i, w) in first.iter().enumerate() {
            if let WriteOp::Create { record, .. } = w {
                expected.insert(
                    format!("{POST}/{}", tid(base + i as u64 * 1000)),
                    record.clone(),
                );
            }
        }
        // Updates, deletes and a second collection, over several commits.
        for round in 1..=5u64 {
            let mut writes = vec![
                WriteOp::Update {
                    collection: POST.into(),
                    rkey: tid(base + round * 1000),
                    record: record(POST, "edited", 1000 + round),
                },
                WriteOp::Delete {
                    collection: POST.into(),
                    rkey: tid(base + (30 + round) * 1000),
                },
            ];
            writes.push(create(LIKE, &tid(base + round), round));
            let (_, p) = commit(&db, &key, &writes, base + round * 1_000_000);
            assert_eq!(p.seq, round as i64 + 1, "seq grows by one per commit");
            expected.insert(
                format!("{POST}/{}", tid(base + round * 1000)),
                record(POST, "edited", 1000 + round),
            );
            expected.remove(&format!("{POST}/{}", tid(base + (30 + round) * 1000)));
            expected.insert(
                format!("{LIKE}/{}", tid(base + round)),
                record(LIKE, &format!("record {round}"), round),
            );
        }
    }

    let db = NativeSql::open(&path).unwrap();
    assert_eq!(migrate(&db).unwrap().from, latest_version());
    let root = load_root(&db).unwrap().unwrap();
    assert_eq!(root.rev, tid(base + 5_000_000));
    assert_eq!(root.did, DID);

    // The core's verifier, reading block by block from SQL.
    let store = SqlBlockStore::new(&db);
    let verified = verify_repo(&store, root.commit_cid, &key.verifier(), Some(DID)).unwrap();
    assert_eq!(verified.commit.data, root.data_cid);
    // ... and over the batched whole-repository load.
    let loaded = store.load_repo(&root.commit_cid).unwrap();
    let again = verify_repo(&loaded, root.commit_cid, &key.verifier(), Some(DID)).unwrap();
    assert_eq!(again, verified);

    // The MST holds exactly the expected records, and so does the index.
    let mst: BTreeMap<String, Cid> = verified.records.iter().cloned().collect();
    assert_eq!(
        mst.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    let index: BTreeMap<String, Cid> = all_records(&db).unwrap().into_iter().collect();
    assert_eq!(index, mst);
    let repo = Repo::open(&store, root.commit_cid).unwrap();
    for (path, bytes) in &expected {
        let (collection, rkey) = path.split_once('/').unwrap();
        let (cid, stored) = get_record(&db, collection, rkey).unwrap().unwrap();
        assert_eq!(&stored, bytes);
        assert_eq!(
            Some(cid),
            repo.record_cid(&store, collection, rkey).unwrap()
        );
    }

    // Garbage is gone: the table holds exactly the reachable blocks.
    let reachable = loaded.len() as i64;
    assert_eq!(count(&db, "repo_block"), reachable);
    assert_eq!(
        reachable as usize,
        1 + verified.mst_nodes
            + verified
                .records
                .iter()
                .map(|(_, c)| *c)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
    );

    // Collections and listRecords: newest first, exclusive cursor, reverse.
    assert_eq!(list_collections(&db).unwrap(), [LIKE, POST]);
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = list_records(&db, POST, cursor.as_deref(), 7, false).unwrap();
        if page.is_empty() {
            break;
        }
        // Each with its block, read in the same statement.
        for r in &page {
            let (cid, bytes) = get_record(&db, POST, &r.rkey).unwrap().unwrap();
            assert_eq!(
                (r.cid.as_str(), r.bytes.as_ref()),
                (cid_string(&cid).as_str(), Some(&bytes))
            );
        }
        cursor = page.last().map(|r| r.rkey.clone());
        pages.extend(page.into_iter().map(|r| r.rkey));
    }
    let mut want: Vec<String> = expected
        .keys()
        .filter_map(|k| k.strip_prefix(&format!("{POST}/")).map(str::to_owned))
        .collect();
    want.reverse();
    assert_eq!(pages, want, "newest first, each record exactly once");
    let oldest = list_records(&db, POST, None, 3, true).unwrap();
    assert_eq!(
        oldest.iter().map(|r| r.rkey.clone()).collect::<Vec<_>>(),
        want.iter().rev().take(3).cloned().collect::<Vec<_>>()
    );
    let after = list_records(&db, POST, Some(&oldest[0].rkey), 1, true).unwrap();
    assert_eq!(after[0].rkey, oldest[1].rkey);

    // The sequencer holds one event per commit with the bytes given.
    let events = events_after(&db, 0, 100).unwrap();
    assert_eq!(events.len(), 6);
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(events.last().unwrap().event, root.rev.as_bytes());
    assert_eq!(events_after(&db, 4, 100).unwrap().len(), 2);
    assert_eq!(latest_seq(&db).unwrap(), Some(6));
}

#[test]
fn a_commit_built_on_a_stale_head_is_refused_and_stores_nothing() {
    let db = memory_db();
    let key = Key::fixed();
    let base = 1u64 << 50;
    let (repo, _) = commit(&db, &key, &[create(POST, &tid(base), 0)], base);
    let store = SqlBlockStore::new(&db);
    let (_, first) = repo
        .apply_writes(
            &store,
            &[create(POST, &tid(base + 1), 1)],
            &key,
            &tid(base + 10),
        )
        .unwrap();
    let (_, second) = repo
        .apply_writes(
            &store,
            &[create(POST, &tid(base + 2), 2)],
            &key,
            &tid(base + 11),
        )
        .unwrap();
    let event = NewEvent {
        kind: "commit",
        event: b"x",
        time_ms: 0,
    };
    persist_commit(&db, &first, &RecordBlobs::new(), &event).unwrap();
    let blocks = count(&db, "repo_block");
    let err = persist_commit(&db, &second, &RecordBlobs::new(), &event).unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)), "{err}");
    let root = load_root(&db).unwrap().unwrap();
    assert_eq!(root.commit_cid, first.cid);
    assert_eq!(count(&db, "repo_block"), blocks);
    assert_eq!(count(&db, "record"), 2);
    assert_eq!(latest_seq(&db).unwrap(), Some(2));

    // A first commit on a database that already has a repository: refused too.
    let fresh = Repo::create(&store, DID, &[], &key, &tid(base + 20))
        .unwrap()
        .1;
    assert!(matches!(
        persist_commit(&db, &fresh, &RecordBlobs::new(), &event),
        Err(StorageError::Conflict(_))
    ));
}

#[test]
fn record_blob_references_follow_the_records() {
    let db = memory_db();
    let key = Key::fixed();
    let base = 1u64 << 50;
    let blob_a = cid_for_raw(b"image a");
    let blob_b = cid_for_raw(b"image b");
    for (cid, at) in [(blob_a, 10), (blob_b, 20)] {
        insert_blob_metadata(
            &db,
            &BlobMetadata {
                cid,
                mime_type: "image/png".into(),
                size: 7,
                created_ms: at,
                unreferenced_since_ms: None,
            },
        )
        .unwrap();
    }
    // Unused uploads count from their upload.
    assert_eq!(collectable_blobs(&db, 10, 10).unwrap(), [blob_a]);
    assert_eq!(collectable_blobs(&db, 20, 10).unwrap(), [blob_a, blob_b]);
    let path = format!("{POST}/{}", tid(base));
    let mut refs = RecordBlobs::new();
    refs.insert(path.clone(), vec![blob_a, blob_b]);
    commit_with_blobs(&db, &key, &[create(POST, &tid(base), 0)], base, &refs);
    let mut both = vec![blob_a, blob_b];
    both.sort_by_key(|c| c.to_string());
    assert_eq!(list_referenced_blobs(&db, None, None, 10).unwrap(), both);
    assert_eq!(
        list_referenced_blobs(&db, None, Some(&both[0].to_string()), 10).unwrap(),
        [both[1]]
    );
    assert!(collectable_blobs(&db, 1 << 52, 10).unwrap().is_empty());
    assert_eq!(
        pds::storage::maintenance::snapshot(&db)
            .unwrap()
            .oldest_unreferenced_ms,
        None
    );

    // The update keeps only blob_b; the delete drops everything.
    refs.insert(path.clone(), vec![blob_b]);
    let update = WriteOp::Update {
        collection: POST.into(),
        rkey: tid(base),
        record: record(POST, "edited", 1),
    };
    commit_with_blobs(&db, &key, &[update], base + 1, &refs);
    assert_eq!(
        list_referenced_blobs(&db, None, None, 10).unwrap(),
        [blob_b]
    );
    // `since`: only references written after that rev.
    assert_eq!(
        list_referenced_blobs(&db, Some(&tid(base)), None, 10).unwrap(),
        [blob_b]
    );
    assert!(list_referenced_blobs(&db, Some(&tid(base + 1)), None, 10)
        .unwrap()
        .is_empty());
    // blob_a is unreferenced from the commit's time, not its upload's.
    const T: i64 = 1_700_000_000_000;
    assert_eq!(
        pds::storage::maintenance::snapshot(&db)
            .unwrap()
            .oldest_unreferenced_ms,
        Some(T)
    );
    assert_eq!(collectable_blobs(&db, T, 10).unwrap(), [blob_a]);
    assert!(collectable_blobs(&db, T - 1, 10).unwrap().is_empty());
    // Uploading it again starts its window again; uploading blob_b again changes nothing.
    for (cid, at) in [(blob_a, T + 50), (blob_b, T + 50)] {
        let meta = BlobMetadata {
            cid,
            mime_type: "image/gif".into(),
            size: 7,
            created_ms: at,
            unreferenced_since_ms: None,
        };
        insert_blob_metadata(&db, &meta).unwrap();
    }
    let a = blobs::blob_metadata(&db, &blob_a).unwrap().unwrap();
    assert_eq!(
        (a.mime_type.as_str(), a.unreferenced_since_ms),
        ("image/png", Some(T + 50))
    );
    assert!(a.is_live(T + 59, 10) && !a.is_live(T + 60, 10));
    let b = blobs::blob_metadata(&db, &blob_b).unwrap().unwrap();
    assert_eq!(b.unreferenced_since_ms, None);
    assert!(b.is_live(i64::MAX, 10));
    assert!(
        !blobs::delete_blob_metadata(&db, &blob_b).unwrap(),
        "still referenced"
    );

    let delete = WriteOp::Delete {
        collection: POST.into(),
        rkey: tid(base),
    };
    commit(&db, &key, &[delete], base + 2);
    assert!(list_referenced_blobs(&db, None, None, 10)
        .unwrap()
        .is_empty());
    assert!(blobs::delete_blob_metadata(&db, &blob_a).unwrap());
    assert_eq!(collectable_blobs(&db, T, 10).unwrap(), [blob_b]);
    // Collection forgets only what is still garbage at that moment: not a blob whose window
    // started again after the time the collection looked at.
    assert!(!blobs::forget_collectable_blob(&db, &blob_b, T - 1).unwrap());
    assert!(blobs::forget_collectable_blob(&db, &blob_b, T).unwrap());
    assert_eq!(blobs::blob_metadata(&db, &blob_b).unwrap(), None);
}

fn chunks(data: &[u8], size: usize) -> IterChunks<std::vec::IntoIter<Vec<u8>>> {
    IterChunks(
        data.chunks(size)
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
            .into_iter(),
    )
}

fn tmp_is_empty(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir.join("tmp")).unwrap().next().is_none()
}

#[test]
fn blob_store_put_get_range_delete_list() {
    let dir = TempDir::new("blobs");
    let store = DirBlobStore::open(dir.path()).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let stored = block_on(store.put(&mut chunks(&data, 10_000), 1_000_000)).unwrap();
    assert_eq!(
        stored.cid,
        cid_for_raw(&data),
        "CID is the hash of the bytes"
    );
    assert_eq!(stored.cid.codec(), 0x55);
    assert_eq!(stored.size, data.len() as u64);
    assert!(tmp_is_empty(dir.path()));

    let mut whole = block_on(store.get(&stored.cid, None)).unwrap().unwrap();
    assert_eq!((whole.size, whole.start, whole.end), (300_000, 0, 300_000));
    assert_eq!(block_on(read_all(whole.chunks.as_mut())).unwrap(), data);

    let range = ByteRange {
        start: 100_000,
        end: Some(200_001),
    };
    let mut part = block_on(store.get(&stored.cid, Some(range)))
        .unwrap()
        .unwrap();
    assert_eq!((part.start, part.end), (100_000, 200_001));
    assert_eq!(
        block_on(read_all(part.chunks.as_mut())).unwrap(),
        &data[100_000..200_001]
    );
    let tail = ByteRange {
        start: 299_990,
        end: None,
    };
    let mut tail = block_on(store.get(&stored.cid, Some(tail)))
        .unwrap()
        .unwrap();
    assert_eq!(
        block_on(read_all(tail.chunks.as_mut())).unwrap(),
        &data[299_990..]
    );
    let outside = ByteRange {
        start: 300_001,
        end: None,
    };
    assert!(matches!(
        block_on(store.get(&stored.cid, Some(outside))),
        Err(BlobError::InvalidRange { size: 300_000 })
    ));

    let small = block_on(store.put(&mut chunks(b"hello", 2), 5)).unwrap();
    assert_eq!(small.cid, cid_for_raw(b"hello"));
    let mut listed = block_on(store.list(None, 10)).unwrap();
    let mut want = vec![stored.cid, small.cid];
    want.sort_by_key(|c| c.to_string());
    listed.sort_by_key(|c| c.to_string());
    assert_eq!(listed, want);
    assert_eq!(block_on(store.list(Some(&want[0]), 10)).unwrap(), [want[1]]);
    assert_eq!(block_on(store.list(None, 1)).unwrap(), [want[0]]);

    assert!(block_on(store.delete(&small.cid)).unwrap());
    assert!(!block_on(store.delete(&small.cid)).unwrap());
    assert!(block_on(store.get(&small.cid, None)).unwrap().is_none());
    assert_eq!(block_on(store.list(None, 10)).unwrap(), [stored.cid]);
}

/// A source that fails after a few chunks (a client that went away).
struct Failing(u32);

impl ChunkSource for Failing {
    fn next_chunk(
        &mut self,
    ) -> blobs::LocalBoxFuture<'_, std::result::Result<Option<Vec<u8>>, BlobError>> {
        self.0 += 1;
        let n = self.0;
        Box::pin(async move {
            if n > 3 {
                Err(BlobError::Source("connection reset".into()))
            } else {
                Ok(Some(vec![n as u8; 1000]))
            }
        })
    }
}

#[test]
fn failed_uploads_leave_nothing() {
    let dir = TempDir::new("blob-limit");
    let store = DirBlobStore::open(dir.path()).unwrap();
    let data = vec![9u8; 10_001];
    assert_eq!(
        block_on(store.put(&mut chunks(&data, 1000), 10_000)),
        Err(BlobError::TooLarge { limit: 10_000 })
    );
    assert!(tmp_is_empty(dir.path()));
    assert!(block_on(store.list(None, 10)).unwrap().is_empty());
    assert!(block_on(store.get(&cid_for_raw(&data), None))
        .unwrap()
        .is_none());

    assert_eq!(
        block_on(store.put(&mut Failing(0), 1_000_000)),
        Err(BlobError::Source("connection reset".into()))
    );
    assert!(tmp_is_empty(dir.path()));
    assert!(block_on(store.list(None, 10)).unwrap().is_empty());

    // Exactly at the limit is allowed; an empty blob is a blob.
    let at_limit = block_on(store.put(&mut chunks(&data[..10_000], 999), 10_000)).unwrap();
    assert_eq!(at_limit.size, 10_000);
    let empty = block_on(store.put(&mut IterChunks(std::iter::empty()), 10)).unwrap();
    assert_eq!(empty.cid, cid_for_raw(b""));
    let mut body = block_on(store.get(&empty.cid, None)).unwrap().unwrap();
    assert!(block_on(read_all(body.chunks.as_mut())).unwrap().is_empty());

    // A half-written upload from a killed process is swept at start-up.
    std::fs::write(dir.path().join("tmp/upload-dead"), b"partial").unwrap();
    assert_eq!(store.remove_stale_uploads().unwrap(), 1);
    assert!(tmp_is_empty(dir.path()));
}

#[test]
fn the_block_store_port_writes_with_a_rev_and_round_trips_a_car() {
    use pds::repo::verify::import_car;
    use pds::repo::BlockStore;
    let key = Key::fixed();
    let base = 1u64 << 50;
    let source = memory_db();
    let writes: Vec<WriteOp> = (0..150).map(|i| create(POST, &tid(base + i), i)).collect();
    let (repo, _) = commit(&source, &key, &writes, base);
    let mut car = Vec::new();
    repo.write_car(&SqlBlockStore::new(&source), &mut car)
        .unwrap();

    // Through the port into another database, in batches, tagged with a rev.
    let target = memory_db();
    let mut read_only = SqlBlockStore::new(&target);
    assert!(read_only.put(repo.commit_cid(), vec![1]).is_err());
    assert_eq!(count(&target, "repo_block"), 0);
    let mut store = SqlBlockStore::for_rev(&target, repo.rev());
    let root = import_car(car.as_slice(), &mut store).unwrap();
    assert_eq!(root, repo.commit_cid());
    assert_eq!(count(&target, "repo_block"), count(&source, "repo_block"));
    let tagged = target
        .execute(
            "SELECT COUNT(*) FROM repo_block WHERE rev = ?",
            &[SqlValue::from(repo.rev())],
        )
        .unwrap()[0]
        .integer(0)
        .unwrap();
    assert_eq!(tagged, count(&target, "repo_block"));
    let verified = verify_repo(&store, root, &key.verifier(), Some(DID)).unwrap();
    assert_eq!(verified.records.len(), 150);

    // Batched reads return exactly what exists.
    let some: Vec<Cid> = verified.records.iter().map(|(_, c)| *c).take(120).collect();
    let missing = cid_for_raw(b"not a block");
    let mut ask = some.clone();
    ask.push(missing);
    let got = store.get_many(&ask).unwrap();
    assert_eq!(got.len(), 120);
    assert!(!got.contains_key(&missing));
    assert!(store.has(&some[0]).unwrap());
    assert!(!store.has(&missing).unwrap());
}

#[test]
fn the_block_cache_serves_reads_and_stays_within_its_budget() {
    use pds::repo::BlockStore;
    let db = memory_db();
    let key = Key::fixed();
    let base = 1u64 << 50;
    let (repo, _) = commit(&db, &key, &[create(POST, &tid(base), 0)], base);
    let cache = BlockCache::new(100_000);
    let store = SqlBlockStore::new(&db).with_cache(&cache);
    let (_, bytes) = repo.get_record(&store, POST, &tid(base)).unwrap().unwrap();
    assert_eq!(cache.hits(), 0);
    // With the rows gone, reads through the cache still see the (immutable)
    // blocks, while `has` reports what the database holds.
    db.execute("DELETE FROM repo_block", &[]).unwrap();
    let (_, again) = repo.get_record(&store, POST, &tid(base)).unwrap().unwrap();
    assert_eq!(again, bytes);
    assert!(cache.hits() >= 2);
    assert!(!store.has(&repo.commit_cid()).unwrap());
    assert!(SqlBlockStore::new(&db)
        .get(&repo.commit_cid())
        .unwrap()
        .is_none());

    // A cache too small for a block never holds it.
    let tiny = BlockCache::new(10);
    let db = memory_db();
    commit(&db, &key, &[], base);
    let root = load_root(&db).unwrap().unwrap();
    let store = SqlBlockStore::new(&db).with_cache(&tiny);
    store.get(&root.commit_cid).unwrap().unwrap();
    store.get(&root.commit_cid).unwrap().unwrap();
    assert_eq!(tiny.hits(), 0);
}

#[test]
fn replacing_the_repository_keeps_only_the_imported_one() {
    use pds::repo::verify::import_car;
    use pds::repo::{BlockStore, MemoryBlockStore};
    use pds::storage::repo_store::replace_repo;
    let key = Key::fixed();
    let base = 1u64 << 50;

    // The repository to import, exported as a CAR from another database.
    let source = memory_db();
    let writes: Vec<WriteOp> = (0..40).map(|i| create(LIKE, &tid(base + i), i)).collect();
    commit(&source, &key, &writes, base);
    let (repo, _) = commit(
        &source,
        &key,
        &[WriteOp::Delete {
            collection: LIKE.into(),
            rkey: tid(base),
        }],
        base + 100,
    );
    let mut car = Vec::new();
    repo.write_car(&SqlBlockStore::new(&source), &mut car)
        .unwrap();
    let mut incoming = MemoryBlockStore::new();
    let root = import_car(car.as_slice(), &mut incoming).unwrap();
    let junk = record("junk", "unreachable", 0);
    incoming
        .put(pds::data::cid_for_cbor(&junk), junk.clone())
        .unwrap();
    let verified = verify_repo(&incoming, root, &key.verifier(), Some(DID)).unwrap();

    // The target already holds a different repository of the same account.
    let target = memory_db();
    commit(&target, &key, &[create(POST, &tid(base), 0)], base);
    let blob = cid_for_raw(b"avatar");
    let mut refs = RecordBlobs::new();
    refs.insert(format!("{LIKE}/{}", tid(base + 1)), vec![blob]);
    refs.insert(format!("{LIKE}/{}", tid(base)), vec![cid_for_raw(b"gone")]);
    let event = NewEvent {
        kind: "sync",
        event: b"sync",
        time_ms: 0,
    };
    let seq = replace_repo(&target, &incoming, &verified, &refs, Some(&event), 0).unwrap();
    assert_eq!(seq, Some(2));

    let head = load_root(&target).unwrap().unwrap();
    assert_eq!(head.commit_cid, root);
    assert_eq!(head.rev, tid(base + 100));
    let store = SqlBlockStore::new(&target);
    let again = verify_repo(&store, root, &key.verifier(), Some(DID)).unwrap();
    assert_eq!(again.records, verified.records);
    let index: Vec<(String, Cid)> = all_records(&target).unwrap();
    assert_eq!(index.len(), 39);
    assert_eq!(list_collections(&target).unwrap(), [LIKE]);
    assert_eq!(
        count(&target, "repo_block"),
        store.load_repo(&root).unwrap().len() as i64,
        "only reachable blocks are stored (no junk, nothing of the old repository)"
    );
    assert_eq!(
        list_referenced_blobs(&target, None, None, 10).unwrap(),
        [blob],
        "references of records not in the repository are dropped"
    );

    // Another account's repository is refused, leaving everything as it was.
    let other = Repo::create(
        &MemoryBlockStore::new(),
        "did:plc:other",
        &[],
        &key,
        &tid(base),
    )
    .unwrap()
    .1;
    let other_store = MemoryBlockStore::from_blocks(other.new_blocks.clone());
    let other_verified = verify_repo(&other_store, other.cid, &key.verifier(), None).unwrap();
    assert!(matches!(
        replace_repo(
            &target,
            &other_store,
            &other_verified,
            &RecordBlobs::new(),
            None,
            0
        ),
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(load_root(&target).unwrap().unwrap().commit_cid, root);
    assert_eq!(all_records(&target).unwrap().len(), 39);
}

/// The counts `checkAccountStatus` reads, as counting finds them.
fn counted(db: &dyn Sql) -> repo_store::Tally {
    let one = |sql: &str| db.execute(sql, &[]).unwrap()[0].integer(0).unwrap();
    repo_store::Tally {
        blocks: one("SELECT COUNT(*) FROM repo_block"),
        records: one("SELECT COUNT(*) FROM record"),
        expected_blobs: one("SELECT COUNT(DISTINCT blob_cid) FROM record_blob"),
        imported_blobs: one("SELECT COUNT(DISTINCT rb.blob_cid) FROM record_blob rb \
             JOIN blob_metadata b ON b.cid = rb.blob_cid"),
        stored_blobs: one("SELECT COUNT(*) FROM blob_metadata"),
        stored_blob_bytes: one("SELECT COALESCE(SUM(size), 0) FROM blob_metadata"),
    }
}

/// Records per collection, and commits per day.
type ByCollectionAndDay = (Vec<(String, i64)>, Vec<(i64, i64)>);

/// Records per collection and commits per day, as counting finds them.
fn counted_by_collection_and_day(db: &dyn Sql) -> ByCollectionAndDay {
    let collections = db
        .execute(
            "SELECT collection, COUNT(*) FROM record GROUP BY collection \
             ORDER BY COUNT(*) DESC, collection",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.text(0).unwrap().to_owned(), r.integer(1).unwrap()))
        .collect();
    let days = db
        .execute(
            "SELECT time_ms / 86400000, COUNT(*) FROM sequencer_event WHERE kind = 'commit' \
             GROUP BY 1 ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.integer(0).unwrap(), r.integer(1).unwrap()))
        .collect();
    (collections, days)
}

/// What the status page reads from the kept counts.
fn kept_by_collection_and_day(db: &dyn Sql) -> ByCollectionAndDay {
    let collections = pds::storage::status::collection_counts(db).unwrap();
    let days = pds::storage::status::commits_per_day(db, 0).unwrap();
    (collections, days)
}

/// The repository's counts kept by triggers agree with counting after every kind of change:
/// creates, updates (which rewrite a record's references), deletes, shared and unstored blobs,
/// blobs stored and forgotten later, and a whole repository replaced.
#[test]
fn the_kept_counts_agree_with_counting_after_every_change() {
    let db = memory_db();
    let key = Key::fixed();
    let base = 1u64 << 50;
    let check = |what: &str| {
        assert_eq!(repo_store::tally(&db).unwrap(), counted(&db), "{what}");
        assert_eq!(
            kept_by_collection_and_day(&db),
            counted_by_collection_and_day(&db),
            "{what}"
        );
    };
    check("empty");
    let blob = |name: &[u8]| cid_for_raw(name);
    let (a, b, c) = (blob(b"a"), blob(b"b"), blob(b"c"));
    let store = |cid: Cid| {
        insert_blob_metadata(
            &db,
            &BlobMetadata {
                cid,
                mime_type: "image/png".into(),
                size: 1,
                created_ms: 1,
                unreferenced_since_ms: None,
            },
        )
        .unwrap()
    };
    store(a);
    store(b);
    check("blobs stored, none referenced");
    let mut refs = RecordBlobs::new();
    refs.insert(format!("{POST}/{}", tid(base)), vec![a]);
    refs.insert(format!("{POST}/{}", tid(base + 1)), vec![a, b, c]);
    commit_with_blobs(
        &db,
        &key,
        &[create(POST, &tid(base), 0), create(POST, &tid(base + 1), 1)],
        base + 10,
        &refs,
    );
    let after_create = repo_store::tally(&db).unwrap();
    assert_eq!(
        (
            after_create.records,
            after_create.expected_blobs,
            after_create.imported_blobs
        ),
        (2, 3, 2)
    );
    check("two records, a shared blob, one unstored");
    store(c);
    store(c);
    check("the missing blob stored, then stored again");
    refs.insert(format!("{POST}/{}", tid(base + 1)), vec![b]);
    let update = WriteOp::Update {
        collection: POST.into(),
        rkey: tid(base + 1),
        record: record(POST, "edited", 2),
    };
    commit_with_blobs(&db, &key, &[update], base + 11, &refs);
    check("an update dropping references");
    assert_eq!(repo_store::tally(&db).unwrap().expected_blobs, 2);
    assert!(blobs::forget_collectable_blob(&db, &c, 1 << 52).unwrap());
    assert!(blobs::delete_blob_metadata(&db, &b).is_ok());
    check("blobs forgotten");
    let delete = WriteOp::Delete {
        collection: POST.into(),
        rkey: tid(base),
    };
    commit(
        &db,
        &key,
        &[delete, create(LIKE, &tid(base + 2), 3)],
        base + 12,
    );
    check("a delete and a create in one commit");
    assert_eq!(
        pds::storage::status::collection_counts(&db).unwrap(),
        vec![(LIKE.to_owned(), 1), (POST.to_owned(), 1)]
    );
    assert_eq!(
        pds::storage::status::commits_per_day(&db, 0)
            .unwrap()
            .iter()
            .map(|d| d.1)
            .sum::<i64>(),
        3
    );
    db.execute("DELETE FROM repo_block", &[]).unwrap();
    db.execute("DELETE FROM record", &[]).unwrap();
    db.execute("DELETE FROM record_blob", &[]).unwrap();
    db.execute("DELETE FROM blob_metadata", &[]).unwrap();
    assert_eq!(
        repo_store::tally(&db).unwrap(),
        repo_store::Tally::default()
    );
    assert!(pds::storage::status::collection_counts(&db)
        .unwrap()
        .is_empty());
    check("everything emptied");
}
