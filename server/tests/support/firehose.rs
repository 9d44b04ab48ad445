//! The server's firehose as an independent consumer sees it: oracle/firehose-consume.mjs
//! subscribes over WebSocket and checks every frame with the reference npm libraries.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The subscribeRepos WebSocket URL of the server at `base` (`http://...`).
pub fn url(base: &str, cursor: Option<&str>) -> String {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    match cursor {
        Some(c) => format!("ws://{host}/xrpc/com.atproto.sync.subscribeRepos?cursor={c}"),
        None => format!("ws://{host}/xrpc/com.atproto.sync.subscribeRepos"),
    }
}

/// The consumer's input for `url` with the stop conditions `stop` (see the script), checking
/// signatures against the test account's key. The chain state is unknown unless the caller sets
/// `prev` (null: the stream starts at the repository's creation; a previous result's `last`).
pub fn input(url: &str, stop: Value) -> Value {
    json!({
        "url": url,
        "didKey": super::account::signing_key().public_key().to_did_key(),
        "stop": stop,
    })
}

/// A running consumer.
pub struct Consumer {
    child: Child,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: mpsc::Receiver<String>,
    _dir: super::worker::TempDir,
}

impl Consumer {
    /// Starts the consumer and waits until its socket is open (or it gave up connecting), so
    /// that whatever the test does next happens while it is subscribed.
    pub fn start(input: &Value) -> Consumer {
        let dir = super::worker::TempDir::new("pds-consumer");
        let file = dir.0.join("input.json");
        std::fs::write(&file, input.to_string()).unwrap();
        let root = super::worker::project_root();
        let mut child = Command::new(super::oracle::node_binary())
            .current_dir(&root)
            .arg(root.join("server/tests/oracle/firehose-consume.mjs"))
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run node");
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = out.read_to_end(&mut bytes);
            bytes
        });
        let (tx, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut consumer = Consumer {
            child,
            stdout,
            stderr,
            _dir: dir,
        };
        loop {
            match consumer.stderr.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line == "open" => return consumer,
                Ok(line) => eprintln!("firehose-consume: {line}"),
                // The script ended (stderr closed) without opening: finish() reports why.
                Err(mpsc::RecvTimeoutError::Disconnected) => return consumer,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = consumer.child.kill();
                    panic!("the firehose consumer did not connect to {}", input["url"]);
                }
            }
        }
    }

    /// Waits for the consumer to meet its stop condition; returns its JSON result.
    pub fn finish(mut self) -> Value {
        let status = self.child.wait().expect("wait for node");
        let stdout = std::mem::replace(&mut self.stdout, std::thread::spawn(Vec::new))
            .join()
            .unwrap();
        let stderr: Vec<String> = self.stderr.try_iter().collect();
        assert!(
            status.success(),
            "firehose-consume.mjs failed: {}\n{}",
            stderr.join("\n"),
            String::from_utf8_lossy(&stdout)
        );
        serde_json::from_slice(&stdout).unwrap_or_else(|e| {
            panic!(
                "firehose-consume.mjs printed no JSON ({e}): {}",
                String::from_utf8_lossy(&stdout)
            )
        })
    }
}

impl Drop for Consumer {
    /// A consumer abandoned by a failing test must not outlive it.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Subscribes, consumes until the stop condition and returns the result.
pub fn consume(input: &Value) -> Value {
    Consumer::start(input).finish()
}

/// Fails the test unless the consumer subscribed and every frame passed the checks.
pub fn assert_verified(result: &Value) {
    assert_eq!(
        result["opened"], true,
        "the consumer could not subscribe: {result}"
    );
    assert_eq!(
        result["verified"], true,
        "the independent consumer rejected a frame: {}",
        result["failure"]
    );
}

/// The seqs of a consumer's result.
pub fn seqs(result: &Value) -> Vec<u64> {
    result["seqs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect()
}
