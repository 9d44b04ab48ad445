#!/usr/bin/env bash
# Builds the Worker bundle (server/build/) with worker-build, using local tools only.
# Extra arguments go to worker-build (e.g. --no-opt for a faster, larger build).
# PDS_SKIP_BUILD=1 makes this a no-op, for wrangler runs against a prebuilt bundle.
set -euo pipefail
[ "${PDS_SKIP_BUILD:-}" = 1 ] && exit 0
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root/server"
worker-build --release "$@"
# The function-name section (about 440 KB of the raw wasm, 98 KiB gzip) is shipped by default and
# used only by debuggers. Stripped here, after wasm-bindgen, rather than with Cargo's
# `strip = true`, which also drops the target-features section wasm-bindgen needs.
wasm-opt --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --strip-debug --strip-producers \
  build/index_bg.wasm -o build/index_bg.wasm
