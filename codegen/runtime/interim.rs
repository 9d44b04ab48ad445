//! INTERIM stand-ins for `CidLink`, `Bytes`, `BlobRef` (runtime/value.rs) and the syntax types
//! with `validate_format` (runtime/syntax.rs), both owned by branch `data`. Replaced by
//! re-exports in lex.rs once that branch is merged. Format checks here are deliberately shallow.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::serde_value::{deserialize_value, serialize_value};
use super::value::{Cid, Map, Value};

/// A CID link (`{"$link": ...}` in JSON, tag 42 in DAG-CBOR).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CidLink(pub Cid);

impl Serialize for CidLink {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_value(&Value::Link(self.0), s)
    }
}

impl<'de> Deserialize<'de> for CidLink {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match deserialize_value(d)? {
            Value::Link(c) => Ok(CidLink(c)),
            _ => Err(de::Error::custom("expected a CID link")),
        }
    }
}

/// Raw bytes (`{"$bytes": ...}` in JSON, a byte string in DAG-CBOR).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_value(&Value::Bytes(self.0.clone()), s)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match deserialize_value(d)? {
            Value::Bytes(b) => Ok(Bytes(b)),
            _ => Err(de::Error::custom("expected bytes")),
        }
    }
}

/// A blob reference: `{"$type": "blob", "ref": <link>, "mimeType", "size"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobRef {
    pub cid: Cid,
    pub mime_type: String,
    pub size: u64,
}

impl BlobRef {
    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("$type".into(), Value::String("blob".into()));
        m.insert("ref".into(), Value::Link(self.cid));
        m.insert("mimeType".into(), Value::String(self.mime_type.clone()));
        m.insert("size".into(), Value::Integer(self.size as i64));
        Value::Map(m)
    }
}

impl Serialize for BlobRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_value(&self.to_value(), s)
    }
}

impl<'de> Deserialize<'de> for BlobRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = deserialize_value(d)?;
        let m = match &v {
            Value::Map(m) => m,
            _ => return Err(de::Error::custom("expected a blob ref")),
        };
        match (m.get("$type"), m.get("ref"), m.get("mimeType"), m.get("size")) {
            (Some(Value::String(t)), Some(Value::Link(c)), Some(Value::String(mime)), Some(Value::Integer(size)))
                if t == "blob" && *size >= 0 =>
            {
                Ok(BlobRef { cid: *c, mime_type: mime.clone(), size: *size as u64 })
            }
            _ => Err(de::Error::custom("expected a blob ref")),
        }
    }
}

/// A string that failed its format check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Shallow interim format check (the real one is `runtime::syntax::validate_format`).
pub fn validate_format(format: &str, s: &str) -> Result<(), FormatError> {
    let ok = match format {
        "did" => s.starts_with("did:") && s.len() > 6,
        "handle" => s.contains('.') && !s.starts_with('.'),
        "at-identifier" => s.starts_with("did:") || s.contains('.'),
        "nsid" => s.split('.').count() >= 3,
        "at-uri" => s.starts_with("at://"),
        "cid" => Cid::try_from(s).is_ok(),
        "datetime" => s.len() >= 20 && s.as_bytes().get(4) == Some(&b'-'),
        "language" => s.as_bytes().first().is_some_and(u8::is_ascii_alphabetic),
        "tid" => s.len() == 13,
        "record-key" => !s.is_empty() && s != "." && s != "..",
        "uri" => s.contains(':'),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(FormatError(format!("invalid {format}")))
    }
}

macro_rules! format_string {
    ($($name:ident => $format:literal),* $(,)?) => {$(
        #[doc = concat!("A string of lexicon format `", $format, "`, checked when built.")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Checks and wraps a string.
            pub fn new(s: impl Into<String>) -> Result<Self, FormatError> {
                let s = s.into();
                validate_format($format, &s)?;
                Ok($name(s))
            }
            /// The string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::new(s).map_err(de::Error::custom)
            }
        }
    )*};
}

format_string! {
    Did => "did",
    Handle => "handle",
    AtIdentifier => "at-identifier",
    Nsid => "nsid",
    AtUri => "at-uri",
    CidString => "cid",
    Datetime => "datetime",
    Language => "language",
    Tid => "tid",
    RecordKey => "record-key",
    Uri => "uri",
}
