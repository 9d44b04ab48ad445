#!/usr/bin/env bash
# Builds the Worker bundle (server/build/) with worker-build, using local tools only.
# Extra arguments go to worker-build (e.g. --no-opt for a faster, larger build).
# PDS_SKIP_BUILD=1 makes this a no-op, for wrangler runs against a prebuilt bundle.
set -euo pipefail
[ "${PDS_SKIP_BUILD:-}" = 1 ] && exit 0
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root/server"
# wasm-opt runs once, here, after wasm-bindgen: worker-build's own pass (-O) is skipped, and -Oz
# runs in the same pass that strips the function-name section (about 440 KB of the raw wasm,
# 98 KiB gzip, used only by debuggers). -Oz: 10.5 KB smaller than -O, the same gzip size, and the
# same speed within spread. Each wasm-opt run parses and prints the whole module, which binaryen's
# JavaScript build does slowly. Not Cargo's `strip = true`: it also drops the target-features
# section wasm-bindgen needs.
optimize=(-Oz)
passed=()
for arg in "$@"; do
  if [ "$arg" = --no-opt ]; then optimize=(); else passed+=("$arg"); fi
done
# Panic locations carry source paths as strings in the wasm. Dependencies' are shortened to
# what identifies them (`worker-0.8.7/src/...`): the build machine's registry prefix was 4.9 KB
# of the raw wasm, and made the bundle differ from machine to machine. (The standard library's
# `/rustc/<commit>/` paths come precompiled and cannot be remapped here; a RUSTFLAGS set in the
# environment takes precedence over this variable, and then nothing is remapped.)
remap=()
for src in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do remap+=("--remap-path-prefix=$src="); done
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="${remap[*]}"
worker-build --release --no-opt ${passed[@]+"${passed[@]}"}
wasm-opt "${optimize[@]}" --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-multivalue --enable-reference-types --enable-exception-handling \
  --strip-debug --strip-producers \
  build/index_bg.wasm -o build/index_bg.wasm
