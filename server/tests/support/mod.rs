//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// Defines a `native::<name>` and (with `--features worker-e2e`) a `worker::<name>` test for each
/// scenario `fn <name>(base_url: &str)`: the same scenario against both shells. Invoke it once
/// per test file, listing every scenario.
#[allow(unused_macros)]
macro_rules! on_both_shells {
    ($($name:ident),* $(,)?) => {
        mod native {
            $(#[test] fn $name() { let s = crate::support::native::NativeServer::start(&[]); super::$name(&s.base); })*
        }
        #[cfg(feature = "worker-e2e")]
        mod worker {
            $(#[test] fn $name() { let s = crate::support::worker::WorkerServer::start(&[]); super::$name(&s.base); })*
        }
    };
}

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

/// The vectors of a syntax file: one per line, `#` lines and empty lines skipped,
/// lines NOT trimmed (some invalid vectors carry spaces).
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

pub mod account;
pub mod atrium;
pub mod http;
pub mod native;
pub mod oracle;
pub mod relay;
pub mod worker;
