//! Serde support around the untyped [`Value`]: its JSON and DAG-CBOR forms (chosen by
//! `is_human_readable`), decoding typed values out of a `Value`, and the helpers generated
//! unions use to dispatch on `$type` and to write it.

use std::fmt;

use base64::Engine as _;
use serde::de::{self, IntoDeserializer as _};
use serde::ser::{self, SerializeMap as _};
use serde::{Deserializer, Serialize, Serializer};

use super::value::{Map, Value};

/// Lenient base64 for `$bytes`: standard alphabet, padding optional, as the reference accepts.
const B64_DECODE: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Serializes a value in the form the serializer wants: JSON (`$link`, `$bytes`) when human
/// readable, native bytes and CID links otherwise.
pub fn serialize_value<S: Serializer>(value: &Value, s: S) -> Result<S::Ok, S::Error> {
    let hr = s.is_human_readable();
    match value {
        Value::Null => s.serialize_unit(),
        Value::Bool(b) => s.serialize_bool(*b),
        Value::Integer(i) => s.serialize_i64(*i),
        Value::String(t) => s.serialize_str(t),
        Value::Bytes(b) if hr => {
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry(
                "$bytes",
                &base64::engine::general_purpose::STANDARD_NO_PAD.encode(b),
            )?;
            m.end()
        }
        Value::Bytes(b) => s.serialize_bytes(b),
        Value::Link(c) if hr => {
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry("$link", &crate::cid_str::cid_string(c))?;
            m.end()
        }
        Value::Link(c) => c.serialize(s),
        Value::Array(list) => s.collect_seq(list.iter().map(AsSerialize)),
        Value::Map(m) => s.collect_map(m.iter().map(|(k, v)| (k, AsSerialize(v)))),
    }
}

struct AsSerialize<'a>(&'a Value);

impl Serialize for AsSerialize<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_value(self.0, s)
    }
}

/// Deserializes a value from JSON or DAG-CBOR (recognizing `$link`/`$bytes` in JSON).
pub fn deserialize_value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    let hr = d.is_human_readable();
    d.deserialize_any(ValueVisitor { hr })
}

struct ValueVisitor {
    hr: bool,
}

impl<'de> de::Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an atproto data model value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Integer(i))
    }
    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        i64::try_from(u)
            .map(Value::Integer)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value, E> {
        Err(E::custom(
            "floats are not allowed in the atproto data model",
        ))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_bytes<E>(self, b: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(b.to_vec()))
    }
    fn visit_byte_buf<E>(self, b: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(b))
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        // DAG-CBOR presents tag 42 (a CID) as a newtype struct around its bytes.
        d.deserialize_bytes(cid::serde::BytesToCidVisitor)
            .map(Value::Link)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed { hr: self.hr })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(k) = access.next_key::<String>()? {
            let v = access.next_value_seed(ValueSeed { hr: self.hr })?;
            if m.insert(k, v).is_some() {
                return Err(de::Error::custom("duplicate map key"));
            }
        }
        if self.hr && m.len() == 1 {
            if let Some(Value::String(s)) = m.get("$link") {
                let c = super::cid_str::parse_cid(s)
                    .map_err(|e| de::Error::custom(format!("invalid $link: {e}")))?;
                return Ok(Value::Link(c));
            }
            if let Some(Value::String(s)) = m.get("$bytes") {
                let b = B64_DECODE
                    .decode(s)
                    .map_err(|e| de::Error::custom(format!("invalid $bytes: {e}")))?;
                return Ok(Value::Bytes(b));
            }
        }
        Ok(Value::Map(m))
    }
}

struct ValueSeed {
    hr: bool,
}

impl<'de> de::DeserializeSeed<'de> for ValueSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor { hr: self.hr })
    }
}

/// Parses JSON text into a value (`$link` and `$bytes` recognized).
pub fn value_from_json(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut d = serde_json::Deserializer::from_slice(bytes);
    let v = deserialize_value(&mut d)?;
    d.end()?;
    Ok(v)
}

/// An error decoding a typed value out of a [`Value`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError(msg.to_string())
    }
}

/// Decodes a typed value out of a [`Value`], presenting links and bytes in JSON form when
/// `human_readable` (so types with dual-form serde pick the matching branch).
pub fn from_value<T: de::DeserializeOwned>(
    value: &Value,
    human_readable: bool,
) -> Result<T, DecodeError> {
    T::deserialize(ValueDeserializer {
        value,
        hr: human_readable,
    })
}

/// A serde deserializer reading a borrowed [`Value`].
#[derive(Clone, Copy)]
pub struct ValueDeserializer<'a> {
    pub value: &'a Value,
    pub hr: bool,
}

impl<'de> Deserializer<'de> for ValueDeserializer<'_> {
    type Error = DecodeError;

    fn deserialize_any<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Integer(i) => visitor.visit_i64(*i),
            Value::String(s) => visitor.visit_str(s),
            Value::Bytes(b) if self.hr => {
                let enc = base64::engine::general_purpose::STANDARD_NO_PAD.encode(b);
                visitor.visit_map(de::value::MapDeserializer::new(std::iter::once((
                    "$bytes", enc,
                ))))
            }
            Value::Bytes(b) => visitor.visit_bytes(b),
            Value::Link(c) if self.hr => visitor.visit_map(de::value::MapDeserializer::new(
                std::iter::once(("$link", crate::cid_str::cid_string(c))),
            )),
            Value::Link(c) => {
                visitor.visit_newtype_struct(de::value::BytesDeserializer::new(&c.to_bytes()))
            }
            Value::Array(list) => visitor.visit_seq(SeqAcc {
                iter: list.iter(),
                hr: self.hr,
            }),
            Value::Map(m) => visitor.visit_map(MapAcc {
                iter: m.iter(),
                pending: None,
                hr: self.hr,
            }),
        }
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        match self.value {
            Value::Link(c) if name == cid::serde::CID_SERDE_PRIVATE_IDENTIFIER => {
                visitor.visit_newtype_struct(de::value::BytesDeserializer::new(&c.to_bytes()))
            }
            _ => visitor.visit_newtype_struct(self),
        }
    }

    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        match self.value {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => Err(de::Error::custom("expected a string")),
        }
    }

    fn is_human_readable(&self) -> bool {
        self.hr
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct SeqAcc<'a> {
    iter: std::slice::Iter<'a, Value>,
    hr: bool,
}

impl<'de> de::SeqAccess<'de> for SeqAcc<'_> {
    type Error = DecodeError;
    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        match self.iter.next() {
            Some(v) => seed
                .deserialize(ValueDeserializer {
                    value: v,
                    hr: self.hr,
                })
                .map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct MapAcc<'a> {
    iter: std::collections::btree_map::Iter<'a, String, Value>,
    pending: Option<&'a Value>,
    hr: bool,
}

impl<'de> de::MapAccess<'de> for MapAcc<'_> {
    type Error = DecodeError;
    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        match self.iter.next() {
            Some((k, v)) => {
                self.pending = Some(v);
                seed.deserialize(k.as_str().into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        match self.pending.take() {
            Some(v) => seed.deserialize(ValueDeserializer {
                value: v,
                hr: self.hr,
            }),
            None => Err(de::Error::custom("value requested before key")),
        }
    }
}

/// Reads a union member: buffers the value, returns its `$type` with it (and whether the
/// source was human readable). A missing `$type` is an error.
pub fn buffer_union<'de, D: Deserializer<'de>>(d: D) -> Result<(String, Value, bool), D::Error> {
    let hr = d.is_human_readable();
    let value = deserialize_value(d)?;
    let ty = match &value {
        Value::Map(m) => match m.get("$type") {
            Some(Value::String(t)) => t.clone(),
            _ => {
                return Err(de::Error::custom(
                    "union member must include the \"$type\" property",
                ))
            }
        },
        _ => return Err(de::Error::custom("union member must be an object")),
    };
    Ok((ty, value, hr))
}

/// Decodes a known union member; a known `$type` with bad content is an error (never Unknown).
pub fn union_member<T: de::DeserializeOwned, E: de::Error>(
    ty: &str,
    value: &Value,
    hr: bool,
) -> Result<T, E> {
    from_value(value, hr).map_err(|e| E::custom(format!("invalid {ty}: {e}")))
}

/// The error for a `$type` outside a closed union.
pub fn closed_union_error<E: de::Error>(ty: &str, expected: &[&str]) -> E {
    E::custom(format!(
        "$type {ty:?} is not one of {}",
        expected.join(", ")
    ))
}

/// Serializes a union member: the struct's fields preceded by `"$type": type_name`.
pub fn serialize_member<S: Serializer, T: Serialize>(
    s: S,
    type_name: &str,
    member: &T,
) -> Result<S::Ok, S::Error> {
    member.serialize(TypeInjector {
        inner: s,
        type_name,
    })
}

/// Serializes a struct as a map with a leading `$type` entry.
struct TypeInjector<'t, S> {
    inner: S,
    type_name: &'t str,
}

/// The map under construction by [`TypeInjector`].
pub struct Injected<M> {
    map: M,
}

impl<M: ser::SerializeMap> ser::SerializeStruct for Injected<M> {
    type Ok = M::Ok;
    type Error = M::Error;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), M::Error> {
        self.map.serialize_entry(key, value)
    }
    fn end(self) -> Result<M::Ok, M::Error> {
        self.map.end()
    }
}

fn not_object<E: ser::Error>() -> E {
    E::custom("a union member must serialize as an object")
}

impl<'t, S: Serializer> Serializer for TypeInjector<'t, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = ser::Impossible<S::Ok, S::Error>;
    type SerializeTuple = ser::Impossible<S::Ok, S::Error>;
    type SerializeTupleStruct = ser::Impossible<S::Ok, S::Error>;
    type SerializeTupleVariant = ser::Impossible<S::Ok, S::Error>;
    type SerializeMap = ser::Impossible<S::Ok, S::Error>;
    type SerializeStruct = Injected<S::SerializeMap>;
    type SerializeStructVariant = ser::Impossible<S::Ok, S::Error>;

    fn serialize_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        let mut map = self.inner.serialize_map(Some(len + 1))?;
        map.serialize_entry("$type", self.type_name)?;
        Ok(Injected { map })
    }
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
    fn serialize_bool(self, _: bool) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_i8(self, _: i8) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_i16(self, _: i16) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_i32(self, _: i32) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_i64(self, _: i64) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_u8(self, _: u8) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_u16(self, _: u16) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_u32(self, _: u32) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_u64(self, _: u64) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_f32(self, _: f32) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_f64(self, _: f64) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_char(self, _: char) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_str(self, _: &str) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<S::Ok, S::Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<S::Ok, S::Error> {
        Err(not_object())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        Err(not_object())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, S::Error> {
        Err(not_object())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        Err(not_object())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        Err(not_object())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        Err(not_object())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        Err(not_object())
    }
}
