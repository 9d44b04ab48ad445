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
bash server/scripts/build-worker.sh
echo "Starting the PDS on http://127.0.0.1:$port (Ctrl-C stops it)"
PDS_SKIP_BUILD=1 exec wrangler dev --ip 127.0.0.1 --port "$port" \
  --persist-to "${PDS_STATE_DIR:-.wrangler/state}" --env-file "$vars_file" \
  --show-interactive-dev-session=false
