//! Signed v3 repository commits: `{did, version: 3, data, rev, prev: null, sig}`.
//!
//! The signature covers the DAG-CBOR of the commit without `sig`.

use super::cbor::{cid_for_cbor, decode_canonical, encode};
use super::error::{RepoError, Result};
use cid::Cid;
use serde::{Deserialize, Serialize};

/// The only commit version this implementation writes and accepts.
pub const COMMIT_VERSION: u64 = 3;

/// Signs commit bytes with the repository key (k256 or p256, low-S, 64 bytes).
pub trait CommitSigner {
    /// The compact signature of `message`.
    fn sign_commit(&self, message: &[u8]) -> Result<Vec<u8>>;
}

/// Checks commit signatures against the repository's public key.
pub trait CommitVerifier {
    /// Whether `signature` is a valid (low-S) signature of `message`.
    fn verify_commit(&self, message: &[u8], signature: &[u8]) -> bool;
}

impl CommitSigner for crate::crypto::SigningKey {
    fn sign_commit(&self, message: &[u8]) -> Result<Vec<u8>> {
        Ok(self.sign(message).to_vec())
    }
}

impl CommitVerifier for crate::crypto::PublicKey {
    fn verify_commit(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verify(message, signature).is_ok()
    }
}

/// A commit before signing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsignedCommit {
    /// The account DID.
    pub did: String,
    /// Always 3.
    pub version: u64,
    /// Root of the MST.
    pub data: Cid,
    /// Revision: a TID that grows with every commit.
    pub rev: String,
    /// Always null in v3 (kept for v2 compatibility).
    pub prev: Option<Cid>,
}

/// A signed commit, the root block of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commit {
    /// The account DID.
    pub did: String,
    /// Always 3.
    pub version: u64,
    /// Root of the MST.
    pub data: Cid,
    /// Revision TID.
    pub rev: String,
    /// Always null in v3.
    pub prev: Option<Cid>,
    /// Signature over the unsigned commit's DAG-CBOR.
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

impl UnsignedCommit {
    /// A v3 commit of `data` at `rev`.
    pub fn new(did: &str, data: Cid, rev: &str) -> Self {
        Self {
            did: did.to_owned(),
            version: COMMIT_VERSION,
            data,
            rev: rev.to_owned(),
            prev: None,
        }
    }

    /// Signs the commit.
    pub fn sign(self, signer: &dyn CommitSigner) -> Result<Commit> {
        let sig = signer.sign_commit(&encode(&self)?)?;
        Ok(Commit {
            did: self.did,
            version: self.version,
            data: self.data,
            rev: self.rev,
            prev: self.prev,
            sig,
        })
    }
}

impl Commit {
    /// The commit without its signature (what was signed).
    pub fn unsigned(&self) -> UnsignedCommit {
        UnsignedCommit {
            did: self.did.clone(),
            version: self.version,
            data: self.data,
            rev: self.rev.clone(),
            prev: self.prev,
        }
    }

    /// Encodes the commit block and returns (CID, bytes).
    pub fn to_block(&self) -> Result<(Cid, Vec<u8>)> {
        let bytes = encode(self)?;
        Ok((cid_for_cbor(&bytes), bytes))
    }

    /// Decodes a commit block: canonical DAG-CBOR, version 3, a TID rev.
    pub fn decode(bytes: &[u8]) -> Result<Commit> {
        let commit: Commit = decode_canonical(bytes, "commit")?;
        if commit.version != COMMIT_VERSION {
            return Err(RepoError::InvalidCommit(format!(
                "version {} (want 3)",
                commit.version
            )));
        }
        if !is_tid(&commit.rev) {
            return Err(RepoError::InvalidCommit(format!(
                "rev {:?} is not a TID",
                commit.rev
            )));
        }
        if !commit.did.starts_with("did:") {
            return Err(RepoError::InvalidCommit(format!("did {:?}", commit.did)));
        }
        Ok(commit)
    }

    /// Checks the signature against the repository key.
    pub fn verify(&self, verifier: &dyn CommitVerifier) -> Result<()> {
        let message = encode(&self.unsigned())?;
        if verifier.verify_commit(&message, &self.sig) {
            Ok(())
        } else {
            Err(RepoError::InvalidCommit("bad signature".into()))
        }
    }
}

/// Whether `s` is a valid TID (the shared syntax check).
pub fn is_tid(s: &str) -> bool {
    crate::syntax::Tid::new(s).is_ok()
}
