#!/usr/bin/env bash
# The web console's speed on embedded chDB through the real API handlers: a page of
# the sessions list among 100,000 sessions (target ≤ 300 ms) and the session page of
# a 100,000-frame SSH and Postgres session until usable (target ≤ 1 s). Run by
# integration/bench/run.sh; BENCH_CONSOLE_SESSIONS and BENCH_CONSOLE_FRAMES scale it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
if [[ -z ${CHDB_LIB_PATH:-} && -f ${TAPLINE_SERVICES_ENV:-$repo/.services/env} ]]; then
	CHDB_LIB_PATH=$(sed -n 's/^CHDB_LIB_PATH=//p' "${TAPLINE_SERVICES_ENV:-$repo/.services/env}")
	export CHDB_LIB_PATH
fi
exec go run -tags chdb ./integration/bench/consolebench \
	-sessions "${BENCH_CONSOLE_SESSIONS:-100000}" -frames "${BENCH_CONSOLE_FRAMES:-100000}"
