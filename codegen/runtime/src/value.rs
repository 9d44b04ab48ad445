//! The atproto data model as an untyped value: what a record is, exactly as sent.
//!
//! Two wire forms exist. JSON writes links as `{"$link": cid}` and bytes as
//! `{"$bytes": base64}`; DAG-CBOR writes them natively (tag 42, byte strings). The serde
//! impls here pick the form from `is_human_readable()`: JSON for serde_json, IPLD for
//! serde_ipld_dagcbor (links through the `cid` crate's own serde convention).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

pub use cid::Cid;

/// A map in the data model. Keys are strings; the DAG-CBOR encoder orders them canonically.
pub type Map = BTreeMap<String, Value>;

/// One value of the atproto data model. There are no floats: the data model forbids them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    Integer(i64),
    String(String),
    Bytes(Vec<u8>),
    Link(Cid),
    Array(Vec<Value>),
    Map(Map),
}

/// Why a JSON document is not a valid data-model value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataModelError {
    /// Where in the document, as a JSON-pointer-like path (`/a/0/b`); empty at the top.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl DataModelError {
    fn new(message: impl Into<String>) -> DataModelError {
        DataModelError {
            path: String::new(),
            message: message.into(),
        }
    }

    fn within(mut self, segment: &str) -> DataModelError {
        self.path = format!("/{segment}{}", self.path);
        self
    }
}

impl fmt::Display for DataModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "invalid data model value: {}", self.message)
        } else {
            write!(
                f,
                "invalid data model value at {}: {}",
                self.path, self.message
            )
        }
    }
}

impl std::error::Error for DataModelError {}

/// Standard base64 alphabet; padding optional on input (the spec allows both), never written.
const BASE64_LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Encodes bytes the way `$bytes` writes them: standard alphabet, no padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    BASE64_LENIENT.encode(bytes)
}

/// Decodes a `$bytes` string: standard alphabet, with or without padding.
pub fn base64_decode(s: &str) -> Result<Vec<u8>, DataModelError> {
    BASE64_LENIENT
        .decode(s)
        .map_err(|e| DataModelError::new(format!("bad base64: {e}")))
}

fn parse_link(s: &str) -> Result<Cid, DataModelError> {
    super::cid_str::parse_cid(s).map_err(|e| DataModelError::new(format!("bad CID in $link: {e}")))
}

/// The largest magnitude below which every f64 with no fraction is an exact i64.
const I64_BOUND_F64: f64 = 9_223_372_036_854_775_808.0;

impl Value {
    /// Reads a JSON value strictly as the atproto data model: `$link` and `$bytes`
    /// objects become links and bytes (no other keys allowed beside them), floats are
    /// refused (an integral float such as `123.0` is read as the integer), `$type` must
    /// be a non-empty string, and `$type: "blob"` objects must have the blob shape.
    pub fn from_json(json: &serde_json::Value) -> Result<Value, DataModelError> {
        match json {
            serde_json::Value::Null => Ok(Value::Null),
            serde_json::Value::Bool(b) => Ok(Value::Bool(*b)),
            serde_json::Value::Number(n) => number_from_json(n),
            serde_json::Value::String(s) => Ok(Value::String(s.clone())),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| Value::from_json(v).map_err(|e| e.within(&i.to_string())))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            serde_json::Value::Object(obj) => object_from_json(obj),
        }
    }

    /// Reads a JSON document that must be an object (a record, a request body).
    pub fn from_json_object(json: &serde_json::Value) -> Result<Value, DataModelError> {
        if !json.is_object() {
            return Err(DataModelError::new("expected an object"));
        }
        Value::from_json(json)
    }

    /// Writes the value as JSON: links as `{"$link"}` (base32 CID string), bytes as
    /// `{"$bytes"}` (standard base64, no padding).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Integer(i) => serde_json::Value::Number((*i).into()),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Bytes(b) => {
                let mut obj = serde_json::Map::new();
                obj.insert("$bytes".into(), serde_json::Value::String(base64_encode(b)));
                serde_json::Value::Object(obj)
            }
            Value::Link(cid) => {
                let mut obj = serde_json::Map::new();
                obj.insert(
                    "$link".into(),
                    serde_json::Value::String(crate::cid_str::cid_string(cid)),
                );
                serde_json::Value::Object(obj)
            }
            Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
            Value::Map(map) => {
                // Inserted in order: collecting into the map would link a stable sort.
                let mut obj = serde_json::Map::new();
                for (k, v) in map {
                    obj.insert(k.clone(), v.to_json());
                }
                serde_json::Value::Object(obj)
            }
        }
    }

    /// The map inside, if this is a map.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The `$type` of a map, if it has a string one.
    pub fn type_name(&self) -> Option<&str> {
        self.as_map()?.get("$type")?.as_str()
    }

    /// This value as a blob reference, if it is a well-formed `{"$type": "blob", ...}` map.
    pub fn as_blob_ref(&self) -> Option<BlobRef> {
        let map = self.as_map()?;
        if map.len() != 4 || map.get("$type")?.as_str()? != "blob" {
            return None;
        }
        let cid = match map.get("ref")? {
            Value::Link(cid) => *cid,
            _ => return None,
        };
        let mime_type = map.get("mimeType")?.as_str()?.to_owned();
        let size = match map.get("size")? {
            Value::Integer(n) => u64::try_from(*n).ok()?,
            _ => return None,
        };
        Some(BlobRef {
            cid,
            mime_type,
            size,
        })
    }

    /// Whether this is a legacy blob reference: exactly `{"cid": <CID string>, "mimeType": <string>}`.
    pub fn is_legacy_blob(&self) -> bool {
        let Some(map) = self.as_map() else {
            return false;
        };
        map.len() == 2
            && matches!(map.get("mimeType"), Some(Value::String(_)))
            && matches!(map.get("cid"), Some(Value::String(s)) if super::cid_str::parse_cid(s).is_ok())
    }
}

fn number_from_json(n: &serde_json::Number) -> Result<Value, DataModelError> {
    if let Some(i) = n.as_i64() {
        return Ok(Value::Integer(i));
    }
    if n.is_u64() {
        return Err(DataModelError::new(
            "integer out of the 64-bit signed range",
        ));
    }
    match n.as_f64() {
        // JSON does not distinguish 123.0 from 123; only true fractions are floats.
        Some(f) if f.fract() == 0.0 && (-I64_BOUND_F64..I64_BOUND_F64).contains(&f) => {
            Ok(Value::Integer(f as i64))
        }
        _ => Err(DataModelError::new(
            "floats are not allowed in the data model",
        )),
    }
}

fn object_from_json(
    obj: &serde_json::Map<String, serde_json::Value>,
) -> Result<Value, DataModelError> {
    if let Some(link) = obj.get("$link") {
        if obj.len() != 1 {
            return Err(DataModelError::new("$link object with other keys"));
        }
        let s = link
            .as_str()
            .ok_or_else(|| DataModelError::new("$link must be a string"))?;
        return parse_link(s)
            .map(Value::Link)
            .map_err(|e| e.within("$link"));
    }
    if let Some(bytes) = obj.get("$bytes") {
        if obj.len() != 1 {
            return Err(DataModelError::new("$bytes object with other keys"));
        }
        let s = bytes
            .as_str()
            .ok_or_else(|| DataModelError::new("$bytes must be a string"))?;
        return base64_decode(s)
            .map(Value::Bytes)
            .map_err(|e| e.within("$bytes"));
    }
    let mut map = Map::new();
    for (k, v) in obj {
        map.insert(k.clone(), Value::from_json(v).map_err(|e| e.within(k))?);
    }
    check_type_and_blob(&map)?;
    Ok(Value::Map(map))
}

/// `$type` must be a non-empty string; a blob must have exactly the blob shape.
fn check_type_and_blob(map: &Map) -> Result<(), DataModelError> {
    let Some(ty) = map.get("$type") else {
        return Ok(());
    };
    match ty {
        Value::String(s) if !s.is_empty() => {}
        _ => return Err(DataModelError::new("$type must be a non-empty string").within("$type")),
    }
    if ty.as_str() == Some("blob") {
        for key in map.keys() {
            if !matches!(key.as_str(), "$type" | "ref" | "mimeType" | "size") {
                return Err(DataModelError::new(format!(
                    "unexpected key {key:?} in blob"
                )));
            }
        }
        match map.get("ref") {
            Some(Value::Link(_)) => {}
            Some(_) => return Err(DataModelError::new("blob ref must be a $link").within("ref")),
            None => return Err(DataModelError::new("blob without ref")),
        }
        match map.get("mimeType") {
            Some(Value::String(_)) => {}
            Some(_) => {
                return Err(DataModelError::new("blob mimeType must be a string").within("mimeType"))
            }
            None => return Err(DataModelError::new("blob without mimeType")),
        }
        match map.get("size") {
            Some(Value::Integer(n)) if *n >= 0 => {}
            Some(_) => {
                return Err(
                    DataModelError::new("blob size must be a non-negative integer").within("size"),
                )
            }
            None => return Err(DataModelError::new("blob without size")),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// serde: JSON form when human-readable, IPLD form otherwise.

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Integer(i) => serializer.serialize_i64(*i),
            Value::String(s) => serializer.serialize_str(s),
            Value::Bytes(b) => Bytes::serialize_slice(b, serializer),
            Value::Link(cid) => CidLink(*cid).serialize(serializer),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Map(map) => {
                let mut m = serializer.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        if deserializer.is_human_readable() {
            // JSON: read it as JSON, then apply the data-model rules in one place.
            let json = serde_json::Value::deserialize(deserializer)?;
            Value::from_json(&json).map_err(de::Error::custom)
        } else {
            deserializer.deserialize_any(IpldValueVisitor)
        }
    }
}

/// Builds a [`Value`] from a non-human-readable (IPLD) deserializer.
struct IpldValueVisitor;

impl<'de> Visitor<'de> for IpldValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an atproto data model value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(IpldValueVisitor)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Integer(i))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        i64::try_from(u)
            .map(Value::Integer)
            .map_err(|_| E::custom("integer out of the 64-bit signed range"))
    }

    fn visit_i128<E: de::Error>(self, i: i128) -> Result<Value, E> {
        i64::try_from(i)
            .map(Value::Integer)
            .map_err(|_| E::custom("integer out of the 64-bit signed range"))
    }

    fn visit_u128<E: de::Error>(self, u: u128) -> Result<Value, E> {
        i64::try_from(u)
            .map(Value::Integer)
            .map_err(|_| E::custom("integer out of the 64-bit signed range"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value, E> {
        Err(E::custom("floats are not allowed in the data model"))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(b.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, b: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(b))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // Cap the preallocation: the hint comes from untrusted input.
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            if map.insert(key, value).is_some() {
                return Err(de::Error::custom("duplicate map key"));
            }
        }
        Ok(Value::Map(map))
    }

    /// serde_ipld_dagcbor hands tag-42 CIDs over as this newtype (the `cid` crate's convention).
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_bytes(cid::serde::BytesToCidVisitor)
            .map(Value::Link)
    }
}

// ---------------------------------------------------------------------------------------
// Typed helpers the generated types use for `cid-link`, `bytes` and `blob` fields.

/// A `cid-link` field: `{"$link": "<cid>"}` in JSON, a tag-42 CID in DAG-CBOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CidLink(pub Cid);

impl Serialize for CidLink {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            let mut m = serializer.serialize_map(Some(1))?;
            m.serialize_entry("$link", &crate::cid_str::cid_string(&self.0))?;
            m.end()
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for CidLink {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<CidLink, D::Error> {
        if deserializer.is_human_readable() {
            deserializer
                .deserialize_map(SingleKeyVisitor { key: "$link" })
                .and_then(|s| parse_link(&s).map(CidLink).map_err(de::Error::custom))
        } else {
            Cid::deserialize(deserializer).map(CidLink)
        }
    }
}

/// Reads a map that must hold exactly one string entry under `key`.
struct SingleKeyVisitor {
    key: &'static str,
}

impl<'de> Visitor<'de> for SingleKeyVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object with exactly one key {:?}", self.key)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<String, A::Error> {
        let mut found: Option<String> = None;
        while let Some(k) = access.next_key::<String>()? {
            if k != self.key || found.is_some() {
                return Err(de::Error::custom(format!(
                    "unexpected key {k:?} in {} object",
                    self.key
                )));
            }
            found = Some(access.next_value::<String>()?);
        }
        found.ok_or_else(|| de::Error::custom(format!("missing {}", self.key)))
    }
}

/// A `bytes` field: `{"$bytes": "<base64>"}` in JSON, a byte string in DAG-CBOR.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    fn serialize_slice<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            let mut m = serializer.serialize_map(Some(1))?;
            m.serialize_entry("$bytes", &base64_encode(bytes))?;
            m.end()
        } else {
            serializer.serialize_bytes(bytes)
        }
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Bytes::serialize_slice(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        if deserializer.is_human_readable() {
            let s = deserializer.deserialize_map(SingleKeyVisitor { key: "$bytes" })?;
            base64_decode(&s).map(Bytes).map_err(de::Error::custom)
        } else {
            deserializer.deserialize_bytes(BytesVisitor)
        }
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes(b.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, b: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes(b))
    }
}

/// A `blob` field: `{"$type": "blob", "ref": <link>, "mimeType": .., "size": ..}` in both
/// forms (the link written as the form requires). Legacy `{cid, mimeType}` refs are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobRef {
    /// The blob's raw CID.
    pub cid: Cid,
    /// The MIME type declared for it.
    pub mime_type: String,
    /// Its length in bytes.
    pub size: u64,
}

impl BlobRef {
    /// The blob reference as an untyped data-model map.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("$type".into(), Value::String("blob".into()));
        m.insert("ref".into(), Value::Link(self.cid));
        m.insert("mimeType".into(), Value::String(self.mime_type.clone()));
        // Sizes beyond i64 cannot occur for real blobs; saturate rather than wrap.
        m.insert(
            "size".into(),
            Value::Integer(i64::try_from(self.size).unwrap_or(i64::MAX)),
        );
        Value::Map(m)
    }
}

impl Serialize for BlobRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(Some(4))?;
        // Canonical DAG-CBOR key order (length, then bytes); JSON readers do not care.
        m.serialize_entry("ref", &CidLink(self.cid))?;
        m.serialize_entry("size", &self.size)?;
        m.serialize_entry("$type", "blob")?;
        m.serialize_entry("mimeType", &self.mime_type)?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for BlobRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<BlobRef, D::Error> {
        deserializer.deserialize_map(BlobRefVisitor)
    }
}

struct BlobRefVisitor;

impl<'de> Visitor<'de> for BlobRefVisitor {
    type Value = BlobRef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a blob reference")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<BlobRef, A::Error> {
        let (mut ty, mut cid, mut mime, mut size) = (None, None, None, None);
        while let Some(k) = access.next_key::<String>()? {
            match k.as_str() {
                "$type" if ty.is_none() => ty = Some(access.next_value::<String>()?),
                "ref" if cid.is_none() => cid = Some(access.next_value::<CidLink>()?.0),
                "mimeType" if mime.is_none() => mime = Some(access.next_value::<String>()?),
                "size" if size.is_none() => size = Some(access.next_value::<u64>()?),
                _ => return Err(de::Error::custom(format!("unexpected key {k:?} in blob"))),
            }
        }
        if ty.as_deref() != Some("blob") {
            return Err(de::Error::custom("blob must have $type \"blob\""));
        }
        Ok(BlobRef {
            cid: cid.ok_or_else(|| de::Error::missing_field("ref"))?,
            mime_type: mime.ok_or_else(|| de::Error::missing_field("mimeType"))?,
            size: size.ok_or_else(|| de::Error::missing_field("size"))?,
        })
    }
}
