//! Shared helpers for the codegen integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The official atproto interop vectors, kept beside the project in `../shared/interop-tests`.
/// Panics (failing the test, never skipping it) when the folder is missing.
/// `PDS_INTEROP_TESTS` overrides the location.
pub fn interop_dir() -> PathBuf {
    let dir = std::env::var_os("PDS_INTEROP_TESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/interop-tests")
        });
    assert!(
        dir.join("README.md").is_file(),
        "interop vectors missing at {}: clone the project with ../shared beside it",
        dir.display()
    );
    dir
}

/// Reads one interop file relative to the vectors folder.
pub fn interop_file(rel: &str) -> String {
    let path = interop_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The vectors of a syntax file: one per line, `#` lines and empty lines skipped, lines NOT
/// trimmed (some invalid vectors carry spaces).
pub fn syntax_vectors(name: &str) -> Vec<String> {
    let text = interop_file(&format!("syntax/{name}"));
    let vectors: Vec<String> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    assert!(!vectors.is_empty(), "no vectors in syntax/{name}");
    vectors
}

/// The lexicon catalog documents plus every workspace lexicon (the catalog refers to
/// `app.bsky.actor.defs`), and the catalog's NSIDs.
pub fn catalog_corpus() -> (
    pds_codegen::model::Corpus,
    std::collections::BTreeSet<String>,
) {
    let root = pds_codegen::workspace_root();
    let mut files = pds_codegen::load_dir(&root.join("lexicons"), "lexicons/").unwrap();
    let catalog =
        pds_codegen::load_dir(&interop_dir().join("lexicon/catalog"), "catalog/").unwrap();
    assert_eq!(catalog.len(), 5, "the interop catalog has five documents");
    let ids = catalog
        .iter()
        .map(|(_, j)| j["id"].as_str().unwrap().to_string())
        .collect();
    files.extend(catalog);
    (pds_codegen::parse::parse_corpus(&files).unwrap(), ids)
}
