package natsbroker_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// logSignal is a slog handler that closes ch at the first record whose
// message contains msg, and keeps every record's message.
type logSignal struct {
	msg  string
	ch   chan struct{}
	once *sync.Once
	mu   *sync.Mutex
	all  *[]string
}

func newLogSignal(msg string) *logSignal {
	return &logSignal{msg: msg, ch: make(chan struct{}), once: new(sync.Once), mu: new(sync.Mutex), all: new([]string)}
}

func (h *logSignal) Enabled(context.Context, slog.Level) bool { return true }
func (h *logSignal) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.all = append(*h.all, r.Level.String()+" "+r.Message)
	h.mu.Unlock()
	if strings.Contains(r.Message, h.msg) {
		h.once.Do(func() { close(h.ch) })
	}
	return nil
}
func (h *logSignal) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logSignal) WithGroup(string) slog.Handler      { return h }

func (h *logSignal) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), *h.all...)
}

// Permanent errors come back at once and are told apart from retryable
// ones with errors.Is.
func TestEnqueueErrorClassification(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	ctx := ctxT(t)
	prod := newProducer(t, ctx, js)

	// Larger than the server's max_payload (1 MiB by default).
	start := time.Now()
	_, err := prod.Enqueue(ctx, taskpool.Task{ID: "huge", Type: "x", Params: strings.Repeat("a", 2<<20)})
	require.ErrorIs(t, err, natsbroker.ErrMaxPayload)
	assert.NotErrorIs(t, err, natsbroker.ErrNotConfirmed)
	var ee *natsbroker.EnqueueError
	require.ErrorAs(t, err, &ee)
	assert.False(t, ee.Retryable())
	assert.Less(t, time.Since(start), 5*time.Second, "a permanent error is not retried")

	_, err = prod.Enqueue(ctx, taskpool.Task{Type: "x", Params: []byte("not json")})
	require.ErrorIs(t, err, natsbroker.ErrBadParams)
	assert.NotErrorIs(t, err, natsbroker.ErrNotConfirmed)

	// A stream that refuses messages (sealed by an operator).
	st, err := js.Stream(ctx, "TASKPOOL_default")
	require.NoError(t, err)
	cfg := st.CachedInfo().Config
	cfg.Sealed = true
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	start = time.Now()
	_, err = prod.Enqueue(ctx, taskpool.Task{ID: "sealed", Type: "x"})
	require.ErrorIs(t, err, natsbroker.ErrRejected)
	assert.NotErrorIs(t, err, natsbroker.ErrNotConfirmed)
	assert.Less(t, time.Since(start), 5*time.Second, "a permanent error is not retried")

	// The server gone: retried until the context ends, then retryable.
	srv.Shutdown()
	down, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	_, err = prod.Enqueue(down, taskpool.Task{ID: "down", Type: "x"})
	require.ErrorIs(t, err, natsbroker.ErrNotConfirmed)
	require.ErrorAs(t, err, &ee)
	assert.True(t, ee.Retryable())
	assert.Equal(t, "down", ee.ID)
	assert.False(t, errors.Is(err, natsbroker.ErrMaxPayload) || errors.Is(err, natsbroker.ErrRejected))
}

// An Enqueue that starts while the server is down returns once the server
// is back, with the task stored once: it retries with the same ID instead
// of failing (here the client does not buffer publishes while
// disconnected, so each attempt fails at once).
func TestEnqueueRetriesUntilServerBack(t *testing.T) {
	t.Parallel()
	srv, restart := startRestartable(t)
	nc, js, err := natsbroker.Connect(srv.URL(), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectBufSize(-1))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	ctx := ctxT(t)
	logs := newLogSignal("retrying")
	prod := newProducer(t, ctx, js, natsbroker.WithLogger(slog.New(logs)))

	srv.Shutdown()
	require.Eventually(t, func() bool { return !nc.IsConnected() }, 5*time.Second, 5*time.Millisecond)
	type result struct {
		r   natsbroker.Receipt
		err error
	}
	res := make(chan result, 1)
	go func() {
		ectx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		r, err := prod.Enqueue(ectx, taskpool.Task{ID: "mid-restart", Type: "x"})
		res <- result{r, err}
	}()
	select {
	case <-logs.ch:
	case r := <-res:
		t.Fatalf("Enqueue returned while the server was down: %+v", r)
	case <-time.After(10 * time.Second):
		t.Fatal("Enqueue did not retry")
	}
	restart()
	var r result
	select {
	case r = <-res:
	case <-time.After(25 * time.Second):
		t.Fatal("Enqueue did not return after the server came back")
	}
	require.NoError(t, r.err)
	assert.Equal(t, "mid-restart", r.r.ID)
	assert.False(t, r.r.Duplicate)
	st, err := js.Stream(ctx, "TASKPOOL_default")
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, info.State.Msgs, "stored once")
	t.Logf("log: %v", logs.messages())
}

// EnqueueBatch re-sends the tasks whose publish failed with a transient
// error, as Enqueue does: a batch sent while the server is down is stored
// once the server is back.
func TestEnqueueBatchRetriesUntilServerBack(t *testing.T) {
	t.Parallel()
	srv, restart := startRestartable(t)
	nc, js, err := natsbroker.Connect(srv.URL(), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectBufSize(-1))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	ctx := ctxT(t)
	logs := newLogSignal("retrying")
	prod := newProducer(t, ctx, js, natsbroker.WithLogger(slog.New(logs)))

	srv.Shutdown()
	require.Eventually(t, func() bool { return !nc.IsConnected() }, 5*time.Second, 5*time.Millisecond)
	errc := make(chan error, 1)
	go func() {
		tasks := make([]taskpool.Task, 10)
		for i := range tasks {
			tasks[i] = taskpool.Task{ID: "b" + string(rune('0'+i)), Type: "x"}
		}
		bctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err := prod.EnqueueBatch(bctx, tasks)
		errc <- err
	}()
	select {
	case <-logs.ch:
	case err := <-errc:
		t.Fatalf("EnqueueBatch returned while the server was down: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("EnqueueBatch did not retry")
	}
	restart()
	require.NoError(t, recvT(t, errc, 25*time.Second, "EnqueueBatch to return after the server came back"))
	st, err := js.Stream(ctx, "TASKPOOL_default")
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 10, info.State.Msgs, "each stored once")
}

// A task of a batch that the server refuses for good (too large) frees the
// unique key EnqueueBatch took for it, as Enqueue frees it: it was left
// taken until the key's TTL, refusing every task with that key.
func TestEnqueueBatchRefusedTaskFreesItsUniqueKey(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	prod := newProducer(t, ctx, js)

	_, err := prod.EnqueueBatch(ctx, []taskpool.Task{
		{ID: "huge", Type: "x", UniqueKey: "kb", Params: strings.Repeat("a", 2<<20)},
		{ID: "fine", Type: "x", UniqueKey: "kf"},
	})
	require.ErrorIs(t, err, natsbroker.ErrMaxPayload)
	_, err = prod.Enqueue(ctx, taskpool.Task{ID: "next", Type: "x", UniqueKey: "kb"})
	assert.NoError(t, err, "kb is free")
	_, err = prod.Enqueue(ctx, taskpool.Task{ID: "other", Type: "x", UniqueKey: "kf"})
	assert.ErrorIs(t, err, taskpool.ErrDuplicateTask, "fine holds kf")
}

// An Enqueue the server refuses for good frees only a unique key it took
// itself: one its ID already held, for the task stored before with that
// ID and key, stays with that task (it was freed, and a task with that
// key could be enqueued while the stored one was pending).
func TestEnqueueRefusedKeepsTheStoredTasksKey(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	prod := newProducer(t, ctx, js)

	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "a", Type: "x", UniqueKey: "k"})
	_, err := prod.Enqueue(ctx, taskpool.Task{ID: "a", Type: "x", UniqueKey: "k", Params: strings.Repeat("a", 2<<20)})
	require.ErrorIs(t, err, natsbroker.ErrMaxPayload)
	_, err = prod.Enqueue(ctx, taskpool.Task{ID: "b", Type: "x", UniqueKey: "k"})
	assert.ErrorIs(t, err, taskpool.ErrDuplicateTask, "a, pending, holds k")
}
