#!/usr/bin/env bash
# `npm test`: every test. Installs the toolchain, checks formatting and clippy first (fail fast;
# no warnings, native and wasm32), runs the native suite (unit tests, interop vectors, codegen
# freshness, in-process XRPC), builds the Worker, then runs the end-to-end suite against it
# under workerd. Each phase prints the time elapsed so far, to see where a slow run goes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"
phase() { echo "== npm test, ${SECONDS}s: $*" >&2; }
phase setup
bash server/scripts/setup.sh
test -d ../shared/interop-tests || { echo "../shared/interop-tests is missing: the tests need it" >&2; exit 1; }
phase fmt and clippy
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p pds --target wasm32-unknown-unknown --locked -- -D warnings
phase native suite
cargo test --workspace --locked
phase Worker build
bash server/scripts/build-worker.sh
# The Worker's end-to-end tests are the ignored ones of the same, already built, test binaries.
phase Worker end to end
cargo test -p pds --test 'e2e*' --locked -- --ignored
phase done
