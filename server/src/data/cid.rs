//! CIDs as atproto uses them: CIDv1, SHA-256, `dag-cbor` for records and repository
//! nodes, `raw` for blobs.

use std::fmt;

use cid::multihash::Multihash;
use cid::Cid;
use sha2::{Digest, Sha256};

pub use pds_api::runtime::cid_str::cid_string;

/// Multicodec code of DAG-CBOR blocks (records, commits, MST nodes).
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec code of raw bytes (blobs).
pub const RAW: u64 = 0x55;
/// Multihash code of SHA2-256.
pub const SHA2_256: u64 = 0x12;

/// The CID of a SHA-256 digest under a codec.
pub fn cid_from_digest(codec: u64, digest: &[u8; 32]) -> Cid {
    // A 32-byte digest always fits the 64-byte multihash buffer: wrap cannot fail.
    let mh = Multihash::<64>::wrap(SHA2_256, digest).expect("32-byte digest fits a multihash");
    Cid::new_v1(codec, mh)
}

/// The CID of a DAG-CBOR block: CIDv1, dag-cbor, sha2-256.
pub fn cid_for_cbor(block: &[u8]) -> Cid {
    cid_from_digest(DAG_CBOR, &Sha256::digest(block).into())
}

/// The CID of raw bytes (a blob): CIDv1, raw, sha2-256.
pub fn cid_for_raw(bytes: &[u8]) -> Cid {
    cid_from_digest(RAW, &Sha256::digest(bytes).into())
}

/// Computes a blob's raw CID from its bytes as they stream by, without holding them.
#[derive(Clone, Default)]
pub struct RawCidHasher {
    hasher: Sha256,
    len: u64,
}

impl RawCidHasher {
    /// A hasher that has seen no bytes.
    pub fn new() -> RawCidHasher {
        RawCidHasher::default()
    }

    /// Feeds the next chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
    }

    /// How many bytes have been fed so far (a blob's `size`).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no bytes have been fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw CID of everything fed.
    pub fn finish(self) -> Cid {
        cid_from_digest(RAW, &self.hasher.finalize().into())
    }
}

/// Why a CID was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidError(pub String);

impl fmt::Display for CidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid CID: {}", self.0)
    }
}

impl std::error::Error for CidError {}

/// Parses a CID string of any version and codec, in base32 (`b`), base58btc (`z`) or as a
/// CIDv0 (`Qm`): what the reference reads.
pub fn parse_cid(s: &str) -> Result<Cid, CidError> {
    pds_api::runtime::cid_str::parse_cid(s).map_err(|e| CidError(e.0))
}

/// Parses a CID string and requires what atproto requires of CIDs it creates and links:
/// CIDv1, codec dag-cbor or raw, SHA2-256 with a 32-byte digest.
pub fn parse_atproto_cid(s: &str) -> Result<Cid, CidError> {
    let cid = parse_cid(s)?;
    check_atproto_cid(&cid)?;
    Ok(cid)
}

/// Checks that a CID is CIDv1, dag-cbor or raw, SHA2-256 with a 32-byte digest.
pub fn check_atproto_cid(cid: &Cid) -> Result<(), CidError> {
    if cid.version() != cid::Version::V1 {
        return Err(CidError("CIDv0 is not allowed".into()));
    }
    if cid.codec() != DAG_CBOR && cid.codec() != RAW {
        return Err(CidError(format!(
            "codec 0x{:x} is not dag-cbor or raw",
            cid.codec()
        )));
    }
    let hash = cid.hash();
    if hash.code() != SHA2_256 || hash.size() != 32 {
        return Err(CidError("hash is not a 32-byte sha2-256".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_hasher_matches_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut h = RawCidHasher::new();
        for chunk in data.chunks(333) {
            h.update(chunk);
        }
        assert_eq!(h.len(), 10_000);
        assert_eq!(h.finish(), cid_for_raw(&data));
    }

    #[test]
    fn known_cids() {
        // The empty-input CIDs are fixed by sha256("").
        assert_eq!(
            cid_for_raw(b"").to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        let c = cid_for_cbor(&[0xa0]);
        assert_eq!(c.codec(), DAG_CBOR);
        assert!(check_atproto_cid(&c).is_ok());
        assert_eq!(parse_atproto_cid(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn rejects_v0_and_other_codecs() {
        let v0 = "QmY7Yh4UquoXHLPFo2XbhXkhBvFoPwmQUSa92pxnxjQuPU";
        assert!(parse_cid(v0).is_ok());
        assert!(parse_atproto_cid(v0).is_err());
        // dag-pb CIDv1
        let dag_pb = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
        assert!(parse_atproto_cid(dag_pb).is_err());
        assert!(parse_atproto_cid("not a cid").is_err());
    }
}
