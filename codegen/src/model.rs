//! The typed model of the lexicon language: what a parsed document means.

use std::collections::BTreeMap;

/// One lexicon document (one NSID), as read from one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The file it came from, as given to the parser (used in error messages).
    pub file: String,
    /// The document's NSID.
    pub id: String,
    pub description: Option<String>,
    /// Definitions by name (`main` is the primary one).
    pub defs: BTreeMap<String, Def>,
}

/// A top-level definition.
#[derive(Debug, Clone, PartialEq)]
pub enum Def {
    Query(Method),
    Procedure(Method),
    Subscription(Subscription),
    Record(Record),
    PermissionSet(PermissionSet),
    Token {
        description: Option<String>,
    },
    /// Any non-primary type (object, string, array, ...).
    Type(Type),
}

impl Def {
    /// The lexicon `type` name of this def.
    pub fn kind(&self) -> &'static str {
        match self {
            Def::Query(_) => "query",
            Def::Procedure(_) => "procedure",
            Def::Subscription(_) => "subscription",
            Def::Record(_) => "record",
            Def::PermissionSet(_) => "permission-set",
            Def::Token { .. } => "token",
            Def::Type(t) => t.kind.name(),
        }
    }
}

/// A query or procedure.
#[derive(Debug, Clone, PartialEq)]
pub struct Method {
    pub description: Option<String>,
    pub parameters: Option<Params>,
    pub input: Option<Body>,
    pub output: Option<Body>,
    pub errors: Vec<ErrorDef>,
}

/// A subscription (event stream).
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub description: Option<String>,
    pub parameters: Option<Params>,
    /// The message schema (a union in practice).
    pub message: Option<Type>,
    pub errors: Vec<ErrorDef>,
}

/// A declared XRPC error.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorDef {
    pub name: String,
    pub description: Option<String>,
}

/// An input or output body.
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    pub description: Option<String>,
    /// MIME type, e.g. `application/json`, `*/*`.
    pub encoding: String,
    /// Present for JSON bodies with a schema; absent for raw bodies.
    pub schema: Option<Type>,
}

/// Query parameters: primitives and arrays of primitives.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub description: Option<String>,
    pub required: Vec<String>,
    pub properties: BTreeMap<String, Type>,
}

/// A record type.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub description: Option<String>,
    pub key: RecordKey,
    pub record: Object,
}

/// The record key type of a record collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Tid,
    Nsid,
    Any,
    Literal(String),
}

/// A permission set (OAuth scope bundle).
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionSet {
    pub title: Option<String>,
    pub title_lang: BTreeMap<String, String>,
    pub detail: Option<String>,
    pub detail_lang: BTreeMap<String, String>,
    pub permissions: Vec<Permission>,
}

/// One permission of a permission set.
#[derive(Debug, Clone, PartialEq)]
pub struct Permission {
    /// `repo`, `rpc`, `blob`, `account`, `identity`, ...
    pub resource: String,
    pub action: Vec<String>,
    pub collection: Vec<String>,
    pub lxm: Vec<String>,
    pub aud: Option<String>,
    pub inherit_aud: Option<bool>,
    /// Any other fields, kept as given.
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// An object schema.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object {
    pub description: Option<String>,
    pub required: Vec<String>,
    pub nullable: Vec<String>,
    pub properties: BTreeMap<String, Type>,
}

/// A field or non-primary definition type, with its description.
#[derive(Debug, Clone, PartialEq)]
pub struct Type {
    pub description: Option<String>,
    pub kind: Kind,
}

/// The lexicon field types.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Boolean {
        default: Option<bool>,
        const_: Option<bool>,
    },
    Integer {
        minimum: Option<i64>,
        maximum: Option<i64>,
        enum_: Option<Vec<i64>>,
        default: Option<i64>,
        const_: Option<i64>,
    },
    String(StringType),
    Bytes {
        min_length: Option<u64>,
        max_length: Option<u64>,
    },
    CidLink,
    Blob {
        accept: Option<Vec<String>>,
        max_size: Option<u64>,
    },
    Array {
        items: Box<Type>,
        min_length: Option<u64>,
        max_length: Option<u64>,
    },
    Object(Object),
    /// A reference, resolved to a fully qualified `nsid#name` (`#main` for bare NSIDs).
    Ref(String),
    /// A union of references, each fully qualified.
    Union {
        refs: Vec<String>,
        closed: bool,
    },
    Unknown,
}

impl Kind {
    /// The lexicon `type` name.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Boolean { .. } => "boolean",
            Kind::Integer { .. } => "integer",
            Kind::String(_) => "string",
            Kind::Bytes { .. } => "bytes",
            Kind::CidLink => "cid-link",
            Kind::Blob { .. } => "blob",
            Kind::Array { .. } => "array",
            Kind::Object(_) => "object",
            Kind::Ref(_) => "ref",
            Kind::Union { .. } => "union",
            Kind::Unknown => "unknown",
        }
    }
}

/// A string type and its constraints.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StringType {
    pub format: Option<Format>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_graphemes: Option<u64>,
    pub max_graphemes: Option<u64>,
    pub enum_: Option<Vec<String>>,
    pub known_values: Option<Vec<String>>,
    pub const_: Option<String>,
    pub default: Option<String>,
}

/// The string formats of the lexicon language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    AtIdentifier,
    AtUri,
    Cid,
    Datetime,
    Did,
    Handle,
    Nsid,
    Tid,
    RecordKey,
    Uri,
    Language,
}

impl Format {
    /// All formats with their lexicon names.
    pub const ALL: [(Format, &'static str); 11] = [
        (Format::AtIdentifier, "at-identifier"),
        (Format::AtUri, "at-uri"),
        (Format::Cid, "cid"),
        (Format::Datetime, "datetime"),
        (Format::Did, "did"),
        (Format::Handle, "handle"),
        (Format::Nsid, "nsid"),
        (Format::Tid, "tid"),
        (Format::RecordKey, "record-key"),
        (Format::Uri, "uri"),
        (Format::Language, "language"),
    ];

    /// Parses a lexicon format name.
    pub fn from_name(s: &str) -> Option<Format> {
        Self::ALL.iter().find(|(_, n)| *n == s).map(|(f, _)| *f)
    }

    /// The lexicon name of the format.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(f, _)| *f == self)
            .map(|(_, n)| *n)
            .unwrap_or("")
    }

    /// The name of the validated type in `runtime::syntax`.
    pub fn rust_type(self) -> &'static str {
        match self {
            Format::AtIdentifier => "AtIdentifier",
            Format::AtUri => "AtUri",
            Format::Cid => "CidString",
            Format::Datetime => "Datetime",
            Format::Did => "Did",
            Format::Handle => "Handle",
            Format::Nsid => "Nsid",
            Format::Tid => "Tid",
            Format::RecordKey => "RecordKey",
            Format::Uri => "Uri",
            Format::Language => "Language",
        }
    }
}

/// All documents, indexed by NSID.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub docs: BTreeMap<String, Document>,
}

impl Corpus {
    /// Looks up a fully qualified `nsid#name` reference.
    pub fn resolve(&self, r: &str) -> Option<&Def> {
        let (nsid, name) = r.split_once('#')?;
        self.docs.get(nsid)?.defs.get(name)
    }
}
