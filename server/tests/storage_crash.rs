//! Crash safety: a writer process is SIGKILLed at random moments while it
//! commits to a SQLite file; after every kill the reopened repository must
//! verify, its index must match its tree, and its head must be the last
//! commit the writer completed (or the one it was completing), never a
//! half-applied one.

mod storage_support;

use cid::Cid;
use pds::data::cid_for_raw;
use pds::platform::native::{DirBlobStore, NativeSql};
use pds::repo::verify::verify_repo;
use pds::repo::{Repo, WriteOp};
use pds::storage::blobs::{read_all, IterChunks};
use pds::storage::repo_store::all_records;
use pds::storage::sequencer::events_after;
use pds::storage::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use storage_support::*;

/// Set in the re-executed child: the database file it writes to until killed.
const CHILD_ENV: &str = "PDS_STORAGE_CRASH_DB";

/// Set in the re-executed child: the blob directory it uploads to until killed.
const BLOB_CHILD_ENV: &str = "PDS_STORAGE_CRASH_BLOBS";

const COLLECTIONS: &[&str] = &[
    "app.bsky.feed.post",
    "app.bsky.feed.like",
    "com.example.thing",
];

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Writes `commits` random commits (creates, updates, deletes; records of
/// 1 to 20 kB) to the database at `path`; with `report`, prints
/// `@begin <rev>` before and `@done <rev>` after persisting each one
/// (straight to stdout, past libtest's capture, for the parent to read).
fn write_commits(path: &Path, commits: u64, seed: u64, report: bool) {
    let db = NativeSql::open(path).unwrap();
    migrate(&db).unwrap();
    let key = Key::fixed();
    let mut rng = Rng(seed);
    let mut keys: Vec<(String, String)> = all_records(&db)
        .unwrap()
        .into_iter()
        .map(|(path, _)| {
            let (c, r) = path.split_once('/').unwrap();
            (c.to_owned(), r.to_owned())
        })
        .collect();
    let mut last_rev = load_root(&db).unwrap().map_or(0, |r| tid_value(&r.rev));
    let stdout = std::io::stdout();
    for _ in 0..commits {
        let mut writes = Vec::new();
        let mut touched = std::collections::BTreeSet::new();
        for _ in 0..1 + rng.below(8) {
            let size = 1000 + rng.below(19_000) as usize;
            let text: String = (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            let n = rng.next() >> 12;
            let pick = rng.below(10);
            if keys.is_empty() || pick < 5 {
                let collection = COLLECTIONS[rng.below(COLLECTIONS.len() as u64) as usize];
                let rkey = tid(rng.next() >> 1);
                if !touched.insert((collection.to_owned(), rkey.clone())) {
                    continue;
                }
                writes.push(WriteOp::Create {
                    collection: collection.into(),
                    rkey: rkey.clone(),
                    record: record(collection, &text, n),
                });
                keys.push((collection.to_owned(), rkey));
            } else {
                let i = rng.below(keys.len() as u64) as usize;
                if !touched.insert(keys[i].clone()) {
                    continue;
                }
                if pick < 8 {
                    let (collection, rkey) = keys[i].clone();
                    writes.push(WriteOp::Update {
                        record: record(&collection, &text, n),
                        collection,
                        rkey,
                    });
                } else {
                    let (collection, rkey) = keys.swap_remove(i);
                    writes.push(WriteOp::Delete { collection, rkey });
                }
            }
        }
        let rev_value = (last_rev + 1).max(now_micros() << 10);
        last_rev = rev_value;
        let rev = tid(rev_value);
        let store = SqlBlockStore::new(&db);
        let (_, output) = match load_root(&db).unwrap() {
            None => Repo::create(&store, DID, &writes, &key, &rev).unwrap(),
            Some(root) => Repo::open(&store, root.commit_cid)
                .unwrap()
                .apply_writes(&store, &writes, &key, &rev)
                .unwrap(),
        };
        if report {
            writeln!(stdout.lock(), "@begin {rev}").unwrap();
        }
        persist_commit(
            &db,
            &output,
            &RecordBlobs::new(),
            &NewEvent {
                kind: "commit",
                event: rev.as_bytes(),
                time_ms: (now_micros() / 1000) as i64,
            },
        )
        .unwrap();
        if report {
            writeln!(stdout.lock(), "@done {rev}").unwrap();
        }
    }
}

/// What a reopened database holds; panics if it fails verification.
fn check(path: &Path) -> Option<(String, Vec<String>)> {
    let db = NativeSql::open(path).unwrap();
    migrate(&db).unwrap();
    let root = load_root(&db).unwrap()?;
    let store = SqlBlockStore::new(&db);
    let verified = verify_repo(&store, root.commit_cid, &Key::fixed().verifier(), Some(DID))
        .unwrap_or_else(|e| panic!("repository at {} fails verification: {e}", root.rev));
    assert_eq!(verified.commit.rev, root.rev);
    assert_eq!(verified.commit.data, root.data_cid);
    let mst: BTreeMap<String, Cid> = verified.records.into_iter().collect();
    let index: BTreeMap<String, Cid> = all_records(&db).unwrap().into_iter().collect();
    assert_eq!(index, mst, "record index matches the tree at {}", root.rev);
    let revs: Vec<String> = events_after(&db, 0, u32::MAX >> 1)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.event).unwrap())
        .collect();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "one event per commit, in order"
    );
    assert_eq!(
        revs.last(),
        Some(&root.rev),
        "the head's event is the last one"
    );
    Some((root.rev, revs))
}

/// Without the environment variable: a short run, checked. With it: the
/// child side of the crash test, writing until it is killed.
#[test]
fn writer() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        write_commits(
            Path::new(&path),
            u64::MAX,
            now_micros() ^ u64::from(std::process::id()),
            true,
        );
        return;
    }
    let dir = TempDir::new("writer");
    let path = dir.path().join("pds.sqlite");
    write_commits(&path, 15, 1, false);
    let (_, revs) = check(&path).unwrap();
    assert_eq!(revs.len(), 15);
}

#[test]
fn killed_writers_never_leave_a_half_applied_commit() {
    const ROUNDS: usize = 12;
    let dir = TempDir::new("crash");
    let path = dir.path().join("pds.sqlite");
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(now_micros());
    let mut acknowledged: Vec<String> = Vec::new();
    let (mut in_flight_kept, mut in_flight_dropped) = (0, 0);
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--exact", "writer", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(std::result::Result::ok)
                .collect::<Vec<String>>()
        });
        std::thread::sleep(Duration::from_millis(100 + rng.below(700)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();

        // Markers, not line prefixes: libtest may print on the same line.
        let marked = |marker: &str| -> Vec<&str> {
            lines
                .iter()
                .filter_map(|l| l.split_once(marker).map(|(_, rev)| rev))
                .collect()
        };
        let done = marked("@done ");
        let begun = marked("@begin ");
        acknowledged.extend(done.iter().map(|s| s.to_string()));
        let in_flight = (begun.len() > done.len()).then(|| *begun.last().unwrap());

        let Some((head, revs)) = check(&path) else {
            assert!(
                acknowledged.is_empty(),
                "round {round}: completed commits vanished"
            );
            continue;
        };
        match in_flight {
            // Killed between `begin` and `done`: the commit is there whole or
            // not at all.
            Some(rev) if head == rev => in_flight_kept += 1,
            Some(_) => {
                in_flight_dropped += 1;
                assert_eq!(Some(&head), acknowledged.last(), "round {round}");
            }
            None => assert_eq!(
                Some(&head),
                acknowledged.last(),
                "round {round}: {} begun, {} done, last lines {:?}",
                begun.len(),
                done.len(),
                &lines[lines.len().saturating_sub(4)..]
            ),
        }
        // Every completed commit is durable: its event is stored.
        for rev in &acknowledged {
            assert!(revs.contains(rev), "round {round}: acknowledged {rev} lost");
        }
        if head != *acknowledged.last().unwrap_or(&String::new()) {
            acknowledged.push(head);
        }
        eprintln!(
            "round {round}: {} commits this run, head at {} events, killed mid-commit: {}",
            done.len(),
            revs.len(),
            in_flight.is_some()
        );
    }
    assert!(
        acknowledged.len() >= ROUNDS,
        "the writer made progress ({} commits)",
        acknowledged.len()
    );
    eprintln!(
        "{ROUNDS} kills; between begin and done: {in_flight_kept} with the commit whole, \
         {in_flight_dropped} with it absent"
    );
}

/// Uploads blobs of 100 kB to 3 MB in 64 kB chunks to `dir`, `count` times.
fn upload_blobs(dir: &Path, count: u64, seed: u64) {
    let store = DirBlobStore::open(dir).unwrap();
    let mut rng = Rng(seed);
    for _ in 0..count {
        let size = 100_000 + rng.below(2_900_000) as usize;
        let fill = rng.next();
        let data: Vec<u8> = (0..size)
            .map(|i| (fill.wrapping_add(i as u64 * 7919) >> 3) as u8)
            .collect();
        let chunks: Vec<Vec<u8>> = data.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
        let stored = block_on(store.put(&mut IterChunks(chunks.into_iter()), 10_000_000)).unwrap();
        assert_eq!(stored.cid, cid_for_raw(&data));
    }
}

/// Without the environment variable: a short run. With it: the child side
/// of the blob crash test, uploading until it is killed.
#[test]
fn uploader() {
    if let Some(dir) = std::env::var_os(BLOB_CHILD_ENV) {
        upload_blobs(Path::new(&dir), u64::MAX, now_micros());
        return;
    }
    let dir = TempDir::new("uploader");
    upload_blobs(dir.path(), 5, 1);
    let store = DirBlobStore::open(dir.path()).unwrap();
    assert_eq!(block_on(store.list(None, 100)).unwrap().len(), 5);
}

#[test]
fn killed_uploads_never_leave_a_partial_blob() {
    let dir = TempDir::new("blob-crash");
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(now_micros());
    let mut stale = 0;
    for _ in 0..6 {
        let mut child = Command::new(&exe)
            .args(["--exact", "uploader", "--test-threads=1"])
            .env(BLOB_CHILD_ENV, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100 + rng.below(500)));
        child.kill().unwrap();
        child.wait().unwrap();
        // Every blob visible under a CID holds exactly the bytes of that CID.
        let store = DirBlobStore::open(dir.path()).unwrap();
        for cid in block_on(store.list(None, 10_000)).unwrap() {
            let mut body = block_on(store.get(&cid, None)).unwrap().unwrap();
            let bytes = block_on(read_all(body.chunks.as_mut())).unwrap();
            assert_eq!(cid_for_raw(&bytes), cid, "blob {cid} is whole");
        }
        stale += store.remove_stale_uploads().unwrap();
    }
    let store = DirBlobStore::open(dir.path()).unwrap();
    let blobs = block_on(store.list(None, 10_000)).unwrap().len();
    assert!(blobs > 0, "the uploader made progress");
    eprintln!("6 kills: {blobs} whole blobs, {stale} half-written uploads swept from tmp/");
}
