//! Validated atproto string formats (DID, handle, NSID, TID, record key, AT-URI,
//! datetime, language, CID, URI). They live in `pds_api::runtime::syntax` so that the
//! generated validators and the server share one implementation.

pub use pds_api::runtime::syntax::*;
