#!/usr/bin/env bash
# Runs every native Go fuzz target in the repository (func FuzzXxx in *_test.go)
# for FUZZTIME each, one after the other, with the seed corpus and testdata/fuzz
# regression entries first. FUZZTIME is a count (e.g. 10000x) by default: a
# duration races Go's own fuzzing deadline on a loaded machine.
#   integration/fuzz.sh                 # FUZZTIME=10000x
#   FUZZTIME=2000x integration/fuzz.sh  # what `make test` runs
#   FUZZTIME=60s integration/fuzz.sh    # `make fuzz`
# A failing input is written to the package's testdata/fuzz/<Target>/ by Go: commit
# it with the fix, and it becomes a regression test of the normal `go test` run.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10000x}
go=${GO:-go}
tags=${FUZZTAGS:-}

mapfile -t targets < <(grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . |
  while read -r file; do
    dir=$(dirname "$file")
    grep -oE '^func Fuzz[A-Za-z0-9_]*' "$file" | sed "s|^func |$dir |"
  done | sort)

if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no targets found" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, FUZZTIME=$fuzztime"
start=$(date +%s)
i=0
for t in "${targets[@]}"; do
  i=$((i + 1))
  dir=${t% *} name=${t#* }
  t0=$(date +%s)
  printf 'fuzz: [%d/%d] %s %s ... ' "$i" "${#targets[@]}" "$dir" "$name"
  log=$(mktemp)
  if ! $go test ${tags:+-tags "$tags"} -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$dir" >"$log" 2>&1; then
    echo "FAILED"
    cat "$log"
    rm -f "$log"
    echo "fuzz: $name failed; the input is in $dir/testdata/fuzz/$name/" >&2
    exit 1
  fi
  rm -f "$log"
  echo "ok ($(( $(date +%s) - t0 ))s)"
done
echo "fuzz: all ${#targets[@]} targets passed in $(( $(date +%s) - start ))s"
