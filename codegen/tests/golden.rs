//! The generator's output for each small lexicon of the interop catalog, pinned byte for byte
//! in codegen/tests/golden/ so every language feature has reviewable output.
//! `UPDATE_GOLDEN=1 cargo test -p pds-codegen --test golden` rewrites them.

mod support;

use std::path::PathBuf;

#[test]
fn catalog_output_matches_golden_files() {
    let (corpus, ids) = support::catalog_corpus();
    let files =
        pds_codegen::generate_golden(&corpus, &ids, quote::quote! { crate::catalog }).unwrap();
    assert_eq!(files.len(), 6, "five documents and one namespace trait");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut problems = Vec::new();
    for (name, text) in &files {
        let path = dir.join(name);
        if update {
            std::fs::write(&path, text).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(old) if old == *text => {}
            Ok(_) => problems.push(format!("{name}: differs")),
            Err(_) => problems.push(format!("{name}: missing")),
        }
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if !files.contains_key(&name) {
            problems.push(format!("{name}: stale golden file"));
        }
    }
    assert!(
        problems.is_empty(),
        "golden files out of date (UPDATE_GOLDEN=1 to rewrite):\n{}",
        problems.join("\n")
    );
}
