//! Repository core benchmark (a program, not a test): prints timings.
//!
//! Run: `cargo run --release -p pds --example bench_repo [records]`

#[path = "support/mod.rs"]
mod support;

use pds::crypto::{KeyAlgorithm, SigningKey};
use pds::repo::blockstore::{BlockMap, BlockStore, MemoryBlockStore};
use pds::repo::cbor::cid_for_cbor;
use pds::repo::verify::verify_car;
use pds::repo::{Mst, Repo, RepoError, WriteOp};
use std::cell::Cell;
use std::time::Instant;

/// Counts reads that reach the store.
struct Counting<'a> {
    inner: &'a MemoryBlockStore,
    reads: Cell<usize>,
}

impl BlockStore for Counting<'_> {
    fn get(&self, cid: &cid::Cid) -> Result<Option<Vec<u8>>, RepoError> {
        self.reads.set(self.reads.get() + 1);
        self.inner.get(cid)
    }
    fn put(&mut self, _: cid::Cid, _: Vec<u8>) -> Result<(), RepoError> {
        Err(RepoError::Storage("read-only".into()))
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn tid(&mut self) -> String {
        let alphabet = b"234567abcdefghijklmnopqrstuvwxyz";
        let mut s = String::from("3l");
        for _ in 0..11 {
            s.push(alphabet[(self.next() % 32) as usize] as char);
        }
        s
    }
}

fn record(n: u64) -> Vec<u8> {
    support::post(format!("post number {n}, hello world"))
}

fn rev(n: u64) -> String {
    let alphabet = b"234567abcdefghijklmnopqrstuvwxyz";
    let mut v = (1u64 << 60) + n * 1024;
    let mut s = vec![b'2'; 13];
    for c in s.iter_mut().rev() {
        *c = alphabet[(v & 31) as usize];
        v >>= 5;
    }
    String::from_utf8(s).unwrap_or_default()
}

fn mib_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs
}

fn main() -> Result<(), RepoError> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let mut rng = Rng(2026);
    let keys: Vec<String> = (0..n)
        .map(|_| format!("app.bsky.feed.post/{}", rng.tid()))
        .collect();
    let records: Vec<Vec<u8>> = (0..n as u64).map(record).collect();

    // 1. Insert n keys in random order into an in-memory MST, then encode it.
    let empty = MemoryBlockStore::new();
    let start = Instant::now();
    let mut tree = Mst::new();
    for (key, rec) in keys.iter().zip(&records) {
        tree.insert(&empty, key, cid_for_cbor(rec))?;
    }
    let inserted = start.elapsed();
    let mut nodes = BlockMap::new();
    let root = tree.flush(&mut nodes)?;
    let total = start.elapsed();
    println!(
        "insert {n} keys (random order): {:.3} s inserting + {:.3} s encoding {} nodes = {:.3} s ({:.1} µs/key); root {root}",
        inserted.as_secs_f64(),
        (total - inserted).as_secs_f64(),
        nodes.len(),
        total.as_secs_f64(),
        total.as_secs_f64() * 1e6 / n as f64
    );

    // A stored n-record repository.
    let key = SigningKey::from_bytes(KeyAlgorithm::K256, &[7; 32])
        .map_err(|e| RepoError::Storage(e.to_string()))?;
    let writes: Vec<WriteOp> = keys
        .iter()
        .zip(&records)
        .map(|(k, r)| WriteOp::Create {
            collection: "app.bsky.feed.post".into(),
            rkey: k["app.bsky.feed.post/".len()..].into(),
            record: r.clone(),
        })
        .collect();
    let mut store = MemoryBlockStore::new();
    let start = Instant::now();
    let (repo, out) = Repo::create(
        &store,
        "did:plc:benchmark000000000000",
        &writes,
        &key,
        &rev(1),
    )?;
    store.put_many(out.new_blocks)?;
    println!(
        "create {n}-record repo in one commit: {:.3} s, {} blocks",
        start.elapsed().as_secs_f64(),
        store.len()
    );

    // 2. One-record commits on the n-record tree (opened from its root, as the server does).
    for (i, action) in ["create", "update", "delete"].iter().enumerate() {
        let write = match *action {
            "create" => WriteOp::Create {
                collection: "app.bsky.feed.post".into(),
                rkey: "3zzzzzzzzzzzz".into(),
                record: record(1),
            },
            "update" => WriteOp::Update {
                collection: "app.bsky.feed.post".into(),
                rkey: writes_rkey(&keys[n / 2]),
                record: record(2),
            },
            _ => WriteOp::Delete {
                collection: "app.bsky.feed.post".into(),
                rkey: writes_rkey(&keys[n / 3]),
            },
        };
        let counting = Counting {
            inner: &store,
            reads: Cell::new(0),
        };
        let start = Instant::now();
        let repo = Repo::open(&counting, repo.commit_cid())?;
        let (_, out) = repo.apply_writes(&counting, &[write], &key, &rev(2 + i as u64))?;
        let took = start.elapsed();
        println!(
            "one-record {action} on {n}-record tree: {:.3} ms, {} blocks read, {} blocks written ({} relevant)",
            took.as_secs_f64() * 1e3,
            counting.reads.get(),
            out.new_blocks.len(),
            out.relevant_blocks.len()
        );
    }

    // 3. CAR export and import + verify.
    let start = Instant::now();
    let mut car = Vec::new();
    repo.write_car(&store, &mut car)?;
    let export = start.elapsed().as_secs_f64();
    println!(
        "CAR export: {:.1} MiB in {:.3} s = {:.1} MiB/s",
        car.len() as f64 / 1048576.0,
        export,
        mib_per_s(car.len(), export)
    );
    let start = Instant::now();
    let verified = verify_car(car.as_slice(), &key.public_key(), None)?;
    let verify = start.elapsed().as_secs_f64();
    println!(
        "CAR import + verify: {} records, {} MST nodes in {:.3} s = {:.1} MiB/s",
        verified.records.len(),
        verified.mst_nodes,
        verify,
        mib_per_s(car.len(), verify)
    );
    Ok(())
}

fn writes_rkey(key: &str) -> String {
    key["app.bsky.feed.post/".len()..].to_owned()
}
