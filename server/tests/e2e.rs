//! End to end over HTTP on loopback: every scenario runs against the native shell and, with
//! `--features worker-e2e` (as `npm test` runs it, after building the Worker), against the real
//! Worker under workerd (wrangler dev, local DO SQLite and R2).

mod support;

use support::http::get;

/// Defines `native_<name>` and `worker_<name>` tests running `scenario(base_url)`.
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

on_both_shells!(health_and_unknown_paths);

fn health_and_unknown_paths(base: &str) {
    let health = get(base, "/xrpc/_health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["version"], env!("CARGO_PKG_VERSION"));

    let missing = get(base, "/no/such/path");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "NotFound");
}
