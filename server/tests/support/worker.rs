//! Runs the prebuilt Worker (server/build/) under `wrangler dev` (workerd, local DO SQLite and R2)
//! on a free loopback port, and stops it with SIGTERM to its process group when dropped
//! (SIGKILL would orphan workerd).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running local Worker.
pub struct WorkerServer {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    _state: TempDir,
}

/// The project's top-level folder.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

impl WorkerServer {
    /// Starts the Worker with fresh state and the test account, `overrides` applied to its
    /// variables (passed as `--var NAME:VALUE`, which wins over any `.dev.vars`).
    pub fn start(overrides: &[(&str, &str)]) -> WorkerServer {
        let vars = super::account::vars_with(overrides);
        let root = project_root();
        let bundle = root.join("server/build/index.js");
        assert!(
            bundle.is_file(),
            "{} is missing: build the Worker first (npm test does)",
            bundle.display()
        );
        let node = root.join("node_modules/.bin/node");
        assert!(
            node.exists(),
            "node_modules missing: run `npm test` (it installs the toolchain)"
        );
        let state = TempDir::new("pds-worker-state");
        let mut cmd = Command::new(node);
        cmd.current_dir(&root)
            .arg(root.join("node_modules/wrangler/bin/wrangler.js"))
            .args([
                "dev",
                "--ip",
                "127.0.0.1",
                "--port",
                "0",
                "--inspector-port",
                "0",
            ])
            .arg("--persist-to")
            .arg(&state.0)
            .arg("--show-interactive-dev-session=false")
            .env("PDS_SKIP_BUILD", "1")
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for (name, value) in &vars {
            cmd.arg("--var").arg(format!("{name}:{value}"));
        }
        let mut child = cmd.spawn().expect("spawn wrangler dev");
        let (tx, rx) = mpsc::channel::<String>();
        // Drain both pipes for the life of the process so they never fill.
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut log = String::new();
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    log.push_str(&line);
                    log.push('\n');
                    if let Some(i) = line.find("Ready on http://") {
                        break line[i + "Ready on ".len()..]
                            .trim()
                            .trim_end_matches('/')
                            .to_owned();
                    }
                }
                Err(_) => {
                    stop(&mut child);
                    panic!("wrangler dev did not become ready:\n{log}");
                }
            }
        };
        std::thread::spawn(move || while rx.recv().is_ok() {});
        WorkerServer {
            child,
            base,
            _state: state,
        }
    }
}

fn stop(child: &mut Child) {
    let pgid = child.id() as i32;
    // SAFETY: kill(2) with a negative pid signals the process group we created; no memory involved.
    unsafe {
        libc::kill(-pgid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.wait();
}

impl Drop for WorkerServer {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new, empty directory whose name no other test in this process can get.
    pub fn new(prefix: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Parallel tests start within the same clock tick: the counter keeps names apart.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
