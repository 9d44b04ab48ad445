//! Helpers for the storage tests: a repository key, TIDs, records, a tiny
//! executor for the (immediately ready) native blob futures, temp dirs.
#![allow(dead_code)]

use pds::crypto::{KeyAlgorithm, PublicKey, SigningKey};
use pds::repo::{CommitSigner, CommitVerifier, RepoError};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

pub const DID: &str = "did:plc:storagetestaccount";

/// The repository key: fixed, so a re-executed child process signs with the
/// same key the parent verifies against.
pub struct Key(pub SigningKey);

impl Key {
    pub fn fixed() -> Key {
        Key(SigningKey::from_bytes(KeyAlgorithm::K256, &[7u8; 32]).unwrap())
    }
    pub fn verifier(&self) -> Verifier {
        Verifier(self.0.public_key())
    }
}

impl CommitSigner for Key {
    fn sign_commit(&self, message: &[u8]) -> Result<Vec<u8>, RepoError> {
        Ok(self.0.sign(message).to_vec())
    }
}

pub struct Verifier(pub PublicKey);

impl CommitVerifier for Verifier {
    fn verify_commit(&self, message: &[u8], signature: &[u8]) -> bool {
        self.0.verify(message, signature).is_ok()
    }
}

const S32: &[u8] = b"234567abcdefghijklmnopqrstuvwxyz";

/// The TID of a 63-bit value (base32-sortable, 13 characters).
pub fn tid(value: u64) -> String {
    (0..13)
        .rev()
        .map(|i| S32[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// The value of a TID.
pub fn tid_value(tid: &str) -> u64 {
    tid.bytes().fold(0u64, |acc, b| {
        (acc << 5) | S32.iter().position(|&c| c == b).unwrap() as u64
    })
}

/// A record's DAG-CBOR: `{$type, text, n}`.
pub fn record(collection: &str, text: &str, n: u64) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Rec<'a> {
        #[serde(rename = "$type")]
        t: &'a str,
        text: &'a str,
        n: u64,
    }
    serde_ipld_dagcbor::to_vec(&Rec {
        t: collection,
        text,
        n,
    })
    .unwrap()
}

/// Runs a future that never waits (the native blob store's).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("future did not complete");
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "pds-storage-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
