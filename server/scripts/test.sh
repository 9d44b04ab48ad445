#!/usr/bin/env bash
# `npm test`: every test. Installs the toolchain, checks formatting and clippy first (fail fast;
# no warnings, native and wasm32), runs the native suite (unit tests, interop vectors, codegen
# freshness, in-process XRPC), builds the Worker, then runs the end-to-end suite against it
# under workerd.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"
bash server/scripts/setup.sh
test -d ../shared/interop-tests || { echo "../shared/interop-tests is missing: the tests need it" >&2; exit 1; }
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p pds --target wasm32-unknown-unknown --locked -- -D warnings
cargo test --workspace --locked
bash server/scripts/build-worker.sh
cargo test -p pds --features worker-e2e --test 'e2e*' --locked
