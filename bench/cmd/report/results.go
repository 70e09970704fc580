package main

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Units the report knows. Anything else in the raw output is kept but
// not shown.
const (
	unitNsTask   = "ns/task"
	unitCPUTask  = "cpu-ns/task"
	unitAllocs   = "allocs/op"
	unitBytes    = "B/op"
	unitQueued   = "B/queued-task"
	unitP50      = "p50-ns"
	unitP99      = "p99-ns"
	unitOverrun  = "overrun-%"
	unitNsPerOp  = "ns/op"
	libKey       = "lib"
	benchPrefix  = "Benchmark"
	goosPrefix   = "goos:"
	goarchPrefix = "goarch:"
	cpuPrefix    = "cpu:"
)

// result is one benchmark line: a library's run of a workload.
type result struct {
	workload string // the name without "Benchmark", the lib key and the -N suffix
	lib      string
	values   map[string]float64 // by unit
}

// results is everything read from the raw output, in order of first
// appearance.
type results struct {
	goos, goarch, cpu string
	workloads         []string
	libs              []string
	samples           map[string]map[string]map[string][]float64 // workload, lib, unit
}

// parse reads the output of one or more go test -bench runs.
func parse(r io.Reader) (*results, error) {
	res := &results{samples: map[string]map[string]map[string][]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(text, goosPrefix):
			res.goos = strings.TrimSpace(strings.TrimPrefix(text, goosPrefix))
		case strings.HasPrefix(text, goarchPrefix):
			res.goarch = strings.TrimSpace(strings.TrimPrefix(text, goarchPrefix))
		case strings.HasPrefix(text, cpuPrefix):
			res.cpu = strings.TrimSpace(strings.TrimPrefix(text, cpuPrefix))
		case strings.HasPrefix(text, benchPrefix):
			r, ok, err := parseLine(text)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			if ok {
				res.add(r)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return res, nil
}

// parseLine parses a benchmark result line such as
//
//	BenchmarkTrivial/lib=pond/workers=2-2  1000000  147.5 ns/op  147.5 ns/task  0 B/op  0 allocs/op
//
// It reports false for a line that is not a result (a benchmark's name
// printed alone, as go test does for a failing or verbose one).
func parseLine(line string) (result, bool, error) {
	f := strings.Fields(line)
	if len(f) < 4 || len(f)%2 != 0 {
		return result{}, false, nil
	}
	if _, err := strconv.Atoi(f[1]); err != nil {
		return result{}, false, nil
	}
	name := strings.TrimPrefix(f[0], benchPrefix)
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	r := result{values: map[string]float64{}}
	var parts []string
	for _, p := range strings.Split(name, "/") {
		if v, ok := strings.CutPrefix(p, libKey+"="); ok {
			r.lib = v
			continue
		}
		parts = append(parts, p)
	}
	if r.lib == "" {
		return result{}, false, nil
	}
	r.workload = strings.Join(parts, "/")
	for i := 2; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return result{}, false, fmt.Errorf("value %q: %w", f[i], err)
		}
		r.values[f[i+1]] = v
	}
	return r, true, nil
}

func (res *results) add(r result) {
	byLib, ok := res.samples[r.workload]
	if !ok {
		byLib = map[string]map[string][]float64{}
		res.samples[r.workload] = byLib
		res.workloads = append(res.workloads, r.workload)
	}
	byUnit, ok := byLib[r.lib]
	if !ok {
		byUnit = map[string][]float64{}
		byLib[r.lib] = byUnit
	}
	if !slices.Contains(res.libs, r.lib) {
		res.libs = append(res.libs, r.lib)
	}
	for u, v := range r.values {
		byUnit[u] = append(byUnit[u], v)
	}
}

// stat is the summary of one metric's samples.
type stat struct {
	median   float64
	min, max float64
	n        int
}

func (s stat) ok() bool { return s.n > 0 }

// get summarises a workload's samples for one library and unit.
func (res *results) get(workload, lib, unit string) stat {
	return summarise(res.samples[workload][lib][unit])
}

// pairedRatio is the median over the rounds of a's value divided by b's
// in the same round, for a workload and unit. Pairing by round cancels
// the slow drifts of a shared machine that a ratio of medians keeps. The
// samples of a workload are in round order, one per round; when the two
// libraries have different sample counts it falls back to the ratio of
// the medians.
func (res *results) pairedRatio(workload, a, b, unit string) (float64, bool) {
	xs, ys := res.samples[workload][a][unit], res.samples[workload][b][unit]
	if len(xs) == 0 || len(ys) == 0 {
		return 0, false
	}
	if len(xs) != len(ys) {
		sa, sb := summarise(xs), summarise(ys)
		if sb.median == 0 {
			return 0, false
		}
		return sa.median / sb.median, true
	}
	rs := make([]float64, 0, len(xs))
	for i := range xs {
		if ys[i] != 0 {
			rs = append(rs, xs[i]/ys[i])
		}
	}
	if len(rs) == 0 {
		return 0, false
	}
	return summarise(rs).median, true
}

// quietThreshold is the largest overrun-% of a quiet round.
const quietThreshold = 2.5

// quiet returns the samples of lib for unit from the quiet rounds: those
// in which at most quietThreshold percent of the latency tasks overran
// (took half as long again as they should, because the operating system
// gave their core to another process). Rounds without an overrun metric
// count as quiet.
func (res *results) quiet(workload, lib, unit string) []float64 {
	over, xs := res.samples[workload][lib][unitOverrun], res.samples[workload][lib][unit]
	if len(over) == 0 {
		return xs
	}
	if len(over) != len(xs) {
		return nil
	}
	var kept []float64
	for i, o := range over {
		if o <= quietThreshold {
			kept = append(kept, xs[i])
		}
	}
	return kept
}

func summarise(xs []float64) stat {
	if len(xs) == 0 {
		return stat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return stat{median: med, min: s[0], max: s[n-1], n: n}
}

// has reports whether any library reported unit for workload.
func (res *results) has(workload, unit string) bool {
	for _, byUnit := range res.samples[workload] {
		if len(byUnit[unit]) > 0 {
			return true
		}
	}
	return false
}

// libsOf returns the libraries that ran workload, in report order.
func (res *results) libsOf(workload string) []string {
	var libs []string
	for _, l := range res.libs {
		if _, ok := res.samples[workload][l]; ok {
			libs = append(libs, l)
		}
	}
	return libs
}

// kind sorts workloads into the report's sections.
type kind int

const (
	kindThroughput kind = iota
	kindMemory
	kindLatency
)

func (res *results) kind(workload string) kind {
	switch {
	case res.has(workload, unitQueued):
		return kindMemory
	case res.has(workload, unitP50):
		return kindLatency
	}
	return kindThroughput
}

func (res *results) workloadsOf(k kind) []string {
	var ws []string
	for _, w := range res.workloads {
		if res.kind(w) == k {
			ws = append(ws, w)
		}
	}
	return ws
}
