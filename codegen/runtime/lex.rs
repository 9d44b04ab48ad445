//! The data-model and syntax types generated code names, in one place, so generated code does
//! not depend on where the data layer keeps them.

pub use super::syntax::{
    validate_format, AtIdentifier, AtUri, CidString, Datetime, Did, Handle, Language, Nsid, RecordKey, Tid, Uri,
};
pub use super::value::{BlobRef, Bytes, CidLink, Value};

/// One permission of a lexicon permission set, as static data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// `repo`, `rpc`, `blob`, `account`, `identity`, ...
    pub resource: &'static str,
    pub action: &'static [&'static str],
    pub collection: &'static [&'static str],
    pub lxm: &'static [&'static str],
    pub aud: Option<&'static str>,
    pub inherit_aud: bool,
}
