//! End to end against the real Worker under workerd (wrangler dev, local DO SQLite and R2).
//! Compiled with `--features worker-e2e`; `npm test` builds the Worker and runs it.
#![cfg(feature = "worker-e2e")]

mod support;

use support::http::get;
use support::worker::WorkerServer;

#[test]
fn worker_serves_health_and_rejects_unknown_paths() {
    let server = WorkerServer::start(&[]);
    let health = get(&server.base, "/xrpc/_health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["version"], env!("CARGO_PKG_VERSION"));

    let missing = get(&server.base, "/no/such/path");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "NotFound");
}
