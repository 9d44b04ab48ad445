//! generated/ must be exactly what codegen produces from lexicons/: every file, Cargo.toml
//! included, and nothing else (a leftover file, such as an old copy of the runtime, fails).

use std::collections::BTreeMap;

#[test]
fn generated_is_fresh() {
    let root = pds_codegen::workspace_root();
    let (_, files) = pds_codegen::generate_workspace(&root).unwrap();
    let problems = pds_codegen::compare_with_dir(&files, &root.join("generated"));
    assert!(
        problems.is_empty(),
        "generated/ is stale; run `cargo run -p pds-codegen`:\n{}",
        problems.join("\n")
    );
}

/// The runtime is a crate of its own (codegen/runtime/), depended on, never copied in.
#[test]
fn runtime_is_a_dependency_not_a_copy() {
    let root = pds_codegen::workspace_root();
    let (_, files) = pds_codegen::generate_workspace(&root).unwrap();
    let copies: Vec<&String> = files
        .keys()
        .filter(|k| k.starts_with("src/runtime"))
        .collect();
    assert!(
        copies.is_empty(),
        "runtime copied into generated/: {copies:?}"
    );
    assert!(files["Cargo.toml"].contains("pds-runtime = { path = \"../codegen/runtime\" }"));
    assert!(files["src/lib.rs"].contains("pub use pds_runtime as runtime;"));
    assert!(root.join("codegen/runtime/Cargo.toml").is_file());
}

#[test]
fn generation_is_deterministic() {
    let root = pds_codegen::workspace_root();
    let (_, a) = pds_codegen::generate_workspace(&root).unwrap();
    let (_, b) = pds_codegen::generate_workspace(&root).unwrap();
    assert_eq!(a, b);
    for (rel, text) in &a {
        assert!(
            text.lines().next().unwrap_or("").contains("@generated"),
            "{rel} lacks the @generated line"
        );
    }
}

/// The comparison itself: a deleted line, a missing file and an extra file are all reported.
#[test]
fn comparison_detects_edits_and_stale_files() {
    let dir = std::env::temp_dir().join(format!("pds-codegen-fresh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let mut expected = BTreeMap::new();
    expected.insert(
        "src/a.rs".to_string(),
        "// @generated\nfn a() {}\nfn b() {}\n".to_string(),
    );
    expected.insert("src/b.rs".to_string(), "// @generated\n".to_string());
    for (rel, text) in &expected {
        std::fs::write(dir.join(rel), text).unwrap();
    }
    assert!(pds_codegen::compare_with_dir(&expected, &dir).is_empty());

    std::fs::write(dir.join("src/a.rs"), "// @generated\nfn b() {}\n").unwrap();
    std::fs::write(dir.join("src/old.rs"), "// @generated\n").unwrap();
    std::fs::remove_file(dir.join("src/b.rs")).unwrap();
    let problems = pds_codegen::compare_with_dir(&expected, &dir);
    assert_eq!(
        problems,
        vec![
            "generated/src/a.rs: differs from the lexicons (first at line 2)".to_string(),
            "generated/src/b.rs: missing".to_string(),
            "generated/src/old.rs: stale file, not produced by codegen".to_string(),
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
