package natsbroker_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// A task of a globally limited type that the local scheduler refuses
// when the gate submits it (here a middleware constructor that panics,
// the core's refusal, retried, or calls runtime.Goexit, dead-lettered)
// gives its capacity back on the gate's goroutine. A consumer with no
// capacity left (one worker, no prefetch: the fetch loop had no long
// poll outstanding) must be woken by it. (It was not: the fetch loop
// waited for a completion that never came, and the retried task, or the
// next one, was never fetched.)
func TestGateRefusalWakesTheFetchLoop(t *testing.T) {
	t.Parallel()
	for name, exit := range map[string]func(){
		"panic":  func() { panic("ctor boom") },
		"goexit": runtime.Goexit,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reg, ran := idRegistry(t, "ok", 8)
			var builds atomic.Int32
			mw := func(next taskpool.Handler) taskpool.Handler {
				if builds.Add(1) == 1 {
					exit()
				}
				return next
			}
			cons, p, _, told, _ := callbackExitConsumer(t, reg,
				natsbroker.WithSchedulerOptions(taskpool.WithMiddleware(mw)),
				natsbroker.WithGlobalLimit("ok", natsbroker.Limit{Concurrency: 1}),
				natsbroker.WithWorkers(1), natsbroker.WithPrefetch(natsbroker.NoPrefetch),
				natsbroker.WithBackoff(func(int) time.Duration { return 10 * time.Millisecond }))
			ctx := ctxT(t)
			mustEnqueue(t, ctx, p, taskpool.Task{ID: "first", Type: "ok"})
			s := nextSettled(t, told, "the refused task")
			assert.Equal(t, "first", s.out.Task.ID)
			want := "first" // retried
			if name == "goexit" {
				assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
				want = "next"
				mustEnqueue(t, ctx, p, taskpool.Task{ID: "next", Type: "ok"})
			} else {
				assert.Equal(t, natsbroker.ActionRetry, s.a)
			}
			assert.Equal(t, want, recvT(t, ran, 10*time.Second, "the task to run (else the fetch loop was not woken)"))
			s = nextSettled(t, told, want)
			assert.Equal(t, natsbroker.ActionAck, s.a)
			stopsClean(t, cons)
			assert.Empty(t, told, "no delivery settled twice")
		})
	}
}

// Messages that arrive on the outstanding long polls while the consumer
// stops are dispatched as it drains them; a Decode that calls
// runtime.Goexit there (on the fetch loop, now draining) dead-letters
// each once, the loop goes on draining on a new goroutine, and Stop
// returns with nothing held.
func TestGoexitWhileDrainingTheLongPolls(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := nopRegistry(t, "ok")
	told := make(chan settledOutcome, 16)
	cons := startConsumer(t, js, reg, natsbroker.WithCodec(exitCodec{}), natsbroker.WithWorkers(4),
		natsbroker.WithPollWait(5*time.Second),
		tellSettled(told))
	prios := []string{"high", "default", "low"}
	// Every priority has its long poll outstanding.
	require.Eventually(t, func() bool {
		for _, p := range prios {
			c, err := js.Consumer(ctx, "TASKPOOL_default", "taskpool_"+p)
			if err != nil {
				return false
			}
			info, err := c.Info(ctx)
			if err != nil || info.NumWaiting == 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
	stopped := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- cons.Stop(sctx)
	}()
	require.Eventually(t, func() bool { return !cons.Health().Consuming }, 10*time.Second, time.Millisecond)
	for _, p := range prios {
		_, err := js.Publish(ctx, "taskpool.default.task."+p, []byte("goexit"))
		require.NoError(t, err)
	}
	require.NoError(t, recvT(t, stopped, 15*time.Second, "Stop to return"))
	assert.Equal(t, 0, cons.Health().Held)
	n := len(told)
	assert.LessOrEqual(t, n, 3, "no delivery settled twice")
	for range n {
		s := <-told
		assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
		assert.ErrorIs(t, s.out.Err, natsbroker.ErrBadPayload)
	}
	// What the polls did not take (a poll may have ended just before) is
	// still in the stream, unacknowledged: nothing was lost.
	info, err := js.Stream(ctx, "TASKPOOL_default")
	require.NoError(t, err)
	var pending uint64
	for _, p := range prios {
		c, err := info.Consumer(ctx, "taskpool_"+p)
		require.NoError(t, err)
		ci, err := c.Info(ctx)
		require.NoError(t, err)
		pending += ci.NumPending + uint64(ci.NumAckPending)
	}
	assert.Equal(t, uint64(3-n), pending)
}

// A consumer whose codec's Decode and handler's Lookup call
// runtime.Goexit for some deliveries, fetched in batches over every
// priority (its fetch loop restarted in the middle of a batch), and
// stopped midway with a global limit holding tasks, settles each
// delivery exactly once: with a second consumer that takes over, every
// task is acked or dead-lettered once, none lost, none twice.
func TestGoexitInBatchesStopMidwayEverythingSettledOnce(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	h := exitLookup{ran: make(chan string, 1000)}
	p := newProducer(t, ctx, js)
	var (
		mu       sync.Mutex
		terminal = map[string]int{}
		badGot   int
	)
	settles := make(chan struct{}, 1000)
	opts := []natsbroker.Option{natsbroker.WithCodec(exitCodec{}), natsbroker.WithPrefetch(20), natsbroker.WithWorkers(2),
		natsbroker.WithPollWait(200 * time.Millisecond),
		natsbroker.WithGlobalLimit("ok", natsbroker.Limit{Concurrency: 3}),
		natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
			if a != natsbroker.ActionAck && a != natsbroker.ActionDeadLetter {
				return
			}
			mu.Lock()
			if out.Task.ID == "" {
				badGot++
			} else {
				terminal[out.Task.ID]++
			}
			mu.Unlock()
			settles <- struct{}{}
		})}
	cons := startConsumer(t, js, h, opts...)
	const n = 150
	want, bad := map[string]int{}, 0
	for i := range n {
		prio := taskpool.Priority(i%3 - 1)
		switch i % 5 {
		case 0:
			_, err := js.Publish(ctx, "taskpool.default.task."+[]string{"low", "default", "high"}[i%3], []byte("goexit"))
			require.NoError(t, err)
			bad++
		case 1:
			id := fmt.Sprintf("exits%d", i)
			mustEnqueue(t, ctx, p, taskpool.Task{ID: id, Type: "goexit", Priority: prio})
			want[id] = 1
		default:
			id := fmt.Sprintf("ok%d", i)
			mustEnqueue(t, ctx, p, taskpool.Task{ID: id, Type: "ok", Priority: prio})
			want[id] = 1
		}
	}
	for range n / 3 {
		select {
		case <-settles:
		case <-time.After(20 * time.Second):
			t.Fatal("the consumer stopped settling")
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, cons.Stop(sctx))
	assert.Equal(t, 0, cons.Health().Held)

	cons2 := startConsumer(t, js, h, opts...)
	deadline := time.After(30 * time.Second)
	for {
		mu.Lock()
		done := len(terminal) == len(want) && badGot >= bad
		mu.Unlock()
		if done {
			break
		}
		select {
		case <-settles:
		case <-deadline:
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("not all settled: bad payloads %d of %d, tasks %d of %d", badGot, bad, len(terminal), len(want))
		}
	}
	require.NoError(t, cons2.Stop(sctx))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, want, terminal, "each task acked or dead-lettered once")
	assert.Equal(t, bad, badGot, "each bad payload dead-lettered once")
}

// A custom codec that decodes a task without a type makes a bad payload,
// as JSONCodec says of an envelope without one (and as a task without an
// ID is): dead-lettered at its first delivery with ErrBadPayload, whatever
// the handler. (With a handler that has Lookup, a Registry, it was taken
// for a type not registered yet: put back for the unknown-type grace,
// a minute by default, then dead-lettered with ErrNoHandler; with one
// without Lookup it was dead-lettered at once as ErrInvalidType.)
func TestCodecTaskWithoutTypeIsABadPayload(t *testing.T) {
	t.Parallel()
	reg := nopRegistry(t, "ok")
	cons, _, _, told, publish := callbackExitConsumer(t, reg, natsbroker.WithCodec(payloadCodec{payload: "no type", task: taskpool.Task{ID: "typeless"}}))
	publish("no type")
	s := nextSettled(t, told, "the task without a type")
	assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
	require.ErrorIs(t, s.out.Err, natsbroker.ErrBadPayload)
	assert.Equal(t, taskpool.OutcomeFailed, s.out.Status)
	stopsClean(t, cons)
	assert.Empty(t, told, "no delivery settled twice")
}

// Every delivery that never reached a worker and that the consumer fails
// tells the settle hook the task with Attempt set to its delivery count,
// whichever check failed it, as for a delivery the local scheduler
// refused (here a middleware constructor that calls runtime.Goexit) and
// as the core's outcomes (Attempt at least 1): Outcome.Attempts is one
// less. (A task whose Lookup called Goexit or panicked, or whose type was
// unknown, was told with the Attempt it was enqueued with, 0.)
func TestNeverRunOutcomesCarryTheDeliveryAttempt(t *testing.T) {
	t.Parallel()
	var builds atomic.Int32
	mw := func(next taskpool.Handler) taskpool.Handler {
		if builds.Add(1) == 1 {
			runtime.Goexit()
		}
		return next
	}
	h := exitLookup{ran: make(chan string, 8)}
	cons, p, _, told, _ := callbackExitConsumer(t, h, natsbroker.WithSchedulerOptions(taskpool.WithMiddleware(mw)))
	ctx := ctxT(t)
	for _, typ := range []string{"ok", "goexit", "panic", "unknown"} {
		mustEnqueue(t, ctx, p, taskpool.Task{ID: "t-" + typ, Type: typ})
		s := nextSettled(t, told, typ)
		assert.Equal(t, "t-"+typ, s.out.Task.ID)
		assert.Equal(t, 1, s.out.Task.Attempt, typ)
		assert.Equal(t, 0, s.out.Attempts, typ)
	}
	stopsClean(t, cons)
}
