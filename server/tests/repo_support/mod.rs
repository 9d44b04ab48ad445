//! Helpers for the repository tests: a seeded PRNG, record keys, test keys.
#![allow(dead_code)]

use cid::Cid;
use pds::crypto::{KeyAlgorithm, SigningKey};
use pds::repo::cbor::cid_for_cbor;

/// splitmix64: deterministic, seedable, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

const COLLECTIONS: &[&str] = &[
    "app.bsky.feed.like",
    "app.bsky.feed.post",
    "app.bsky.graph.follow",
    "com.example.record",
    "z.z",
];
const RKEY_CHARS: &[u8] = b"234567abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0189_~-:.";

/// A random valid MST key: mostly TID-shaped rkeys, some free-form ones.
pub fn random_key(rng: &mut Rng) -> String {
    let collection = COLLECTIONS[rng.below(COLLECTIONS.len())];
    let rkey: String = if rng.below(4) == 0 {
        let len = 1 + rng.below(20);
        (0..len)
            .map(|_| RKEY_CHARS[rng.below(RKEY_CHARS.len())] as char)
            .collect()
    } else {
        // TID-like: shared prefixes exercise prefix compression.
        let alphabet = b"234567abcdefghijklmnopqrstuvwxyz";
        let mut s = String::from("3l");
        for _ in 0..11 {
            s.push(alphabet[rng.below(32)] as char);
        }
        s
    };
    format!("{collection}/{rkey}")
}

/// A CID for a value index (as if the record's bytes were `n`).
pub fn value_cid(n: u64) -> Cid {
    cid_for_cbor(&n.to_be_bytes())
}

/// A deterministic repository key for tests.
pub fn test_key(alg: KeyAlgorithm, seed: u8) -> SigningKey {
    SigningKey::from_bytes(alg, &[seed.max(1); 32]).unwrap()
}

/// Path of the repository's Node 22 (node_modules/.bin/node after `npm install`).
pub fn node_binary() -> std::path::PathBuf {
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../node_modules/.bin/node");
    assert!(
        path.exists(),
        "{} missing: run `npm install` at the workspace root",
        path.display()
    );
    path
}
