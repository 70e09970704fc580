package natsbroker_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

func TestGlobalLimitOptionErrors(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	reg := taskpool.NewRegistry()
	for name, opts := range map[string][]natsbroker.Option{
		"empty type":     {natsbroker.WithGlobalLimit("", natsbroker.Limit{Concurrency: 1})},
		"no limit":       {natsbroker.WithGlobalLimit("t", natsbroker.Limit{})},
		"negative":       {natsbroker.WithGlobalLimit("t", natsbroker.Limit{Concurrency: -1})},
		"too many":       {natsbroker.WithGlobalLimit("t", natsbroker.Limit{Concurrency: natsbroker.MaxGlobalConcurrency + 1})},
		"negative rate":  {natsbroker.WithGlobalLimit("t", natsbroker.Limit{Rate: -1})},
		"NaN rate":       {natsbroker.WithGlobalLimit("t", natsbroker.Limit{Rate: math.NaN()})},
		"infinite rate":  {natsbroker.WithGlobalLimit("t", natsbroker.Limit{Rate: math.Inf(1)})},
		"burst, no rate": {natsbroker.WithGlobalLimit("t", natsbroker.Limit{Concurrency: 1, Burst: 2})},
		"negative burst": {natsbroker.WithGlobalLimit("t", natsbroker.Limit{Rate: 1, Burst: -1})},
		"type twice": {
			natsbroker.WithGlobalLimit("t", natsbroker.Limit{Concurrency: 1}),
			natsbroker.WithGlobalLimit("t", natsbroker.Limit{Rate: 1}),
		},
	} {
		_, err := natsbroker.NewConsumer(ctxT(t), js, reg, append(opts, natsbroker.WithQueue("limits"))...)
		assert.ErrorIs(t, err, natsbroker.ErrInvalidOption, name)
		assert.ErrorIs(t, err, taskpool.ErrInvalidOption, name)
	}
}

// limitedRegistry registers "limited", whose handler counts the tasks of
// the type running at once in this process, and "free".
type limitedRun struct {
	running, peak atomic.Int64
	both          chan struct{} // closed the first time two run at once
	bothOnce      sync.Once
	done          *ledger
	free          *ledger
	starts        chan time.Time // when non-nil, each start's time
}

func newLimitedRun(t *testing.T, limited, free int) (*limitedRun, *taskpool.Registry) {
	r := &limitedRun{both: make(chan struct{}), done: newLedger(limited), free: newLedger(free)}
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("limited", func(ctx context.Context, task taskpool.Task) error {
		if r.starts != nil {
			r.starts <- time.Now()
		}
		n := r.running.Add(1)
		raisePeak(&r.peak, n)
		if n >= 2 {
			r.bothOnce.Do(func() { close(r.both) })
		}
		// Work: until another task of the type runs too, at most 20ms,
		// so that a limit of 2 is reached when it is not enforced below.
		select {
		case <-r.both:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
		r.running.Add(-1)
		r.done.add(task.ID)
		return nil
	}))
	require.NoError(t, reg.HandleFunc("free", func(_ context.Context, task taskpool.Task) error {
		r.free.add(task.ID)
		return nil
	}))
	return r, reg
}

// raisePeak makes peak at least n.
func raisePeak(peak *atomic.Int64, n int64) {
	for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
	}
}

// slotsHeld lists the slot keys of the queue's global limits that are held.
func slotsHeld(t *testing.T, js jetstream.JetStream, queue string) []string {
	t.Helper()
	kv, err := js.KeyValue(ctxT(t), "taskpool_slots_"+queue)
	require.NoError(t, err)
	keys, err := kv.ListKeys(ctxT(t))
	require.NoError(t, err)
	var held []string
	for k := range keys.Keys() {
		held = append(held, k)
	}
	return held
}

// Three consumers, each with four workers, never run more than two tasks
// of a type limited to two at once together; the other type is not held
// up; every slot is given back.
func TestGlobalConcurrencyLimitAcrossConsumers(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const queue = "glimit"
	run, reg := newLimitedRun(t, 40, 40)
	var consumers []*natsbroker.Consumer
	for range 3 {
		_, js := connect(t, srv.URL())
		consumers = append(consumers, startConsumer(t, js, reg, natsbroker.WithQueue(queue), natsbroker.WithWorkers(4),
			natsbroker.WithGlobalLimit("limited", natsbroker.Limit{Concurrency: 2})))
	}
	_, js := connect(t, srv.URL())
	p := newProducer(t, ctxT(t), js, natsbroker.WithQueue(queue))
	for i := range 40 {
		mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: fmt.Sprint("l", i), Type: "limited"})
		mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: fmt.Sprint("f", i), Type: "free"})
	}
	waitDone(t, run.free.done, 20*time.Second, "the free tasks")
	waitDone(t, run.done.done, 20*time.Second, "the limited tasks")
	assert.LessOrEqual(t, run.peak.Load(), int64(2), "global concurrency exceeded")
	assert.Equal(t, int64(2), run.peak.Load(), "both slots used")
	assert.Zero(t, run.done.duplicates())
	for _, c := range consumers {
		require.NoError(t, c.Stop(ctxT(t)))
		assert.Zero(t, c.Health().Waiting)
	}
	assert.Empty(t, slotsHeld(t, js, queue), "slots not given back")
}

// Starts of a rate-limited type over two consumers keep the rate: in any
// stretch of time w there are at most Burst + w*Rate starts.
func TestGlobalRateLimitAcrossConsumers(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const (
		queue = "grate"
		n     = 16
		rate  = 10.0
		burst = 3
	)
	run, reg := newLimitedRun(t, n, 0)
	run.starts = make(chan time.Time, n)
	for range 2 {
		_, js := connect(t, srv.URL())
		startConsumer(t, js, reg, natsbroker.WithQueue(queue), natsbroker.WithWorkers(4),
			natsbroker.WithGlobalLimit("limited", natsbroker.Limit{Rate: rate, Burst: burst}))
	}
	_, js := connect(t, srv.URL())
	p := newProducer(t, ctxT(t), js, natsbroker.WithQueue(queue))
	for i := range n {
		mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: fmt.Sprint("r", i), Type: "limited"})
	}
	waitDone(t, run.done.done, 20*time.Second, "the rate-limited tasks")
	starts := make([]time.Time, 0, n)
	for range n {
		starts = append(starts, <-run.starts)
	}
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	// A start is seen in the handler a moment after the gate booked it
	// (the hand-off to a worker; more under -race on a loaded machine):
	// allow a quarter of the interval for that.
	const jitter = 25 * time.Millisecond
	for i := range starts {
		for j := i + 1; j < len(starts); j++ {
			w := starts[j].Sub(starts[i]) + jitter
			allowed := burst + int(w.Seconds()*rate)
			require.LessOrEqual(t, j-i+1, allowed, "%d starts within %v", j-i+1, w)
		}
	}
}

// A slot left by a process that died (a lease nobody renews) is taken
// once the server expires it; until then the type's tasks wait without
// a worker while other types run.
func TestGlobalSlotOfDeadProcessExpires(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const queue = "gexpire"
	run, reg := newLimitedRun(t, 1, 1)
	_, js := connect(t, srv.URL())
	c := startConsumer(t, js, reg, natsbroker.WithQueue(queue), natsbroker.WithWorkers(1),
		natsbroker.WithAckWait(time.Second), natsbroker.WithGlobalLimit("limited", natsbroker.Limit{Concurrency: 1}))
	kv, err := js.KeyValue(ctxT(t), "taskpool_slots_"+queue)
	require.NoError(t, err)
	// The lease of the only slot, as a crashed process leaves it.
	_, err = kv.Create(ctxT(t), base64.RawURLEncoding.EncodeToString([]byte("limited"))+".0", []byte("dead"))
	require.NoError(t, err)
	p := newProducer(t, ctxT(t), js, natsbroker.WithQueue(queue))
	mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: "l", Type: "limited"})
	require.Eventually(t, func() bool { return c.Health().Waiting == 1 }, 10*time.Second, time.Millisecond)
	mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: "f", Type: "free"})
	waitDone(t, run.free.done, 10*time.Second, "the free task, past the waiting one")
	waitDone(t, run.done.done, 10*time.Second, "the limited task, after the lease expired")
	assert.Zero(t, c.Health().Waiting)
}

// A consumer stopped gracefully runs the tasks waiting for a slot; one
// whose Stop context ends first puts them back, and another consumer
// runs them.
func TestGlobalLimitStop(t *testing.T) {
	t.Parallel()
	for _, graceful := range []bool{true, false} {
		t.Run(fmt.Sprint("graceful=", graceful), func(t *testing.T) {
			t.Parallel()
			srv := startServer(t)
			const queue = "gstop"
			release := make(chan struct{})
			started := make(chan string, 3)
			runs := newLedger(3)
			reg := taskpool.NewRegistry()
			require.NoError(t, reg.HandleFunc("limited", func(ctx context.Context, task taskpool.Task) error {
				started <- task.ID
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
				runs.add(task.ID)
				return nil
			}))
			limit := natsbroker.WithGlobalLimit("limited", natsbroker.Limit{Concurrency: 1})
			_, js := connect(t, srv.URL())
			a, err := natsbroker.NewConsumer(ctxT(t), js, reg, natsbroker.WithQueue(queue), natsbroker.WithWorkers(3), limit)
			require.NoError(t, err)
			require.NoError(t, a.Start())
			p := newProducer(t, ctxT(t), js, natsbroker.WithQueue(queue))
			for i := range 3 {
				mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: fmt.Sprint("s", i), Type: "limited"})
			}
			first := <-started
			require.Eventually(t, func() bool { return a.Health().Waiting == 2 }, 10*time.Second, time.Millisecond)
			insp := newInspector(t, ctxT(t), js, natsbroker.WithQueue(queue))
			slots, err := insp.GlobalSlots(ctxT(t))
			require.NoError(t, err)
			require.Len(t, slots, 1)
			assert.Equal(t, "limited", slots[0].Type)
			assert.Equal(t, 0, slots[0].Slot)
			assert.Equal(t, first, slots[0].TaskID)
			assert.Equal(t, natsbroker.ConnectionName(), slots[0].Holder)
			assert.WithinDuration(t, time.Now(), slots[0].Renewed, 10*time.Second)
			if graceful {
				stopped := make(chan error)
				go func() { stopped <- a.Stop(ctxT(t)) }()
				close(release)
				require.NoError(t, <-stopped)
				waitDone(t, runs.done, time.Second, "every task on the stopping consumer")
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				var se *taskpool.StopError
				require.ErrorAs(t, a.Stop(ctx), &se)
				assert.Zero(t, a.Health().Waiting)
				close(release)
				startConsumer(t, js, reg, natsbroker.WithQueue(queue), natsbroker.WithWorkers(3), limit)
				waitDone(t, runs.done, 20*time.Second, "every task on the second consumer")
			}
			assert.Zero(t, runs.duplicates())
			if graceful {
				assert.Empty(t, slotsHeld(t, js, queue))
				slots, err := insp.GlobalSlots(ctxT(t))
				require.NoError(t, err)
				assert.Empty(t, slots)
			}
		})
	}
}

// On a 3-node cluster with an R3 queue, consumers connected to different
// nodes keep the limit together: compare-and-set conflicts on replicated
// buckets are told apart from failures.
func TestClusterGlobalLimit(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	const queue = "gcluster"
	q := natsbroker.WithQueue(queue)
	run, reg := newLimitedRun(t, 30, 0)
	var consumers []*natsbroker.Consumer
	for i := range 3 {
		_, js := connect(t, cl.url(i))
		consumers = append(consumers, startConsumer(t, js, reg, q, natsbroker.WithReplicas(3), natsbroker.WithWorkers(4),
			natsbroker.WithGlobalLimit("limited", natsbroker.Limit{Concurrency: 2, Rate: 200, Burst: 10})))
	}
	_, js := connect(t, cl.url(0))
	p := newProducer(t, ctxT(t), js, q)
	for i := range 30 {
		mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: fmt.Sprint("c", i), Type: "limited"})
	}
	waitDone(t, run.done.done, 30*time.Second, "the limited tasks")
	assert.LessOrEqual(t, run.peak.Load(), int64(2), "global concurrency exceeded")
	assert.Zero(t, run.done.duplicates())
	for _, c := range consumers {
		require.NoError(t, c.Stop(ctxT(t)))
	}
	assert.Empty(t, slotsHeld(t, js, queue), "slots not given back")
	kv, err := js.KeyValue(ctxT(t), "taskpool_slots_"+queue)
	require.NoError(t, err)
	st, err := kv.Status(ctxT(t))
	require.NoError(t, err)
	assert.Equal(t, 3, st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas, "the buckets take the queue's replicas")
}

// Retries, panics, a consumer stopped past its deadline mid-run and one
// started in its place, all on a globally limited type: the limit holds
// throughout, every task succeeds in the end, and no slot stays held.
func TestGlobalLimitWithRetriesAndRestarts(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const (
		queue = "gmix"
		n     = 60
		limit = 3
	)
	var running, peak atomic.Int64
	succeeded := newLedger(n)
	var attempts sync.Map // id -> runs
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("limited", func(ctx context.Context, task taskpool.Task) error {
		r := running.Add(1)
		defer running.Add(-1)
		raisePeak(&peak, r)
		v, _ := attempts.LoadOrStore(task.ID, new(atomic.Int64))
		run := v.(*atomic.Int64).Add(1)
		select { // work
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		var i int
		_, _ = fmt.Sscan(task.ID[1:], &i)
		switch {
		case i%3 == 1 && run == 1:
			return fmt.Errorf("transient failure of %s", task.ID)
		case i%5 == 2 && run == 1:
			panic("handler panic")
		}
		succeeded.add(task.ID)
		return nil
	}))
	opts := []natsbroker.Option{natsbroker.WithQueue(queue), natsbroker.WithWorkers(4), natsbroker.WithAckWait(time.Second),
		natsbroker.WithBackoff(taskpool.ConstantBackoff(10 * time.Millisecond)),
		natsbroker.WithGlobalLimit("limited", natsbroker.Limit{Concurrency: limit, Rate: 500, Burst: 5})}
	var consumers []*natsbroker.Consumer
	for range 3 {
		_, js := connect(t, srv.URL())
		c, err := natsbroker.NewConsumer(ctxT(t), js, reg, opts...)
		require.NoError(t, err)
		require.NoError(t, c.Start())
		consumers = append(consumers, c)
	}
	_, js := connect(t, srv.URL())
	p := newProducer(t, ctxT(t), js, natsbroker.WithQueue(queue))
	for i := range n {
		mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: fmt.Sprint("m", i), Type: "limited"})
	}
	// Stop one consumer past a short deadline once work is under way,
	// and start another in its place.
	require.Eventually(t, func() bool { return succeeded.distinct() >= n/4 }, 20*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Millisecond)
	_ = consumers[0].Stop(ctx) // a *StopError when something was interrupted
	cancel()
	_, js2 := connect(t, srv.URL())
	consumers[0] = startConsumer(t, js2, reg, opts...)
	waitDone(t, succeeded.done, 30*time.Second, "every task's success")
	assert.LessOrEqual(t, peak.Load(), int64(limit), "global concurrency exceeded")
	for _, c := range consumers {
		require.NoError(t, c.Stop(ctxT(t)))
	}
	assert.Empty(t, slotsHeld(t, js, queue), "slots not given back")
}

// A consumer whose server is gone stops within about its Stop context:
// giving back the slots of its interrupted tasks, which cannot succeed,
// does not take a request timeout per slot.
func TestGlobalLimitStopWithServerDown(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const (
		queue = "gdown"
		n     = 4
	)
	started := make(chan string, n)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("limited", func(ctx context.Context, task taskpool.Task) error {
		started <- task.ID
		<-ctx.Done()
		return ctx.Err()
	}))
	_, js := connect(t, srv.URL())
	c, err := natsbroker.NewConsumer(ctxT(t), js, reg, natsbroker.WithQueue(queue), natsbroker.WithWorkers(n),
		natsbroker.WithGlobalLimit("limited", natsbroker.Limit{Concurrency: n}))
	require.NoError(t, err)
	require.NoError(t, c.Start())
	p := newProducer(t, ctxT(t), js, natsbroker.WithQueue(queue))
	for i := range n {
		mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: fmt.Sprint("d", i), Type: "limited"})
	}
	for range n {
		select {
		case <-started:
		case <-ctxT(t).Done():
			t.Fatal("the tasks did not start")
		}
	}
	srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	begin := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- c.Stop(ctx) }()
	select {
	case err := <-stopped:
		var se *taskpool.StopError
		require.ErrorAs(t, err, &se)
		// The context, a second's grace for the slots, the flush's
		// second and nats.go's request timeout (5s) for deleting the
		// slot watcher's consumer; not a request timeout per held slot.
		assert.Less(t, time.Since(begin), 10*time.Second, "Stop took a request timeout per slot")
	case <-time.After(30 * time.Second):
		t.Fatal("Stop hangs with the server down")
	}
}
