// Package bench compares taskpool with its peers on the same workloads.
//
// It is a separate module so that the core module keeps no third-party
// dependencies. The benchmarks live in bench_test.go; run.sh runs them in
// interleaved rounds and cmd/report turns the raw output into
// results/results.md and the charts.
//
// The package itself holds only the naive dispatcher that taskpool was
// designed to improve on: see naiveScheduler.
package bench
