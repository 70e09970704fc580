package natsbroker_test

import (
	"context"
	"errors"
	"fmt"
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

func TestBadPayloadIsDeadLettered(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg, ran := idRegistry(t, "ok", 4)
	dead := make(chan error, 4)
	startConsumer(t, js, reg, natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
		if a == natsbroker.ActionDeadLetter {
			dead <- out.Err
		}
	}))
	// Garbage and a future envelope version, published by hand.
	_, err := js.Publish(ctx, "taskpool.default.task.default", []byte("\x00garbage{"))
	require.NoError(t, err)
	_, err = js.PublishMsg(ctx, &nats.Msg{Subject: "taskpool.default.task.high", Data: []byte(`{"v":9,"id":"x","type":"ok"}`),
		Header: nats.Header{"X-Custom": []string{"kept"}}})
	require.NoError(t, err)
	for range 2 {
		select {
		case err := <-dead:
			assert.ErrorIs(t, err, natsbroker.ErrBadPayload)
		case <-ctx.Done():
			t.Fatal("bad payloads not dead-lettered")
		}
	}
	// The worker survived and still runs good tasks.
	prod := newProducer(t, ctx, js)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "good", Type: "ok"})
	assert.Equal(t, "good", <-ran)

	insp := newInspector(t, ctx, js)
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 2)
	bySubject := map[string]natsbroker.DeadLetter{}
	for _, dl := range dls {
		assert.ErrorIs(t, dl.DecodeErr, natsbroker.ErrBadPayload)
		assert.Contains(t, dl.Error, "bad task payload")
		assert.Equal(t, 1, dl.Attempts)
		bySubject[dl.Subject] = dl
	}
	assert.Equal(t, []byte("\x00garbage{"), bySubject["taskpool.default.task.default"].Data)
	assert.Equal(t, "kept", bySubject["taskpool.default.task.high"].Header.Get("X-Custom"))
}

// delayTest enqueues a delayed task and a cancelled one and checks that the
// first runs no earlier than due and the second never.
func delayTest(t *testing.T, opts ...natsbroker.Option) {
	js, ctx := startJetStream(t)
	type run struct {
		id string
		at time.Time
	}
	ran := make(chan run, 8)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("later", func(_ context.Context, task taskpool.Task) error {
		ran <- run{task.ID, time.Now()}
		return nil
	}))
	startConsumer(t, js, reg, append(opts, natsbroker.WithPollWait(100*time.Millisecond))...)
	prod := newProducer(t, ctx, js, opts...)

	const d = 1500 * time.Millisecond
	start := time.Now()
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "cancelled", Type: "later"}, natsbroker.Delay(d/2))
	err := prod.Cancel(ctx, "cancelled")
	fallback := errors.Is(err, natsbroker.ErrSchedulesUnsupported)
	if !fallback {
		require.NoError(t, err)
	}
	r := mustEnqueue(t, ctx, prod, taskpool.Task{ID: "delayed", Type: "later"}, natsbroker.Delay(d))
	assert.WithinDuration(t, start.Add(d), r.RunAt, 100*time.Millisecond)
	insp := newInspector(t, ctx, js, opts...)
	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	if fallback {
		// The fallback stores delayed tasks as queued ones, which the
		// consumer receives and defers.
		assert.EqualValues(t, 2, info.Priorities[1].Pending+uint64(info.Priorities[1].InFlight))
	} else {
		assert.EqualValues(t, 1, info.Scheduled)
	}
	// Re-sending the same delayed task does not double it.
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "delayed", Type: "later"}, natsbroker.Delay(d))
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "now", Type: "later"})

	got := <-ran
	assert.Equal(t, "now", got.id)
	if fallback {
		// The fallback cannot cancel: the first delayed task runs too.
		got = <-ran
		assert.Equal(t, "cancelled", got.id)
		assert.False(t, got.at.Before(start.Add(d/2)), "ran before due")
	}
	got = <-ran
	assert.Equal(t, "delayed", got.id, "the cancelled task must not run")
	assert.False(t, got.at.Before(r.RunAt.Add(-50*time.Millisecond)), "ran %v before due", r.RunAt.Sub(got.at))
	t.Logf("delayed task ran %v after due", got.at.Sub(r.RunAt))
	select {
	case extra := <-ran:
		t.Fatalf("unexpected run of %s", extra.id)
	default:
	}
	if !fallback {
		assert.ErrorIs(t, prod.Cancel(ctx, "cancelled"), natsbroker.ErrNotFound)
	}
}

func TestDelayedTaskServerSchedule(t *testing.T) {
	t.Parallel()
	delayTest(t)
}

func TestPeriodicTaskOncePerTick(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	ticks := make(chan string, 16)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("report", func(_ context.Context, task taskpool.Task) error {
		ticks <- task.ID
		return nil
	}))
	// Three worker instances and two producer instances registering the
	// same schedule, as every replica of a service would at start-up.
	for range 3 {
		startConsumer(t, js, reg, natsbroker.WithPollWait(100*time.Millisecond))
	}
	for range 2 {
		prod := newProducer(t, ctx, js)
		require.NoError(t, prod.Schedule(ctx, "nightly-report", "@every 1s", taskpool.Task{Type: "report"}))
	}
	start := time.Now()
	seen := map[string]bool{}
	for len(seen) < 3 {
		id := <-ticks
		require.False(t, seen[id], "tick %s ran twice", id)
		seen[id] = true
	}
	elapsed := time.Since(start)
	t.Logf("3 ticks in %v: %v", elapsed, seen)
	// One emission per second: three ticks cannot come in under ~2s
	// (they would if each registration or each worker emitted its own).
	assert.Greater(t, elapsed, 1900*time.Millisecond)

	prod := newProducer(t, ctx, js)
	require.NoError(t, prod.Cancel(ctx, "nightly-report"))
	insp := newInspector(t, ctx, js)
	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	assert.Zero(t, info.Scheduled)
}

func TestPrioritiesWeighted(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	prod := newProducer(t, ctx, js)
	const each = 150
	var tasks []taskpool.Task
	for i := range each {
		tasks = append(tasks,
			taskpool.Task{ID: fmt.Sprint("low-", i), Type: "p", Priority: taskpool.PriorityLow},
			taskpool.Task{ID: fmt.Sprint("high-", i), Type: "p", Priority: taskpool.PriorityHigh})
	}
	_, err := prod.EnqueueBatch(ctx, tasks)
	require.NoError(t, err)

	insp := newInspector(t, ctx, js)
	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, each, info.Priorities[0].Pending, "high")
	assert.EqualValues(t, 0, info.Priorities[1].Pending, "default")
	assert.EqualValues(t, each, info.Priorities[2].Pending, "low")

	var (
		mu    sync.Mutex
		order []taskpool.Priority
	)
	done := make(chan struct{})
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("p", func(_ context.Context, task taskpool.Task) error {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, task.Priority)
		if len(order) == 2*each {
			close(done)
		}
		return nil
	}))
	// One worker, no prefetch: every fetch round picks one task.
	startConsumer(t, js, reg, natsbroker.WithWorkers(1), natsbroker.WithPrefetch(natsbroker.NoPrefetch))
	waitDone(t, done, 30*time.Second, "all tasks")
	mu.Lock()
	defer mu.Unlock()
	high, low := 0, 0
	for _, p := range order[:each] {
		if p > 0 {
			high++
		} else {
			low++
		}
	}
	t.Logf("first %d runs: %d high, %d low", each, high, low)
	assert.Greater(t, high, each*7/10, "high priority goes first most of the time")
	assert.Positive(t, low, "low priority is not starved")
}

func TestUniqueAcrossProducers(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	p1 := newProducer(t, ctx, js)
	p2 := newProducer(t, ctx, js)

	mustEnqueue(t, ctx, p1, taskpool.Task{ID: "a", Type: "u", UniqueKey: "user:42/sync"})
	_, err := p2.Enqueue(ctx, taskpool.Task{ID: "b", Type: "u", UniqueKey: "user:42/sync"})
	assert.ErrorIs(t, err, natsbroker.ErrDuplicateTask)
	// A re-sent enqueue of the holder itself is accepted (and deduplicated).
	r := mustEnqueue(t, ctx, p2, taskpool.Task{ID: "a", Type: "u", UniqueKey: "user:42/sync"})
	assert.True(t, r.Duplicate)

	release := make(chan struct{})
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("u", func(ctx context.Context, task taskpool.Task) error {
		<-release
		return nil
	}))
	acked := make(chan string, 4)
	startConsumer(t, js, reg, natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
		if a == natsbroker.ActionAck {
			acked <- out.Task.ID
		}
	}))
	// Still held while running.
	_, err = p2.Enqueue(ctx, taskpool.Task{ID: "c", Type: "u", UniqueKey: "user:42/sync"})
	assert.ErrorIs(t, err, natsbroker.ErrDuplicateTask)
	close(release)
	assert.Equal(t, "a", <-acked)
	// Released on completion.
	mustEnqueue(t, ctx, p2, taskpool.Task{ID: "d", Type: "u", UniqueKey: "user:42/sync"})
	assert.Equal(t, "d", <-acked)
}

func TestGracefulStopFinishesInFlight(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	started := make(chan string, 8)
	release := make(chan struct{})
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("slow", func(_ context.Context, task taskpool.Task) error {
		started <- task.ID
		<-release
		return nil
	}))
	var acks atomic.Int32
	c, err := natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithWorkers(3),
		natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) {
			if a == natsbroker.ActionAck {
				acks.Add(1)
			}
		}))
	require.NoError(t, err)
	require.NoError(t, c.Start())
	prod := newProducer(t, ctx, js)
	for i := range 3 {
		mustEnqueue(t, ctx, prod, taskpool.Task{ID: fmt.Sprint("s", i), Type: "slow"})
	}
	for range 3 {
		<-started
	}
	stopped := make(chan error, 1)
	go func() { stopped <- c.Stop(ctx) }()
	// Stop has begun once a second Start is refused; then nothing new is
	// fetched: this task stays queued.
	require.Eventually(t, func() bool { return errors.Is(c.Start(), natsbroker.ErrConsumerClosed) }, 5*time.Second, 5*time.Millisecond)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "after-stop", Type: "slow"})
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned %v with tasks running", err)
	default:
	}
	close(release)
	require.NoError(t, <-stopped)
	assert.EqualValues(t, 3, acks.Load())
	assert.NoError(t, c.Stop(ctx), "second Stop")

	insp := newInspector(t, ctx, js)
	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, info.Priorities[1].Pending)
	assert.Zero(t, info.Priorities[1].InFlight)
}

func TestStopDeadlineReleasesTasks(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	started := make(chan struct{}, 8)
	stubborn := taskpool.NewRegistry()
	require.NoError(t, stubborn.HandleFunc("job", func(ctx context.Context, _ taskpool.Task) error {
		started <- struct{}{}
		<-ctx.Done() // runs until cancelled
		return ctx.Err()
	}))
	released := make(chan taskpool.Outcome, 8)
	c, err := natsbroker.NewConsumer(ctx, js, stubborn, natsbroker.WithWorkers(2),
		sendOnAction(natsbroker.ActionRelease, released))
	require.NoError(t, err)
	require.NoError(t, c.Start())
	prod := newProducer(t, ctx, js)
	for i := range 2 {
		mustEnqueue(t, ctx, prod, taskpool.Task{ID: fmt.Sprint("j", i), Type: "job"})
	}
	<-started
	<-started
	sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err = c.Stop(sctx)
	var se *taskpool.StopError
	require.ErrorAs(t, err, &se)
	require.Len(t, released, 2)
	// The settle hook's Status is the local scheduler's, counted in
	// Stats: the handlers ran, and failed with their cancelled context.
	for range 2 {
		assert.Equal(t, taskpool.OutcomeFailed, (<-released).Status)
	}
	assert.Equal(t, uint64(2), c.Stats().Failed)

	// Released at once, not after the ack wait: another worker runs them.
	done := make(chan taskpool.Task, 2)
	willing := taskpool.NewRegistry()
	require.NoError(t, willing.HandleFunc("job", func(_ context.Context, task taskpool.Task) error {
		done <- task
		return nil
	}))
	startConsumer(t, js, willing)
	for range 2 {
		task := <-done
		assert.Equal(t, 2, task.Attempt, "the interrupted run counts")
	}
}

func TestLongTaskKeepsLease(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	var runs atomic.Int32
	done := make(chan int, 4)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("long", func(ctx context.Context, task taskpool.Task) error {
		runs.Add(1)
		select { // simulated work, 4x the ack wait
		case <-time.After(1200 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		done <- task.Attempt
		return nil
	}))
	// Two consumers: a lease that lapsed would send the task to the other.
	startConsumer(t, js, reg, natsbroker.WithAckWait(300*time.Millisecond))
	startConsumer(t, js, reg, natsbroker.WithAckWait(300*time.Millisecond))
	prod := newProducer(t, ctx, js)
	mustEnqueue(t, ctx, prod, taskpool.Task{Type: "long"})
	assert.Equal(t, 1, <-done)
	assert.EqualValues(t, 1, runs.Load(), "no redelivery while running")
}

// A consumer with fewer free workers than priorities cannot long-poll every
// empty priority at once; no priority may starve for it.
func TestFewWorkersEveryPriorityServed(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	release := make(chan struct{})
	ran := make(chan string, 4)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("block", func(ctx context.Context, _ taskpool.Task) error {
		ran <- "block"
		<-release
		return nil
	}))
	require.NoError(t, reg.HandleFunc("quick", func(_ context.Context, task taskpool.Task) error {
		ran <- task.ID
		return nil
	}))
	startConsumer(t, js, reg, natsbroker.WithWorkers(2), natsbroker.WithPrefetch(natsbroker.NoPrefetch))
	prod := newProducer(t, ctx, js)
	mustEnqueue(t, ctx, prod, taskpool.Task{Type: "block"})
	require.Equal(t, "block", <-ran)
	// One worker left, three priorities to watch.
	for _, prio := range []taskpool.Priority{taskpool.PriorityLow, taskpool.PriorityDefault, taskpool.PriorityHigh} {
		id := "quick-" + prio.String()
		mustEnqueue(t, ctx, prod, taskpool.Task{ID: id, Type: "quick", Priority: prio})
		select {
		case got := <-ran:
			assert.Equal(t, id, got)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s never ran", id)
		}
	}
	close(release)
}

// A delivery count past MaxAttempts (every earlier delivery ended without
// an outcome: the worker died, or was stopped mid-task) dead-letters the
// task without running it again.
func TestAttemptsExhaustedByInterruptions(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	started := make(chan struct{}, 1)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("hang", func(ctx context.Context, _ taskpool.Task) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}))
	c, err := natsbroker.NewConsumer(ctx, js, reg)
	require.NoError(t, err)
	require.NoError(t, c.Start())
	prod := newProducer(t, ctx, js)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "fragile", Type: "hang", MaxAttempts: 1})
	<-started
	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	require.Error(t, c.Stop(sctx))

	dead := make(chan taskpool.Outcome, 1)
	startConsumer(t, js, reg, sendOnAction(natsbroker.ActionDeadLetter, dead))
	out := <-dead
	assert.ErrorIs(t, out.Err, natsbroker.ErrAttemptsExhausted)
	assert.Equal(t, 1, out.Attempts, "the handler ran once (Outcome.Attempts counts runs; the delivery count is 2)")
	assert.Equal(t, taskpool.OutcomeFailed, out.Status, "dead-lettered: failed (WithSettleHook)")
	assert.Len(t, started, 0, "not run again")
}
