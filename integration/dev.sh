#!/usr/bin/env bash
# `make dev`: fetch what is missing (libchdb, demo Postgres, sshd and nginx), build, and run
# `tapline dev` in the foreground until Ctrl-C. Extra arguments go to `tapline dev`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

echo "==> demo targets and libchdb (integration/services.sh up postgres ssh http chdb)"
if ! integration/services.sh up postgres ssh http chdb; then
  echo "could not start the demo targets; tapline dev starts without them" >&2
fi
env_file=.services/env
lib=$(sed -n 's/^CHDB_LIB_PATH=//p' "$env_file" 2>/dev/null || true)
if [ -z "$lib" ] || [ ! -f "$lib" ]; then
  echo "libchdb.so is missing: run 'integration/services.sh up chdb' and check its output" >&2
  exit 1
fi

echo "==> building bin/tapline and bin/tapline-dev"
make --no-print-directory build

export CHDB_LIB_PATH=$lib TAPLINE_SERVICES_ENV=$repo/$env_file
exec bin/tapline-dev dev --data-dir "${TAPLINE_DATA_DIR:-$repo/.dev}" "$@"
