#!/usr/bin/env bash
# Installs what building and testing need, into the project where the tool allows:
# the wasm32 target (rustup), npm packages (node_modules/, including Node 22, wrangler,
# wasm-opt, esbuild), and worker-build + wasm-bindgen-cli (.tools/). Idempotent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

if [ ! -x node_modules/.bin/wrangler ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # Not `npm ci`: with `omit-lockfile-registry-resolved` (set on these machines) npm leaves other
  # platforms' optional packages out of the lock and `npm ci` then refuses it. `npm install`
  # installs the locked versions and leaves the lock as it is.
  npm install --no-audit --no-fund --loglevel=error
fi

# cargo_tool NAME VERSION [cargo install flags...]: installs NAME at exactly VERSION into .tools/.
cargo_tool() {
  local name=$1 version=$2 bin=$3; shift 3
  if [ -x ".tools/bin/$bin" ] && grep -qs "\"$name $version " .tools/.crates.toml; then return; fi
  echo "setup: installing $name $version into .tools/ (a few minutes, once)"
  cargo install "$name" --version "$version" --root .tools --quiet "$@"
}
cargo_tool worker-build 0.8.7 worker-build --locked
# wasm-bindgen-cli must equal the wasm-bindgen version in Cargo.lock. Not --locked: its
# lock pins a yanked webpki-roots.
wbg_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
cargo_tool wasm-bindgen-cli "$wbg_version" wasm-bindgen
