//! Typed values out of a [`Value`] without serde: what the dispatcher uses for params and
//! inputs (already validated against their schema by then).
//!
//! Generated structs, unions and string enums implement [`FromValue`] with a few calls per
//! field into the small functions here. serde's derived decoders, instantiated for the
//! [`Value`] deserializer, cost several KiB of wasm per type; these cost a few dozen bytes per
//! field. Leaf types (strings with a format, blobs, links, bytes) keep their serde decoding,
//! which is small.

pub use super::serde_value::DecodeError;

use super::serde_value::from_value;
use super::value::{Map, Value};

/// A type that can be read out of a [`Value`] in its JSON form.
pub trait FromValue: Sized {
    /// Reads the value, or says what is wrong with it.
    fn from_value(value: &Value) -> Result<Self, DecodeError>;
}

fn invalid(expected: &str, value: &Value) -> DecodeError {
    let found = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Integer(_) => "an integer",
        Value::String(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Link(_) => "a link",
        Value::Array(_) => "an array",
        Value::Map(_) => "an object",
    };
    DecodeError(format!("invalid type: {found}, expected {expected}"))
}

/// The object an object type is read from.
pub fn object(value: &Value) -> Result<&Map, DecodeError> {
    match value {
        Value::Map(m) => Ok(m),
        v => Err(invalid("an object", v)),
    }
}

/// A required field.
pub fn required<T: FromValue>(map: &Map, key: &str) -> Result<T, DecodeError> {
    match map.get(key) {
        Some(v) => T::from_value(v).map_err(|e| within(key, e)),
        None => Err(DecodeError(format!("missing field `{key}`"))),
    }
}

/// An optional field, or a required one that may be `null`: absent and `null` are `None`.
pub fn optional<T: FromValue>(map: &Map, key: &str) -> Result<Option<T>, DecodeError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::from_value(v).map(Some).map_err(|e| within(key, e)),
    }
}

/// An optional, nullable field: absent, `null` and a value are told apart.
pub fn nullable<T: FromValue>(
    map: &Map,
    key: &str,
) -> Result<super::lex::Nullable<T>, DecodeError> {
    use super::lex::Nullable;
    match map.get(key) {
        None => Ok(Nullable::Absent),
        Some(Value::Null) => Ok(Nullable::Null),
        Some(v) => T::from_value(v)
            .map(Nullable::Value)
            .map_err(|e| within(key, e)),
    }
}

fn within(key: &str, e: DecodeError) -> DecodeError {
    DecodeError(format!("{key}: {}", e.0))
}

/// A union member's `$type` (the value must be an object that has one).
pub fn union_type(value: &Value) -> Result<&str, DecodeError> {
    match value {
        Value::Map(m) => match m.get("$type") {
            Some(Value::String(t)) => Ok(t),
            _ => Err(DecodeError(
                "union member must include the \"$type\" property".into(),
            )),
        },
        _ => Err(DecodeError("union member must be an object".into())),
    }
}

/// Reads a known union member; a known `$type` with bad content is an error (never Unknown).
pub fn union_member<T: FromValue>(ty: &str, value: &Value) -> Result<Box<T>, DecodeError> {
    T::from_value(value)
        .map(Box::new)
        .map_err(|e| DecodeError(format!("invalid {ty}: {}", e.0)))
}

/// The error for a `$type` outside a closed union.
pub fn closed_union_error(ty: &str, expected: &[&str]) -> DecodeError {
    DecodeError(format!(
        "$type {ty:?} is not one of {}",
        expected.join(", ")
    ))
}

/// A string, for string enums to read.
pub fn string(value: &Value) -> Result<String, DecodeError> {
    String::from_value(value)
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, DecodeError> {
        match value {
            Value::Bool(b) => Ok(*b),
            v => Err(invalid("a boolean", v)),
        }
    }
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, DecodeError> {
        match value {
            Value::Integer(i) => Ok(*i),
            v => Err(invalid("an integer", v)),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, DecodeError> {
        match value {
            Value::String(s) => Ok(s.clone()),
            v => Err(invalid("a string", v)),
        }
    }
}

impl FromValue for Value {
    fn from_value(value: &Value) -> Result<Self, DecodeError> {
        Ok(value.clone())
    }
}

impl<T: FromValue> FromValue for Vec<T> {
    fn from_value(value: &Value) -> Result<Self, DecodeError> {
        match value {
            Value::Array(items) => items.iter().map(T::from_value).collect(),
            v => Err(invalid("an array", v)),
        }
    }
}

impl<T: FromValue> FromValue for Box<T> {
    fn from_value(value: &Value) -> Result<Self, DecodeError> {
        T::from_value(value).map(Box::new)
    }
}

/// Leaf types read through their serde decoding (JSON form).
macro_rules! through_serde {
    ($($t:ty),* $(,)?) => {
        $(impl FromValue for $t {
            fn from_value(value: &Value) -> Result<Self, DecodeError> {
                from_value(value, true)
            }
        })*
    };
}

through_serde!(
    super::lex::AtIdentifier,
    super::lex::AtUri,
    super::lex::CidString,
    super::lex::Datetime,
    super::lex::Did,
    super::lex::Handle,
    super::lex::Language,
    super::lex::Nsid,
    super::lex::RecordKey,
    super::lex::Tid,
    super::lex::Uri,
    super::lex::BlobRef,
    super::lex::Bytes,
    super::lex::CidLink,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::Nullable;

    fn map(json: &str) -> Map {
        match crate::serde_value::value_from_json(json.as_bytes()).unwrap() {
            Value::Map(m) => m,
            _ => panic!("an object"),
        }
    }

    #[test]
    fn fields_read_as_serde_reads_them() {
        let m = map(r#"{"a": 1, "b": null, "c": "x", "d": [true, false], "e": null}"#);
        assert_eq!(required::<i64>(&m, "a").unwrap(), 1);
        assert_eq!(required::<i64>(&m, "z").unwrap_err().0, "missing field `z`");
        assert_eq!(
            required::<String>(&m, "a").unwrap_err().0,
            "a: invalid type: an integer, expected a string"
        );
        assert_eq!(optional::<String>(&m, "b").unwrap(), None);
        assert_eq!(optional::<String>(&m, "z").unwrap(), None);
        assert_eq!(optional::<String>(&m, "c").unwrap().as_deref(), Some("x"));
        assert_eq!(required::<Vec<bool>>(&m, "d").unwrap(), [true, false]);
        assert_eq!(nullable::<String>(&m, "z").unwrap(), Nullable::Absent);
        assert_eq!(nullable::<String>(&m, "e").unwrap(), Nullable::Null);
        assert_eq!(
            nullable::<String>(&m, "c").unwrap(),
            Nullable::Value("x".into())
        );
        assert!(required::<crate::lex::Did>(&m, "c").is_err());
    }

    #[test]
    fn union_members_need_a_type() {
        let m = Value::Map(map(r#"{"$type": "a.b.c#d", "x": 1}"#));
        assert_eq!(union_type(&m).unwrap(), "a.b.c#d");
        assert!(union_type(&Value::Map(map("{}"))).is_err());
        assert!(union_type(&Value::Integer(1)).is_err());
        assert_eq!(
            union_member::<String>("a.b.c#d", &m).unwrap_err().0,
            "invalid a.b.c#d: invalid type: an object, expected a string"
        );
    }
}
