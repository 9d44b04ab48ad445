//! JSON lexicon documents -> the typed model, rejecting malformed documents with the file
//! and the JSON path of the first problem.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value as Json};

use crate::model::*;

/// A malformed lexicon document: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexiconError {
    pub file: String,
    /// Dotted JSON path, e.g. `defs.main.input.schema.properties.foo`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for LexiconError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.message)
        }
    }
}

impl std::error::Error for LexiconError {}

type Result<T> = std::result::Result<T, LexiconError>;

/// Checks NSID syntax: at least three dot-separated segments, domain segments of
/// letters, digits and inner hyphens (the first not starting with a digit), a name
/// segment of letters and digits starting with a letter.
pub fn is_valid_nsid(s: &str) -> bool {
    if s.len() > 317 || !s.is_ascii() {
        return false;
    }
    let segs: Vec<&str> = s.split('.').collect();
    if segs.len() < 3 {
        return false;
    }
    let (name, domain) = match segs.split_last() {
        Some(x) => x,
        None => return false,
    };
    for (i, seg) in domain.iter().enumerate() {
        let b = seg.as_bytes();
        if b.is_empty() || b.len() > 63 {
            return false;
        }
        if !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-') {
            return false;
        }
        if b[0] == b'-' || b[b.len() - 1] == b'-' || (i == 0 && b[0].is_ascii_digit()) {
            return false;
        }
    }
    let nb = name.as_bytes();
    !nb.is_empty()
        && nb.len() <= 63
        && nb[0].is_ascii_alphabetic()
        && nb.iter().all(|c| c.is_ascii_alphanumeric())
}

/// Walks one document, tracking the JSON path.
struct Parser<'a> {
    file: &'a str,
    id: String,
    /// Every reference met, with the path where it was met (checked by [`check_refs`]).
    refs: Vec<(String, String)>,
}

/// Parses one document. `file` names it in errors.
pub fn parse_document(file: &str, json: &Json) -> Result<(Document, Vec<(String, String)>)> {
    let err = |path: &str, message: String| LexiconError {
        file: file.to_string(),
        path: path.to_string(),
        message,
    };
    let top = json
        .as_object()
        .ok_or_else(|| err("", "document must be an object".into()))?;
    match top.get("lexicon") {
        Some(Json::Number(n)) if n.as_i64() == Some(1) => {}
        Some(other) => return Err(err("lexicon", format!("must be 1, found {other}"))),
        None => return Err(err("lexicon", "missing".into())),
    }
    let id = match top.get("id") {
        Some(Json::String(s)) if is_valid_nsid(s) => s.clone(),
        Some(Json::String(s)) => return Err(err("id", format!("invalid NSID {s:?}"))),
        Some(other) => return Err(err("id", format!("must be a string, found {other}"))),
        None => return Err(err("id", "missing".into())),
    };
    let mut p = Parser {
        file,
        id: id.clone(),
        refs: Vec::new(),
    };
    let description = p.opt_str(top, "", "description")?;
    let defs_json = match top.get("defs") {
        Some(Json::Object(m)) => m,
        Some(_) => return Err(err("defs", "must be an object".into())),
        None => return Err(err("defs", "missing".into())),
    };
    let mut defs = BTreeMap::new();
    for (name, d) in defs_json {
        let path = format!("defs.{name}");
        defs.insert(name.clone(), p.def(&path, name, d)?);
    }
    let doc = Document {
        file: file.to_string(),
        id,
        description,
        defs,
    };
    Ok((doc, p.refs))
}

/// Parses a set of `(file, json)` documents and checks that every reference resolves.
pub fn parse_corpus(files: &[(String, Json)]) -> Result<Corpus> {
    let mut corpus = Corpus::default();
    let mut all_refs = Vec::new();
    for (file, json) in files {
        let (doc, refs) = parse_document(file, json)?;
        if let Some(prev) = corpus.docs.get(&doc.id) {
            return Err(LexiconError {
                file: file.clone(),
                path: "id".into(),
                message: format!("duplicate id {} (also in {})", doc.id, prev.file),
            });
        }
        all_refs.push((file.clone(), refs));
        corpus.docs.insert(doc.id.clone(), doc);
    }
    for (file, refs) in &all_refs {
        check_refs(&corpus, file, refs)?;
    }
    Ok(corpus)
}

/// Checks that references resolve to a def that can be referenced (not a primary type,
/// except records, which a ref may name).
pub fn check_refs(corpus: &Corpus, file: &str, refs: &[(String, String)]) -> Result<()> {
    for (path, target) in refs {
        match corpus.resolve(target) {
            None => {
                return Err(LexiconError {
                    file: file.to_string(),
                    path: path.clone(),
                    message: format!("unresolved reference {target:?}"),
                })
            }
            Some(
                Def::Query(_) | Def::Procedure(_) | Def::Subscription(_) | Def::PermissionSet(_),
            ) => {
                return Err(LexiconError {
                    file: file.to_string(),
                    path: path.clone(),
                    message: format!("reference {target:?} names a non-data definition"),
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

impl Parser<'_> {
    fn err(&self, path: &str, message: impl Into<String>) -> LexiconError {
        LexiconError {
            file: self.file.to_string(),
            path: path.to_string(),
            message: message.into(),
        }
    }

    fn join(path: &str, key: &str) -> String {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    }

    fn obj<'j>(&self, path: &str, v: &'j Json) -> Result<&'j Map<String, Json>> {
        v.as_object()
            .ok_or_else(|| self.err(path, "must be an object"))
    }

    fn opt_str(&self, m: &Map<String, Json>, path: &str, key: &str) -> Result<Option<String>> {
        match m.get(key) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.err(&Self::join(path, key), "must be a string")),
        }
    }

    fn opt_bool(&self, m: &Map<String, Json>, path: &str, key: &str) -> Result<Option<bool>> {
        match m.get(key) {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.err(&Self::join(path, key), "must be a boolean")),
        }
    }

    fn opt_int(&self, m: &Map<String, Json>, path: &str, key: &str) -> Result<Option<i64>> {
        match m.get(key) {
            None => Ok(None),
            Some(Json::Number(n)) if n.is_i64() => Ok(n.as_i64()),
            Some(_) => Err(self.err(&Self::join(path, key), "must be an integer")),
        }
    }

    fn opt_uint(&self, m: &Map<String, Json>, path: &str, key: &str) -> Result<Option<u64>> {
        match m.get(key) {
            None => Ok(None),
            Some(Json::Number(n)) if n.is_u64() => Ok(n.as_u64()),
            Some(_) => Err(self.err(&Self::join(path, key), "must be a non-negative integer")),
        }
    }

    fn opt_str_list(
        &self,
        m: &Map<String, Json>,
        path: &str,
        key: &str,
    ) -> Result<Option<Vec<String>>> {
        let p = Self::join(path, key);
        match m.get(key) {
            None => Ok(None),
            Some(Json::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.err(&format!("{p}.{i}"), "must be a string"))
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(_) => Err(self.err(&p, "must be an array of strings")),
        }
    }

    fn type_name<'j>(&self, path: &str, m: &'j Map<String, Json>) -> Result<&'j str> {
        match m.get("type") {
            Some(Json::String(s)) => Ok(s),
            Some(_) => Err(self.err(&Self::join(path, "type"), "must be a string")),
            None => Err(self.err(path, "missing \"type\"")),
        }
    }

    fn def(&mut self, path: &str, name: &str, v: &Json) -> Result<Def> {
        let m = self.obj(path, v)?;
        let ty = self.type_name(path, m)?;
        let primary = matches!(
            ty,
            "record" | "query" | "procedure" | "subscription" | "permission-set"
        );
        if primary && name != "main" {
            return Err(self.err(path, format!("{ty} definitions must be named main")));
        }
        let description = self.opt_str(m, path, "description")?;
        Ok(match ty {
            "query" | "procedure" => {
                let parameters = self.opt_params(m, path)?;
                let input = match m.get("input") {
                    Some(b) if ty == "procedure" => Some(self.body(&Self::join(path, "input"), b)?),
                    Some(_) => {
                        return Err(self.err(&Self::join(path, "input"), "a query has no input"))
                    }
                    None => None,
                };
                let output = match m.get("output") {
                    Some(b) => Some(self.body(&Self::join(path, "output"), b)?),
                    None => None,
                };
                let errors = self.errors(m, path)?;
                let method = Method {
                    description,
                    parameters,
                    input,
                    output,
                    errors,
                };
                if ty == "query" {
                    Def::Query(method)
                } else {
                    Def::Procedure(method)
                }
            }
            "subscription" => {
                let parameters = self.opt_params(m, path)?;
                let message = match m.get("message") {
                    Some(msg) => {
                        let mp = Self::join(path, "message");
                        let mm = self.obj(&mp, msg)?;
                        match mm.get("schema") {
                            Some(s) => Some(self.field(&Self::join(&mp, "schema"), s)?),
                            None => None,
                        }
                    }
                    None => None,
                };
                let errors = self.errors(m, path)?;
                Def::Subscription(Subscription {
                    description,
                    parameters,
                    message,
                    errors,
                })
            }
            "record" => {
                let key = match m.get("key") {
                    Some(Json::String(k)) => match k.as_str() {
                        "tid" => RecordKey::Tid,
                        "nsid" => RecordKey::Nsid,
                        "any" => RecordKey::Any,
                        k => match k.strip_prefix("literal:") {
                            Some(lit) if !lit.is_empty() => RecordKey::Literal(lit.to_string()),
                            _ => {
                                return Err(self.err(
                                    &Self::join(path, "key"),
                                    format!("unknown record key type {k:?}"),
                                ))
                            }
                        },
                    },
                    Some(_) => return Err(self.err(&Self::join(path, "key"), "must be a string")),
                    // The spec allows omitting the key type; `any` is the only safe reading.
                    None => RecordKey::Any,
                };
                let rp = Self::join(path, "record");
                let rv = m.get("record").ok_or_else(|| self.err(&rp, "missing"))?;
                let rm = self.obj(&rp, rv)?;
                match rm.get("type") {
                    Some(Json::String(s)) if s == "object" => {}
                    _ => return Err(self.err(&rp, "record schema must be of type \"object\"")),
                }
                let record = self.object(&rp, rm)?;
                Def::Record(Record {
                    description,
                    key,
                    record,
                })
            }
            "permission-set" => Def::PermissionSet(self.permission_set(path, m)?),
            "token" => Def::Token { description },
            "ref" | "union" | "unknown" | "params" => {
                return Err(self.err(
                    path,
                    format!("type \"{ty}\" is not allowed as a top-level definition"),
                ))
            }
            _ => Def::Type(self.field(path, v)?),
        })
    }

    fn permission_set(&mut self, path: &str, m: &Map<String, Json>) -> Result<PermissionSet> {
        let lang_map = |key: &str| -> Result<BTreeMap<String, String>> {
            match m.get(key) {
                None => Ok(BTreeMap::new()),
                Some(Json::Object(o)) => o
                    .iter()
                    .map(|(k, v)| match v {
                        Json::String(s) => Ok((k.clone(), s.clone())),
                        _ => Err(self.err(&format!("{path}.{key}.{k}"), "must be a string")),
                    })
                    .collect(),
                Some(_) => Err(self.err(&Self::join(path, key), "must be an object")),
            }
        };
        let title_lang = lang_map("title:lang")?;
        let detail_lang = lang_map("detail:lang")?;
        let pp = Self::join(path, "permissions");
        let list = match m.get("permissions") {
            Some(Json::Array(a)) => a,
            Some(_) => return Err(self.err(&pp, "must be an array")),
            None => return Err(self.err(&pp, "missing")),
        };
        let mut permissions = Vec::new();
        for (i, pv) in list.iter().enumerate() {
            let ip = format!("{pp}.{i}");
            let pm = self.obj(&ip, pv)?;
            if self.type_name(&ip, pm)? != "permission" {
                return Err(self.err(&Self::join(&ip, "type"), "must be \"permission\""));
            }
            let resource = self
                .opt_str(pm, &ip, "resource")?
                .ok_or_else(|| self.err(&Self::join(&ip, "resource"), "missing"))?;
            let action = self.opt_str_list(pm, &ip, "action")?.unwrap_or_default();
            let collection = self
                .opt_str_list(pm, &ip, "collection")?
                .unwrap_or_default();
            let lxm = self.opt_str_list(pm, &ip, "lxm")?.unwrap_or_default();
            if resource == "repo" {
                for (j, c) in collection.iter().enumerate() {
                    if c != "*" && !is_valid_nsid(c) {
                        return Err(self.err(
                            &format!("{ip}.collection.{j}"),
                            format!("invalid NSID {c:?}"),
                        ));
                    }
                }
            }
            if resource == "rpc" {
                for (j, c) in lxm.iter().enumerate() {
                    if c != "*" && !is_valid_nsid(c) {
                        return Err(
                            self.err(&format!("{ip}.lxm.{j}"), format!("invalid NSID {c:?}"))
                        );
                    }
                }
            }
            let aud = self.opt_str(pm, &ip, "aud")?;
            let inherit_aud = self.opt_bool(pm, &ip, "inheritAud")?;
            let extra = pm
                .iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "type"
                            | "resource"
                            | "action"
                            | "collection"
                            | "lxm"
                            | "aud"
                            | "inheritAud"
                    )
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            permissions.push(Permission {
                resource,
                action,
                collection,
                lxm,
                aud,
                inherit_aud,
                extra,
            });
        }
        Ok(PermissionSet {
            title: self.opt_str(m, path, "title")?,
            title_lang,
            detail: self.opt_str(m, path, "detail")?,
            detail_lang,
            permissions,
        })
    }

    fn errors(&self, m: &Map<String, Json>, path: &str) -> Result<Vec<ErrorDef>> {
        let ep = Self::join(path, "errors");
        let list = match m.get("errors") {
            None => return Ok(Vec::new()),
            Some(Json::Array(a)) => a,
            Some(_) => return Err(self.err(&ep, "must be an array")),
        };
        let mut out = Vec::new();
        for (i, e) in list.iter().enumerate() {
            let ip = format!("{ep}.{i}");
            let em = self.obj(&ip, e)?;
            let name = self
                .opt_str(em, &ip, "name")?
                .ok_or_else(|| self.err(&Self::join(&ip, "name"), "missing"))?;
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(self.err(
                    &Self::join(&ip, "name"),
                    format!("invalid error name {name:?}"),
                ));
            }
            out.push(ErrorDef {
                name,
                description: self.opt_str(em, &ip, "description")?,
            });
        }
        Ok(out)
    }

    fn body(&mut self, path: &str, v: &Json) -> Result<Body> {
        let m = self.obj(path, v)?;
        let encoding = self
            .opt_str(m, path, "encoding")?
            .ok_or_else(|| self.err(&Self::join(path, "encoding"), "missing"))?;
        let schema = match m.get("schema") {
            Some(s) => {
                let sp = Self::join(path, "schema");
                let t = self.field(&sp, s)?;
                if !matches!(t.kind, Kind::Object(_) | Kind::Ref(_) | Kind::Union { .. }) {
                    return Err(self.err(&sp, "body schema must be an object, ref or union"));
                }
                Some(t)
            }
            None => None,
        };
        Ok(Body {
            description: self.opt_str(m, path, "description")?,
            encoding,
            schema,
        })
    }

    fn opt_params(&mut self, m: &Map<String, Json>, path: &str) -> Result<Option<Params>> {
        let pp = Self::join(path, "parameters");
        let v = match m.get("parameters") {
            None => return Ok(None),
            Some(v) => v,
        };
        let pm = self.obj(&pp, v)?;
        if self.type_name(&pp, pm)? != "params" {
            return Err(self.err(&Self::join(&pp, "type"), "must be \"params\""));
        }
        let required = self.opt_str_list(pm, &pp, "required")?.unwrap_or_default();
        let mut properties = BTreeMap::new();
        if let Some(props) = pm.get("properties") {
            let propp = Self::join(&pp, "properties");
            for (k, fv) in self.obj(&propp, props)? {
                let fp = Self::join(&propp, k);
                let t = self.field(&fp, fv)?;
                let ok = match &t.kind {
                    Kind::Boolean { .. }
                    | Kind::Integer { .. }
                    | Kind::String(_)
                    | Kind::Unknown => true,
                    Kind::Array { items, .. } => {
                        matches!(
                            items.kind,
                            Kind::Boolean { .. } | Kind::Integer { .. } | Kind::String(_)
                        )
                    }
                    _ => false,
                };
                if !ok {
                    return Err(self.err(
                        &fp,
                        format!("type \"{}\" is not allowed in params", t.kind.name()),
                    ));
                }
                properties.insert(k.clone(), t);
            }
        }
        for (i, r) in required.iter().enumerate() {
            if !properties.contains_key(r) {
                return Err(self.err(
                    &format!("{pp}.required.{i}"),
                    format!("required property {r:?} is not defined"),
                ));
            }
        }
        Ok(Some(Params {
            description: self.opt_str(pm, &pp, "description")?,
            required,
            properties,
        }))
    }

    fn object(&mut self, path: &str, m: &Map<String, Json>) -> Result<Object> {
        let required = self.opt_str_list(m, path, "required")?.unwrap_or_default();
        let nullable = self.opt_str_list(m, path, "nullable")?.unwrap_or_default();
        let mut properties = BTreeMap::new();
        if let Some(props) = m.get("properties") {
            let pp = Self::join(path, "properties");
            for (k, fv) in self.obj(&pp, props)? {
                properties.insert(k.clone(), self.field(&Self::join(&pp, k), fv)?);
            }
        }
        for (i, r) in required.iter().enumerate() {
            if !properties.contains_key(r) {
                return Err(self.err(
                    &format!("{path}.required.{i}"),
                    format!("required property {r:?} is not defined"),
                ));
            }
        }
        for (i, r) in nullable.iter().enumerate() {
            if !properties.contains_key(r) {
                return Err(self.err(
                    &format!("{path}.nullable.{i}"),
                    format!("nullable property {r:?} is not defined"),
                ));
            }
        }
        Ok(Object {
            description: self.opt_str(m, path, "description")?,
            required,
            nullable,
            properties,
        })
    }

    /// Qualifies a reference: `#x` -> `<doc>#x`, bare NSID -> `<nsid>#main`.
    fn qualify(&mut self, path: &str, r: &str) -> Result<String> {
        // `lex:` URI prefix, as the reference accepts.
        let r = r.strip_prefix("lex:").unwrap_or(r);
        let full = if let Some(local) = r.strip_prefix('#') {
            format!("{}#{local}", self.id)
        } else if r.contains('#') {
            r.to_string()
        } else {
            format!("{r}#main")
        };
        let ok = match full.split_once('#') {
            Some((nsid, name)) => {
                is_valid_nsid(nsid)
                    && !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            }
            None => false,
        };
        if !ok {
            return Err(self.err(path, format!("invalid reference {r:?}")));
        }
        self.refs.push((path.to_string(), full.clone()));
        Ok(full)
    }

    fn field(&mut self, path: &str, v: &Json) -> Result<Type> {
        let m = self.obj(path, v)?;
        let ty = self.type_name(path, m)?;
        let description = self.opt_str(m, path, "description")?;
        let kind = match ty {
            "boolean" => Kind::Boolean {
                default: self.opt_bool(m, path, "default")?,
                const_: self.opt_bool(m, path, "const")?,
            },
            "integer" => {
                let enum_ = match m.get("enum") {
                    None => None,
                    Some(Json::Array(a)) => Some(
                        a.iter()
                            .enumerate()
                            .map(|(i, x)| {
                                x.as_i64().ok_or_else(|| {
                                    self.err(&format!("{path}.enum.{i}"), "must be an integer")
                                })
                            })
                            .collect::<Result<Vec<_>>>()?,
                    ),
                    Some(_) => return Err(self.err(&Self::join(path, "enum"), "must be an array")),
                };
                let minimum = self.opt_int(m, path, "minimum")?;
                let maximum = self.opt_int(m, path, "maximum")?;
                if let (Some(a), Some(b)) = (minimum, maximum) {
                    if a > b {
                        return Err(self.err(path, "minimum is greater than maximum"));
                    }
                }
                Kind::Integer {
                    minimum,
                    maximum,
                    enum_,
                    default: self.opt_int(m, path, "default")?,
                    const_: self.opt_int(m, path, "const")?,
                }
            }
            "string" => {
                let format = match self.opt_str(m, path, "format")? {
                    None => None,
                    Some(f) => Some(Format::from_name(&f).ok_or_else(|| {
                        self.err(
                            &Self::join(path, "format"),
                            format!("unknown string format {f:?}"),
                        )
                    })?),
                };
                Kind::String(StringType {
                    format,
                    min_length: self.opt_uint(m, path, "minLength")?,
                    max_length: self.opt_uint(m, path, "maxLength")?,
                    min_graphemes: self.opt_uint(m, path, "minGraphemes")?,
                    max_graphemes: self.opt_uint(m, path, "maxGraphemes")?,
                    enum_: self.opt_str_list(m, path, "enum")?,
                    known_values: self.opt_str_list(m, path, "knownValues")?,
                    const_: self.opt_str(m, path, "const")?,
                    default: self.opt_str(m, path, "default")?,
                })
            }
            "bytes" => Kind::Bytes {
                min_length: self.opt_uint(m, path, "minLength")?,
                max_length: self.opt_uint(m, path, "maxLength")?,
            },
            "cid-link" => Kind::CidLink,
            "blob" => Kind::Blob {
                accept: self.opt_str_list(m, path, "accept")?,
                max_size: self.opt_uint(m, path, "maxSize")?,
            },
            "array" => {
                let ip = Self::join(path, "items");
                let iv = m.get("items").ok_or_else(|| self.err(&ip, "missing"))?;
                let items = self.field(&ip, iv)?;
                Kind::Array {
                    items: Box::new(items),
                    min_length: self.opt_uint(m, path, "minLength")?,
                    max_length: self.opt_uint(m, path, "maxLength")?,
                }
            }
            "object" => Kind::Object(self.object(path, m)?),
            "ref" => {
                let r = self
                    .opt_str(m, path, "ref")?
                    .ok_or_else(|| self.err(&Self::join(path, "ref"), "missing"))?;
                Kind::Ref(self.qualify(&Self::join(path, "ref"), &r)?)
            }
            "union" => {
                let list = self
                    .opt_str_list(m, path, "refs")?
                    .ok_or_else(|| self.err(&Self::join(path, "refs"), "missing"))?;
                let mut refs = Vec::new();
                for (i, r) in list.iter().enumerate() {
                    let q = self.qualify(&format!("{path}.refs.{i}"), r)?;
                    if !refs.contains(&q) {
                        refs.push(q);
                    }
                }
                Kind::Union {
                    refs,
                    closed: self.opt_bool(m, path, "closed")?.unwrap_or(false),
                }
            }
            "unknown" => Kind::Unknown,
            other => return Err(self.err(path, format!("unknown type {other:?}"))),
        };
        Ok(Type { description, kind })
    }
}
