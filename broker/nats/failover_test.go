package natsbroker_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// A 3-node cluster of separate processes, an R3 queue, a producer and two
// consumers on different nodes, and the stream leader SIGKILLed mid-run:
// every task completes, and every Enqueue returns nil, its retries riding
// out the election (during which the stream does not answer).
func TestClusterStreamLeaderFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	t.Parallel()
	cl := startProcCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	const queue, n = "failover", 600
	q := natsbroker.WithQueue(queue)
	led := newLedger(n)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("work", func(_ context.Context, task taskpool.Task) error {
		led.add(task.ID)
		return nil
	}))
	logs := newLogSignal("retrying")
	_, pjs := cl.dial(t, 0)
	var prod *natsbroker.Producer
	// Until the meta leader has seen every peer, an R3 stream cannot be
	// placed ("no suitable peers"): a permanent error in general.
	require.Eventually(t, func() bool {
		var err error
		prod, err = natsbroker.NewProducer(ctx, pjs, q, natsbroker.WithReplicas(3), natsbroker.WithLogger(slog.New(logs)))
		return err == nil
	}, 20*time.Second, 50*time.Millisecond, "R3 queue not created")
	for i := 1; i <= 2; i++ {
		_, js := cl.dial(t, i)
		startConsumer(t, js, reg, q, natsbroker.WithAckWait(2*time.Second), natsbroker.WithPollWait(100*time.Millisecond))
	}

	var retried atomic.Int32
	killed := -1
	start := time.Now()
	var killedAt, slowest time.Duration
	for i := range n {
		if i == n/3 {
			st, err := pjs.Stream(ctx, "TASKPOOL_"+queue)
			require.NoError(t, err)
			killed = cl.index(st.CachedInfo().Cluster.Leader)
			require.GreaterOrEqual(t, killed, 0, "no stream leader")
			killedAt = time.Since(start)
			cl.sigkill(t, killed)
		}
		before := len(logs.messages())
		t0 := time.Now()
		ectx, ecancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := prod.Enqueue(ectx, taskpool.Task{ID: fmt.Sprint("t", i), Type: "work"})
		ecancel()
		require.NoError(t, err, "task %d", i)
		slowest = max(slowest, time.Since(t0))
		if len(logs.messages()) > before {
			retried.Add(1)
		}
	}
	enqueued := time.Since(start)
	waitDone(t, led.done, 40*time.Second, "every task after the failover")
	t.Logf("SIGKILLed stream leader %s after %v; %d tasks enqueued in %v (slowest Enqueue %v), %d of them retried; all %d completed in %v, %d duplicate runs",
		cl.names[killed], killedAt, n, enqueued, slowest, retried.Load(), led.distinct(), time.Since(start), led.duplicates())
	assert.Equal(t, n, led.distinct())
}
