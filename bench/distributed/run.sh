#!/usr/bin/env bash
# run.sh runs the distributed comparison (BenchmarkDistributed) and writes
# bench/distributed/results/:
#
#   raw.txt        every invocation's go test -bench output, each preceded
#                  and followed by a "# load" line (/proc/loadavg, and the
#                  share of the machine's CPU that processes other than the
#                  benchmark and its servers used meanwhile)
#   benchstat.txt  benchstat's summary of the benchmark lines of raw.txt
#   results.md     engine × consumers: median tasks/s and range, the ratio
#                  taskpool-nats / asynq, the machine and the versions
#
# It installs redis-server and PostgreSQL with apt-get if they are
# missing, starts a private redis-server and a private PostgreSQL cluster
# on free ports of 127.0.0.1 with their data in a temporary directory
# (PostgreSQL as the postgres user when run as root), and stops both on
# exit. The NATS server is embedded in the benchmark.
#
# It builds the test binary once and runs it in interleaved rounds: a
# round runs every engine × consumers once, one invocation each, engines
# side by side for each consumer count, so that a slow phase of the
# machine hits all engines alike.
#
# Environment:
#   ROUNDS=5      number of rounds
#   TASKS=50000   tasks per timed run (-test.benchtime TASKSx)
#   OUT=dir       where to write instead of results/
#   QUICK=1       one round of 2000 tasks into a temporary directory (a
#                 smoke test of the script; results/ is left alone)
set -euo pipefail

cd "$(dirname "$0")"

# benchstat, pinned, run through the module proxy so nothing is installed.
BENCHSTAT=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

rounds=${ROUNDS:-5}
tasks=${TASKS:-50000}
out=${OUT:-results}
engines=(taskpool-nats asynq river)
consumer_counts=(1 2 4)

tmp=$(mktemp -d)
chmod 755 "$tmp" # the postgres user needs to reach its directories
redis_pid=
pg_ctl=
pg_data=
as_pg=()

cleanup() {
	if [[ -n $redis_pid ]]; then
		kill "$redis_pid" 2>/dev/null || true
		wait "$redis_pid" 2>/dev/null || true
	fi
	if [[ -n $pg_data && -f $pg_data/postmaster.pid ]]; then
		"${as_pg[@]}" "$pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null 2>&1 || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

if [[ ${QUICK:-} == 1 ]]; then
	rounds=1
	tasks=2000
	out=${OUT:-$tmp/results}
fi
mkdir -p "$out"
start=$(date +%s)

# --- servers ---

apt_install() {
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		sudo=(sudo)
	fi
	echo "installing $* with apt-get"
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null
}

pg_bindir() {
	ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

if ! command -v redis-server >/dev/null; then
	apt_install redis-server
fi
if [[ -z $(pg_bindir) ]] && ! command -v initdb >/dev/null; then
	apt_install postgresql
fi
pg_bin=$(pg_bindir)
if [[ -z $pg_bin ]]; then
	pg_bin=$(dirname "$(command -v initdb)")
fi

# free_port prints a port of 127.0.0.1 nothing listens on.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		if ! (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

# wait_for runs "$@" until it succeeds, for up to 30s.
wait_for() {
	local i
	for ((i = 0; i < 300; i++)); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	echo "timed out waiting for: $*" >&2
	return 1
}

redis_port=$(free_port)
mkdir "$tmp/redis"
# Redis defaults (RDB snapshots as built in, no AOF), data in $tmp.
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$tmp/redis" \
	--logfile "$tmp/redis/redis.log" --daemonize no &
redis_pid=$!
wait_for redis-cli -h 127.0.0.1 -p "$redis_port" ping

# PostgreSQL refuses to run as root.
if [[ $(id -u) -eq 0 ]]; then
	as_pg=(runuser -u postgres --)
fi
pg_ctl=$pg_bin/pg_ctl
pg_data=$tmp/pg/data
pg_port=$(free_port)
mkdir -p "$tmp/pg/sock"
if [[ $(id -u) -eq 0 ]]; then
	chown -R postgres: "$tmp/pg"
fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_data" -U bench --auth=trust -E UTF8 >"$tmp/initdb.log"
# PostgreSQL defaults (fsync and synchronous_commit on, 128MB shared
# buffers), listening on 127.0.0.1 only, sockets in $tmp.
"${as_pg[@]}" "$pg_ctl" -D "$pg_data" -l "$tmp/pg/log" -w \
	-o "-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories=$tmp/pg/sock" start >/dev/null
"$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U bench bench
pg_pid=$(head -n 1 "$pg_data/postmaster.pid")

export TASKPOOL_BENCH_REDIS=127.0.0.1:$redis_port
export TASKPOOL_BENCH_PG="postgres://bench@127.0.0.1:$pg_port/bench?sslmode=disable"
echo "redis-server on $TASKPOOL_BENCH_REDIS, PostgreSQL on 127.0.0.1:$pg_port"

# --- load accounting ---

ticks=$(getconf CLK_TCK)
ncpu=$(nproc)
# busy prints the CPU time, in clock ticks, the machine has spent on
# anything but idling since boot.
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
# servers prints the CPU time, in clock ticks, of redis-server, the
# postmaster and its live children (PostgreSQL backends), with the
# children they have reaped.
servers() {
	local pids
	pids="$redis_pid $pg_pid $(pgrep -P "$pg_pid" | tr '\n' ' ')"
	for p in $pids; do
		# The fields after the command name, which has no spaces here:
		# utime stime cutime cstime are the 14th to 17th.
		awk '{print $14+$15+$16+$17}' "/proc/$p/stat" 2>/dev/null || true
	done | awk '{s += $1} END {print s + 0}'
}

# --- rounds ---

echo "building the test binary"
go test -c -o "$tmp/bench.test" .

raw=$out/raw.txt.tmp
: >"$raw"
{
	echo "# $(date -u +%FT%TZ) rounds=$rounds tasks=$tasks"
	echo "# load lines: /proc/loadavg, then others_cpu_pct: the share of all $ncpu cores that"
	echo "# processes other than this benchmark, its consumers and the Redis and PostgreSQL"
	echo "# servers used during the invocation"
} >>"$raw"
TIMEFORMAT='%R %U %S'
for ((r = 1; r <= rounds; r++)); do
	for c in "${consumer_counts[@]}"; do
		for e in "${engines[@]}"; do
			echo "round $r/$rounds: engine=$e consumers=$c"
			echo "# load before round=$r engine=$e consumers=$c: $(cat /proc/loadavg)" >>"$raw"
			b0=$(busy)
			s0=$(servers)
			# time reports to the group's stderr, the file; the
			# benchmark's own stderr still goes to ours (fd 3).
			{ time "$tmp/bench.test" -test.run '^$' \
				-test.bench "^BenchmarkDistributed\$/^engine=$e\$/^consumers=$c\$" \
				-test.benchtime "${tasks}x" -test.timeout 10m >>"$raw" 2>&3; } 3>&2 2>"$tmp/time"
			b1=$(busy)
			s1=$(servers)
			read -r wall user sys <"$tmp/time"
			others=$(awk -v w="$wall" -v u="$user" -v s="$sys" -v d="$((b1 - b0))" \
				-v sv="$((s1 - s0))" -v t="$ticks" -v n="$ncpu" \
				'BEGIN { o = (d - sv) / t - u - s; if (o < 0) o = 0; printf "%.1f", 100 * o / (w * n) }')
			echo "# load after round=$r engine=$e consumers=$c: $(cat /proc/loadavg) wall_s=$wall others_cpu_pct=$others" >>"$raw"
		done
	done
done
mv "$raw" "$out/raw.txt"
elapsed=$(($(date +%s) - start))

# --- summary ---

echo "summarising"
grep -E '^(goos|goarch|pkg|cpu):|^Benchmark' "$out/raw.txt" | awk '!/^(goos|goarch|pkg|cpu):/ || !seen[$0]++' >"$tmp/bench.txt"
# From $tmp, so that benchstat labels the column "bench.txt", not a path.
abs_out=$(cd "$out" && pwd)
(cd "$tmp" && go run "$BENCHSTAT" bench.txt) >"$abs_out/benchstat.txt"

mod() { go list -m -f '{{.Path}} {{.Version}}' "$1"; }
cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
{
	echo "# Distributed comparison: results"
	echo
	echo "End-to-end tasks/s (first enqueue → server confirms the last task acked or"
	echo "completed) of $tasks no-op tasks per run, 16 handler goroutines per consumer"
	echo "process; the settings of each engine are in README.md."
	echo
	# Per engine and consumers: median, min, max of tasks/s, and the
	# per-round ratio taskpool-nats / asynq.
	awk -v engines="${engines[*]}" -v counts="${consumer_counts[*]}" '
		/^# load before round=/ { split($4, a, "="); round = a[2] }
		/^Benchmark/ {
			split($1, parts, "/"); e = parts[2]; sub(/^engine=/, "", e)
			c = parts[3]; sub(/^consumers=/, "", c); sub(/-[0-9]+$/, "", c)
			for (i = 2; i <= NF; i++) if ($i == "tasks/s") v = $(i - 1)
			vals[e, c] = vals[e, c] " " v; per[e, c, round] = v
			if (round > rounds) rounds = round
		}
		/^# load after round=/ {
			for (i = 1; i <= NF; i++) if ($i ~ /^others_cpu_pct=/) { split($i, o, "="); if (o[2] > maxo) maxo = o[2] }
		}
		function stats(s,   n, x, i, j, t) {
			n = split(s, x, " ")
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] + 0 < x[i] + 0) { t = x[i]; x[i] = x[j]; x[j] = t }
			med = (n % 2) ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
			lo = x[1]; hi = x[n]; cnt = n
		}
		function k(v) { return sprintf("%.1fk", v / 1000) }
		END {
			ne = split(engines, E, " "); nc = split(counts, C, " ")
			printf "| engine |"; for (j = 1; j <= nc; j++) printf " %s consumer%s |", C[j], C[j] == 1 ? "" : "s"; print ""
			printf "| --- |"; for (j = 1; j <= nc; j++) printf " --- |"; print ""
			for (i = 1; i <= ne; i++) {
				printf "| %s |", E[i]
				for (j = 1; j <= nc; j++) {
					if ((E[i], C[j]) in vals) { stats(vals[E[i], C[j]]); printf " **%s** (%s–%s, n=%d) |", k(med), k(lo), k(hi), cnt; m[E[i], C[j]] = med }
					else printf " skipped |"
				}
				print ""
			}
			printf "| taskpool-nats / asynq, median of medians |"
			for (j = 1; j <= nc; j++) {
				if (("taskpool-nats", C[j]) in m && ("asynq", C[j]) in m) printf " **%.1f×** |", m["taskpool-nats", C[j]] / m["asynq", C[j]]
				else printf " – |"
			}
			print ""
			printf "| taskpool-nats / asynq, per round (min–max) |"
			for (j = 1; j <= nc; j++) {
				s = ""
				for (r = 1; r <= rounds; r++) if (("taskpool-nats", C[j], r) in per && ("asynq", C[j], r) in per) s = s " " per["taskpool-nats", C[j], r] / per["asynq", C[j], r]
				if (s == "") { printf " – |"; continue }
				stats(s); printf " %.1f×–%.1f× |", lo, hi
			}
			print ""
			print ""
			printf "Cells: median tasks/s over the rounds, (min–max, number of rounds). The\n"
			printf "largest share of the machine that other processes used during one\n"
			printf "invocation was %.1f%% (per invocation in raw.txt, `# load` lines).\n", maxo
		}' "$out/raw.txt"
	echo
	echo "## Machine and versions"
	echo
	echo "- $(nproc) CPUs: $cpu_model"
	echo "- $(go version)"
	echo "- $(mod github.com/nats-io/nats-server/v2) (embedded), $(mod github.com/nats-io/nats.go)"
	echo "- $(mod github.com/hibiken/asynq), $(redis-server --version | awk '{print $1, $2, $3}')"
	echo "- $(mod github.com/riverqueue/river), $(mod github.com/jackc/pgx/v5), $("$pg_bin/postgres" --version)"
	echo "- taskpool: commit $(git -C ../.. rev-parse --short HEAD 2>/dev/null || echo unknown) (the working tree, through replace directives)"
	echo "- $rounds rounds, $tasks tasks per timed run, $((elapsed / 60))m$((elapsed % 60))s for the rounds"
	echo
	echo "benchstat's summary is in benchstat.txt, the raw output and the load in raw.txt."
} >"$out/results.md"

echo "done in $(($(date +%s) - start))s: $out/results.md"
if [[ ${QUICK:-} == 1 ]]; then
	cat "$out/results.md"
fi
