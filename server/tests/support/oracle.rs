//! Runs the reference implementation's npm packages (scripts in server/tests/oracle/) as
//! independent checks of what the server produced.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

/// The project's Node 22 (`node_modules/.bin/node`); fails the test when it is missing.
pub fn node_binary() -> PathBuf {
    let path = super::worker::project_root().join("node_modules/.bin/node");
    assert!(
        path.exists(),
        "{} missing: run `npm test` (or `npm install`) at the workspace root",
        path.display()
    );
    path
}

/// Starts `server/tests/oracle/<script>` with `args` as a service: its standard input is a pipe
/// that stops it when closed, and the first line it prints is JSON saying where it listens.
/// Returns the process, that pipe, and the line.
pub fn spawn_service(
    script: &str,
    args: &[String],
    stderr: Stdio,
) -> (Child, ChildStdin, serde_json::Value) {
    let root = super::worker::project_root();
    let mut child = Command::new(node_binary())
        .current_dir(&root)
        .arg(root.join("server/tests/oracle").join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("start {script}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("read {script}'s first line: {e}"));
    let info = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{script} printed {line:?}"));
    let stdin = child.stdin.take().unwrap();
    (child, stdin, info)
}

/// Runs `server/tests/oracle/<script>` on `input` (written to a file, passed as the argument)
/// and returns its JSON output; fails the test with the script's stderr when it fails.
pub fn run_node(script: &str, input: &serde_json::Value) -> serde_json::Value {
    let dir = super::worker::TempDir::new("pds-oracle");
    let file = dir.0.join("input.json");
    std::fs::write(&file, input.to_string()).unwrap();
    let root = super::worker::project_root();
    let out = Command::new(node_binary())
        .current_dir(&root)
        .arg(root.join("server/tests/oracle").join(script))
        .arg(&file)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "{script} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Verifies a repository CAR exported for the test account with `@atproto/repo` (every block,
/// the whole tree, the commit signature against the account's did:key); returns the script's
/// report (`records`: "collection/rkey" -> CID).
pub fn verify_repo_car(car: &[u8]) -> serde_json::Value {
    use base64::Engine;
    let input = serde_json::json!({
        "did": super::account::did(),
        "didKey": super::account::signing_key().public_key().to_did_key(),
        "repoCar": base64::engine::general_purpose::STANDARD.encode(car),
        "proofs": [],
    });
    run_node("sync-verify.mjs", &input)
}
