#!/usr/bin/env bash
# integration/fuzz.sh — run every native Go fuzz target briefly, one after another.
#
#   integration/fuzz.sh [COUNT]    COUNT inputs per target (default 10000)
#
# A count, not a duration: -fuzztime=Ns races Go's own fuzzing deadline on a loaded
# machine. New failing inputs land in the package's testdata/fuzz/ as usual.
set -euo pipefail
COUNT=${1:-${COUNT:-10000}}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fail=0
while IFS=: read -r file fn; do
	pkg=./$(dirname "$file")
	echo "==> $pkg $fn ($COUNT inputs)"
	go test -run '^$' -fuzz "^$fn\$" -fuzztime="${COUNT}x" "$pkg" || fail=1
done < <(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed 's#^\./##; s#:func #:#' | sort)
exit $fail
