//! Runs the prebuilt Worker (server/build/) under `wrangler dev` (workerd, local DO SQLite and R2)
//! on a free loopback port, and stops it with SIGTERM to its process group when dropped
//! (SIGKILL would orphan workerd).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running local Worker.
pub struct WorkerServer {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// Every line wrangler and workerd printed (stdout and stderr, in arrival order), across
    /// restarts: the Worker's `console.log` lines land here.
    pub log: Arc<Mutex<Vec<String>>>,
    vars: Vec<(String, String)>,
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
    /// The folder wrangler persists the Worker's state to (DO SQLite, R2).
    pub fn state_dir(&self) -> &Path {
        &self._state.0
    }

    /// Starts the Worker with fresh state and the test account, `overrides` applied to its
    /// variables (passed as `--var NAME:VALUE`, which wins over any `.dev.vars`).
    pub fn start(overrides: &[(&str, &str)]) -> WorkerServer {
        let vars = super::account::vars_with(overrides);
        let state = TempDir::new("pds-worker-state");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (child, base) = launch(&state.0, &vars, &log);
        WorkerServer {
            child,
            base,
            log,
            vars,
            _state: state,
        }
    }

    /// Stops workerd (SIGTERM to wrangler's process group) and starts a new `wrangler dev` on
    /// the same persisted state (DO SQLite, R2) and variables, on a new port (`base` changes).
    pub fn restart(&mut self) {
        self.restart_with(|_| {});
    }

    /// Sets a configuration variable for the next [`Self::restart`] (like a redeploy with a
    /// changed variable).
    pub fn set_var(&mut self, name: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value.to_owned(),
            None => self.vars.push((name.to_owned(), value.to_owned())),
        }
    }

    /// `restart`, running `edit` on the persisted state folder while workerd is stopped.
    pub fn restart_with(&mut self, edit: impl FnOnce(&Path)) {
        stop(&mut self.child);
        edit(&self._state.0);
        let (child, base) = launch(&self._state.0, &self.vars, &self.log);
        self.child = child;
        self.base = base;
    }

    /// How many log lines so far contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until at least `count` log lines contain `needle`; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log_count(needle) >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log_count(needle) >= count
    }
}

/// Runs `wrangler dev` on `state` with `vars` until it is ready; its output lines are appended
/// to `log` for the life of the process. Returns the process and its base URL.
// The child is returned and stopped by `WorkerServer`'s drop (or `restart`), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn launch(
    state: &Path,
    vars: &[(String, String)],
    log: &Arc<Mutex<Vec<String>>>,
) -> (Child, String) {
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
        .arg(state)
        .arg("--show-interactive-dev-session=false")
        .env("PDS_SKIP_BUILD", "1")
        // wrangler dev wraps the Worker in a middleware that reads every unread request body
        // to its end before answering; Cloudflare does not. Tests see what production does
        // (a body refused from its declared length is never read).
        .env("WRANGLER_DISABLE_REQUEST_BODY_DRAINING", "1")
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (name, value) in vars {
        cmd.arg("--var").arg(format!("{name}:{value}"));
    }
    let mut child = cmd.spawn().expect("spawn wrangler dev");
    // Lines from this process only: an earlier run's "Ready on" must not count.
    let first = log.lock().unwrap().len();
    // Drain both pipes for the life of the process so they never fill, keeping every line.
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = log.lock().unwrap()[first..].iter().find_map(|line| {
            let i = line.find("Ready on http://")?;
            Some(
                line[i + "Ready on ".len()..]
                    .trim()
                    .trim_end_matches('/')
                    .to_owned(),
            )
        });
        if let Some(base) = ready {
            return (child, base);
        }
        if Instant::now() > deadline {
            stop(&mut child);
            let lines = log.lock().unwrap()[first..].join("\n");
            panic!("wrangler dev did not become ready:\n{lines}");
        }
        std::thread::sleep(Duration::from_millis(25));
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
