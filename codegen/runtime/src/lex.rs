//! The data-model and syntax types generated code names, in one place, so generated code does
//! not depend on where the data layer keeps them.

pub use super::syntax::{
    validate_format, AtIdentifier, AtUri, CidString, Datetime, Did, Handle, Language, Nsid,
    RecordKey, Tid, Uri,
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

/// A field that is optional and nullable: absent, explicitly `null`, or a value. The lexicon
/// gives absent and `null` different meanings (putRecord's `swapRecord`: absent = no check,
/// `null` = the record must not exist), so `Option<T>` cannot hold it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Nullable<T> {
    /// The field was not sent.
    #[default]
    Absent,
    /// The field was sent as `null`.
    Null,
    /// The field was sent with a value.
    Value(T),
}

impl<T> Nullable<T> {
    /// Whether the field was not sent (generated structs skip it when serializing).
    pub fn is_absent(&self) -> bool {
        matches!(self, Nullable::Absent)
    }

    /// The value, if one was sent.
    pub fn as_value(&self) -> Option<&T> {
        match self {
            Nullable::Value(v) => Some(v),
            _ => None,
        }
    }

    /// `None` when absent, `Some(None)` when `null`, `Some(Some(v))` for a value.
    pub fn as_option(&self) -> Option<Option<&T>> {
        match self {
            Nullable::Absent => None,
            Nullable::Null => Some(None),
            Nullable::Value(v) => Some(Some(v)),
        }
    }
}

impl<T> From<Option<T>> for Nullable<T> {
    /// `None` becomes `null` (a present field); absence is only `Nullable::Absent`.
    fn from(v: Option<T>) -> Self {
        v.map_or(Nullable::Null, Nullable::Value)
    }
}

impl<T: serde::Serialize> serde::Serialize for Nullable<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Absent fields are skipped by the struct (`skip_serializing_if`); if one is serialized
        // anyway, `null` is the closest JSON.
        match self {
            Nullable::Value(v) => s.serialize_some(v),
            Nullable::Absent | Nullable::Null => s.serialize_none(),
        }
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Nullable<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Called only when the field is present (absence comes from `#[serde(default)]`).
        Ok(Option::<T>::deserialize(d)?.into())
    }
}
