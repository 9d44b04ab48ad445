#!/usr/bin/env bash
# `npm test`: every test. Installs the toolchain, checks formatting and clippy first (fail fast;
# no warnings, native and wasm32), runs the native suite (unit tests, interop vectors, codegen
# freshness, in-process XRPC), builds the Worker, then runs the end-to-end suite against it
# under workerd. Each phase prints the time elapsed so far, to see where a slow run goes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"
phase() { echo "== npm test, ${SECONDS}s: $*" >&2; }
# One full run from a clean tree: incremental caches would only add gigabytes of disk (CI ran
# out of it once) and save nothing.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Test binaries without debug sections (about half of each one's 40 MB, 37 of them): panics
# still name file and line, backtraces still name functions.
export CARGO_PROFILE_DEV_STRIP="${CARGO_PROFILE_DEV_STRIP:-debuginfo}"
phase setup
bash server/scripts/setup.sh
# The status page's tests drive Debian's Chromium (the npm tools' own browser downloads are
# blocked here); a system package, installed once when the machine lets us.
if [ -z "${PDS_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "test: installing Debian's chromium for the browser tests (once)" >&2
    apt-get install -y --no-install-recommends chromium > /dev/null \
      || { apt-get update > /dev/null && apt-get install -y --no-install-recommends chromium > /dev/null; }
  else
    echo "the browser tests need Chromium: sudo apt-get install chromium, or set PDS_CHROMIUM to one" >&2
    exit 1
  fi
fi
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
# `--workspace`, as above: with `-p pds` alone cargo unifies pds-api's features differently and
# builds pds and every test binary a second time (minutes, and gigabytes of disk).
phase Worker end to end
cargo test --workspace --test 'e2e*' --locked -- --ignored
phase done
