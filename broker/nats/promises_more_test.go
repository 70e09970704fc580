package natsbroker_test

// More promises of the docs that no other test pinned; each test names the
// sentence it checks.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// Inspector.Resubmit: "Resubmitting the same dead letter twice within the
// duplicate window stores it once." Two Resubmits of one dead letter,
// released together, race: both read it before either deletes it, and
// both publish. The queue then holds each task once, and each runs once.
func TestPromiseResubmitRaceStoresOnce(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	const n = 8
	var fail atomic.Bool
	fail.Store(true)
	runs := newLedger(n + 1) // and a last one, enqueued after them
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("r", func(_ context.Context, tk taskpool.Task) error {
		if fail.Load() {
			return taskpool.SkipRetry(errors.New("bad input"))
		}
		runs.add(tk.ID)
		return nil
	}))
	dead := make(chan string, n)
	first, err := natsbroker.NewConsumer(ctx, js, reg,
		natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
			if a == natsbroker.ActionDeadLetter {
				dead <- out.Task.ID
			}
		}))
	require.NoError(t, err)
	require.NoError(t, first.Start())
	prod := newProducer(t, ctx, js)
	for i := range n {
		mustEnqueue(t, ctx, prod, taskpool.Task{ID: fmt.Sprint("r", i), Type: "r"})
	}
	for range n {
		select {
		case <-dead:
		case <-ctx.Done():
			t.Fatal("not dead-lettered")
		}
	}
	// No consumer while the Resubmits race: the queue's count is what
	// they stored.
	require.NoError(t, first.Stop(ctx))

	insp := newInspector(t, ctx, js)
	dls, err := insp.DeadLetters(ctx, 0, 100)
	require.NoError(t, err)
	require.Len(t, dls, n)
	type result struct {
		r   natsbroker.Receipt
		err error
	}
	both := 0 // dead letters both Resubmits published
	for _, dl := range dls {
		start := make(chan struct{})
		var res [2]result
		var wg sync.WaitGroup
		for k := range res {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r, err := insp.Resubmit(ctx, dl.Sequence)
				res[k] = result{r, err}
			}()
		}
		close(start)
		wg.Wait()
		ok := 0
		for _, r := range res {
			if r.err != nil {
				// The other one deleted it before this one read it.
				require.ErrorIs(t, r.err, natsbroker.ErrNotFound)
				continue
			}
			ok++
			assert.Equal(t, dl.Task.ID, r.r.ID)
		}
		require.NotZero(t, ok, "dead letter %d not resubmitted", dl.Sequence)
		if ok == 2 {
			both++
			assert.Equal(t, res[0].r.Sequence, res[1].r.Sequence, "one stored message")
			assert.NotEqual(t, res[0].r.Duplicate, res[1].r.Duplicate, "one of them is the duplicate")
		}
	}
	t.Logf("%d of %d dead letters resubmitted twice", both, n)
	require.NotZero(t, both, "the Resubmits never raced: nothing was checked")

	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	var pending uint64
	for _, p := range info.Priorities {
		pending += p.Pending
	}
	assert.EqualValues(t, n, pending, "each dead letter stored once")
	assert.Zero(t, info.DeadLetters)

	// And each runs once: one worker runs the default priority in order,
	// so once a task enqueued after them has run, they all have.
	fail.Store(false)
	startConsumer(t, js, reg, natsbroker.WithWorkers(1), natsbroker.WithPrefetch(natsbroker.NoPrefetch))
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "last", Type: "r"})
	waitDone(t, runs.done, 20*time.Second, "every task")
	assert.Zero(t, runs.duplicates(), "a resubmitted task ran twice")
}

// pullRequest is the body of a JetStream fetch request, as a consumer
// sends it.
type pullRequest struct {
	Batch   int           `json:"batch"`
	Expires time.Duration `json:"expires"`
	NoWait  bool          `json:"no_wait"`
}

// sniffPulls records the fetch requests sent on the server: the long
// polls (not no-wait) go to the returned channel.
func sniffPulls(t *testing.T, url string) <-chan pullRequest {
	t.Helper()
	nc, _ := connect(t, url)
	polls := make(chan pullRequest, 1024)
	sub, err := nc.Subscribe("$JS.API.CONSUMER.MSG.NEXT.>", func(m *nats.Msg) {
		var r pullRequest
		if json.Unmarshal(m.Data, &r) != nil || r.NoWait {
			return
		}
		select {
		case polls <- r:
		default:
		}
	})
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return polls
}

// WithPollWait: "sets how long an idle consumer's long poll waits before
// it polls again. Shorter means a faster Stop". Consumer.Stop: "it waits
// for its outstanding long polls to end, at most the poll wait". An idle
// consumer's long polls ask the server to wait exactly the poll wait; a
// Stop right after a long poll of 4s starts takes seconds, one with a
// poll wait of 50ms returns well within them. (The bounds are 2s either
// side, 40 times the short poll wait and half the long one.)
func TestPromisePollWaitBoundsStop(t *testing.T) {
	t.Parallel()
	stopAfterPoll := func(t *testing.T, wait time.Duration) time.Duration {
		srv := startServer(t)
		polls := sniffPulls(t, srv.URL())
		_, js := connect(t, srv.URL())
		ctx := ctxT(t)
		c, err := natsbroker.NewConsumer(ctx, js, taskpool.NewRegistry(),
			natsbroker.WithWorkers(4), natsbroker.WithPollWait(wait))
		require.NoError(t, err)
		require.NoError(t, c.Start())
		// Three long polls, one per priority, each for the poll wait.
		for range 3 {
			select {
			case r := <-polls:
				assert.Equal(t, wait, r.Expires, "a long poll waits the poll wait")
				assert.Equal(t, 1, r.Batch)
			case <-ctx.Done():
				t.Fatal("no long poll")
			}
		}
		start := time.Now()
		require.NoError(t, c.Stop(ctx))
		took := time.Since(start)
		t.Logf("poll wait %v: Stop took %v", wait, took)
		return took
	}
	t.Run("long", func(t *testing.T) {
		t.Parallel()
		took := stopAfterPoll(t, 4*time.Second)
		assert.GreaterOrEqual(t, took, 2*time.Second, "Stop waits for the outstanding long polls")
	})
	t.Run("short", func(t *testing.T) {
		t.Parallel()
		took := stopAfterPoll(t, 50*time.Millisecond)
		assert.Less(t, took, 2*time.Second, "a short poll wait makes Stop fast")
	})
}

// Health: "Prefetch is the current prefetch (see WithPrefetch)": the
// fixed n of WithPrefetch(n), 0 for NoPrefetch, and for the default
// adaptive prefetch a value up to DefaultMaxPrefetch that short tasks
// raise above zero.
func TestPromiseHealthPrefetch(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	const n = 200
	led := newLedger(n)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("noop", func(_ context.Context, tk taskpool.Task) error {
		led.add(tk.ID)
		return nil
	}))
	fixed := startConsumer(t, js, reg, natsbroker.WithQueue("fixed"), natsbroker.WithWorkers(2), natsbroker.WithPrefetch(7))
	none := startConsumer(t, js, reg, natsbroker.WithQueue("none"), natsbroker.WithWorkers(2), natsbroker.WithPrefetch(natsbroker.NoPrefetch))
	adaptive := startConsumer(t, js, reg, natsbroker.WithQueue("adaptive"), natsbroker.WithWorkers(2))
	require.Eventually(t, func() bool { return fixed.Health().Prefetch == 7 }, 10*time.Second, time.Millisecond, "WithPrefetch(7)")
	require.Eventually(t, func() bool { return none.Health().Ready() }, 10*time.Second, time.Millisecond)
	assert.Zero(t, none.Health().Prefetch, "NoPrefetch")

	prod := newProducer(t, ctx, js, natsbroker.WithQueue("adaptive"))
	tasks := make([]taskpool.Task, n)
	for i := range tasks {
		tasks[i] = taskpool.Task{ID: fmt.Sprint("t", i), Type: "noop"}
	}
	_, err := prod.EnqueueBatch(ctx, tasks)
	require.NoError(t, err)
	waitDone(t, led.done, 20*time.Second, "every task")
	require.Eventually(t, func() bool { return adaptive.Health().Prefetch > 0 }, 10*time.Second, time.Millisecond,
		"short tasks raise the adaptive prefetch")
	h := adaptive.Health()
	assert.LessOrEqual(t, h.Prefetch, natsbroker.DefaultMaxPrefetch)
	assert.Equal(t, adaptive.CurrentPrefetch(), h.Prefetch)
	assert.Equal(t, 7, fixed.Health().Prefetch, "a fixed prefetch does not adapt")
}

// Health: "Waiting is the number of held tasks waiting for a global
// limit"; "Held is the number of tasks held: running, or waiting for a
// worker or a global limit". With a concurrency limit of 1 and two busy
// workers, one limited task has the slot and three wait for the limit;
// the tasks of another type and the one with the slot run or wait for a
// worker, which Held counts and Waiting does not.
func TestPromiseHealthWaiting(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	release := make(chan struct{})
	started := make(chan string, 16)
	runs := newLedger(7)
	block := func(ctx context.Context, tk taskpool.Task) error {
		started <- tk.ID
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		runs.add(tk.ID)
		return nil
	}
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("limited", block))
	require.NoError(t, reg.HandleFunc("other", block))
	c := startConsumer(t, js, reg, natsbroker.WithWorkers(2), natsbroker.WithPrefetch(8),
		natsbroker.WithGlobalLimit("limited", natsbroker.Limit{Concurrency: 1}))
	free := sync.OnceFunc(func() { close(release) })
	t.Cleanup(free) // before the consumer's Stop, if the test fails first
	assert.Zero(t, c.Health().Waiting)
	prod := newProducer(t, ctx, js)
	for i := range 4 {
		mustEnqueue(t, ctx, prod, taskpool.Task{ID: fmt.Sprint("l", i), Type: "limited"})
	}
	for i := range 3 {
		mustEnqueue(t, ctx, prod, taskpool.Task{ID: fmt.Sprint("o", i), Type: "other"})
	}
	for range 2 {
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("the two workers did not start")
		}
	}
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		h := c.Health()
		assert.Equal(ct, 7, h.Held, "held")
		assert.Equal(ct, 3, h.Waiting, "waiting for the limit")
	}, 10*time.Second, time.Millisecond)
	free()
	waitDone(t, runs.done, 20*time.Second, "every task")
	require.Eventually(t, func() bool { return c.Health().Waiting == 0 }, 10*time.Second, time.Millisecond)
	assert.Zero(t, runs.duplicates())
}

// recorder is a slog.Handler that keeps every record, at every level.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Level.String()+" "+rec.Message)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// WithLogger: "The default discards everything." A consumer without it
// dead-letters a task (which WithLogger's logger gets at Warn) and logs
// nothing, not even through slog's default logger; the same run with
// WithLogger does log. It sets the process's default logger, so it does
// not run in parallel.
func TestPromiseLoggerDiscardsByDefault(t *testing.T) {
	def := &recorder{}
	old := slog.Default()
	slog.SetDefault(slog.New(def))
	t.Cleanup(func() { slog.SetDefault(old) })

	srv := startServer(t)
	_, js := connect(t, srv.URL())
	deadLetterOne := func(queue string, opts ...natsbroker.Option) {
		ctx := ctxT(t)
		reg := taskpool.NewRegistry()
		require.NoError(t, reg.HandleFunc("fail", func(context.Context, taskpool.Task) error {
			return taskpool.SkipRetry(errors.New("bad input"))
		}))
		dead := make(chan struct{}, 1)
		q := natsbroker.WithQueue(queue)
		c, err := natsbroker.NewConsumer(ctx, js, reg, append(opts, q,
			natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) {
				if a == natsbroker.ActionDeadLetter {
					dead <- struct{}{}
				}
			}))...)
		require.NoError(t, err)
		require.NoError(t, c.Start())
		prod := newProducer(t, ctx, js, append(opts, q)...)
		mustEnqueue(t, ctx, prod, taskpool.Task{Type: "fail"})
		waitDone(t, dead, 20*time.Second, "the dead letter")
		insp := newInspector(t, ctx, js, append(opts, q)...)
		dls, err := insp.DeadLetters(ctx, 0, 10)
		require.NoError(t, err)
		require.Len(t, dls, 1)
		require.NoError(t, c.Stop(ctx))
	}

	deadLetterOne("silent")
	assert.Empty(t, def.all(), "the default logger logged")

	given := &recorder{}
	deadLetterOne("logged", natsbroker.WithLogger(slog.New(given)))
	assert.Empty(t, def.all(), "WithLogger's logger is the only one")
	found := false
	for _, m := range given.all() {
		found = found || strings.Contains(m, "dead-lettered")
	}
	assert.True(t, found, "the run logs a dead letter when given a logger: %q", given.all())
}
