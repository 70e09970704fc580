package natsbroker_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// Every option refuses the values its doc calls out of range with an error
// wrapping ErrInvalidOption (and the core's), whichever constructor it is
// given to, and accepts the smallest value its doc allows.
func TestOptionValidation(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := taskpool.NewRegistry()

	queueOpts := map[string]natsbroker.Option{
		"nil option":                     nil,
		"WithCodec(nil)":                 natsbroker.WithCodec(nil),
		"WithReplicas(-1)":               natsbroker.WithReplicas(-1),
		"WithReplicas(6)":                natsbroker.WithReplicas(6),
		"WithDuplicateWindow(-1)":        natsbroker.WithDuplicateWindow(-1),
		"WithDuplicateWindow(99ms)":      natsbroker.WithDuplicateWindow(99 * time.Millisecond),
		"WithUniqueTTL(-1)":              natsbroker.WithUniqueTTL(-1),
		"WithResultTTL(-1)":              natsbroker.WithResultTTL(-1),
		"WithDeadLetterLimits(-1, 0)":    natsbroker.WithDeadLetterLimits(-1, 0),
		"WithDeadLetterLimits(999ms, 0)": natsbroker.WithDeadLetterLimits(999*time.Millisecond, 0),
		"WithDeadLetterLimits(0, -1)":    natsbroker.WithDeadLetterLimits(0, -1),
		`WithPlacement("")`:              natsbroker.WithPlacement(""),
		`WithPlacement("c", "")`:         natsbroker.WithPlacement("c", ""),
	}
	consumerOpts := map[string]natsbroker.Option{
		"WithWorkers(-1)":             natsbroker.WithWorkers(-1),
		"WithPrefetch(-2)":            natsbroker.WithPrefetch(natsbroker.NoPrefetch - 1),
		"WithMaxBatch(-1)":            natsbroker.WithMaxBatch(-1),
		"WithAckWait(-1)":             natsbroker.WithAckWait(-1),
		"WithAckWait(99ms)":           natsbroker.WithAckWait(99 * time.Millisecond),
		"WithPollWait(-1)":            natsbroker.WithPollWait(-1),
		"WithPollWait(9ms)":           natsbroker.WithPollWait(9 * time.Millisecond),
		"WithMaxAttempts(-1)":         natsbroker.WithMaxAttempts(-1),
		"WithBackoff(nil)":            natsbroker.WithBackoff(nil),
		"WithPriorityWeights(-1,1,1)": natsbroker.WithPriorityWeights(-1, 1, 1),
		"WithPriorityWeights(0,0,0)":  natsbroker.WithPriorityWeights(0, 0, 0),
		"WithUnknownTypeGrace(-1)":    natsbroker.WithUnknownTypeGrace(-1),
		"WithUnknownTypeGrace(9ms)":   natsbroker.WithUnknownTypeGrace(9 * time.Millisecond),
	}
	producerOpts := map[string]natsbroker.Option{
		"WithPublishWindow(-1)":      natsbroker.WithPublishWindow(-1),
		"WithKnownTypes(nil)":        natsbroker.WithKnownTypes(nil),
		"WithEnqueueMiddleware(nil)": natsbroker.WithEnqueueMiddleware(nil),
	}
	refused := func(name string, err error) {
		t.Helper()
		assert.ErrorIs(t, err, natsbroker.ErrInvalidOption, name)
		assert.ErrorIs(t, err, taskpool.ErrInvalidOption, name)
	}
	q := natsbroker.WithQueue("validation")
	for name, o := range queueOpts {
		_, err := natsbroker.NewProducer(ctx, js, q, o)
		refused(name, err)
		_, err = natsbroker.NewConsumer(ctx, js, reg, q, o)
		refused(name, err)
		_, err = natsbroker.NewInspector(ctx, js, q, o)
		refused(name, err)
	}
	for name, o := range consumerOpts {
		_, err := natsbroker.NewConsumer(ctx, js, reg, q, o)
		refused(name, err)
	}
	for name, o := range producerOpts {
		_, err := natsbroker.NewProducer(ctx, js, q, o)
		refused(name, err)
	}
	// A nil JetStream is a bad argument too, not a panic.
	_, err := natsbroker.NewProducer(ctx, nil)
	refused("nil jetstream", err)
	_, err = natsbroker.NewConsumer(ctx, nil, reg)
	refused("nil jetstream", err)
	_, err = natsbroker.NewInspector(ctx, nil)
	refused("nil jetstream", err)

	// Queue names: letters, digits, '-' and '_', at most 64 of them.
	for _, name := range []string{"", "a.b", "a b", "a*", "a>", "é", strings.Repeat("q", 65)} {
		_, err := natsbroker.NewProducer(ctx, js, natsbroker.WithQueue(name))
		assert.ErrorIs(t, err, natsbroker.ErrInvalidQueue, "%q", name)
		_, err = natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithQueue(name))
		assert.ErrorIs(t, err, natsbroker.ErrInvalidQueue, "%q", name)
		_, err = natsbroker.NewInspector(ctx, js, natsbroker.WithQueue(name))
		assert.ErrorIs(t, err, natsbroker.ErrInvalidQueue, "%q", name)
		refused(name, err)
		assert.ErrorIs(t, natsbroker.ValidateQueueName(name), natsbroker.ErrInvalidQueue, "%q", name)
	}
	_, err = natsbroker.NewInspector(ctx, js, natsbroker.WithQueue("Az09-_"+strings.Repeat("q", 58)), natsbroker.WithMemoryStorage())
	require.NoError(t, err, "64 allowed characters")
	require.NoError(t, natsbroker.ValidateQueueName("Az09-_"+strings.Repeat("q", 58)))

	// The documented minimums are accepted.
	c, err := natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithQueue("minimums"), natsbroker.WithMemoryStorage(),
		natsbroker.WithDuplicateWindow(100*time.Millisecond), natsbroker.WithAckWait(100*time.Millisecond),
		natsbroker.WithPollWait(10*time.Millisecond), natsbroker.WithUnknownTypeGrace(10*time.Millisecond),
		natsbroker.WithDeadLetterLimits(time.Second, 1), natsbroker.WithPrefetch(natsbroker.NoPrefetch),
		natsbroker.WithPriorityWeights(0, 0, 1), natsbroker.WithReplicas(1))
	require.NoError(t, err)
	assert.Equal(t, 100*time.Millisecond, c.Health().AckWait)
	require.NoError(t, c.Stop(ctx))
}

// A zero count or duration given to an option means the default: the
// queue is created with the documented defaults.
func TestZeroOptionsMeanDefaults(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("zeros")
	c, err := natsbroker.NewConsumer(ctx, js, taskpool.NewRegistry(), q,
		natsbroker.WithReplicas(0), natsbroker.WithDuplicateWindow(0), natsbroker.WithUniqueTTL(0),
		natsbroker.WithResultTTL(0), natsbroker.WithDeadLetterLimits(0, 0),
		natsbroker.WithWorkers(0), natsbroker.WithPrefetch(0), natsbroker.WithMaxBatch(0),
		natsbroker.WithAckWait(0), natsbroker.WithPollWait(0), natsbroker.WithMaxAttempts(0),
		natsbroker.WithUnknownTypeGrace(0), natsbroker.WithLogger(nil), natsbroker.WithSettleHook(nil))
	require.NoError(t, err)
	assert.Equal(t, natsbroker.DefaultAckWait, c.Health().AckWait)
	require.NoError(t, c.Start())
	assert.Equal(t, runtime.GOMAXPROCS(0), c.Stats().Workers)
	require.NoError(t, c.Stop(ctx))
	_, err = natsbroker.NewProducer(ctx, js, q, natsbroker.WithPublishWindow(0))
	require.NoError(t, err)

	st, err := js.Stream(ctx, "TASKPOOL_zeros")
	require.NoError(t, err)
	sc := st.CachedInfo().Config
	assert.Equal(t, natsbroker.DefaultDuplicateWindow, sc.Duplicates)
	assert.Equal(t, 1, sc.Replicas)
	assert.Equal(t, jetstream.FileStorage, sc.Storage)
	dead, err := js.Stream(ctx, "TASKPOOLDEAD_zeros")
	require.NoError(t, err)
	assert.Zero(t, dead.CachedInfo().Config.MaxAge, "dead letters kept for ever")
	assert.EqualValues(t, -1, dead.CachedInfo().Config.MaxBytes)
	for bucket, want := range map[string]time.Duration{
		"taskpool_unique_zeros":  natsbroker.DefaultUniqueTTL,
		"taskpool_results_zeros": natsbroker.DefaultResultTTL,
	} {
		kv, err := js.KeyValue(ctx, bucket)
		require.NoError(t, err)
		status, err := kv.Status(ctx)
		require.NoError(t, err)
		assert.Equal(t, want, status.TTL(), bucket)
	}
	cons, err := js.Consumer(ctx, "TASKPOOL_zeros", "taskpool_default")
	require.NoError(t, err)
	assert.Equal(t, natsbroker.DefaultAckWait, cons.CachedInfo().Config.AckWait)
	assert.Equal(t, natsbroker.MaxDeliveries, cons.CachedInfo().Config.MaxDeliver)
}

// Start may be called once; Stop before Start closes the consumer; every
// Stop after the first returns nil.
func TestConsumerStartStopStates(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg, ran := idRegistry(t, "t", 4)

	c, err := natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithWorkers(3), natsbroker.WithPollWait(50*time.Millisecond))
	require.NoError(t, err)
	require.NoError(t, c.Start())
	assert.ErrorIs(t, c.Start(), natsbroker.ErrConsumerClosed, "a second Start")
	prod := newProducer(t, ctx, js)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "one", Type: "t"})
	assert.Equal(t, "one", <-ran, "the first Start still runs")
	// Stats is the local scheduler's: the task counts there.
	require.Eventually(t, func() bool { return c.Stats().Succeeded == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, 3, c.Stats().Workers)
	require.NoError(t, c.Stop(ctx))
	assert.ErrorIs(t, c.Start(), natsbroker.ErrConsumerClosed, "Start after Stop")
	assert.NoError(t, c.Stop(ctx), "second Stop")

	never, err := natsbroker.NewConsumer(ctx, js, reg)
	require.NoError(t, err)
	require.NoError(t, never.Stop(ctx), "Stop before Start")
	assert.ErrorIs(t, never.Start(), natsbroker.ErrConsumerClosed, "Stop before Start marks it closed")
	assert.NoError(t, never.Stop(ctx))
	assert.False(t, never.Health().Live())
}

// A Stop called while another is under way waits for the first to finish
// (the running task settled) and returns nil.
func TestConsumerSecondStopWaitsForFirst(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	started := make(chan struct{})
	release := make(chan struct{})
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("slow", func(context.Context, taskpool.Task) error {
		close(started)
		<-release
		return nil
	}))
	acked := make(chan struct{})
	c, err := natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithPollWait(50*time.Millisecond),
		natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) {
			if a == natsbroker.ActionAck {
				close(acked)
			}
		}))
	require.NoError(t, err)
	require.NoError(t, c.Start())
	prod := newProducer(t, ctx, js)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "slow", Type: "slow"})
	<-started

	first := make(chan error, 1)
	go func() { first <- c.Stop(ctx) }()
	require.Eventually(t, func() bool { return !c.Health().Consuming }, 5*time.Second, 5*time.Millisecond, "first Stop under way")
	second := make(chan error, 1)
	go func() { second <- c.Stop(ctx) }()
	// While the task runs, the second Stop must not return: a bounded
	// look for a wrong answer, not a wait for a right one.
	select {
	case err := <-second:
		t.Fatalf("the second Stop returned (%v) while the first waited for a running task", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-second:
		assert.NoError(t, err)
		select {
		case <-acked:
		default:
			t.Error("the second Stop returned before the first had settled the task")
		}
	case <-ctx.Done():
		t.Fatal("second Stop never returned")
	}
	assert.NoError(t, <-first)
}

// EnqueueBatch reports each task's error in a *BatchError, index-aligned,
// errors.Is-able through it, and the other tasks' receipts are valid.
func TestEnqueueBatchErrors(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	prod := newProducer(t, ctx, js)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "holder", Type: "x", UniqueKey: "k"})
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "old", Type: "x"})

	tasks := []taskpool.Task{
		{ID: "a", Type: "x"},
		{ID: "no-type"},
		{Type: "x"},
		{ID: "bad-params", Type: "x", Params: make(chan int)},
		{ID: "other", Type: "x", UniqueKey: "k"},
		{ID: "old", Type: "x"},
		{ID: "bad-meta", Type: "x", Metadata: map[string]string{"bad key": "v"}},
	}
	receipts, err := prod.EnqueueBatch(ctx, tasks)
	var be *natsbroker.BatchError
	require.ErrorAs(t, err, &be)
	require.Len(t, be.Errs, len(tasks))
	require.Len(t, receipts, len(tasks))
	assert.ErrorIs(t, be.Errs[1], taskpool.ErrInvalidType)
	assert.ErrorIs(t, be.Errs[3], natsbroker.ErrBadParams)
	assert.ErrorIs(t, be.Errs[4], natsbroker.ErrDuplicateTask)
	assert.ErrorIs(t, be.Errs[6], taskpool.ErrInvalidTask)
	for _, i := range []int{0, 2, 5} {
		assert.NoError(t, be.Errs[i], "task %d", i)
	}
	assert.ErrorIs(t, err, taskpool.ErrInvalidType, "errors.Is sees each error through the BatchError")
	assert.ErrorIs(t, err, natsbroker.ErrDuplicateTask)
	assert.Contains(t, err.Error(), "4 of 7")

	assert.Equal(t, "a", receipts[0].ID)
	assert.NotZero(t, receipts[0].Sequence)
	assert.False(t, receipts[0].Duplicate)
	assert.NotEmpty(t, receipts[2].ID, "an empty ID is generated")
	assert.NotZero(t, receipts[2].Sequence)
	assert.Equal(t, "old", receipts[5].ID)
	assert.True(t, receipts[5].Duplicate, "an ID the server already had")

	insp := newInspector(t, ctx, js)
	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 4, info.Priorities[1].Pending, "holder, old, a and the generated one")
}

// Enqueueing an ID again within the duplicate window stores nothing and
// says so; an empty ID is replaced by a fresh one; Delay and At in the
// past mean now; WithKnownTypes reads the registry at each enqueue.
func TestEnqueueIDsAndDueTimes(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := taskpool.NewRegistry()
	prod := newProducer(t, ctx, js, natsbroker.WithKnownTypes(reg))
	_, err := prod.Enqueue(ctx, taskpool.Task{ID: "same", Type: "x"})
	require.ErrorIs(t, err, taskpool.ErrNoHandler)
	require.NoError(t, reg.HandleFunc("x", func(context.Context, taskpool.Task) error { return nil }))

	first, err := prod.Enqueue(ctx, taskpool.Task{ID: "same", Type: "x"})
	require.NoError(t, err, "a type registered after the producer was made is known")
	assert.False(t, first.Duplicate)
	again := mustEnqueue(t, ctx, prod, taskpool.Task{ID: "same", Type: "x", Params: "other"})
	assert.True(t, again.Duplicate)
	assert.Equal(t, "same", again.ID)
	assert.Equal(t, first.Sequence, again.Sequence, "the stored task's sequence")

	g1 := mustEnqueue(t, ctx, prod, taskpool.Task{Type: "x"})
	g2 := mustEnqueue(t, ctx, prod, taskpool.Task{Type: "x"})
	assert.NotEmpty(t, g1.ID)
	assert.NotEqual(t, g1.ID, g2.ID)

	for _, o := range []natsbroker.EnqueueOption{natsbroker.Delay(0), natsbroker.Delay(-time.Hour), natsbroker.At(time.Now().Add(-time.Hour)), natsbroker.At(time.Time{})} {
		r := mustEnqueue(t, ctx, prod, taskpool.Task{Type: "x"}, o)
		assert.True(t, r.RunAt.IsZero(), "due now")
	}

	insp := newInspector(t, ctx, js)
	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	assert.Zero(t, info.Scheduled, "nothing delayed")
	assert.EqualValues(t, 7, info.Priorities[1].Pending, "same once, two generated, four due now")
}

// Inspector.Queue: one entry per priority, high first; tasks stored
// before any consumer exists are pending; Scheduled counts delayed tasks
// and periodic schedules. GlobalSlots is empty on a queue without global
// limits.
func TestInspectorQueueCounts(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("counts")
	prod := newProducer(t, ctx, js, q)
	for i, prio := range []taskpool.Priority{1, 1, 0, -1, -1, -1} {
		mustEnqueue(t, ctx, prod, taskpool.Task{ID: fmt.Sprint("t", i), Type: "x", Priority: prio})
	}
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "later", Type: "x"}, natsbroker.Delay(time.Hour))
	require.NoError(t, prod.Schedule(ctx, "nightly", "@daily", taskpool.Task{Type: "x"}))

	insp := newInspector(t, ctx, js, q)
	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	assert.Equal(t, "counts", info.Queue)
	require.Len(t, info.Priorities, 3)
	for i, want := range []struct {
		prio    taskpool.Priority
		pending uint64
	}{{taskpool.PriorityHigh, 2}, {taskpool.PriorityDefault, 1}, {taskpool.PriorityLow, 3}} {
		assert.Equal(t, want.prio, info.Priorities[i].Priority)
		assert.Equal(t, want.pending, info.Priorities[i].Pending, "priority %d", want.prio)
		assert.Zero(t, info.Priorities[i].InFlight)
	}
	assert.EqualValues(t, 2, info.Scheduled)
	assert.Zero(t, info.DeadLetters)

	slots, err := insp.GlobalSlots(ctx)
	require.NoError(t, err)
	assert.Empty(t, slots)
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	assert.Empty(t, dls)
	_, err = insp.Resubmit(ctx, 1)
	assert.ErrorIs(t, err, natsbroker.ErrNotFound)
	assert.ErrorIs(t, err, taskpool.ErrTaskNotFound)
	assert.ErrorIs(t, insp.DeleteDeadLetter(ctx, 1), natsbroker.ErrNotFound)
}

// DeadLetters pages: up to limit dead letters after the given sequence,
// oldest first, skipping deleted ones.
func TestInspectorDeadLettersPaging(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("fail", func(context.Context, taskpool.Task) error {
		return taskpool.SkipRetry(errors.New("no"))
	}))
	dead := make(chan string, 8)
	startConsumer(t, js, reg, natsbroker.WithWorkers(1), natsbroker.WithPrefetch(natsbroker.NoPrefetch),
		natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
			if a == natsbroker.ActionDeadLetter {
				dead <- out.Task.ID
			}
		}))
	prod := newProducer(t, ctx, js)
	// One at a time, so that the dead letters' order is the tasks'.
	var ids []string
	for i := range 5 {
		id := fmt.Sprint("d", i)
		ids = append(ids, id)
		mustEnqueue(t, ctx, prod, taskpool.Task{ID: id, Type: "fail"})
		select {
		case got := <-dead:
			require.Equal(t, id, got)
		case <-ctx.Done():
			t.Fatal("not dead-lettered")
		}
	}
	insp := newInspector(t, ctx, js)
	all, err := insp.DeadLetters(ctx, 0, 100)
	require.NoError(t, err)
	require.Len(t, all, 5)
	require.NoError(t, insp.DeleteDeadLetter(ctx, all[2].Sequence))

	var got []string
	after := uint64(0)
	pages := 0
	for {
		page, err := insp.DeadLetters(ctx, after, 2)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		pages++
		assert.LessOrEqual(t, len(page), 2)
		for _, dl := range page {
			assert.Greater(t, dl.Sequence, after, "after the sequence given, oldest first")
			after = dl.Sequence
			got = append(got, dl.Task.ID)
			assert.Equal(t, "no", dl.Error)
			assert.Equal(t, "fail", dl.Task.Type)
		}
	}
	assert.Equal(t, []string{ids[0], ids[1], ids[3], ids[4]}, got, "the deleted one skipped")
	assert.Equal(t, 2, pages)
	none, err := insp.DeadLetters(ctx, 0, 0)
	require.NoError(t, err)
	assert.Empty(t, none, "limit 0")
}

// Schedule and Cancel refuse what they cannot do with the documented
// errors; the Client's Cancel is bounded by CancelTimeout.
func TestScheduleAndCancelErrors(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	prod := newProducer(t, ctx, js)
	task := taskpool.Task{Type: "report"}
	assert.ErrorIs(t, prod.Schedule(ctx, "", "@daily", task), natsbroker.ErrInvalidOption, "empty id")
	assert.ErrorIs(t, prod.Schedule(ctx, "s", "", task), natsbroker.ErrInvalidOption, "empty spec")
	assert.ErrorIs(t, prod.Schedule(ctx, "s", "@daily", taskpool.Task{Type: "report", UniqueKey: "k"}), natsbroker.ErrInvalidOption, "unique key")
	assert.ErrorIs(t, prod.Schedule(ctx, "s", "@daily", taskpool.Task{}), taskpool.ErrInvalidType, "empty type")

	c := natsbroker.NewClient(prod)
	err := c.Cancel("nothing")
	assert.ErrorIs(t, err, natsbroker.ErrNotFound)
	assert.ErrorIs(t, err, taskpool.ErrTaskNotFound)
	assert.ErrorIs(t, c.Unschedule("nothing"), taskpool.ErrTaskNotFound)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "due", Type: "report"})
	assert.ErrorIs(t, c.Cancel("due"), natsbroker.ErrNotFound, "a queued task cannot be cancelled")

	bounded := &natsbroker.Client{Producer: prod, CancelTimeout: time.Nanosecond}
	assert.ErrorIs(t, bounded.Cancel("nothing"), context.DeadlineExceeded, "CancelTimeout bounds Cancel")

	// The client-side delay fallback has no schedules to cancel or run.
	fb := newProducer(t, ctx, js, natsbroker.WithQueue("fb"), natsbroker.WithClientSideDelays())
	assert.ErrorIs(t, fb.Schedule(ctx, "s", "@daily", task), natsbroker.ErrSchedulesUnsupported)
	assert.ErrorIs(t, fb.Cancel(ctx, "s"), natsbroker.ErrSchedulesUnsupported)
	r := mustEnqueue(t, ctx, fb, taskpool.Task{ID: "later", Type: "report"}, natsbroker.Delay(time.Hour))
	assert.False(t, r.RunAt.IsZero())
	assert.ErrorIs(t, fb.Cancel(ctx, "later"), natsbroker.ErrSchedulesUnsupported)
}

// Resubmit: "a unique key released when the task was dead-lettered is not
// taken again". While the resubmitted task runs, another task takes the
// key; the resubmitted one's success then leaves that key alone.
func TestResubmitDoesNotTakeTheUniqueKeyAgain(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	var fail atomic.Bool
	fail.Store(true)
	rerun, release := make(chan struct{}), make(chan struct{})
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("u", func(_ context.Context, tk taskpool.Task) error {
		if tk.ID != "a" {
			return nil
		}
		if fail.Load() {
			return taskpool.SkipRetry(errors.New("bad input"))
		}
		close(rerun)
		<-release
		return nil
	}))
	settled := make(chan string, 8)
	startConsumer(t, js, reg, natsbroker.WithWorkers(2),
		natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
			settled <- out.Task.ID + " " + a.String()
		}))
	prod := newProducer(t, ctx, js)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "a", Type: "u", UniqueKey: "k"})
	require.Equal(t, "a "+natsbroker.ActionDeadLetter.String(), <-settled)

	insp := newInspector(t, ctx, js)
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	fail.Store(false)
	_, err = insp.Resubmit(ctx, dls[0].Sequence)
	require.NoError(t, err)
	<-rerun
	_, err = prod.Enqueue(ctx, taskpool.Task{ID: "b", Type: "u", UniqueKey: "k"}, natsbroker.Delay(time.Hour))
	require.NoError(t, err, "the resubmitted task took the key again")
	close(release)
	require.Equal(t, "a "+natsbroker.ActionAck.String(), <-settled)
	_, err = prod.Enqueue(ctx, taskpool.Task{ID: "c", Type: "u", UniqueKey: "k"})
	require.ErrorIs(t, err, taskpool.ErrDuplicateTask, "the resubmitted task's success released b's key")
}
