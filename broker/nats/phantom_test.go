package natsbroker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// A delivery that never reached a handler is not an attempt: with
// MaxAttempts 1, no crash and no failure, thousands of tasks spread over
// the priorities and consumers that keep turning priorities hot and cold
// (so long polls start and end all the time) all run, and none is
// dead-lettered as "delivered 2 times, max 1" without having run.
func TestNoPhantomAttempts(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := ctxT(t)
	const n = 8000
	led := newLedger(n)
	var (
		mu       sync.Mutex
		phantoms []string
		late     []string
	)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("once", func(_ context.Context, task taskpool.Task) error {
		if task.Attempt != 1 {
			mu.Lock()
			late = append(late, fmt.Sprintf("%s ran at attempt %d", task.ID, task.Attempt))
			mu.Unlock()
		}
		led.add(task.ID)
		return nil
	}))
	var terminal atomic.Int32
	settled := make(chan struct{})
	hook := natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
		if a == natsbroker.ActionDeadLetter && errors.Is(out.Err, natsbroker.ErrAttemptsExhausted) {
			mu.Lock()
			phantoms = append(phantoms, out.Task.ID)
			mu.Unlock()
		}
		if (a == natsbroker.ActionAck || a == natsbroker.ActionDeadLetter) && terminal.Add(1) == n {
			close(settled)
		}
	})
	for range 3 {
		_, js := connect(t, srv.URL())
		// A phantom comes back after the ack wait and is dead-lettered,
		// which the test waits for. The ack wait is short enough for that
		// but not so short that a lease runs out on a busy machine: at
		// 500ms (extended every 250ms), once in a run of every module's
		// tests at once, two tasks waiting in a consumer lost their lease
		// and were rightly dead-lettered as exhausted.
		startConsumer(t, js, reg, hook, natsbroker.WithWorkers(2), natsbroker.WithMaxAttempts(1),
			natsbroker.WithAckWait(2*time.Second), natsbroker.WithPollWait(20*time.Millisecond))
	}
	_, pjs := connect(t, srv.URL())
	prod := newProducer(t, ctx, pjs)
	// Trickle the tasks in, a few every millisecond, so that priorities
	// keep turning cold and hot and long polls keep starting and ending.
	prios := []taskpool.Priority{taskpool.PriorityHigh, taskpool.PriorityDefault, taskpool.PriorityLow}
	pace := time.NewTicker(time.Millisecond)
	defer pace.Stop()
	for i := 0; i < n; i += 4 {
		<-pace.C
		batch := make([]taskpool.Task, 4)
		for j := range batch {
			batch[j] = taskpool.Task{ID: fmt.Sprint("p", i+j), Type: "once", Priority: prios[(i+j)%3]}
		}
		_, err := prod.EnqueueBatch(ctx, batch)
		require.NoError(t, err)
	}
	waitDone(t, settled, 40*time.Second, "every task acked or dead-lettered")
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d of %d tasks ran; %d dead-lettered without running; %d ran late: %v", led.distinct(), n, len(phantoms), len(late), late)
	assert.Empty(t, phantoms, "dead-lettered without running")
	assert.Empty(t, late, "first run at attempt > 1")
	assert.Equal(t, n, led.distinct())
}
