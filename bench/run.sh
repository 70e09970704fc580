#!/usr/bin/env bash
# run.sh runs the peer comparison and writes bench/results/:
#
#   raw.txt         every round's go test -bench output
#   benchstat.txt   benchstat's summary of raw.txt
#   results.md      medians, allocations, ratios and the machine
#   throughput.svg/.png, latency.svg/.png   charts drawn by cmd/report
#   contention.txt  per round and workload, the share of the machine's CPU
#                   that other processes used meanwhile
#
# It builds the test binary once and runs it in interleaved rounds: each
# round runs every workload once, so a slow phase of the machine hits all
# libraries alike (back-to-back -count runs proved bimodal on a shared
# 2-core machine).
#
# Environment:
#   ROUNDS=10   number of rounds
#   OUT=dir     where to write instead of results/
#   QUICK=1     one round at -benchtime=1x, into OUT or a temporary
#               directory (a smoke test of the script; results/ is left
#               alone)
set -euo pipefail

cd "$(dirname "$0")"

# benchstat, pinned, run through the module proxy so nothing is installed.
BENCHSTAT=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

rounds=${ROUNDS:-10}
out=${OUT:-results}
# name  benchtime: one benchmark op is one task, except QueuedMemory,
# whose op queues a million.
workloads=(
	"Trivial 1000000x"
	"CPU1us 100000x"
	"Sleep1ms 10000x"
	"Future 1000000x"
	"ParallelSubmit 1000000x"
	"QueuedMemory 1x"
	"Latency 20000x"
	"LatencyIdle 2000x"
)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [[ ${QUICK:-} == 1 ]]; then
	rounds=1
	out=${OUT:-$tmp/results}
fi
mkdir -p "$out"

start=$(date +%s)
echo "building the test binary"
go test -c -o "$tmp/bench.test" .

# The state of the core module being measured: bench uses ../ as it is.
commit=$(git -C .. rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C .. status --porcelain -- . ':!bench' 2>/dev/null | awk '{print $2}' | paste -sd, - || true)
if [[ -n $dirty ]]; then
	core="commit $commit, with uncommitted changes to $dirty"
else
	core="commit $commit, clean"
fi

# busy prints the CPU time, in clock ticks, that the machine has spent
# on anything but idling since boot.
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
ticks=$(getconf CLK_TCK)
ncpu=$(nproc)

raw=$out/raw.txt.tmp
contention=$out/contention.txt.tmp
: >"$raw"
echo "# round workload wall_s own_cpu_s others_cpu_pct (the share of all $ncpu cores used by other processes)" >"$contention"
TIMEFORMAT='%R %U %S'
for ((r = 1; r <= rounds; r++)); do
	for w in "${workloads[@]}"; do
		read -r name benchtime <<<"$w"
		if [[ ${QUICK:-} == 1 ]]; then
			benchtime=1x
		fi
		echo "round $r/$rounds: $name ($benchtime)"
		before=$(busy)
		# time reports to the group's stderr, the file; the benchmark's
		# own stderr still goes to ours (fd 3).
		{ time "$tmp/bench.test" -test.run '^$' -test.bench "^Benchmark$name\$" \
			-test.benchtime "$benchtime" -test.timeout 10m >>"$raw" 2>&3; } 3>&2 2>"$tmp/time"
		after=$(busy)
		read -r wall user sys <"$tmp/time"
		awk -v r="$r" -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" \
			-v d="$((after - before))" -v t="$ticks" -v c="$ncpu" \
			'BEGIN { own = u + s; others = d / t - own; if (others < 0) others = 0
			         printf "%d %s %.2f %.2f %.1f\n", r, n, w, own, 100 * others / (w * c) }' >>"$contention"
	done
done
mv "$raw" "$out/raw.txt"
mv "$contention" "$out/contention.txt"
elapsed=$(($(date +%s) - start))

echo "summarising"
go run "$BENCHSTAT" "$out/raw.txt" >"$out/benchstat.txt"
{
	echo
	echo "# The same, one column per library (the first column, taskpool, is the base of the comparisons):"
	echo
	go run "$BENCHSTAT" -col /lib "$out/raw.txt"
} >>"$out/benchstat.txt"

duration="$((elapsed / 60))m$((elapsed % 60))s for $rounds rounds (the benchmarks; building and reporting add well under a minute)"
go run ./cmd/report -raw "$out/raw.txt" -contention "$out/contention.txt" -out "$out" \
	-core "$core" -duration "$duration" -rounds "$rounds"

echo "done in $(($(date +%s) - start))s: $out/results.md"
if [[ ${QUICK:-} == 1 ]]; then
	ls -l "$out"
fi
