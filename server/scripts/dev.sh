#!/usr/bin/env bash
# `npm start`: builds the Worker and runs it locally under wrangler dev (workerd), with the
# Durable Object's SQLite and R2 kept on disk in .wrangler/state.
# PDS_PORT (default 2583) chooses the port.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"
bash server/scripts/setup.sh
bash server/scripts/build-worker.sh
port="${PDS_PORT:-2583}"
echo "Starting the PDS on http://127.0.0.1:$port (Ctrl-C stops it)"
PDS_SKIP_BUILD=1 exec wrangler dev --ip 127.0.0.1 --port "$port" --persist-to .wrangler/state \
  --show-interactive-dev-session=false --var "PDS_HOSTNAME:localhost:$port"
