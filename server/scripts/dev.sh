#!/usr/bin/env bash
# `npm start`: builds the Worker and runs the PDS locally under wrangler dev (workerd), with
# the Durable Object's SQLite and R2 kept on disk. On first start it creates a development
# account (did:web of the local host) in the vars file and prints its password once.
#
# Environment (all optional):
#   PDS_PORT          port on 127.0.0.1 (default 2583)
#   PDS_DEV_HANDLE    handle of a newly created dev account (default alice.test)
#   PDS_DEV_PASSWORD  password of a newly created dev account (default: random, printed once)
#   PDS_DEV_VARS      the account's vars file (default .dev.vars)
#   PDS_STATE_DIR     where local DO SQLite and R2 data live (default .wrangler/state)
# Every other PDS_* variable in the environment (PDS_RELAYS, PDS_BLOB_UPLOAD_LIMIT, ...) is
# passed to the Worker, over the value in the vars file.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"
bash server/scripts/setup.sh
port="${PDS_PORT:-2583}"
vars_file="${PDS_DEV_VARS:-.dev.vars}"
cargo run --quiet --locked -p pds --bin pds -- dev-init --port "$port" --out "$vars_file"
if ! grep -qx "PDS_HOSTNAME='localhost:$port'" "$vars_file"; then
  echo "The account in $vars_file is for another port ($(grep '^PDS_HOSTNAME=' "$vars_file")):" >&2
  echo "start with that PDS_PORT, or set PDS_DEV_VARS and PDS_STATE_DIR for a new account." >&2
  exit 1
fi
# The environment's PDS_* variables, except this script's own (PDS_PORT, PDS_STATE_DIR, PDS_DEV_*:
# PDS_DEV_PASSWORD is a clear password) and build-worker.sh's PDS_SKIP_BUILD, go to the Worker
# through a copy of the vars file in .wrangler/ (git-ignored, private), in place of the file's own.
env_file="$vars_file"
passed=()
for name in $(compgen -e | grep '^PDS_' || true); do
  [[ $name =~ ^PDS_(PORT|STATE_DIR|SKIP_BUILD|DEV_.*)$ ]] || passed+=("$name")
done
if [ ${#passed[@]} -gt 0 ]; then
  env_file=".wrangler/dev-vars.$port"
  mkdir -p .wrangler
  rm -f "$env_file"
  (
    umask 077
    names="$(IFS='|'; echo "${passed[*]}")"
    { grep -Ev "^($names)=" "$vars_file" || true; } >"$env_file"
    for name in "${passed[@]}"; do
      value="${!name}"
      if [[ $value == *"'"* || $value == *$'\n'* ]]; then
        echo "$name: a value with a single quote or a line break cannot be passed to the Worker" >&2
        exit 1
      fi
      # As in the vars file: single quotes, and `$` escaped because wrangler expands it.
      printf "%s='%s'\n" "$name" "${value//\$/\\\$}"
    done >>"$env_file"
  )
  echo "Passing to the Worker from the environment: ${passed[*]}"
fi

bash server/scripts/build-worker.sh
echo "Starting the PDS on http://127.0.0.1:$port (Ctrl-C stops it)"
# wrangler dev's own middleware would read every unread request body to its end before the
# answer goes out; Cloudflare does not, and a body refused from its declared length is never read.
export WRANGLER_DISABLE_REQUEST_BODY_DRAINING=1
PDS_SKIP_BUILD=1 exec wrangler dev --ip 127.0.0.1 --port "$port" \
  --persist-to "${PDS_STATE_DIR:-.wrangler/state}" --env-file "$env_file" \
  --show-interactive-dev-session=false
