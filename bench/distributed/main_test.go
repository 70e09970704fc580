package distributed_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The benchmark re-executes this binary as its consumer processes:
	// workerEnv names the engine a worker process runs.
	if name := os.Getenv(workerEnv); name != "" {
		os.Exit(runWorker(name))
	}
	goleak.VerifyTestMain(m)
}
