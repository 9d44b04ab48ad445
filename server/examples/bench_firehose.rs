//! Prints timings of the firehose hot paths: building a `#commit` body from a
//! commit, and framing a stored body with its seq (done once per event and
//! shared by all subscribers). Run with
//! `cargo run --release -p pds --example bench_firehose`.

use std::hint::black_box;
use std::time::Instant;

use pds::crypto::{KeyAlgorithm, SigningKey};
use pds::data::{encode, Map, Value};
use pds::firehose::{commit_event, EventBody};
use pds::repo::{BlockStore, CommitSigner, MemoryBlockStore, Repo, RepoError, WriteOp};
use pds::syntax::{Did, Tid};

struct Signer(SigningKey);

impl CommitSigner for Signer {
    fn sign_commit(&self, message: &[u8]) -> Result<Vec<u8>, RepoError> {
        Ok(self.0.sign(message).to_vec())
    }
}

fn time<R>(label: &str, iters: u32, mut f: impl FnMut() -> R) {
    for _ in 0..iters / 10 + 1 {
        black_box(f());
    }
    let start = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    let per = start.elapsed().as_nanos() as f64 / iters as f64;
    println!("{label:<52} {per:>10.0} ns/op");
}

fn record(n: u64, text_len: usize) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("$type".into(), Value::String("app.bsky.feed.post".into()));
    m.insert("text".into(), Value::String("x".repeat(text_len)));
    m.insert("n".into(), Value::Integer(n as i64));
    encode(&Value::Map(m))
}

fn main() {
    const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
    let did = Did::new(DID).unwrap();
    let signer = Signer(SigningKey::from_bytes(KeyAlgorithm::K256, &[9; 32]).unwrap());
    let rev = |n: u64| {
        Tid::from_parts(1_735_689_600_000_000 + n, 0)
            .as_str()
            .to_owned()
    };
    let create = |n: u64, len: usize| WriteOp::Create {
        collection: "app.bsky.feed.post".into(),
        rkey: rev(1_000_000 + n),
        record: record(n, len),
    };

    // A repository of 10,000 records, then one single-record commit and one
    // 200-record commit of ~4 KiB records (a ~900 KB CAR).
    let mut store = MemoryBlockStore::new();
    let initial: Vec<WriteOp> = (0..10_000).map(|n| create(n, 100)).collect();
    let (repo, out) = Repo::create(&store, DID, &initial, &signer, &rev(1)).unwrap();
    store.put_many(out.new_blocks).unwrap();
    let (repo2, small) = repo
        .apply_writes(&store, &[create(20_000, 100)], &signer, &rev(2))
        .unwrap();
    store.put_many(small.new_blocks.clone()).unwrap();
    let batch: Vec<WriteOp> = (0..200).map(|n| create(30_000 + n, 4000)).collect();
    let (_, large) = repo2
        .apply_writes(&store, &batch, &signer, &rev(3))
        .unwrap();

    let small_event = commit_event(&did, &small, 0).unwrap();
    let large_event = commit_event(&did, &large, 0).unwrap();
    println!(
        "#commit body sizes: 1 op {} bytes, 200 ops {} bytes",
        small_event.body.len(),
        large_event.body.len()
    );
    time("commit_event, 1 create in a 10k-record repo", 2000, || {
        commit_event(&did, &small, 0).unwrap()
    });
    time("commit_event, 200 creates of 4 KiB", 50, || {
        commit_event(&did, &large, 0).unwrap()
    });
    time("EventBody::frame (seq splice), 1-op commit", 20_000, || {
        small_event.frame(123_456).unwrap()
    });
    time("EventBody::frame (seq splice), 200-op commit", 500, || {
        large_event.frame(123_456).unwrap()
    });
    let copy: EventBody = large_event.clone();
    time("memcpy of the 200-op body (lower bound)", 500, || {
        copy.body.clone()
    });
}
