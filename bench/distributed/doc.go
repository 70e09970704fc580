// Package distributed compares taskpool's NATS JetStream broker with asynq
// (Redis) and River (PostgreSQL) end to end: tasks enqueued by one process,
// run by 1, 2 or 4 separate consumer processes on the same machine, and
// acknowledged or completed on the server.
//
// It is a separate module so that neither the core module nor the NATS
// adapter depends on asynq or River. The package has no API: the benchmark
// is BenchmarkDistributed in bench_test.go, run.sh starts private Redis and
// PostgreSQL servers and runs it in interleaved rounds, and README.md
// describes the method, the settings of each engine and the results.
package distributed
