#!/usr/bin/env bash
# Installs what building and testing need, into the project where the tool allows:
# the wasm32 target, rustfmt and clippy (rustup), npm packages (node_modules/, including
# Node 22, wrangler, wasm-opt, esbuild), and worker-build + wasm-bindgen-cli (.tools/).
# Idempotent, and writes no tracked file.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

# `cargo fmt` and `cargo clippy` run first in `npm test`.
for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$component-"; then
    rustup component add "$component"
  fi
done

# `npm ci` installs exactly package-lock.json and never writes it, so neither README command
# modifies a tracked file. The lock is complete for every platform (other platforms' optional
# workerd, esbuild and Node packages are in it), which `npm ci` requires. It replaces
# node_modules/, so it runs only when that is missing or older than package.json or the lock.
# After changing package.json, run `npm install --ignore-scripts` yourself and commit the
# lock it writes. Install scripts run afterwards, by `npm rebuild`: better-sqlite3 (a native
# addon that the reference PDS, @atproto/pds, needs in the migration tests) compiles from
# source, about 2 min on 2 cores, against the headers in the pinned Node 22's own package, as
# nothing prebuilt can be downloaded. It is compiled again only when it cannot open a database
# under that Node (`require` alone loads no binary).
npm_rebuild() {
  npm_config_build_from_source=true \
    npm_config_nodedir="$(node -p "require('path').resolve(process.execPath, '../..')")" \
    npm rebuild --loglevel=error "$@"
}
if [ ! -x node_modules/.bin/wrangler ] || [ package-lock.json -nt node_modules/.package-lock.json ] \
  || [ package.json -nt node_modules/.package-lock.json ]; then
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  npm_rebuild
elif ! node -e "new (require('better-sqlite3'))(':memory:')" 2>/dev/null; then
  npm_rebuild better-sqlite3
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
