//! Prints storage figures on a native SQLite file: commit persistence cost,
//! and reading a whole repository block by block versus level-batched.
//!
//! `cargo run -p pds --example storage_figures [records]` (times are wall
//! clock on this machine; nothing asserts on them).

#[path = "support/mod.rs"]
mod support;

use pds::crypto::{KeyAlgorithm, PublicKey, SigningKey};
use pds::platform::native::NativeSql;
use pds::repo::verify::verify_repo;
use pds::repo::{CommitSigner, CommitVerifier, Repo, RepoError, WriteOp};
use pds::storage::{
    load_root, migrate, persist_commit, BlockCache, NewEvent, RecordBlobs, Row, Sql, SqlBlockStore,
    SqlValue,
};
use std::cell::Cell;
use std::time::Instant;

struct Key(SigningKey);
impl CommitSigner for Key {
    fn sign_commit(&self, message: &[u8]) -> Result<Vec<u8>, RepoError> {
        Ok(self.0.sign(message).to_vec())
    }
}
struct Verifier(PublicKey);
impl CommitVerifier for Verifier {
    fn verify_commit(&self, message: &[u8], signature: &[u8]) -> bool {
        self.0.verify(message, signature).is_ok()
    }
}

/// Counts the statements that reach the database.
struct Counting<'a> {
    inner: &'a dyn Sql,
    statements: Cell<u64>,
}
impl Sql for Counting<'_> {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> pds::storage::Result<Vec<Row>> {
        self.statements.set(self.statements.get() + 1);
        self.inner.execute(sql, params)
    }
    fn transaction_dyn(
        &self,
        body: &mut dyn FnMut() -> pds::storage::Result<()>,
    ) -> pds::storage::Result<()> {
        self.inner.transaction_dyn(body)
    }
}

fn record(n: u64) -> Vec<u8> {
    support::post(format!(
        "post number {n}, with some text to make it look like a real post"
    ))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let records: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let dir = std::env::temp_dir().join(format!("pds-storage-figures-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("pds.sqlite");
    let db = NativeSql::open(&path)?;
    migrate(&db)?;
    let key = Key(SigningKey::from_bytes(KeyAlgorithm::K256, &[7u8; 32])?);
    let verifier = Verifier(key.0.public_key());
    let did = "did:plc:figures";
    let base = 1u64 << 52;
    let mut rev = base;
    let mut next_rev = || {
        rev += 1;
        support::tid(rev)
    };

    // Bulk load in commits of 100 records.
    let start = Instant::now();
    let mut n = 0u64;
    while n < records {
        let writes: Vec<WriteOp> = (n..(n + 100).min(records))
            .map(|i| WriteOp::Create {
                collection: "app.bsky.feed.post".into(),
                rkey: support::tid(base + i * 4096),
                record: record(i),
            })
            .collect();
        n += writes.len() as u64;
        commit(&db, &key, did, &writes, &next_rev())?;
    }
    println!(
        "load: {records} records in commits of 100: {:.2} s",
        start.elapsed().as_secs_f64()
    );

    // Single-record commits on a repository of that size.
    let cache = BlockCache::new(8 << 20);
    for (label, count, per, cached) in [
        ("1-record", 200u64, 1u64, false),
        ("10-record", 50, 10, false),
        ("1-record, block cache", 200, 1, true),
    ] {
        let (mut build, mut persist, mut statements) = (0.0, 0.0, 0u64);
        for c in 0..count {
            let writes: Vec<WriteOp> = (0..per)
                .map(|j| WriteOp::Create {
                    collection: "app.bsky.feed.like".into(),
                    rkey: support::tid(base + (c * per + j + (label.len() as u64) * 100_000) * 7),
                    record: record(c),
                })
                .collect();
            let counting = Counting {
                inner: &db,
                statements: Cell::new(0),
            };
            let t0 = Instant::now();
            let root = load_root(&counting)?.ok_or("no root")?;
            let mut store = SqlBlockStore::new(&counting);
            if cached {
                store = store.with_cache(&cache);
            }
            let repo = Repo::open(&store, root.commit_cid)?;
            let (_, output) = repo.apply_writes(&store, &writes, &key, &next_rev())?;
            let t1 = Instant::now();
            persist_commit(
                &counting,
                &output,
                &RecordBlobs::new(),
                &NewEvent {
                    kind: "commit",
                    event: &[0u8; 512],
                    time_ms: 0,
                },
            )?;
            build += (t1 - t0).as_secs_f64();
            persist += t1.elapsed().as_secs_f64();
            statements += counting.statements.get();
        }
        println!(
            "{label} commits: build {:.2} ms, persist {:.2} ms (synchronous=FULL), \
             {:.1} SQL statements per commit",
            build * 1000.0 / count as f64,
            persist * 1000.0 / count as f64,
            statements as f64 / count as f64
        );
    }

    // Whole-repository reads.
    let root = load_root(&db)?.ok_or("no root")?;
    let counting = Counting {
        inner: &db,
        statements: Cell::new(0),
    };
    let t0 = Instant::now();
    let verified = verify_repo(
        &SqlBlockStore::new(&counting),
        root.commit_cid,
        &verifier,
        Some(did),
    )?;
    println!(
        "verify block by block: {} records, {} nodes: {:.0} ms, {} SQL statements",
        verified.records.len(),
        verified.mst_nodes,
        t0.elapsed().as_secs_f64() * 1000.0,
        counting.statements.get()
    );
    counting.statements.set(0);
    let t0 = Instant::now();
    let loaded = SqlBlockStore::new(&counting).load_repo(&root.commit_cid)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let t1 = Instant::now();
    verify_repo(&loaded, root.commit_cid, &verifier, Some(did))?;
    println!(
        "load_repo (level-batched) {:.0} ms, {} SQL statements, then verify in memory {:.0} ms",
        load_ms,
        counting.statements.get(),
        t1.elapsed().as_secs_f64() * 1000.0
    );
    drop(db);
    let bytes: u64 = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "database files (with WAL): {:.1} MB, {:.0} bytes per record",
        bytes as f64 / 1e6,
        bytes as f64 / verified.records.len() as f64
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn commit(
    db: &dyn Sql,
    key: &Key,
    did: &str,
    writes: &[WriteOp],
    rev: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = SqlBlockStore::new(db);
    let (_, output) = match load_root(db)? {
        None => Repo::create(&store, did, writes, key, rev)?,
        Some(root) => {
            Repo::open(&store, root.commit_cid)?.apply_writes(&store, writes, key, rev)?
        }
    };
    persist_commit(
        db,
        &output,
        &RecordBlobs::new(),
        &NewEvent {
            kind: "commit",
            event: b"figures",
            time_ms: 0,
        },
    )?;
    Ok(())
}
