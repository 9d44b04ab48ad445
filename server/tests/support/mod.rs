//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// Defines a `native::<name>` and a `worker::<name>` test for each scenario
/// `fn <name>(base_url: &str)`: the same scenario against both shells. Invoke it once per test
/// file, listing every scenario. The Worker tests are `#[ignore]`d so that the native suite needs
/// no built Worker; `npm test` builds it and then runs them with `--ignored`.
#[allow(unused_macros)]
macro_rules! on_both_shells {
    ($($name:ident),* $(,)?) => {
        mod native {
            $(#[test] fn $name() { let s = crate::support::native::NativeServer::start(&[]); super::$name(&s.base); })*
        }
        mod worker {
            $(#[test] #[ignore = "Worker under workerd: npm test runs it with --ignored"] fn $name() { let s = crate::support::worker::WorkerServer::start(&[]); super::$name(&s.base); })*
        }
    };
}

/// Like `on_both_shells!`, for scenarios `fn <name>(server: &mut dyn Shell)` that need the
/// server itself (to restart it, or to read the Worker's log), not only its URL.
#[allow(unused_macros)]
macro_rules! on_both_servers {
    ($($name:ident),* $(,)?) => {
        mod native_server {
            $(#[test] fn $name() { let mut s = crate::support::native::NativeServer::start(&[]); super::$name(&mut s); })*
        }
        mod worker_server {
            $(#[test] #[ignore = "Worker under workerd: npm test runs it with --ignored"] fn $name() { let mut s = crate::support::worker::WorkerServer::start(&[]); super::$name(&mut s); })*
        }
    };
}

/// Like `on_both_shells!`, for scenarios `fn <name>(kind: ShellKind)` that start their own
/// server (with configuration overrides, or more than one).
#[allow(unused_macros)]
macro_rules! on_both_kinds {
    ($($name:ident),* $(,)?) => {
        mod native_kind {
            $(#[test] fn $name() { super::$name(crate::support::ShellKind::Native); })*
        }
        mod worker_kind {
            $(#[test] #[ignore = "Worker under workerd: npm test runs it with --ignored"] fn $name() { super::$name(crate::support::ShellKind::Worker); })*
        }
    };
}

/// Which shell a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellKind {
    Native,
    Worker,
}

/// Starts a server of `kind` with the test account, `overrides` applied to its variables.
pub fn start_shell(kind: ShellKind, overrides: &[(&str, &str)]) -> Box<dyn Shell> {
    match kind {
        ShellKind::Native => Box::new(native::NativeServer::start(overrides)),
        ShellKind::Worker => Box::new(worker::WorkerServer::start(overrides)),
    }
}

/// A running server of either shell.
pub trait Shell {
    /// `http://127.0.0.1:<port>` (changes on restart).
    fn base(&self) -> &str;
    /// Stops the server and starts it again on the same stored state.
    fn restart(&mut self);
    /// Sets a configuration variable for the next restart.
    fn set_var(&mut self, name: &str, value: &str);
    /// The Worker under workerd, when this is one.
    fn worker(&self) -> Option<&worker::WorkerServer> {
        None
    }
    /// Runs `sql` on the account's stored SQLite database, from outside the server (the Worker
    /// is restarted around it: workerd owns its files while it runs).
    fn run_stored_sql(&mut self, sql: &str);
    /// How many blobs the blob store holds on disk, read from outside the server: files in the
    /// native blob directory, or objects in the local R2 bucket's folder.
    fn stored_blob_files(&self) -> usize;
}

/// The regular files under `dir` whose path passes `wanted`, at any depth.
pub fn count_files(dir: &std::path::Path, wanted: &dyn Fn(&std::path::Path) -> bool) -> usize {
    let mut count = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for path in entries.map(|e| e.unwrap().path()) {
            if path.is_dir() {
                pending.push(path);
            } else if wanted(&path) {
                count += 1;
            }
        }
    }
    count
}

/// Runs `visit` on every SQLite file under `dir` that holds a table named `table`, with its
/// path.
pub fn with_sqlite_files_holding(
    dir: &std::path::Path,
    table: &str,
    visit: &mut dyn FnMut(&rusqlite::Connection, &std::path::Path),
) {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "sqlite") {
                let db = rusqlite::Connection::open(&path).unwrap();
                let holds: i64 = db
                    .query_row(
                        "SELECT count(*) FROM sqlite_master WHERE name = ?",
                        [table],
                        |r| r.get(0),
                    )
                    .unwrap();
                if holds > 0 {
                    visit(&db, &path);
                }
            }
        }
    }
}

/// Runs `sql` on every SQLite file under `dir` that holds the account (its
/// `maintenance_state` table); returns how many it ran on.
pub fn run_sql_on_account_files(dir: &std::path::Path, sql: &str) -> usize {
    let mut done = 0;
    with_sqlite_files_holding(dir, "maintenance_state", &mut |db, path| {
        db.execute_batch(sql)
            .unwrap_or_else(|e| panic!("{sql} on {}: {e}", path.display()));
        done += 1;
    });
    done
}

impl Shell for native::NativeServer {
    fn base(&self) -> &str {
        &self.base
    }
    fn restart(&mut self) {
        native::NativeServer::restart(self)
    }
    fn set_var(&mut self, name: &str, value: &str) {
        native::NativeServer::set_var(self, name, value)
    }
    fn run_stored_sql(&mut self, sql: &str) {
        // SQLite serializes this writer with the running server's connection.
        assert_eq!(run_sql_on_account_files(&self.data.0, sql), 1);
    }
    fn stored_blob_files(&self) -> usize {
        // Blobs are `blobs/<cid>`; `blobs/tmp/` holds uploads in progress.
        count_files(&self.data.0.join("blobs"), &|p| {
            p.parent().and_then(|d| d.file_name()) == Some("blobs".as_ref())
        })
    }
}

impl Shell for worker::WorkerServer {
    fn base(&self) -> &str {
        &self.base
    }
    fn restart(&mut self) {
        worker::WorkerServer::restart(self)
    }
    fn set_var(&mut self, name: &str, value: &str) {
        worker::WorkerServer::set_var(self, name, value)
    }
    fn worker(&self) -> Option<&worker::WorkerServer> {
        Some(self)
    }
    fn run_stored_sql(&mut self, sql: &str) {
        self.restart_with(|state| {
            assert_eq!(
                run_sql_on_account_files(state, sql),
                1,
                "the Durable Object's SQLite file"
            );
        });
    }
    fn stored_blob_files(&self) -> usize {
        // Miniflare keeps a local R2 bucket's object bodies as files under `r2/<bucket>/blobs/`.
        count_files(self.state_dir(), &|p| {
            let path = p.to_string_lossy();
            path.contains("/r2/") && path.contains("/blobs/")
        })
    }
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
pub mod fake_service;
pub mod firehose;
pub mod http;
pub mod native;
pub mod oauth;
pub mod oracle;
pub mod plc;
pub mod ref_pds;
pub mod relay;
pub mod worker;

/// A command's standard output; fails the test, showing both outputs, when it did not succeed.
pub fn stdout_of(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
