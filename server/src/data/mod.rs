//! The atproto data model on the wire: canonical DAG-CBOR and CIDs; and the JSON objects of
//! internal messages.

pub mod cbor;
pub mod cid;
pub mod json;

pub use self::cbor::{
    decode, encode, encode_into, from_slice_strict, validate, CborError, CborErrorKind,
    StrictDecodeError,
};
pub use self::cid::{
    check_atproto_cid, cid_for_cbor, cid_for_raw, cid_from_digest, cid_string, parse_atproto_cid,
    parse_cid, CidError, RawCidHasher,
};
pub use pds_api::runtime::value::{Map, Value};

/// Encodes a value as DAG-CBOR and returns its bytes with their dag-cbor CID.
pub fn encode_with_cid(value: &Value) -> (Vec<u8>, ::cid::Cid) {
    let bytes = encode(value);
    let cid = cid_for_cbor(&bytes);
    (bytes, cid)
}
