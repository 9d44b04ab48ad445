//! Lexicon schemas as static data, and the validator that checks an untyped value against
//! them. Generated modules emit one `static` per definition; validation interprets them, so
//! every record, input and params type shares one small, well-tested code path.

use std::fmt;

use super::value::{Map, Value};

/// A schema node.
#[derive(Debug)]
pub enum Schema {
    Boolean {
        const_: Option<bool>,
    },
    Integer(IntegerSchema),
    String(StringSchema),
    Bytes {
        min_length: Option<u64>,
        max_length: Option<u64>,
    },
    CidLink,
    Blob {
        accept: &'static [&'static str],
        max_size: Option<u64>,
    },
    Array {
        items: &'static Schema,
        min_length: Option<u64>,
        max_length: Option<u64>,
    },
    Object(ObjectSchema),
    /// A named definition elsewhere.
    Ref(&'static Schema),
    /// Members by fully qualified name (`nsid#name`).
    Union {
        refs: &'static [(&'static str, &'static Schema)],
        closed: bool,
    },
    Unknown,
    /// A token: a named constant, valid only as a string value of itself.
    Token(&'static str),
}

/// Integer constraints.
#[derive(Debug)]
pub struct IntegerSchema {
    pub minimum: Option<i64>,
    pub maximum: Option<i64>,
    pub enum_: Option<&'static [i64]>,
    pub const_: Option<i64>,
    pub default: Option<i64>,
}

impl IntegerSchema {
    /// No constraints (the base for struct-update syntax in generated statics).
    pub const NONE: IntegerSchema = IntegerSchema {
        minimum: None,
        maximum: None,
        enum_: None,
        const_: None,
        default: None,
    };
}

/// String constraints.
#[derive(Debug)]
pub struct StringSchema {
    /// Lexicon format name (`did`, `at-uri`, ...).
    pub format: Option<&'static str>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_graphemes: Option<u64>,
    pub max_graphemes: Option<u64>,
    pub enum_: Option<&'static [&'static str]>,
    pub const_: Option<&'static str>,
    pub default: Option<&'static str>,
}

impl StringSchema {
    /// No constraints (the base for struct-update syntax in generated statics).
    pub const NONE: StringSchema = StringSchema {
        format: None,
        min_length: None,
        max_length: None,
        min_graphemes: None,
        max_graphemes: None,
        enum_: None,
        const_: None,
        default: None,
    };
}

/// Object constraints. Properties are sorted by name.
#[derive(Debug)]
pub struct ObjectSchema {
    pub required: &'static [&'static str],
    pub nullable: &'static [&'static str],
    pub properties: &'static [(&'static str, Schema)],
}

impl ObjectSchema {
    /// The schema with no properties (methods without params).
    pub const EMPTY: ObjectSchema = ObjectSchema {
        required: &[],
        nullable: &[],
        properties: &[],
    };

    /// The schema of one property.
    pub fn property(&self, name: &str) -> Option<&Schema> {
        self.properties
            .binary_search_by(|(k, _)| (*k).cmp(name))
            .ok()
            .map(|i| &self.properties[i].1)
    }
}

/// A value that does not match its schema: the path of the first problem and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Slash-separated, rooted at `Record`, `Input`, `Params`, ... (`Record/embed/images/0/alt`).
    pub path: String,
    /// The complete message, e.g. `Record/text must not be longer than 300 graphemes`.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValidationError {}

/// A path into the value being validated, kept on the stack: nothing allocates unless
/// validation fails.
#[derive(Clone, Copy)]
pub enum Path<'a> {
    Root(&'a str),
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        match self {
            Path::Root(s) => (*s).to_string(),
            Path::Key(p, k) => format!("{}/{k}", p.render()),
            Path::Index(p, i) => format!("{}/{i}", p.render()),
        }
    }

    fn fail<T>(&self, what: impl fmt::Display) -> Result<T, ValidationError> {
        let path = self.render();
        Err(ValidationError {
            message: format!("{path} {what}"),
            path,
        })
    }
}

type VResult = Result<(), ValidationError>;

/// Validates `value` against `schema`; `root` names the top of the path (`Record`, `Input`).
pub fn validate(schema: &Schema, value: &Value, root: &str) -> VResult {
    check(schema, value, &Path::Root(root))
}

/// Validates a record: a map whose properties match the record schema.
pub fn validate_record(schema: &Schema, value: &Value) -> VResult {
    check(schema, value, &Path::Root("Record"))
}

/// Validates a record of collection `nsid`: `$type` must name the collection, then the schema.
pub fn validate_record_of(nsid: &str, schema: &Schema, value: &Value) -> VResult {
    let root = Path::Root("Record");
    match value {
        Value::Map(m) => match m.get("$type") {
            Some(Value::String(t)) if t == nsid => {}
            Some(Value::String(t)) => {
                return Err(ValidationError {
                    path: "Record/$type".into(),
                    message: format!("Invalid $type: must be {nsid}, got {t}"),
                })
            }
            _ => return Path::Key(&root, "$type").fail("must be a string"),
        },
        _ => return root.fail("must be an object"),
    }
    check(schema, value, &root)
}

fn is_blob_map(m: &Map) -> bool {
    matches!(m.get("$type"), Some(Value::String(t)) if t == "blob")
}

fn check(schema: &Schema, value: &Value, path: &Path<'_>) -> VResult {
    match schema {
        Schema::Boolean { const_ } => match value {
            Value::Bool(b) => match const_ {
                Some(c) if c != b => path.fail(format_args!("must be {c}")),
                _ => Ok(()),
            },
            _ => path.fail("must be a boolean"),
        },
        Schema::Integer(s) => match value {
            Value::Integer(i) => check_integer(s, *i, path),
            _ => path.fail("must be an integer"),
        },
        Schema::String(s) => match value {
            Value::String(text) => check_string(s, text, path),
            _ => path.fail("must be a string"),
        },
        Schema::Bytes {
            min_length,
            max_length,
        } => match value {
            Value::Bytes(b) => {
                let n = b.len() as u64;
                if let Some(max) = max_length {
                    if n > *max {
                        return path.fail(format_args!("must not be larger than {max} bytes"));
                    }
                }
                if let Some(min) = min_length {
                    if n < *min {
                        return path.fail(format_args!("must not be smaller than {min} bytes"));
                    }
                }
                Ok(())
            }
            _ => path.fail("must be a byte array"),
        },
        Schema::CidLink => match value {
            Value::Link(_) => Ok(()),
            _ => path.fail("must be a CID"),
        },
        Schema::Blob { accept, max_size } => check_blob(accept, *max_size, value, path),
        Schema::Array {
            items,
            min_length,
            max_length,
        } => match value {
            Value::Array(list) => {
                let n = list.len() as u64;
                if let Some(max) = max_length {
                    if n > *max {
                        return path.fail(format_args!("must not have more than {max} elements"));
                    }
                }
                if let Some(min) = min_length {
                    if n < *min {
                        return path.fail(format_args!("must not have fewer than {min} elements"));
                    }
                }
                for (i, item) in list.iter().enumerate() {
                    check(items, item, &Path::Index(path, i))?;
                }
                Ok(())
            }
            _ => path.fail("must be an array"),
        },
        Schema::Object(o) => match value {
            Value::Map(m) => check_object(o, m, path),
            _ => path.fail("must be an object"),
        },
        Schema::Ref(target) => check(target, value, path),
        Schema::Union { refs, closed } => check_union(refs, *closed, value, path),
        Schema::Unknown => match value {
            Value::Map(m) if !is_blob_map(m) => Ok(()),
            _ => path.fail("must be an object"),
        },
        Schema::Token(name) => match value {
            Value::String(s) if s == name => Ok(()),
            _ => path.fail(format_args!("must be {name}")),
        },
    }
}

fn check_integer(s: &IntegerSchema, i: i64, path: &Path<'_>) -> VResult {
    if let Some(c) = s.const_ {
        if i != c {
            return path.fail(format_args!("must be {c}"));
        }
    }
    if let Some(list) = s.enum_ {
        if !list.contains(&i) {
            let shown: Vec<String> = list.iter().map(i64::to_string).collect();
            return path.fail(format_args!("must be one of ({})", shown.join("|")));
        }
    }
    if let Some(max) = s.maximum {
        if i > max {
            return path.fail(format_args!("can not be greater than {max}"));
        }
    }
    if let Some(min) = s.minimum {
        if i < min {
            return path.fail(format_args!("can not be less than {min}"));
        }
    }
    Ok(())
}

/// The extended grapheme clusters of `text` (Unicode UAX #29), as `maxGraphemes` counts them.
#[cfg(not(target_arch = "wasm32"))]
fn grapheme_count(text: &str) -> u64 {
    unicode_segmentation::UnicodeSegmentation::graphemes(text, true).count() as u64
}

/// The extended grapheme clusters of `text`, counted by the JavaScript runtime's
/// `Intl.Segmenter` (the reference PDS counts in JavaScript too).
#[cfg(target_arch = "wasm32")]
fn grapheme_count(text: &str) -> u64 {
    let segmenter = js_sys::Intl::Segmenter::new(&js_sys::Array::new(), &js_sys::Object::new());
    u64::from(js_sys::Array::from(&segmenter.segment(text)).length())
}

fn check_string(s: &StringSchema, text: &str, path: &Path<'_>) -> VResult {
    if let Some(c) = s.const_ {
        if text != c {
            return path.fail(format_args!("must be {c}"));
        }
    }
    if let Some(list) = s.enum_ {
        if !list.contains(&text) {
            return path.fail(format_args!("must be one of ({})", list.join("|")));
        }
    }
    let bytes = text.len() as u64;
    if let Some(max) = s.max_length {
        if bytes > max {
            return path.fail(format_args!("must not be longer than {max} characters"));
        }
    }
    if let Some(min) = s.min_length {
        if bytes < min {
            return path.fail(format_args!("must not be shorter than {min} characters"));
        }
    }
    // A grapheme is at least one byte: text no longer in bytes than the maximum is within it.
    let may_exceed_max = s.max_graphemes.is_some_and(|max| bytes > max);
    if may_exceed_max || s.min_graphemes.is_some() {
        let graphemes = grapheme_count(text);
        if let Some(max) = s.max_graphemes {
            if graphemes > max {
                return path.fail(format_args!("must not be longer than {max} graphemes"));
            }
        }
        if let Some(min) = s.min_graphemes {
            if graphemes < min {
                return path.fail(format_args!("must not be shorter than {min} graphemes"));
            }
        }
    }
    if let Some(format) = s.format {
        if let Err(e) = super::lex::validate_format(format, text) {
            return path.fail(format_args!("must be a valid {format}: {e}"));
        }
    }
    Ok(())
}

/// Whether a MIME type matches an `accept` pattern (`image/*`, `*/*`, exact).
pub fn mime_matches(pattern: &str, mime: &str) -> bool {
    if pattern == "*/*" {
        return true;
    }
    match pattern.strip_suffix("/*") {
        Some(prefix) => mime
            .split_once('/')
            .is_some_and(|(top, _)| top.eq_ignore_ascii_case(prefix)),
        None => pattern.eq_ignore_ascii_case(mime),
    }
}

fn check_blob(accept: &[&str], max_size: Option<u64>, value: &Value, path: &Path<'_>) -> VResult {
    let m = match value {
        Value::Map(m) => m,
        _ => return path.fail("should be a blob ref"),
    };
    let (mime, size) = if is_blob_map(m) {
        let ok_ref = matches!(m.get("ref"), Some(Value::Link(_)));
        match (m.get("mimeType"), m.get("size")) {
            (Some(Value::String(mime)), Some(Value::Integer(size))) if ok_ref && *size >= 0 => {
                (mime.as_str(), Some(*size as u64))
            }
            _ => return path.fail("should be a blob ref"),
        }
    } else {
        // The legacy form `{cid, mimeType}` written by early clients: no size known.
        match (m.get("cid"), m.get("mimeType")) {
            (Some(Value::String(_)), Some(Value::String(mime))) if m.len() == 2 => {
                (mime.as_str(), None)
            }
            _ => return path.fail("should be a blob ref"),
        }
    };
    if let (Some(max), Some(size)) = (max_size, size) {
        if size > max {
            return path.fail(format_args!("is too big ({max} bytes max)"));
        }
    }
    if !accept.is_empty() && !accept.iter().any(|p| mime_matches(p, mime)) {
        return path.fail(format_args!(
            "mime type is not accepted ({})",
            accept.join(", ")
        ));
    }
    Ok(())
}

fn check_object(o: &ObjectSchema, m: &Map, path: &Path<'_>) -> VResult {
    for name in o.required {
        match m.get(*name) {
            None => return path.fail(format_args!("must have the property \"{name}\"")),
            Some(Value::Null) if !o.nullable.contains(name) => {
                return path.fail(format_args!("must have the property \"{name}\""))
            }
            _ => {}
        }
    }
    for (name, schema) in o.properties {
        let v = match m.get(*name) {
            None => continue,
            Some(v) => v,
        };
        if matches!(v, Value::Null) && o.nullable.contains(name) {
            continue;
        }
        check(schema, v, &Path::Key(path, name))?;
    }
    Ok(())
}

/// Whether `ty` (a `$type` value) names the member `full` (`nsid#name`); `#main` may be omitted.
pub fn type_matches(full: &str, ty: &str) -> bool {
    full == ty || full.strip_suffix("#main") == Some(ty)
}

fn check_union(refs: &[(&str, &Schema)], closed: bool, value: &Value, path: &Path<'_>) -> VResult {
    let m = match value {
        Value::Map(m) => m,
        _ => return path.fail("must be an object which includes the \"$type\" property"),
    };
    let ty = match m.get("$type") {
        Some(Value::String(t)) => t.as_str(),
        _ => return path.fail("must be an object which includes the \"$type\" property"),
    };
    match refs.iter().find(|(full, _)| type_matches(full, ty)) {
        Some((_, schema)) => check(schema, value, path),
        None if closed => {
            let names: Vec<&str> = refs.iter().map(|(n, _)| *n).collect();
            path.fail(format_args!("$type must be one of {}", names.join(", ")))
        }
        None => Ok(()),
    }
}

/// Decodes a query string against a params schema: values coerced to the declared types,
/// repeated keys gathered into arrays, defaults applied, then every constraint checked.
/// Unknown parameters are ignored, as the reference does.
pub fn decode_params(schema: &ObjectSchema, query: &str) -> Result<Map, ValidationError> {
    let root = Path::Root("Params");
    let mut raw: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k).map_err(|m| ValidationError {
            path: "Params".into(),
            message: m,
        })?;
        let val = percent_decode(v).map_err(|m| ValidationError {
            path: "Params".into(),
            message: m,
        })?;
        raw.push((key, val));
    }
    let mut out = Map::new();
    for (name, prop) in schema.properties {
        let path = Path::Key(&root, name);
        let values: Vec<&str> = raw
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        if values.is_empty() {
            if let Some(d) = default_of(prop) {
                out.insert((*name).to_string(), d);
            }
            continue;
        }
        let value = match prop {
            Schema::Array { items, .. } => Value::Array(
                values
                    .iter()
                    .map(|v| coerce(items, v, &path))
                    .collect::<Result<_, _>>()?,
            ),
            _ => coerce(prop, values[values.len() - 1], &path)?,
        };
        out.insert((*name).to_string(), value);
    }
    check_object(schema, &out, &root)?;
    Ok(out)
}

fn default_of(schema: &Schema) -> Option<Value> {
    match schema {
        Schema::Integer(IntegerSchema {
            default: Some(d), ..
        }) => Some(Value::Integer(*d)),
        Schema::String(StringSchema {
            default: Some(d), ..
        }) => Some(Value::String((*d).to_string())),
        _ => None,
    }
}

fn coerce(schema: &Schema, text: &str, path: &Path<'_>) -> Result<Value, ValidationError> {
    match schema {
        Schema::Integer(_) => match text.parse::<i64>() {
            Ok(i) => Ok(Value::Integer(i)),
            Err(_) => path.fail("must be an integer"),
        },
        Schema::Boolean { .. } => match text {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => path.fail("must be a boolean"),
        },
        _ => Ok(Value::String(text.to_string())),
    }
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
pub fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => out.push(byte),
                    None => return Err(format!("invalid percent-encoding in query string: {s:?}")),
                }
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "query string is not valid UTF-8".to_string())
}
