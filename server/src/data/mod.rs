//! The atproto data model on the wire: canonical DAG-CBOR and CIDs.

pub mod cid;

pub use self::cid::{
    check_atproto_cid, cid_for_cbor, cid_for_raw, cid_from_digest, parse_atproto_cid, parse_cid,
    CidError, RawCidHasher,
};
