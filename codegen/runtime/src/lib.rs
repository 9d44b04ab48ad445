//! The runtime of the generated `pds-api` crate: the hand-written code that generated types,
//! validators and the dispatcher call, and that the server shares with them.
//!
//! It lives here once; `pds-api` depends on this crate and re-exports it as
//! `pds_api::runtime`, so generated code and the server name it through that path.

pub mod cid_str;
pub mod decode;
pub mod dispatch;
pub mod lex;
pub mod schema;
pub mod serde_value;
pub mod syntax;
pub mod value;
pub mod xrpc;
