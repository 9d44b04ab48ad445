//! The model -> Rust items: types, schema statics, method metadata, namespace traits.

use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::model::*;
use crate::names::{ident, ident_text, pascal, screaming, snake};

/// Where generated code finds things.
#[derive(Clone)]
pub struct Paths {
    /// Path of the module tree holding the documents being generated (`crate`).
    pub root: TokenStream,
    /// Path of the crate for documents outside the generated set (`crate` or `pds_api`).
    pub extern_root: TokenStream,
    /// Path of the runtime module (`crate::runtime`); generated modules import it as `rt`.
    pub rt_import: TokenStream,
    /// How generated items name the runtime (`rt`).
    pub rt: TokenStream,
    /// NSIDs of the documents generated under `root`.
    pub local: BTreeSet<String>,
}

/// Generation state for the whole corpus.
pub struct Gen<'a> {
    pub corpus: &'a Corpus,
    pub paths: Paths,
    /// Direct-containment edges between named defs (for boxing recursive fields).
    edges: BTreeMap<String, BTreeSet<String>>,
}

/// Per-document state: names already used in the module.
struct DocCx<'a> {
    doc: &'a Document,
    used: BTreeSet<String>,
    items: Vec<TokenStream>,
    /// The def whose types are being generated (`nsid#name`), for recursion checks.
    current: String,
}

/// Definitions the server passes on without reading them, typed as data-model values so that
/// nothing a client sent is lost: typed structs drop the fields this version of the lexicons
/// does not know. The account's preferences are stored and returned exactly as sent, as the
/// reference PDS does.
pub const VERBATIM: &[&str] = &["app.bsky.actor.defs#preferences"];

/// The name of the handler trait constant saying whether a service serves method `nsid`
/// (`SERVES_GET_RECORD` for `com.atproto.repo.getRecord`).
pub fn serves_const(nsid: &str) -> proc_macro2::Ident {
    format_ident!(
        "SERVES_{}",
        screaming(nsid.rsplit('.').next().unwrap_or(""))
    )
}

fn docs(desc: &Option<String>) -> TokenStream {
    match desc {
        Some(d) => {
            let lines = d.lines().map(|l| format!(" {}", l.trim_end()));
            quote! { #(#[doc = #lines])* }
        }
        None => quote! {},
    }
}

fn opt_u64(v: Option<u64>) -> TokenStream {
    match v.map(proc_macro2::Literal::u64_unsuffixed) {
        Some(n) => quote! { Some(#n) },
        None => quote! { None },
    }
}

fn opt_i64(v: Option<i64>) -> TokenStream {
    match v.map(proc_macro2::Literal::i64_unsuffixed) {
        Some(n) => quote! { Some(#n) },
        None => quote! { None },
    }
}

/// The type name a named def gets inside its document module.
pub fn def_type_name(def_name: &str, def: &Def) -> String {
    if def_name == "main" {
        match def {
            Def::Record(_) => "Record".into(),
            _ => "Main".into(),
        }
    } else {
        let p = pascal(def_name);
        // Names generated code uses unqualified (prelude, serde) or reserves per module.
        if matches!(
            p.as_str(),
            "Params"
                | "Input"
                | "Output"
                | "Error"
                | "Record"
                | "Main"
                | "Message"
                | "Option"
                | "Some"
                | "None"
                | "Box"
                | "String"
                | "Vec"
                | "Result"
                | "Ok"
                | "Err"
                | "Default"
                | "Clone"
                | "Debug"
                | "PartialEq"
                | "From"
                | "Into"
                | "TryFrom"
                | "Self"
                | "Eq"
                | "Hash"
                | "Copy"
        ) {
            format!("{p}Def")
        } else {
            p
        }
    }
}

/// The name of the schema static of a named def.
pub fn schema_static_name(def_name: &str) -> String {
    format!("{}_SCHEMA", screaming(def_name))
}

/// The module path segments of a document: `app.bsky.feed.post` -> `app::bsky::feed::post`.
pub fn doc_module_segments(nsid: &str) -> Vec<String> {
    nsid.split('.').map(|s| ident_text(&snake(s))).collect()
}

fn collect_direct_refs(t: &Type, out: &mut BTreeSet<String>) {
    match &t.kind {
        Kind::Ref(r) => {
            out.insert(r.clone());
        }
        Kind::Object(o) => {
            for p in o.properties.values() {
                collect_direct_refs(p, out);
            }
        }
        _ => {}
    }
}

impl<'a> Gen<'a> {
    /// Prepares generation over a corpus.
    pub fn new(corpus: &'a Corpus, paths: Paths) -> Self {
        let mut edges = BTreeMap::new();
        for doc in corpus.docs.values() {
            for (name, def) in &doc.defs {
                let mut out = BTreeSet::new();
                match def {
                    Def::Record(r) => {
                        for p in r.record.properties.values() {
                            collect_direct_refs(p, &mut out);
                        }
                    }
                    Def::Type(t) => collect_direct_refs(t, &mut out),
                    _ => {}
                }
                edges.insert(format!("{}#{name}", doc.id), out);
            }
        }
        Gen {
            corpus,
            paths,
            edges,
        }
    }

    fn reaches(&self, from: &str, to: &str) -> bool {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(n) = stack.pop() {
            if n == to {
                return true;
            }
            if !seen.insert(n.clone()) {
                continue;
            }
            if let Some(next) = self.edges.get(&n) {
                stack.extend(next.iter().cloned());
            }
        }
        false
    }

    fn module_path(&self, nsid: &str) -> TokenStream {
        let root = if self.paths.local.contains(nsid) {
            &self.paths.root
        } else {
            &self.paths.extern_root
        };
        let segs = doc_module_segments(nsid).into_iter().map(|s| ident(&s));
        quote! { #root #(:: #segs)* }
    }

    /// The Rust type a reference names.
    fn ref_type(&self, r: &str) -> TokenStream {
        let (nsid, name) = r.split_once('#').unwrap_or((r, "main"));
        let rt = &self.paths.rt;
        match self.corpus.resolve(r) {
            Some(Def::Token { .. }) => quote! { String },
            Some(def) => {
                let m = self.module_path(nsid);
                let t = ident(&def_type_name(name, def));
                quote! { #m :: #t }
            }
            None => quote! { #rt::lex::Value },
        }
    }

    fn schema_ref(&self, r: &str) -> TokenStream {
        let (nsid, name) = r.split_once('#').unwrap_or((r, "main"));
        let m = self.module_path(nsid);
        let s = format_ident!("{}", schema_static_name(name));
        quote! { #m :: #s }
    }

    /// The feature group of an NSID (`app.bsky`).
    pub fn group_of(nsid: &str) -> String {
        nsid.split('.').take(2).collect::<Vec<_>>().join(".")
    }

    /// Generates the items of one document module.
    pub fn doc_items(&self, doc: &Document) -> TokenStream {
        let mut cx = DocCx {
            doc,
            used: BTreeSet::new(),
            items: Vec::new(),
            current: String::new(),
        };
        for (name, def) in &doc.defs {
            cx.used.insert(def_type_name(name, def));
        }
        for w in [
            "Params", "Input", "Output", "Error", "Message", "Record", "Main",
        ] {
            cx.used.insert(w.to_string());
        }
        let id = &doc.id;
        let rt_import = &self.paths.rt_import;
        let mut head = vec![quote! {
            #[allow(unused_imports)]
            use #rt_import as rt;
            #[doc = " The NSID of this lexicon document."]
            pub const NSID: &str = #id;
        }];
        for (name, def) in &doc.defs {
            cx.current = format!("{}#{name}", doc.id);
            self.def_items(&mut cx, name, def);
        }
        head.append(&mut cx.items);
        quote! { #(#head)* }
    }

    fn def_items(&self, cx: &mut DocCx<'_>, name: &str, def: &Def) {
        let rt = &self.paths.rt;
        let full = format!("{}#{name}", cx.doc.id);
        let type_name = def_type_name(name, def);
        let static_name = format_ident!("{}", schema_static_name(name));
        match def {
            Def::Token { description } => {
                let d = docs(description);
                let c = format_ident!("{}", screaming(name));
                cx.items.push(quote! {
                    #d
                    pub const #c: &str = #full;
                    #[doc = " Schema of this token."]
                    pub static #static_name: #rt::schema::Schema = #rt::schema::Schema::Token(#full);
                });
            }
            Def::Type(t) => {
                let d = docs(&t.description);
                let schema = self.schema_expr(t);
                cx.items.push(quote! {
                    #[doc = " Schema of this definition."]
                    pub static #static_name: #rt::schema::Schema = #schema;
                });
                if VERBATIM.contains(&full.as_str()) {
                    // Validated against the schema above, then carried as data-model values.
                    let tn = ident(&type_name);
                    let ty = match &t.kind {
                        Kind::Array { .. } => quote! { Vec<#rt::lex::Value> },
                        _ => quote! { #rt::lex::Value },
                    };
                    cx.items.push(quote! {
                        #d
                        #[doc = ""]
                        #[doc = " Carried verbatim (see the generator's `VERBATIM`)."]
                        pub type #tn = #ty;
                    });
                } else if let Kind::Object(o) = &t.kind {
                    self.struct_item(cx, &type_name, &t.description, o);
                } else {
                    let ty = self.rust_type(cx, t, &type_name, true);
                    let tn = ident(&type_name);
                    if tn != ty.to_string() {
                        cx.items.push(quote! { #d pub type #tn = #ty; });
                    }
                }
            }
            Def::Record(r) => {
                let schema = self.object_schema(&r.record);
                let key = match &r.key {
                    RecordKey::Tid => "tid".to_string(),
                    RecordKey::Nsid => "nsid".to_string(),
                    RecordKey::Any => "any".to_string(),
                    RecordKey::Literal(l) => format!("literal:{l}"),
                };
                let desc = r
                    .description
                    .clone()
                    .or_else(|| r.record.description.clone());
                cx.items.push(quote! {
                    #[doc = " The record key type of this collection."]
                    pub const RECORD_KEY: &str = #key;
                    #[doc = " Schema of the record."]
                    pub static #static_name: #rt::schema::Schema = #rt::schema::Schema::Object(#schema);
                    #[doc = " Validates an untyped record of this collection against every constraint of its schema."]
                    pub fn validate(value: &#rt::lex::Value) -> Result<(), #rt::schema::ValidationError> {
                        #rt::schema::validate_record_of(NSID, &#static_name, value)
                    }
                });
                self.struct_item(cx, &type_name, &desc, &r.record);
            }
            Def::Query(m) | Def::Procedure(m) => {
                let kind = if matches!(def, Def::Query(_)) {
                    quote!(Query)
                } else {
                    quote!(Procedure)
                };
                self.method_items(cx, m, kind);
            }
            Def::Subscription(s) => {
                self.params_items(cx, &s.parameters);
                if let Some(msg) = &s.message {
                    let ty = self.rust_type(cx, msg, "Message", true);
                    if ty.to_string() != "Message" {
                        cx.items.push(quote! { #[doc = " A message of this stream."] pub type Message = #ty; });
                    }
                }
                self.error_items(cx, &s.errors);
                let errs: Vec<&str> = s.errors.iter().map(|e| e.name.as_str()).collect();
                cx.items.push(quote! {
                    #[doc = " Metadata of this subscription."]
                    pub static META: #rt::xrpc::MethodMeta = #rt::xrpc::MethodMeta {
                        nsid: NSID,
                        kind: #rt::xrpc::MethodKind::Subscription,
                        params: &PARAMS_SCHEMA,
                        input: None,
                        input_schema: None,
                        output: None,
                        errors: &[#(#errs),*],
                    };
                });
            }
            Def::PermissionSet(p) => {
                let d = docs(&p.title);
                let perms = p.permissions.iter().map(|perm| {
                    let resource = &perm.resource;
                    let action = &perm.action;
                    let collection = &perm.collection;
                    let lxm = &perm.lxm;
                    let aud = match &perm.aud {
                        Some(a) => quote! { Some(#a) },
                        None => quote! { None },
                    };
                    let inherit = perm.inherit_aud.unwrap_or(false);
                    quote! {
                        #rt::lex::Permission {
                            resource: #resource,
                            action: &[#(#action),*],
                            collection: &[#(#collection),*],
                            lxm: &[#(#lxm),*],
                            aud: #aud,
                            inherit_aud: #inherit,
                        }
                    }
                });
                cx.items.push(quote! {
                    #d
                    pub static PERMISSIONS: &[#rt::lex::Permission] = &[#(#perms),*];
                });
            }
        }
    }

    fn params_items(&self, cx: &mut DocCx<'_>, params: &Option<Params>) {
        let rt = &self.paths.rt;
        match params {
            Some(p) => {
                let o = Object {
                    description: p.description.clone(),
                    required: p.required.clone(),
                    nullable: Vec::new(),
                    properties: p.properties.clone(),
                };
                let schema = self.object_schema(&o);
                cx.items.push(quote! {
                    #[doc = " Schema of the query parameters."]
                    pub static PARAMS_SCHEMA: #rt::schema::ObjectSchema = #schema;
                });
                // Params with a default are always present after decoding.
                let mut o2 = o.clone();
                for (k, t) in &o.properties {
                    let has_default = match &t.kind {
                        Kind::Integer { default, .. } => default.is_some(),
                        Kind::String(s) => s.default.is_some(),
                        Kind::Boolean { default, .. } => default.is_some(),
                        _ => false,
                    };
                    if has_default && !o2.required.contains(k) {
                        o2.required.push(k.clone());
                    }
                }
                let desc = p
                    .description
                    .clone()
                    .or_else(|| Some("Query parameters.".into()));
                self.struct_item(cx, "Params", &desc, &o2);
            }
            None => {
                cx.items.push(quote! {
                    #[doc = " Schema of the query parameters (none)."]
                    pub static PARAMS_SCHEMA: #rt::schema::ObjectSchema = #rt::schema::ObjectSchema::EMPTY;
                    #[doc = " Query parameters (none)."]
                    #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
                    pub struct Params {}
                    impl #rt::decode::FromValue for Params {
                        fn from_value(_: &#rt::lex::Value) -> Result<Self, #rt::decode::DecodeError> {
                            Ok(Params {})
                        }
                    }
                });
            }
        }
    }

    fn error_items(&self, cx: &mut DocCx<'_>, errors: &[ErrorDef]) {
        if errors.is_empty() {
            return;
        }
        let rt = &self.paths.rt;
        let variants: Vec<_> = errors.iter().map(|e| ident(&pascal(&e.name))).collect();
        let names: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
        let descs: Vec<_> = errors.iter().map(|e| docs(&e.description)).collect();
        cx.items.push(quote! {
            #[doc = " The errors this method declares, each with a message."]
            #[derive(Debug, Clone, PartialEq, Eq)]
            pub enum Error {
                #(#descs #variants(String),)*
            }
            impl Error {
                #[doc = " The error name as sent on the wire."]
                pub fn name(&self) -> &'static str {
                    match self { #(Self::#variants(_) => #names,)* }
                }
            }
            impl From<Error> for #rt::xrpc::XrpcError {
                fn from(e: Error) -> Self {
                    let name = e.name();
                    match e { #(Error::#variants(m))|* => #rt::xrpc::XrpcError::declared(name, m) }
                }
            }
        });
    }

    fn body_encoding(&self, b: &Option<Body>) -> TokenStream {
        let rt = &self.paths.rt;
        match b {
            Some(b) => {
                let mime = &b.encoding;
                let json = b.schema.is_some();
                quote! { Some(#rt::xrpc::Encoding { mime: #mime, json: #json }) }
            }
            None => quote! { None },
        }
    }

    fn method_items(&self, cx: &mut DocCx<'_>, m: &Method, kind: TokenStream) {
        let rt = &self.paths.rt;
        self.params_items(cx, &m.parameters);
        let mut input_schema = quote! { None };
        if let Some(b) = &m.input {
            if let Some(s) = &b.schema {
                let expr = self.schema_expr(s);
                cx.items.push(quote! {
                    #[doc = " Schema of the input body."]
                    pub static INPUT_SCHEMA: #rt::schema::Schema = #expr;
                });
                input_schema = quote! { Some(&INPUT_SCHEMA) };
                self.body_type(cx, b, s, "Input");
            }
        }
        if let Some(b) = &m.output {
            if let Some(s) = &b.schema {
                self.body_type(cx, b, s, "Output");
            }
        }
        self.error_items(cx, &m.errors);
        let input = self.body_encoding(&m.input);
        let output = self.body_encoding(&m.output);
        let errs: Vec<&str> = m.errors.iter().map(|e| e.name.as_str()).collect();
        cx.items.push(quote! {
            #[doc = " Metadata of this method: kind, encodings, declared errors."]
            pub static META: #rt::xrpc::MethodMeta = #rt::xrpc::MethodMeta {
                nsid: NSID,
                kind: #rt::xrpc::MethodKind::#kind,
                params: &PARAMS_SCHEMA,
                input: #input,
                input_schema: #input_schema,
                output: #output,
                errors: &[#(#errs),*],
            };
        });
    }

    fn body_type(&self, cx: &mut DocCx<'_>, b: &Body, s: &Type, name: &str) {
        let desc = b.description.clone().or_else(|| s.description.clone());
        match &s.kind {
            Kind::Object(o) => self.struct_item(cx, name, &desc, o),
            _ => {
                let ty = self.rust_type(cx, s, name, true);
                let d = docs(&desc);
                let n = ident(name);
                if n != ty.to_string() {
                    cx.items.push(quote! { #d pub type #n = #ty; });
                }
            }
        }
    }

    /// A fresh type name in this module, derived from `hint`.
    fn fresh(cx: &mut DocCx<'_>, hint: &str) -> String {
        if cx.used.insert(hint.to_string()) {
            return hint.to_string();
        }
        let mut i = 2;
        loop {
            let n = format!("{hint}{i}");
            if cx.used.insert(n.clone()) {
                return n;
            }
            i += 1;
        }
    }

    fn struct_item(&self, cx: &mut DocCx<'_>, name: &str, desc: &Option<String>, o: &Object) {
        let rt = &self.paths.rt;
        let d = docs(desc);
        let n = ident(name);
        let mut fields = Vec::new();
        let mut reads = Vec::new();
        for (pname, t) in &o.properties {
            let fname = snake(pname);
            let fid = ident(&fname);
            let hint = format!("{name}{}", pascal(pname));
            let mut ty = self.rust_type(cx, t, &hint, false);
            if let Kind::Ref(r) = &t.kind {
                if self.reaches(r, &cx.current) {
                    ty = quote! { Box<#ty> };
                }
            }
            let fd = docs(&t.description);
            let rename = if ident_text(&fname) != *pname {
                quote! { #[serde(rename = #pname)] }
            } else {
                quote! {}
            };
            let required = o.required.contains(pname);
            let nullable = o.nullable.contains(pname);
            let read = if required && !nullable {
                quote! { required }
            } else if nullable && !required {
                quote! { nullable }
            } else {
                quote! { optional }
            };
            reads.push(quote! { #fid: #rt::decode::#read(m, #pname)?, });
            let field = if required && !nullable {
                quote! { #fd #rename pub #fid: #ty, }
            } else if required {
                // Required but nullable: always written, as `null` when absent.
                quote! { #fd #rename pub #fid: Option<#ty>, }
            } else if nullable {
                // Optional and nullable: absent and `null` mean different things.
                let rt = &self.paths.rt;
                let skip = format!("{rt}::lex::Nullable::is_absent").replace(' ', "");
                quote! {
                    #fd #rename
                    #[serde(default, skip_serializing_if = #skip)]
                    pub #fid: #rt::lex::Nullable<#ty>,
                }
            } else {
                quote! {
                    #fd #rename
                    #[serde(default, skip_serializing_if = "Option::is_none")]
                    pub #fid: Option<#ty>,
                }
            };
            fields.push(field);
        }
        let default = if o.required.is_empty() {
            quote! { Default, }
        } else {
            quote! {}
        };
        let decode = if reads.is_empty() {
            quote! {
                #rt::decode::object(value)?;
                Ok(Self {})
            }
        } else {
            quote! {
                let m = #rt::decode::object(value)?;
                Ok(Self { #(#reads)* })
            }
        };
        cx.items.push(quote! {
            #d
            #[derive(Debug, Clone, #default PartialEq, serde::Serialize, serde::Deserialize)]
            pub struct #n { #(#fields)* }
            impl #rt::decode::FromValue for #n {
                fn from_value(value: &#rt::lex::Value) -> Result<Self, #rt::decode::DecodeError> {
                    #decode
                }
            }
        });
    }

    /// The Rust type of a field, generating inline enums and structs as needed. `named` is
    /// true when `hint` is already reserved for this type (a named def or body).
    fn rust_type(&self, cx: &mut DocCx<'_>, t: &Type, hint: &str, named: bool) -> TokenStream {
        let rt = &self.paths.rt;
        let take_name = |cx: &mut DocCx<'_>| {
            if named {
                hint.to_string()
            } else {
                Self::fresh(cx, hint)
            }
        };
        match &t.kind {
            Kind::Boolean { .. } => quote! { bool },
            Kind::Integer { .. } => quote! { i64 },
            Kind::String(s) => {
                if let Some(f) = s.format {
                    let f = format_ident!("{}", f.rust_type());
                    quote! { #rt::lex::#f }
                } else if let Some(values) = &s.enum_ {
                    let n = take_name(cx);
                    self.string_enum(cx, &n, &t.description, values, false);
                    let id = ident(&n);
                    quote! { #id }
                } else if let Some(values) = &s.known_values {
                    let n = take_name(cx);
                    self.string_enum(cx, &n, &t.description, values, true);
                    let id = ident(&n);
                    quote! { #id }
                } else {
                    quote! { String }
                }
            }
            Kind::Bytes { .. } => quote! { #rt::lex::Bytes },
            Kind::CidLink => quote! { #rt::lex::CidLink },
            Kind::Blob { .. } => quote! { #rt::lex::BlobRef },
            Kind::Unknown => quote! { #rt::lex::Value },
            Kind::Array { items, .. } => {
                let item_hint = format!("{hint}Item");
                let inner = self.rust_type(cx, items, &item_hint, false);
                quote! { Vec<#inner> }
            }
            Kind::Object(o) => {
                let n = take_name(cx);
                self.struct_item(cx, &n, &t.description, o);
                let id = ident(&n);
                quote! { #id }
            }
            Kind::Ref(r) => self.ref_type(r),
            Kind::Union { refs, closed } => {
                let n = take_name(cx);
                self.union_item(cx, &n, &t.description, refs, *closed);
                let id = ident(&n);
                quote! { #id }
            }
        }
    }

    fn string_enum(
        &self,
        cx: &mut DocCx<'_>,
        name: &str,
        desc: &Option<String>,
        values: &[String],
        open: bool,
    ) {
        let rt = &self.paths.rt;
        let mut seen = BTreeSet::new();
        let mut variants = Vec::new();
        for v in values {
            let last = v.rsplit(['#', '.', '/']).next().unwrap_or(v);
            let mut vn = pascal(last);
            if vn == "Other" {
                vn = "OtherValue".into();
            }
            let mut candidate = vn.clone();
            let mut i = 2;
            while !seen.insert(candidate.clone()) {
                candidate = format!("{vn}{i}");
                i += 1;
            }
            variants.push((ident(&candidate), v.clone()));
        }
        let d = docs(desc);
        let n = ident(name);
        let vids: Vec<_> = variants.iter().map(|(i, _)| i.clone()).collect();
        let vstrs: Vec<_> = variants.iter().map(|(_, s)| s.clone()).collect();
        let vdocs: Vec<String> = vstrs.iter().map(|s| format!(" `{s}`")).collect();
        let sep = if desc.is_some() {
            quote! { #[doc = ""] }
        } else {
            quote! {}
        };
        if open {
            cx.items.push(quote! {
                #d
                #sep
                #[doc = " Known values; any other string is kept in `Other`."]
                #[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
                #[serde(from = "String", into = "String")]
                pub enum #n {
                    #(#[doc = #vdocs] #vids,)*
                    #[doc = " A value not known to this version of the lexicon."]
                    Other(String),
                }
                impl #n {
                    #[doc = " The string value."]
                    pub fn as_str(&self) -> &str {
                        match self { #(Self::#vids => #vstrs,)* Self::Other(s) => s }
                    }
                }
                impl From<String> for #n {
                    fn from(s: String) -> Self {
                        match s.as_str() { #(#vstrs => Self::#vids,)* _ => Self::Other(s) }
                    }
                }
                impl #rt::decode::FromValue for #n {
                    fn from_value(value: &#rt::lex::Value) -> Result<Self, #rt::decode::DecodeError> {
                        #rt::decode::string(value).map(Self::from)
                    }
                }
                impl From<#n> for String {
                    fn from(v: #n) -> String {
                        match v { #n::Other(s) => s, v => v.as_str().to_string() }
                    }
                }
            });
        } else {
            let msg = format!("must be one of ({})", values.join("|"));
            cx.items.push(quote! {
                #d
                #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
                #[serde(try_from = "String", into = "String")]
                pub enum #n {
                    #(#[doc = #vdocs] #vids,)*
                }
                impl #n {
                    #[doc = " The string value."]
                    pub fn as_str(&self) -> &'static str {
                        match self { #(Self::#vids => #vstrs,)* }
                    }
                }
                impl TryFrom<String> for #n {
                    type Error = String;
                    fn try_from(s: String) -> Result<Self, String> {
                        match s.as_str() { #(#vstrs => Ok(Self::#vids),)* _ => Err(format!("{s:?} {}", #msg)) }
                    }
                }
                impl #rt::decode::FromValue for #n {
                    fn from_value(value: &#rt::lex::Value) -> Result<Self, #rt::decode::DecodeError> {
                        Self::try_from(#rt::decode::string(value)?).map_err(#rt::decode::DecodeError)
                    }
                }
                impl From<#n> for String {
                    fn from(v: #n) -> String {
                        v.as_str().to_string()
                    }
                }
            });
        }
    }

    fn union_item(
        &self,
        cx: &mut DocCx<'_>,
        name: &str,
        desc: &Option<String>,
        refs: &[String],
        closed: bool,
    ) {
        let rt = &self.paths.rt;
        let mut seen = BTreeSet::new();
        let mut variants = Vec::new();
        for r in refs {
            let (nsid, def) = r.split_once('#').unwrap_or((r, "main"));
            let last = nsid.rsplit('.').next().unwrap_or(nsid);
            let base = if def == "main" {
                pascal(last)
            } else {
                pascal(def)
            };
            let mut vn = if base == "Unknown" {
                "UnknownMember".to_string()
            } else {
                base
            };
            if seen.contains(&vn) {
                vn = format!("{}{}", pascal(last), pascal(def));
            }
            let mut candidate = vn.clone();
            let mut i = 2;
            while !seen.insert(candidate.clone()) {
                candidate = format!("{vn}{i}");
                i += 1;
            }
            let wire = r.strip_suffix("#main").unwrap_or(r).to_string();
            variants.push((ident(&candidate), self.ref_type(r), wire, r.clone()));
        }
        let d = docs(desc);
        let n = ident(name);
        let vids: Vec<_> = variants.iter().map(|v| v.0.clone()).collect();
        let vtys: Vec<_> = variants.iter().map(|v| v.1.clone()).collect();
        let wires: Vec<_> = variants.iter().map(|v| v.2.clone()).collect();
        let pats: Vec<TokenStream> = variants
            .iter()
            .map(|v| {
                let (w, full) = (&v.2, &v.3);
                if w != full {
                    quote! { #w | #full }
                } else {
                    quote! { #w }
                }
            })
            .collect();
        let vdocs: Vec<String> = wires.iter().map(|w| format!(" `{w}`")).collect();
        let (unknown_variant, unknown_ser, fallback) = if closed {
            (
                quote! {},
                quote! {},
                quote! { _ => Err(#rt::serde_value::closed_union_error(&ty, &[#(#wires),*])) },
            )
        } else {
            (
                quote! {
                    #[doc = " A member of a type not known here, kept exactly as received."]
                    Unknown(#rt::lex::Value),
                },
                quote! { Self::Unknown(v) => serde::Serialize::serialize(v, s), },
                quote! { _ => Ok(Self::Unknown(value)) },
            )
        };
        let decode_fallback = if closed {
            quote! { _ => Err(#rt::decode::closed_union_error(ty, &[#(#wires),*])) }
        } else {
            quote! { _ => Ok(Self::Unknown(value.clone())) }
        };
        let decode_body = if variants.is_empty() && !closed {
            quote! {
                #rt::decode::union_type(value)?;
                Ok(Self::Unknown(value.clone()))
            }
        } else {
            quote! {
                let ty = #rt::decode::union_type(value)?;
                match ty {
                    #(#pats => #rt::decode::union_member(ty, value).map(Self::#vids),)*
                    #decode_fallback
                }
            }
        };
        let de_body = if variants.is_empty() && !closed {
            quote! { #rt::serde_value::buffer_union(d).map(|(_, value, _)| Self::Unknown(value)) }
        } else {
            quote! {
                let (ty, value, hr) = #rt::serde_value::buffer_union(d)?;
                match ty.as_str() {
                    #(#pats => #rt::serde_value::union_member(&ty, &value, hr).map(Self::#vids),)*
                    #fallback
                }
            }
        };
        let kind_doc = if closed {
            " A closed union."
        } else {
            " An open union: unknown `$type`s are kept in `Unknown`."
        };
        let sep = if desc.is_some() {
            quote! { #[doc = ""] }
        } else {
            quote! {}
        };
        cx.items.push(quote! {
            #d
            #sep
            #[doc = #kind_doc]
            #[derive(Debug, Clone, PartialEq)]
            pub enum #n {
                #(#[doc = #vdocs] #vids(Box<#vtys>),)*
                #unknown_variant
            }
            impl serde::Serialize for #n {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    match self {
                        #(Self::#vids(v) => #rt::serde_value::serialize_member(s, #wires, v),)*
                        #unknown_ser
                    }
                }
            }
            impl<'de> serde::Deserialize<'de> for #n {
                fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    #de_body
                }
            }
            impl #rt::decode::FromValue for #n {
                fn from_value(value: &#rt::lex::Value) -> Result<Self, #rt::decode::DecodeError> {
                    #decode_body
                }
            }
        });
    }

    fn object_schema(&self, o: &Object) -> TokenStream {
        let rt = &self.paths.rt;
        let required = &o.required;
        let nullable = &o.nullable;
        let props = o.properties.iter().map(|(k, t)| {
            let s = self.schema_expr(t);
            quote! { (#k, #s) }
        });
        quote! {
            #rt::schema::ObjectSchema {
                required: &[#(#required),*],
                nullable: &[#(#nullable),*],
                properties: &[#(#props),*],
            }
        }
    }

    /// The schema expression of a type, for a `static` initializer.
    pub fn schema_expr(&self, t: &Type) -> TokenStream {
        let rt = &self.paths.rt;
        let s = quote! { #rt::schema::Schema };
        match &t.kind {
            Kind::Boolean { const_, .. } => {
                let c = match const_ {
                    Some(b) => quote! { Some(#b) },
                    None => quote! { None },
                };
                quote! { #s::Boolean { const_: #c } }
            }
            Kind::Integer {
                minimum,
                maximum,
                enum_,
                default,
                const_,
            } => {
                let (min, max, c, d) = (
                    opt_i64(*minimum),
                    opt_i64(*maximum),
                    opt_i64(*const_),
                    opt_i64(*default),
                );
                let e = match enum_ {
                    Some(v) => {
                        let v = v.iter().map(|x| proc_macro2::Literal::i64_unsuffixed(*x));
                        quote! { Some(&[#(#v),*]) }
                    }
                    None => quote! { None },
                };
                let mut fields = Vec::new();
                for (name, v) in [
                    ("minimum", min),
                    ("maximum", max),
                    ("enum_", e),
                    ("const_", c),
                    ("default", d),
                ] {
                    if v.to_string() != "None" {
                        let n = format_ident!("{}", name);
                        fields.push(quote! { #n: #v, });
                    }
                }
                if fields.is_empty() {
                    quote! { #s::Integer(#rt::schema::IntegerSchema::NONE) }
                } else {
                    quote! { #s::Integer(#rt::schema::IntegerSchema { #(#fields)* ..#rt::schema::IntegerSchema::NONE }) }
                }
            }
            Kind::String(st) => {
                let opt_str = |v: &Option<String>| match v {
                    Some(x) => quote! { Some(#x) },
                    None => quote! { None },
                };
                let format = opt_str(&st.format.map(|f| f.name().to_string()));
                let e = match &st.enum_ {
                    Some(v) => quote! { Some(&[#(#v),*]) },
                    None => quote! { None },
                };
                let (a, b, c, d) = (
                    opt_u64(st.min_length),
                    opt_u64(st.max_length),
                    opt_u64(st.min_graphemes),
                    opt_u64(st.max_graphemes),
                );
                let cst = opt_str(&st.const_);
                let def = opt_str(&st.default);
                let mut fields = Vec::new();
                for (name, v) in [
                    ("format", format),
                    ("min_length", a),
                    ("max_length", b),
                    ("min_graphemes", c),
                    ("max_graphemes", d),
                    ("enum_", e),
                    ("const_", cst),
                    ("default", def),
                ] {
                    if v.to_string() != "None" {
                        let n = format_ident!("{}", name);
                        fields.push(quote! { #n: #v, });
                    }
                }
                if fields.is_empty() {
                    quote! { #s::String(#rt::schema::StringSchema::NONE) }
                } else {
                    quote! { #s::String(#rt::schema::StringSchema { #(#fields)* ..#rt::schema::StringSchema::NONE }) }
                }
            }
            Kind::Bytes {
                min_length,
                max_length,
            } => {
                let (a, b) = (opt_u64(*min_length), opt_u64(*max_length));
                quote! { #s::Bytes { min_length: #a, max_length: #b } }
            }
            Kind::CidLink => quote! { #s::CidLink },
            Kind::Blob { accept, max_size } => {
                let acc = accept.clone().unwrap_or_default();
                let m = opt_u64(*max_size);
                quote! { #s::Blob { accept: &[#(#acc),*], max_size: #m } }
            }
            Kind::Array {
                items,
                min_length,
                max_length,
            } => {
                let i = self.schema_expr(items);
                let (a, b) = (opt_u64(*min_length), opt_u64(*max_length));
                quote! { #s::Array { items: &#i, min_length: #a, max_length: #b } }
            }
            Kind::Object(o) => {
                let os = self.object_schema(o);
                quote! { #s::Object(#os) }
            }
            Kind::Ref(r) => {
                let p = self.schema_ref(r);
                quote! { #s::Ref(&#p) }
            }
            Kind::Union { refs, closed } => {
                let members = refs.iter().map(|r| {
                    let p = self.schema_ref(r);
                    quote! { (#r, &#p) }
                });
                quote! { #s::Union { refs: &[#(#members),*], closed: #closed } }
            }
            Kind::Unknown => quote! { #s::Unknown },
        }
    }

    /// The namespace trait for the queries and procedures of `docs` (all in one namespace).
    pub fn namespace_trait(
        &self,
        namespace: &str,
        docs_in_ns: &[&Document],
    ) -> Option<TokenStream> {
        let rt = &self.paths.rt;
        let mut methods = Vec::new();
        for doc in docs_in_ns {
            let m = match doc.defs.get("main") {
                Some(Def::Query(m)) | Some(Def::Procedure(m)) => m,
                _ => continue,
            };
            let modname = ident(
                doc_module_segments(&doc.id)
                    .last()
                    .map(String::as_str)
                    .unwrap_or(""),
            );
            let fname = ident(&snake(doc.id.rsplit('.').next().unwrap_or("")));
            let d = docs(&m.description);
            let id = &doc.id;
            let mut args = vec![quote! { cx: &Self::Context }];
            let mut names = vec![quote! { cx }];
            args.push(quote! { params: #modname::Params });
            names.push(quote! { params });
            match &m.input {
                Some(Body {
                    schema: Some(_), ..
                }) => {
                    args.push(quote! { input: #modname::Input });
                    names.push(quote! { input });
                }
                Some(_) => {
                    args.push(quote! { input: #rt::xrpc::BinaryInput });
                    names.push(quote! { input });
                }
                None => {}
            }
            let out = match &m.output {
                Some(Body {
                    schema: Some(_), ..
                }) => quote! { #modname::Output },
                Some(_) => quote! { #rt::xrpc::BinaryOutput },
                None => quote! { () },
            };
            let nsid_doc = format!(" `{id}`");
            let serves = serves_const(&doc.id);
            let serves_doc = format!(
                " Whether this service serves `{id}` (set it with the handler). When false the \
                 dispatcher answers MethodNotImplemented without decoding anything, and the \
                 method's decoding and validation are not compiled in."
            );
            methods.push(quote! {
                #[doc = #serves_doc]
                const #serves: bool = false;
                #[doc = #nsid_doc]
                #[doc = ""]
                #d
                async fn #fname(&self, #(#args),*) -> Result<#out, #rt::xrpc::XrpcError> {
                    let _ = (#(#names),*);
                    Err(#rt::xrpc::XrpcError::method_not_implemented())
                }
            });
        }
        if methods.is_empty() {
            return None;
        }
        let tn = format_ident!("{}", pascal(namespace));
        let tdoc = format!(
            " Handlers for the `{namespace}` methods. Every method defaults to MethodNotImplemented; \
             implement the ones this server serves, and set their `SERVES_*` constant."
        );
        Some(quote! {
            #[doc = #tdoc]
            #[allow(async_fn_in_trait)]
            pub trait #tn: #rt::xrpc::Service {
                #(#methods)*
            }
        })
    }
}
