package natsbroker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// With default options, short tasks get the full prefetch: the consumer
// does not wait for a fetch round trip per worker.
func TestDefaultPrefetchShortTasks(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	const n = 3000
	led := newLedger(n)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("noop", func(_ context.Context, task taskpool.Task) error {
		led.add(task.ID)
		return nil
	}))
	c := startConsumer(t, js, reg, natsbroker.WithWorkers(2))
	prod := newProducer(t, ctx, js)
	tasks := make([]taskpool.Task, n)
	for i := range tasks {
		tasks[i] = taskpool.Task{ID: fmt.Sprint("t", i), Type: "noop"}
	}
	_, err := prod.EnqueueBatch(ctx, tasks)
	require.NoError(t, err)
	waitDone(t, led.done, 30*time.Second, "every task")
	run, rtt := c.Measured()
	t.Logf("prefetch %d (run %v, fetch %v)", c.CurrentPrefetch(), time.Duration(run), time.Duration(rtt))
	assert.Greater(t, c.CurrentPrefetch(), 8, "short tasks are prefetched")
	assert.LessOrEqual(t, c.CurrentPrefetch(), natsbroker.DefaultMaxPrefetch)
}

// With default options, slow tasks get almost no prefetch: two consumers
// share a backlog of slow tasks instead of the first one to fetch holding
// them all.
func TestDefaultPrefetchSlowTasksShared(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := ctxT(t)
	const n = 40
	var (
		mu    sync.Mutex
		ranBy = map[string]int{}
	)
	led := newLedger(n)
	handler := func(name string) *taskpool.Registry {
		reg := taskpool.NewRegistry()
		require.NoError(t, reg.HandleFunc("slow", func(ctx context.Context, task taskpool.Task) error {
			select { // simulated work
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
			mu.Lock()
			ranBy[name]++
			mu.Unlock()
			led.add(task.ID)
			return nil
		}))
		return reg
	}
	_, js1 := connect(t, srv.URL())
	_, js2 := connect(t, srv.URL())
	prod := newProducer(t, ctx, js1)
	tasks := make([]taskpool.Task, n)
	for i := range tasks {
		tasks[i] = taskpool.Task{ID: fmt.Sprint("s", i), Type: "slow"}
	}
	_, err := prod.EnqueueBatch(ctx, tasks)
	require.NoError(t, err)
	// The backlog is there before either consumer starts.
	c1 := startConsumer(t, js1, handler("a"), natsbroker.WithWorkers(2))
	c2 := startConsumer(t, js2, handler("b"), natsbroker.WithWorkers(2))
	waitDone(t, led.done, 30*time.Second, "every task")
	mu.Lock()
	defer mu.Unlock()
	t.Logf("runs %v; prefetch %d, %d", ranBy, c1.CurrentPrefetch(), c2.CurrentPrefetch())
	assert.GreaterOrEqual(t, ranBy["a"], n/4)
	assert.GreaterOrEqual(t, ranBy["b"], n/4)
	assert.LessOrEqual(t, c1.CurrentPrefetch(), 8, "slow tasks are hardly prefetched")
}
