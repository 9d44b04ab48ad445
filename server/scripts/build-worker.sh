#!/usr/bin/env bash
# Builds the Worker bundle (server/build/) with worker-build, using local tools only.
# Extra arguments go to worker-build (e.g. --no-opt for a faster, larger build).
# PDS_SKIP_BUILD=1 makes this a no-op, for wrangler runs against a prebuilt bundle.
set -euo pipefail
[ "${PDS_SKIP_BUILD:-}" = 1 ] && exit 0
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root/server"
exec worker-build --release "$@"
