//! Encoding of the repository's own typed blocks (MST nodes, commits, CAR
//! headers). CIDs come from the shared helpers in `crate::data::cid`.
//!
//! Structs go through `serde_ipld_dagcbor`, which writes map keys in canonical
//! order; decoding re-encodes and compares, so only canonical blocks are accepted.

use super::error::{RepoError, Result};
use crate::data::cid::{cid_from_digest, RAW};
use cid::Cid;
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};

pub use crate::data::cid::{cid_for_cbor, DAG_CBOR};

/// Whether `bytes` hash to `cid` (CIDv1, sha-256, dag-cbor or raw).
pub fn cid_matches(cid: &Cid, bytes: &[u8]) -> bool {
    let codec = cid.codec();
    (codec == DAG_CBOR || codec == RAW)
        && *cid == cid_from_digest(codec, &Sha256::digest(bytes).into())
}

/// Encodes a typed block canonically.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| RepoError::Decode(format!("encode: {e}")))
}

/// Decodes a typed block with the shared strict decoder (canonical DAG-CBOR
/// only), then re-encodes it: equal bytes also rule out omitted `null` fields,
/// which serde would read as `None`.
pub fn decode_canonical<T: Serialize + DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    let value: T = crate::data::cbor::from_slice_strict(bytes)
        .map_err(|e| RepoError::Decode(format!("{what}: {e}")))?;
    if encode(&value)? != bytes {
        return Err(RepoError::Decode(format!("{what}: not in canonical form")));
    }
    Ok(value)
}
