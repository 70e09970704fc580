package natsbroker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// WithMaxBatch caps every fetch request, whatever the free capacity: a
// consumer with room for 22 tasks and 30 waiting asks for at most 3 at a
// time (the first request asks for exactly 3).
func TestMaxBatchCapsEveryFetch(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	ctx := ctxT(t)
	spy, _ := connect(t, srv.URL())
	requests := make(chan *nats.Msg, 1024)
	_, err := spy.ChanSubscribe("$JS.API.CONSUMER.MSG.NEXT.TASKPOOL_default.>", requests)
	require.NoError(t, err)
	require.NoError(t, spy.Flush())

	p := newProducer(t, ctx, js)
	const n = 30
	tasks := make([]taskpool.Task, n)
	for i := range tasks {
		tasks[i] = taskpool.Task{ID: fmt.Sprint("t", i), Type: "ok"}
	}
	_, err = p.EnqueueBatch(ctx, tasks)
	require.NoError(t, err)
	done := newLedger(n)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("ok", func(_ context.Context, t taskpool.Task) error {
		done.add(t.ID)
		return nil
	}))
	startConsumer(t, js, reg, natsbroker.WithWorkers(2), natsbroker.WithPrefetch(20), natsbroker.WithMaxBatch(3))
	waitDone(t, done.done, 20*time.Second, "the tasks")

	var batches []int
	for len(requests) > 0 {
		m := <-requests
		var req struct {
			Batch int `json:"batch"`
		}
		require.NoError(t, json.Unmarshal(m.Data, &req), string(m.Data))
		batches = append(batches, req.Batch)
	}
	require.NotEmpty(t, batches)
	assert.Equal(t, 3, batches[0], "the first fetch: capped at 3, with room for 22")
	for _, b := range batches {
		assert.LessOrEqual(t, b, 3, "batches %v", batches)
	}
}

// EnqueueBatch keeps at most WithPublishWindow publishes unconfirmed: a
// spy on the connection's traffic sees each task's publish and the
// server's ack of it, in the order the server sent them, and never more
// than the window between them. With a window of 1 the publishes are
// one at a time.
func TestPublishWindowBoundsUnconfirmedPublishes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		give   int
		wantLE int
	}{
		{"window 1", 1, 1},
		{"window 4", 4, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t)
			_, js := connect(t, srv.URL())
			ctx := ctxT(t)
			p := newProducer(t, ctx, js, natsbroker.WithPublishWindow(tt.give))
			// One channel for both subscriptions: the connection's
			// reader fills it in the order the server sent them.
			spy, _ := connect(t, srv.URL())
			seen := make(chan *nats.Msg, 4096)
			_, err := spy.ChanSubscribe("taskpool.default.task.>", seen)
			require.NoError(t, err)
			_, err = spy.ChanSubscribe("_INBOX.>", seen)
			require.NoError(t, err)
			require.NoError(t, spy.Flush())

			const n = 200
			tasks := make([]taskpool.Task, n)
			for i := range tasks {
				tasks[i] = taskpool.Task{ID: fmt.Sprint("t", i), Type: "ok"}
			}
			_, err = p.EnqueueBatch(ctx, tasks)
			require.NoError(t, err)

			unconfirmed := map[string]bool{} // by the publish's reply subject
			published, peak := 0, 0
			for published < n || len(unconfirmed) > 0 {
				select {
				case m := <-seen:
					switch {
					case strings.HasPrefix(m.Subject, "taskpool."):
						unconfirmed[m.Reply] = true
						published++
						peak = max(peak, len(unconfirmed))
					case unconfirmed[m.Subject]:
						delete(unconfirmed, m.Subject)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("saw %d publishes, %d unconfirmed", published, len(unconfirmed))
				}
			}
			assert.LessOrEqual(t, peak, tt.wantLE)
			assert.Positive(t, peak)
		})
	}
}

// A Producer and an Inspector hold no goroutines: once their calls have
// returned, none is left beyond those the connection and the server had.
// The server's own are made first (the queue is created, and a producer
// and an inspector have opened it and made the same calls), and the
// JetStream context's request and async publish subscriptions too.
func TestProducerAndInspectorHoldNoGoroutines(t *testing.T) {
	// Not parallel: goroutines of other tests would be counted.
	js, ctx := startJetStream(t)
	var n atomic.Int32
	use := func() {
		p := newProducer(t, ctx, js, natsbroker.WithMemoryStorage())
		insp := newInspector(t, ctx, js, natsbroker.WithMemoryStorage())
		i := n.Add(1)
		mustEnqueue(t, ctx, p, taskpool.Task{ID: fmt.Sprint("one", i), Type: "ok", UniqueKey: fmt.Sprint("k", i)})
		_, err := p.EnqueueBatch(ctx, []taskpool.Task{{ID: fmt.Sprint("b", i), Type: "ok"}, {ID: fmt.Sprint("c", i), Type: "ok"}})
		require.NoError(t, err)
		_, err = insp.Queue(ctx)
		require.NoError(t, err)
		_, err = insp.DeadLetters(ctx, 0, 10)
		require.NoError(t, err)
	}
	use() // the server's goroutines, the JetStream context's subscriptions
	before := goleak.IgnoreCurrent()
	use()
	assert.NoError(t, goleak.Find(before))
}
