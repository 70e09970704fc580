package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const sample = `goos: linux
goarch: amd64
pkg: github.com/taskpool/taskpool/bench
cpu: Some CPU
BenchmarkTrivial/lib=taskpool/workers=2-2   1000000   100.0 ns/op   100.0 ns/task   15 B/op   0 allocs/op
BenchmarkTrivial/lib=pond/workers=2-2       1000000   200.0 ns/op   200.0 ns/task   16 B/op   0 allocs/op
BenchmarkTrivial/lib=taskpool/workers=2-2   1000000   120.0 ns/op   120.0 ns/task   15 B/op   0 allocs/op
BenchmarkTrivial/lib=taskpool/workers=2-2   1000000   300.0 ns/op   300.0 ns/task   15 B/op   0 allocs/op
BenchmarkTrivial/lib=ants/workers=2-2       1000000   400.0 ns/op   400.0 ns/task   0 B/op   0 allocs/op
BenchmarkQueuedMemory/lib=taskpool/queued=1000000-2  1  4.9e+08 ns/op  117.5 B/queued-task  132446824 B/op  3695 allocs/op
BenchmarkLatency/lib=ants/load=50-2   20000   100000 ns/op   100000 ns/task   12484 p50-ns   30000 p99-ns   0 B/op   0 allocs/op
BenchmarkLatency/lib=taskpool/load=50-2   20000   100000 ns/op   100000 ns/task   10000 p50-ns   20000 p99-ns   0 B/op   0 allocs/op
BenchmarkFailing/lib=x
--- FAIL: BenchmarkFailing/lib=x
PASS
`

func TestParse(t *testing.T) {
	res, err := parse(strings.NewReader(sample))
	require.NoError(t, err)
	assert.Equal(t, "linux", res.goos)
	assert.Equal(t, "Some CPU", res.cpu)
	assert.Equal(t, []string{"Trivial/workers=2", "QueuedMemory/queued=1000000", "Latency/load=50"}, res.workloads)
	assert.Equal(t, []string{"taskpool", "pond", "ants"}, res.libs)

	s := res.get("Trivial/workers=2", "taskpool", unitNsTask)
	assert.Equal(t, 3, s.n)
	assert.InDelta(t, 120.0, s.median, 1e-9)
	assert.InDelta(t, 100.0, s.min, 1e-9)
	assert.InDelta(t, 300.0, s.max, 1e-9)
	assert.False(t, res.get("Trivial/workers=2", "conc", unitNsTask).ok())

	assert.Equal(t, kindThroughput, res.kind("Trivial/workers=2"))
	assert.Equal(t, kindMemory, res.kind("QueuedMemory/queued=1000000"))
	assert.Equal(t, kindLatency, res.kind("Latency/load=50"))
	assert.Equal(t, []string{"taskpool", "ants"}, res.libsOf("Latency/load=50"))
}

func TestPairedRatio(t *testing.T) {
	res, err := parse(strings.NewReader(`
BenchmarkX/lib=a-2  1  0 ns/op  100 ns/task
BenchmarkX/lib=b-2  1  0 ns/op  200 ns/task
BenchmarkX/lib=a-2  1  0 ns/op  400 ns/task
BenchmarkX/lib=b-2  1  0 ns/op  400 ns/task
BenchmarkX/lib=a-2  1  0 ns/op  150 ns/task
BenchmarkX/lib=b-2  1  0 ns/op  200 ns/task
BenchmarkX/lib=c-2  1  0 ns/op  100 ns/task
`))
	require.NoError(t, err)
	r, ok := res.pairedRatio("X", "a", "b", unitNsTask)
	require.True(t, ok)
	assert.InDelta(t, 0.75, r, 1e-9) // median of 0.5, 1, 0.75

	r, ok = res.pairedRatio("X", "c", "a", unitNsTask) // counts differ: ratio of medians
	require.True(t, ok)
	assert.InDelta(t, 100.0/150, r, 1e-9)

	_, ok = res.pairedRatio("X", "a", "missing", unitNsTask)
	assert.False(t, ok)
}

func TestQuiet(t *testing.T) {
	res, err := parse(strings.NewReader(`
BenchmarkLatency/lib=a/load=50-2  1  0 ns/op  1000 ns/task  0.5 overrun-%  10 p50-ns
BenchmarkLatency/lib=a/load=50-2  1  0 ns/op  1500 ns/task  3.5 overrun-%  99 p50-ns
BenchmarkLatency/lib=b/load=50-2  1  0 ns/op  1010 ns/task  20 p50-ns
`))
	require.NoError(t, err)
	assert.Equal(t, []float64{10}, res.quiet("Latency/load=50", "a", unitP50))
	assert.Equal(t, []float64{20}, res.quiet("Latency/load=50", "b", unitP50), "no overrun metric: every round")
}

func TestSummarise(t *testing.T) {
	tests := []struct {
		give       []float64
		wantMedian float64
	}{
		{give: nil, wantMedian: 0},
		{give: []float64{5}, wantMedian: 5},
		{give: []float64{4, 1, 3, 2}, wantMedian: 2.5},
		{give: []float64{9, 1, 5}, wantMedian: 5},
	}
	for _, tt := range tests {
		assert.InDelta(t, tt.wantMedian, summarise(tt.give).median, 1e-9, "%v", tt.give)
	}
}

func TestReport(t *testing.T) {
	res, err := parse(strings.NewReader(sample))
	require.NoError(t, err)

	var md bytes.Buffer
	require.NoError(t, writeMarkdown(&md, res, machine{nproc: 2, rounds: "3", charts: []string{"throughput.svg"}}))
	out := md.String()
	assert.Contains(t, out, "| Trivial/workers=2 | ns/task | 120 | 200 | 400 | 0.60 | 0.30 |")
	assert.Contains(t, out, "| Latency/load=50 | p99-ns | 20000 | – | 30000 | – | 0.67 |")
	assert.Contains(t, out, "| Latency/load=50 | taskpool | 10 µs | 10 µs–10 µs | 20 µs | 20 µs–20 µs | 1/1 | 10 µs | 20 µs |")
	assert.Contains(t, out, "![throughput.svg](throughput.svg)")
	assert.Contains(t, out, "| taskpool | 120 | 100–300 | – | 0 | 15.0 | 1.00 |")

	dir := t.TempDir()
	p, err := throughputChart(res)
	require.NoError(t, err)
	svg, png := filepath.Join(dir, "t.svg"), filepath.Join(dir, "t.png")
	require.NoError(t, save(p, 400, 200, svg, png))
	for _, f := range []string{svg, png} {
		st, err := os.Stat(f)
		require.NoError(t, err)
		assert.Positive(t, st.Size(), f)
	}
	_, err = latencyChart(res)
	require.NoError(t, err)
}

func TestParseContention(t *testing.T) {
	cs, err := parseContention(strings.NewReader(`# round workload wall_s own_cpu_s others_cpu_pct
1 Trivial 9.50 13.00 3.2
1 Latency 10.00 12.00 40.0
2 Trivial 9.40 13.10 5.0
`))
	require.NoError(t, err)
	require.Len(t, cs, 2)
	assert.Equal(t, "Trivial", cs[0].workload)
	assert.Equal(t, []float64{3.2, 5.0}, cs[0].pct)

	_, err = parseContention(strings.NewReader("1 Trivial 9.5\n"))
	assert.Error(t, err)

	var md bytes.Buffer
	require.NoError(t, writeMarkdown(&md, &results{}, machine{nproc: 2, others: cs}))
	assert.Contains(t, md.String(), "| Trivial | 4% | 5% |")
}

func TestFmtNs(t *testing.T) {
	tests := []struct {
		give float64
		want string
	}{
		{give: 10, want: "10 ns"},
		{give: 1000, want: "1 µs"},
		{give: 12500, want: "12.5 µs"},
		{give: 2e6, want: "2 ms"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, fmtNs(tt.give))
	}
}
