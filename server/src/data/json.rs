//! JSON objects read and written member by member. The messages between the Worker and its
//! account and the OAuth documents go through these two rather than through per-type serde
//! derives: each derived decoder is a state machine of its own, kilobytes of wasm apiece, while
//! these are shared.

use serde_json::{Map, Value};

/// A JSON object read member by member.
pub struct JsonObject(Map<String, Value>);

impl JsonObject {
    /// The object in `bytes`, or why there is none.
    pub fn parse(bytes: &[u8]) -> Result<JsonObject, String> {
        match serde_json::from_slice(bytes) {
            Ok(Value::Object(o)) => Ok(JsonObject(o)),
            Ok(_) => Err("not a JSON object".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Member `key`, unless absent or null.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// String member `key`: `None` when absent or null, an error naming it when of another type.
    pub fn opt_str(&self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{key} must be a string")),
        }
    }

    /// Required string member `key`.
    pub fn str(&self, key: &str) -> Result<String, String> {
        self.opt_str(key)?
            .ok_or_else(|| format!("{key} is missing"))
    }

    /// Array-of-strings member `key`: `None` when absent or null.
    pub fn opt_strs(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        v.as_array()
            .and_then(|a| {
                a.iter()
                    .map(|s| s.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .map(Some)
            .ok_or_else(|| format!("{key} must be an array of strings"))
    }

    /// Boolean member `key`: `None` when absent or null.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| format!("{key} must be a boolean")),
        }
    }

    /// Unsigned integer member `key`: `None` when absent or null.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("{key} must be an unsigned integer")),
        }
    }

    /// Required unsigned integer member `key`.
    pub fn u64(&self, key: &str) -> Result<u64, String> {
        self.opt_u64(key)?
            .ok_or_else(|| format!("{key} is missing"))
    }

    /// Required integer member `key`.
    pub fn i64(&self, key: &str) -> Result<i64, String> {
        self.get(key)
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("{key} must be an integer"))
    }

    /// Boolean member `key`, false when absent or null.
    pub fn flag(&self, key: &str) -> Result<bool, String> {
        Ok(self.opt_bool(key)?.unwrap_or(false))
    }

    /// Object member `key`: `None` when absent or null.
    pub fn opt_object(&self, key: &str) -> Result<Option<JsonObject>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(JsonObject(o.clone()))),
            Some(_) => Err(format!("{key} must be an object")),
        }
    }

    /// Array member `key`, empty when absent or null.
    pub fn array(&self, key: &str) -> Result<Vec<Value>, String> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(_) => Err(format!("{key} must be an array")),
        }
    }
}

/// A JSON object written member by member: the other half of [`JsonObject`].
#[derive(Default)]
pub struct JsonWriter(Map<String, Value>);

impl JsonWriter {
    /// An empty object.
    pub fn new() -> JsonWriter {
        JsonWriter::default()
    }

    /// Adds member `key`.
    pub fn value(mut self, key: &str, value: Value) -> JsonWriter {
        self.0.insert(key.to_owned(), value);
        self
    }

    /// Adds string member `key`.
    pub fn str(self, key: &str, value: &str) -> JsonWriter {
        self.value(key, Value::String(value.to_owned()))
    }

    /// Adds string member `key` when there is a value.
    pub fn opt_str(self, key: &str, value: Option<&str>) -> JsonWriter {
        match value {
            Some(v) => self.str(key, v),
            None => self,
        }
    }

    /// Adds unsigned integer member `key`.
    pub fn u64(self, key: &str, value: u64) -> JsonWriter {
        self.value(key, Value::from(value))
    }

    /// Adds unsigned integer member `key` when there is a value.
    pub fn opt_u64(self, key: &str, value: Option<u64>) -> JsonWriter {
        match value {
            Some(v) => self.u64(key, v),
            None => self,
        }
    }

    /// Adds integer member `key`.
    pub fn i64(self, key: &str, value: i64) -> JsonWriter {
        self.value(key, Value::from(value))
    }

    /// Adds boolean member `key`.
    pub fn bool(self, key: &str, value: bool) -> JsonWriter {
        self.value(key, Value::Bool(value))
    }

    /// Adds member `key` when there is a value.
    pub fn opt_value(self, key: &str, value: Option<Value>) -> JsonWriter {
        match value {
            Some(v) => self.value(key, v),
            None => self,
        }
    }

    /// The object.
    pub fn finish(self) -> Value {
        Value::Object(self.0)
    }
}

/// A message written and read as a JSON object through [`JsonWriter`] and [`JsonObject`].
pub trait JsonMessage: Sized {
    /// The message as a JSON object.
    fn write(&self) -> Value;
    /// The message in `o`, or why it is not one.
    fn read(o: &JsonObject) -> Result<Self, String>;
}

/// The message in JSON text `bytes`.
pub fn read_message<T: JsonMessage>(bytes: &[u8]) -> Result<T, String> {
    T::read(&JsonObject::parse(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_read_strictly_and_written_without_the_absent_ones() {
        let o = JsonObject::parse(
            br#"{"s":"x","n":7,"neg":-2,"b":true,"nul":null,"o":{"k":"v"},"a":[1,"2"]}"#,
        )
        .unwrap();
        assert_eq!(o.str("s").unwrap(), "x");
        assert_eq!(o.opt_str("missing").unwrap(), None);
        assert_eq!(o.opt_str("nul").unwrap(), None);
        assert_eq!(o.str("nul").unwrap_err(), "nul is missing");
        assert_eq!(o.str("n").unwrap_err(), "n must be a string");
        assert_eq!(o.u64("n").unwrap(), 7);
        assert!(o.u64("neg").is_err());
        assert_eq!(o.i64("neg").unwrap(), -2);
        assert!(o.flag("b").unwrap());
        assert!(!o.flag("missing").unwrap());
        assert!(o.flag("s").is_err());
        assert_eq!(o.opt_object("o").unwrap().unwrap().str("k").unwrap(), "v");
        assert!(o.opt_object("a").is_err());
        assert_eq!(o.array("a").unwrap().len(), 2);
        assert!(o.array("missing").unwrap().is_empty());
        assert!(o.opt_strs("a").is_err());
        assert!(JsonObject::parse(b"[1]").is_err());
        assert!(JsonObject::parse(b"{").is_err());

        let written = JsonWriter::new()
            .str("s", "x")
            .opt_str("none", None)
            .opt_u64("n", Some(3))
            .opt_u64("gone", None)
            .bool("b", false)
            .finish();
        assert_eq!(written.to_string(), r#"{"b":false,"n":3,"s":"x"}"#);
    }
}
