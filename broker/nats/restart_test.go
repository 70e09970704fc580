package natsbroker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

func TestServerRestartMidRun(t *testing.T) {
	t.Parallel()
	srv, restart := startRestartable(t)
	nc, js := connect(t, srv.URL())
	ctx := ctxT(t)

	const n = 400
	led := newLedger(n + 1)
	halfway := make(chan struct{})
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("work", func(ctx context.Context, task taskpool.Task) error {
		led.add(task.ID)
		if led.distinct() == n/4 {
			close(halfway)
		}
		select { // simulated work
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
		}
		return nil
	}))
	startConsumer(t, js, reg, natsbroker.WithWorkers(4), natsbroker.WithAckWait(time.Second),
		natsbroker.WithPollWait(100*time.Millisecond))
	prod := newProducer(t, ctx, js)
	tasks := make([]taskpool.Task, n/2)
	for i := range tasks {
		tasks[i] = taskpool.Task{ID: fmt.Sprint("before-", i), Type: "work"}
	}
	_, err := prod.EnqueueBatch(ctx, tasks)
	require.NoError(t, err)

	waitDone(t, halfway, 20*time.Second, "a quarter of the tasks")
	srv.Shutdown()
	require.Eventually(t, func() bool { return !nc.IsConnected() }, 5*time.Second, 5*time.Millisecond)

	// While the server is down, Enqueue fails clearly instead of losing
	// the task.
	down, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = prod.Enqueue(down, taskpool.Task{ID: "while-down", Type: "work"})
	cancel()
	var ee *natsbroker.EnqueueError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, "while-down", ee.ID)

	// Same port, same store: streams, consumers and queued tasks survive.
	restart()
	require.Eventually(t, nc.IsConnected, 10*time.Second, 10*time.Millisecond)
	for i := range n / 2 {
		tasks[i] = taskpool.Task{ID: fmt.Sprint("after-", i), Type: "work"}
	}
	_, err = prod.EnqueueBatch(ctx, tasks)
	require.NoError(t, err)
	// The failed enqueue may or may not have been stored (the client
	// buffers publishes while reconnecting): enqueue it again with the
	// same ID, and it runs once either way.
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "while-down", Type: "work"})

	waitDone(t, led.done, 30*time.Second, "every task after the restart")
	t.Logf("%d tasks completed across a server restart, %d duplicate runs (acks lost with the server)", led.distinct(), led.duplicates())
	assert.Equal(t, n+1, led.distinct())
	led.mu.Lock()
	assert.Equal(t, 1, led.runs["while-down"])
	led.mu.Unlock()
}

func TestClientSideDelayFallback(t *testing.T) {
	t.Parallel()
	delayTest(t, natsbroker.WithClientSideDelays(), natsbroker.WithQueue("fallback"))
}
