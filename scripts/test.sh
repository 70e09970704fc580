#!/usr/bin/env bash
# Runs every check of the project over every Go module in the repo: gofmt,
# go vet, the race-enabled tests, a build of every example, and each
# module's benchmarks once, briefly, so that they cannot rot (no timing is
# asserted). It uses the machine's Go settings as they are.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0

unformatted=$(gofmt -l . | grep -v '^vendor/' || true)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"
	echo "$unformatted"
	fail=1
fi

# Every module, the root first.
mapfile -t modules < <(find . -name go.mod -not -path '*/vendor/*' -printf '%h\n' | sort)
# Each step on its own: a failure marks the run failed, and the other
# steps and modules still run so that one report shows every problem.
step() {
	echo "--- $m: $*"
	if ! (cd "$m" && "$@"); then
		echo "FAIL: $m: $*"
		fail=1
	fi
}
for m in "${modules[@]}"; do
	echo "=== module $m"
	step go vet ./...
	step go build ./...
	step go test -race -count=1 -timeout 10m ./...
	# Benchmarks once each, no tests, to keep them compiling and running.
	step go test -count=1 -run '^$' -bench . -benchtime 1x -timeout 10m ./...
done

if [ "$fail" -ne 0 ]; then
	echo "FAILED"
	exit 1
fi
echo "all modules passed"
