//! Rust names for lexicon names: modules, types, fields, variants.

use proc_macro2::{Ident, Span};

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "else", "enum", "extern", "false", "fn", "for", "if",
    "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "static",
    "struct", "trait", "true", "type", "unsafe", "use", "where", "while", "async", "await", "dyn",
    "abstract", "become", "box", "do", "final", "macro", "override", "priv", "typeof", "unsized",
    "virtual", "yield", "try", "gen",
];

/// `getRecord` -> `get_record`, `cid-link` -> `cid_link`, `getDIDs` -> `get_di_ds`-free: acronyms kept whole.
pub fn snake(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = if i > 0 { Some(chars[i - 1]) } else { None };
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    let out = out.trim_end_matches('_').to_string();
    if out.is_empty() || out.as_bytes()[0].is_ascii_digit() {
        format!("f_{out}")
    } else {
        out
    }
}

/// `profileViewBasic` -> `ProfileViewBasic`, `com.example.fooBar` -> `ComExampleFooBar`.
pub fn pascal(s: &str) -> String {
    let mut out = String::new();
    for part in s
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
    {
        let mut cs = part.chars();
        if let Some(f) = cs.next() {
            out.push(f.to_ascii_uppercase());
            out.extend(cs);
        }
    }
    if out.is_empty() || out.as_bytes()[0].is_ascii_digit() {
        format!("V{out}")
    } else {
        out
    }
}

/// `demoObject` -> `DEMO_OBJECT`.
pub fn screaming(s: &str) -> String {
    snake(s).to_ascii_uppercase()
}

/// An identifier, raw (`r#type`) when it is a keyword.
pub fn ident(s: &str) -> Ident {
    match s {
        "self" | "super" | "crate" | "Self" | "_" => {
            Ident::new(&format!("{s}_"), Span::call_site())
        }
        _ if KEYWORDS.contains(&s) => Ident::new_raw(s, Span::call_site()),
        _ => Ident::new(s, Span::call_site()),
    }
}

/// The plain text of an identifier as written (without `r#`).
pub fn ident_text(s: &str) -> String {
    ident(s).to_string().trim_start_matches("r#").to_string()
}
