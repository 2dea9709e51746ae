#!/usr/bin/env bash
# `make bench`: every benchmark in one run against the same services, so ratios
# compare like with like. Results go to stdout and to bench-results/<date>.txt.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
out="$repo/bench-results"
mkdir -p "$out"
log="$out/$(date -u +%Y%m%dT%H%M%SZ).txt"
export TAPLINE_SERVICES_ENV="${TAPLINE_SERVICES_ENV:-$repo/.services/env}"

run() {
  echo "== $*" | tee -a "$log"
  "$@" 2>&1 | tee -a "$log"
}

# Each section is a script of its own (integration/bench/NAME.sh) that prints its
# tables; BENCH_SECTIONS picks and orders them.
for section in ${BENCH_SECTIONS:-postgres ssh http kubernetes memory dev console}; do
  if [ -x "integration/bench/$section.sh" ]; then
    run "integration/bench/$section.sh"
  fi
done
# Go benchmarks carry their own baselines (raw produce, plain copy, bare insert).
# Those that process a whole workload per call and report rates run once: with a
# time budget the testing package calls them again and again, each call paying
# the workload's setup.
whole='Throughput|Sink|FramesRead|WithCHDB'
run go test -run '^$' -bench . -skip "$whole" -benchtime "${BENCH_GO_TIME:-3s}" ./ingest/recorder/... ./processors/... ./sinks/...
run go test -run '^$' -bench "$whole" -benchtime 1x ./processors/... ./sinks/...
# The read path: one 1,000,000-frame session through the query API on chDB
# (docs/performance.md "Read path"); BENCH_READ_FRAMES sets its length.
run go test -tags chdb -run '^$' -bench ReadPath -benchtime 1x ./query/api/
echo "results saved to $log"
