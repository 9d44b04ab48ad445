//! Encoding of the repository's own typed blocks (MST nodes, commits, CAR
//! headers) and their CIDs.
//!
//! Structs go through `serde_ipld_dagcbor`, which writes map keys in canonical
//! order; decoding re-encodes and compares, so only canonical blocks are accepted.

use super::error::{RepoError, Result};
use cid::multihash::Multihash;
use cid::Cid;
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};

/// Multicodec of DAG-CBOR.
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec of raw bytes (blobs).
pub const RAW: u64 = 0x55;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;

/// The CIDv1 (sha-256) of DAG-CBOR bytes.
pub fn cid_for_cbor(bytes: &[u8]) -> Cid {
    cid_with_codec(DAG_CBOR, bytes)
}

fn cid_with_codec(codec: u64, bytes: &[u8]) -> Cid {
    let digest = Sha256::digest(bytes);
    // A 32-byte digest always fits the 64-byte multihash: wrap cannot fail.
    let mh = Multihash::<64>::wrap(SHA2_256, &digest).unwrap_or_default();
    Cid::new_v1(codec, mh)
}

/// Whether `bytes` hash to `cid` (sha-256 CIDv1 only, dag-cbor or raw).
pub fn cid_matches(cid: &Cid, bytes: &[u8]) -> bool {
    let codec = cid.codec();
    cid.version() == cid::Version::V1
        && (codec == DAG_CBOR || codec == RAW)
        && cid.hash().code() == SHA2_256
        && cid.hash().size() == 32
        && cid.hash().digest() == &Sha256::digest(bytes)[..]
}

/// Encodes a typed block canonically.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| RepoError::Decode(format!("encode: {e}")))
}

/// Decodes a typed block and rejects any non-canonical encoding of it.
pub fn decode_canonical<T: Serialize + DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    let value: T = serde_ipld_dagcbor::from_slice(bytes)
        .map_err(|e| RepoError::Decode(format!("{what}: {e}")))?;
    if encode(&value)? != bytes {
        return Err(RepoError::Decode(format!("{what}: not canonical DAG-CBOR")));
    }
    Ok(value)
}
