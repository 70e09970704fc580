package natsbroker_test

// Promises of the docs that no other test pinned, found by an audit of
// the exported API's doc comments; each test names the sentences it
// checks.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// DeadLetter: "Subject is the subject the task was delivered on";
// "Header holds the original headers but the server's Nats-* ones, and
// the Taskpool-* dead-letter headers. Its Nats-Msg-Id is
// "dead-<HeaderSequence>""; "Data is the original payload"; "Attempts is the attempt
// number of the last delivery"; "FailedAt is when the task was
// dead-lettered". HeaderError, HeaderAttempts, HeaderFailedAt,
// HeaderSubject, HeaderSequence ("a dead letter's sequence in the task
// stream", the Receipt's Sequence) and HeaderTaskID as documented;
// MetadataHeaderPrefix: "a dead letter keeps them". Inspector.Resubmit
// "puts dead letter seq back on the queue, on the subject it was
// delivered on": a high-priority task goes back to the high priority.
func TestAuditDeadLetterRecord(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("auditdl")
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("fail", func(context.Context, taskpool.Task) error {
		return errors.New("broken")
	}))
	dead := make(chan taskpool.Outcome, 4)
	c, err := natsbroker.NewConsumer(ctx, js, reg, q,
		natsbroker.WithBackoff(taskpool.ConstantBackoff(10*time.Millisecond)),
		sendOnAction(natsbroker.ActionDeadLetter, dead))
	require.NoError(t, err)
	require.NoError(t, c.Start())
	prod := newProducer(t, ctx, js, q)

	before := time.Now().Truncate(time.Second)
	task := taskpool.Task{ID: "dl1", Type: "fail", Priority: taskpool.PriorityHigh, MaxAttempts: 2,
		Params: map[string]int{"n": 7}, Metadata: map[string]string{"tenant": "acme"}}
	r := mustEnqueue(t, ctx, prod, task)
	out := recvT(t, dead, 10*time.Second, "the dead letter")
	require.Equal(t, "dl1", out.Task.ID)
	require.NoError(t, c.Stop(ctx))
	after := time.Now()

	insp := newInspector(t, ctx, js, q)
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	dl := dls[0]
	const subject = "taskpool.auditdl.task.high"
	assert.Equal(t, subject, dl.Subject)
	assert.Equal(t, "broken", dl.Error)
	assert.Equal(t, 2, dl.Attempts)
	assert.WithinRange(t, dl.FailedAt, before, after)
	assert.Equal(t, "dl1", dl.Task.ID)
	assert.Equal(t, taskpool.PriorityHigh, dl.Task.Priority)
	assert.Equal(t, map[string]string{"tenant": "acme"}, dl.Task.Metadata)

	h := dl.Header
	assert.Equal(t, "broken", h.Get(natsbroker.HeaderError))
	assert.Equal(t, "2", h.Get(natsbroker.HeaderAttempts))
	assert.Equal(t, subject, h.Get(natsbroker.HeaderSubject))
	assert.Equal(t, strconv.FormatUint(r.Sequence, 10), h.Get(natsbroker.HeaderSequence))
	assert.Equal(t, "dl1", h.Get(natsbroker.HeaderTaskID))
	failedAt, err := time.Parse(time.RFC3339Nano, h.Get(natsbroker.HeaderFailedAt))
	require.NoError(t, err, "HeaderFailedAt is RFC 3339")
	assert.WithinRange(t, failedAt, before, after)
	// The original headers but the server's: the metadata. The message
	// ID is the dead letter's own.
	assert.Equal(t, "dead-"+strconv.FormatUint(r.Sequence, 10), h.Get("Nats-Msg-Id"))
	assert.Equal(t, "acme", h.Get(natsbroker.MetadataHeaderPrefix+"tenant"))
	// The original payload: the codec reads the task back from it.
	fromData, err := natsbroker.JSONCodec{}.Decode(dl.Data)
	require.NoError(t, err)
	assert.Equal(t, "dl1", fromData.ID)
	assert.Equal(t, "fail", fromData.Type)
	assert.Equal(t, taskpool.PriorityHigh, fromData.Priority)
	params, err := taskpool.ParamsAs[map[string]int](fromData)
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"n": 7}, params)

	// Resubmit puts it back on the high-priority subject.
	_, err = insp.Resubmit(ctx, dl.Sequence)
	require.NoError(t, err)
	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, info.Priorities[0].Pending, "high")
	assert.Zero(t, info.Priorities[1].Pending, "default")
	assert.Zero(t, info.Priorities[2].Pending, "low")
	assert.Zero(t, info.DeadLetters)
}

// PriorityInfo: "InFlight counts tasks delivered to a worker and not yet
// settled"; "Redelivered counts in-flight tasks delivered more than
// once"; "Delivered counts deliveries to workers, redeliveries included";
// "Waiting counts workers' fetch requests waiting for tasks". A task that
// failed once and blocks in its second run is in flight and redelivered,
// after two deliveries; once it is acked nothing is in flight, and the
// idle consumer's long polls wait.
func TestAuditQueueInFlightCounts(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("auditinflight")
	running := make(chan int, 4)
	release := make(chan struct{})
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("job", func(ctx context.Context, task taskpool.Task) error {
		if task.Attempt == 1 {
			return errors.New("transient")
		}
		running <- task.Attempt
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}))
	acked := make(chan string, 4)
	startConsumer(t, js, reg, q, natsbroker.WithWorkers(1), natsbroker.WithPrefetch(natsbroker.NoPrefetch),
		natsbroker.WithPollWait(200*time.Millisecond),
		natsbroker.WithBackoff(taskpool.ConstantBackoff(10*time.Millisecond)),
		natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
			if a == natsbroker.ActionAck {
				acked <- out.Task.ID
			}
		}))
	prod := newProducer(t, ctx, js, q)
	insp := newInspector(t, ctx, js, q)

	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "j", Type: "job", MaxAttempts: 3})
	assert.Equal(t, 2, recvT(t, running, 10*time.Second, "the second run"))
	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	d := info.Priorities[1]
	assert.Equal(t, 1, d.InFlight, "in flight")
	assert.Equal(t, 1, d.Redelivered, "delivered twice")
	assert.EqualValues(t, 2, d.Delivered, "two deliveries")
	assert.Zero(t, d.Pending)

	close(release)
	assert.Equal(t, "j", recvT(t, acked, 10*time.Second, "the ack"))
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		info, err := insp.Queue(ctx)
		require.NoError(ct, err)
		d := info.Priorities[1]
		assert.Zero(ct, d.InFlight)
		assert.Zero(ct, d.Redelivered)
		assert.EqualValues(ct, 2, d.Delivered)
		waiting := 0
		for _, p := range info.Priorities {
			waiting += p.Waiting
		}
		assert.Positive(ct, waiting, "the idle consumer's long polls")
	}, 10*time.Second, 10*time.Millisecond)
}

// Inspector.Schedules: "sorted by NextRun (unknown last), then ID, then
// the delayed task before the schedule". Five-field specs have no known
// NextRun and come last, by ID; a delayed task due when a schedule of
// the same ID next runs comes before it.
func TestAuditSchedulesOrder(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("auditorder")
	prod := newProducer(t, ctx, js, q)
	insp := newInspector(t, ctx, js, q)

	require.NoError(t, prod.Schedule(ctx, "b", "0 3 * * *", taskpool.Task{Type: "x"}))
	require.NoError(t, prod.Schedule(ctx, "a", "30 4 * * *", taskpool.Task{Type: "x"}))
	require.NoError(t, prod.Schedule(ctx, "z", "@every 1h", taskpool.Task{Type: "x"}))
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "m", Type: "x"}, natsbroker.Delay(3*time.Hour))
	list, err := insp.Schedules(ctx, false)
	require.NoError(t, err)
	var zNext time.Time
	for _, s := range list {
		if s.ID == "z" {
			zNext = s.NextRun
		}
	}
	require.False(t, zNext.IsZero())
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "z", Type: "x"}, natsbroker.At(zNext))
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "y", Type: "x"}, natsbroker.At(zNext))

	list, err = insp.Schedules(ctx, true)
	require.NoError(t, err)
	var got []string
	for _, s := range list {
		kind := "delayed"
		if s.Periodic {
			kind = "periodic"
		}
		got = append(got, s.ID+" "+kind)
	}
	assert.Equal(t, []string{"y delayed", "z delayed", "z periodic", "m delayed", "a periodic", "b periodic"}, got)
}

// Action.String: "String returns the action's name".
func TestAuditActionNames(t *testing.T) {
	t.Parallel()
	for a, want := range map[natsbroker.Action]string{
		natsbroker.ActionAck:        "ack",
		natsbroker.ActionRetry:      "retry",
		natsbroker.ActionDeadLetter: "dead-letter",
		natsbroker.ActionRelease:    "release",
		natsbroker.ActionDefer:      "defer",
	} {
		assert.Equal(t, want, a.String())
	}
}

// WithEnqueueMiddleware: "adds fn to what a producer runs on every task
// before encoding it, in Enqueue, EnqueueBatch and Schedule (once, at
// registration: every tick of a periodic task carries what it set
// then)"; "A non-nil error rejects the task: it is not stored";
// "Several middleware run in the order given".
func TestAuditEnqueueMiddleware(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("auditmw")
	refused := errors.New("refused by middleware")
	var mu sync.Mutex
	calls := map[string]int{}
	mark := func(n string) func(context.Context, *taskpool.Task) error {
		return func(_ context.Context, task *taskpool.Task) error {
			mu.Lock()
			calls[task.Type+"/"+n]++
			mu.Unlock()
			if task.Metadata == nil {
				task.Metadata = map[string]string{}
			}
			task.Metadata["order"] += n
			if n == "2" && task.ID == "refuse" {
				return refused
			}
			return nil
		}
	}
	prod := newProducer(t, ctx, js, q, natsbroker.WithEnqueueMiddleware(mark("1"), mark("2")))
	type run struct{ id, order string }
	ran := make(chan run, 16)
	reg := taskpool.NewRegistry()
	for _, typ := range []string{"one", "batch", "tick"} {
		require.NoError(t, reg.HandleFunc(typ, func(_ context.Context, task taskpool.Task) error {
			ran <- run{task.ID, task.Metadata["order"]}
			return nil
		}))
	}
	startConsumer(t, js, reg, q)

	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "e", Type: "one"})
	assert.Equal(t, run{"e", "12"}, recvT(t, ran, 10*time.Second, "the enqueued task"))

	_, err := prod.EnqueueBatch(ctx, []taskpool.Task{{ID: "b", Type: "batch"}, {ID: "refuse", Type: "batch"}})
	var be *natsbroker.BatchError
	require.ErrorAs(t, err, &be)
	require.Len(t, be.Errs, 2)
	assert.NoError(t, be.Errs[0])
	assert.ErrorIs(t, be.Errs[1], refused)
	assert.Equal(t, run{"b", "12"}, recvT(t, ran, 10*time.Second, "the batch's task"))

	_, err = prod.Enqueue(ctx, taskpool.Task{ID: "refuse", Type: "one"})
	assert.ErrorIs(t, err, refused)

	require.NoError(t, prod.Schedule(ctx, "tk", "@every 1s", taskpool.Task{Type: "tick"}))
	t.Cleanup(func() { _ = prod.Cancel(context.Background(), "tk") })
	for range 2 {
		r := recvT(t, ran, 10*time.Second, "a tick")
		assert.Equal(t, "12", r.order, "tick %s", r.id)
	}
	mu.Lock()
	assert.Equal(t, map[string]int{"one/1": 2, "one/2": 2, "batch/1": 2, "batch/2": 2, "tick/1": 1, "tick/2": 1}, calls)
	mu.Unlock()

	// Nothing refused was stored: no task is left, nothing was dead-lettered.
	insp := newInspector(t, ctx, js, q)
	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	for _, p := range info.Priorities {
		assert.Zero(t, p.Pending)
	}
	assert.Zero(t, info.DeadLetters)
	select {
	case r := <-ran:
		if r.id == "refuse" {
			t.Fatalf("a refused task ran: %v", r)
		}
	default:
	}
}

// Producer.Enqueue: "t.UniqueKey makes the task unique across all
// producers until it has completed or been dead-lettered"; ErrDuplicateTask:
// "held by another task that is queued, delayed or running". The key
// stays held while the task waits for its retry and runs again, and is
// free once its last attempt has dead-lettered it.
func TestAuditUniqueKeyHeldAcrossRetries(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("auditunique")
	second := make(chan struct{})
	release := make(chan struct{})
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("flaky", func(ctx context.Context, task taskpool.Task) error {
		if task.Attempt == 2 {
			close(second)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return errors.New("transient")
	}))
	type settled struct {
		id string
		a  natsbroker.Action
	}
	told := make(chan settled, 8)
	startConsumer(t, js, reg, q,
		natsbroker.WithBackoff(taskpool.ConstantBackoff(50*time.Millisecond)),
		natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
			told <- settled{out.Task.ID, a}
		}))
	p1 := newProducer(t, ctx, js, q)
	p2 := newProducer(t, ctx, js, q)

	mustEnqueue(t, ctx, p1, taskpool.Task{ID: "holder", Type: "flaky", UniqueKey: "uk", MaxAttempts: 2})
	assert.Equal(t, settled{"holder", natsbroker.ActionRetry}, recvT(t, told, 10*time.Second, "the first failure"))
	_, err := p2.Enqueue(ctx, taskpool.Task{ID: "other", Type: "flaky", UniqueKey: "uk"})
	assert.ErrorIs(t, err, natsbroker.ErrDuplicateTask, "held while put back for a retry")
	assert.ErrorIs(t, err, taskpool.ErrDuplicateTask)
	recvT(t, second, 10*time.Second, "the second run")
	_, err = p2.Enqueue(ctx, taskpool.Task{ID: "other", Type: "flaky", UniqueKey: "uk"})
	assert.ErrorIs(t, err, natsbroker.ErrDuplicateTask, "held while running again")
	close(release)
	assert.Equal(t, settled{"holder", natsbroker.ActionDeadLetter}, recvT(t, told, 10*time.Second, "the dead letter"))
	_, err = p2.Enqueue(ctx, taskpool.Task{ID: "other", Type: "ok", UniqueKey: "uk"}, natsbroker.Delay(time.Hour))
	require.NoError(t, err, "free once dead-lettered")
	_, err = p1.Enqueue(ctx, taskpool.Task{ID: "third", Type: "ok", UniqueKey: "uk"})
	assert.ErrorIs(t, err, natsbroker.ErrDuplicateTask, "held by a delayed task")
}

// WithMemoryStorage: "keeps the queue's streams in memory instead of on
// disk: faster, but a server restart loses every queued task. The default
// is file storage." WithAsyncPersist: "makes the file-stored task stream
// write to disk in the background" (nats-server 2.12+ async persist
// mode), "a clean shutdown loses nothing". Across a restart of the server
// on the same store, the file queues keep their tasks, the memory queue
// has none.
func TestAuditStorageOptions(t *testing.T) {
	t.Parallel()
	srv, restart := startRestartable(t)
	nc, js := connect(t, srv.URL())
	ctx := ctxT(t)
	queues := map[string][]natsbroker.Option{
		"auditmem":   {natsbroker.WithQueue("auditmem"), natsbroker.WithMemoryStorage()},
		"auditfile":  {natsbroker.WithQueue("auditfile")},
		"auditasync": {natsbroker.WithQueue("auditasync"), natsbroker.WithAsyncPersist()},
	}
	for name, opts := range queues {
		prod, err := natsbroker.NewProducer(ctx, js, opts...)
		require.NoError(t, err, name)
		for i := range 3 {
			_, err := prod.Enqueue(ctx, taskpool.Task{ID: name + strconv.Itoa(i), Type: "x"})
			require.NoError(t, err, name)
		}
	}
	streamCfg := func(name string) jetstream.StreamConfig {
		t.Helper()
		st, err := js.Stream(ctx, name)
		require.NoError(t, err, name)
		return st.CachedInfo().Config
	}
	assert.Equal(t, jetstream.MemoryStorage, streamCfg("TASKPOOL_auditmem").Storage)
	assert.Equal(t, jetstream.MemoryStorage, streamCfg("TASKPOOLDEAD_auditmem").Storage)
	assert.Equal(t, jetstream.FileStorage, streamCfg("TASKPOOL_auditfile").Storage)
	assert.Equal(t, jetstream.FileStorage, streamCfg("TASKPOOLDEAD_auditfile").Storage)
	assert.Equal(t, jetstream.DefaultPersistMode, streamCfg("TASKPOOL_auditfile").PersistMode)
	async := streamCfg("TASKPOOL_auditasync")
	assert.Equal(t, jetstream.FileStorage, async.Storage)
	assert.Equal(t, jetstream.AsyncPersistMode, async.PersistMode)

	srv.Shutdown()
	require.Eventually(t, func() bool { return !nc.IsConnected() }, 5*time.Second, 5*time.Millisecond)
	restart()
	require.Eventually(t, nc.IsConnected, 10*time.Second, 10*time.Millisecond)
	for name, want := range map[string]uint64{"auditmem": 0, "auditfile": 3, "auditasync": 3} {
		insp, err := natsbroker.NewInspector(ctx, js, queues[name]...)
		require.NoError(t, err, name)
		info, err := insp.Queue(ctx)
		require.NoError(t, err, name)
		assert.Equal(t, want, info.Priorities[1].Pending, name)
	}
}

// ErrQueueMismatch: "returned by NewProducer, NewConsumer and NewInspector
// when the queue exists with settings other than those given as options
// (replicas, storage, duplicate window, async persist, unique TTL, ack
// wait). Opening a queue never changes it"; README: also the result TTL.
// WithReconfigure "apply the settings given as options".
// (TestOpenMismatchIsReported covers the duplicate window and the ack
// wait, TestClusterReplicasKept the replicas.)
func TestAuditOpenMismatchOtherSettings(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("auditmismatch")
	newProducer(t, ctx, js, q)

	bucketTTL := func(bucket string) time.Duration {
		t.Helper()
		kv, err := js.KeyValue(ctx, bucket)
		require.NoError(t, err)
		st, err := kv.Status(ctx)
		require.NoError(t, err)
		return st.TTL()
	}
	for name, o := range map[string]natsbroker.Option{
		"storage":       natsbroker.WithMemoryStorage(),
		"async persist": natsbroker.WithAsyncPersist(),
		"unique TTL":    natsbroker.WithUniqueTTL(time.Hour),
		"result TTL":    natsbroker.WithResultTTL(time.Hour),
	} {
		_, err := natsbroker.NewProducer(ctx, js, q, o)
		assert.ErrorIs(t, err, natsbroker.ErrQueueMismatch, "NewProducer, %s", name)
		_, err = natsbroker.NewConsumer(ctx, js, taskpool.NewRegistry(), q, o)
		assert.ErrorIs(t, err, natsbroker.ErrQueueMismatch, "NewConsumer, %s", name)
		_, err = natsbroker.NewInspector(ctx, js, q, o)
		assert.ErrorIs(t, err, natsbroker.ErrQueueMismatch, "NewInspector, %s", name)
	}
	st, err := js.Stream(ctx, "TASKPOOL_auditmismatch")
	require.NoError(t, err)
	assert.Equal(t, jetstream.FileStorage, st.CachedInfo().Config.Storage, "unchanged")
	assert.Equal(t, jetstream.DefaultPersistMode, st.CachedInfo().Config.PersistMode, "unchanged")
	assert.Equal(t, natsbroker.DefaultUniqueTTL, bucketTTL("taskpool_unique_auditmismatch"), "unchanged")
	assert.Equal(t, natsbroker.DefaultResultTTL, bucketTTL("taskpool_results_auditmismatch"), "unchanged")

	// WithReconfigure applies them (those the server can change).
	_, err = natsbroker.NewProducer(ctx, js, q, natsbroker.WithReconfigure(),
		natsbroker.WithUniqueTTL(time.Hour), natsbroker.WithResultTTL(2*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, time.Hour, bucketTTL("taskpool_unique_auditmismatch"))
	assert.Equal(t, 2*time.Hour, bucketTTL("taskpool_results_auditmismatch"))
	_, err = natsbroker.NewInspector(ctx, js, q, natsbroker.WithUniqueTTL(time.Hour), natsbroker.WithResultTTL(2*time.Hour))
	require.NoError(t, err, "the same settings now open without error")
}

// WithUniqueTTL: "sets the longest time a unique key is held: a key whose
// task is lost for good ... is released after it"; README: "Keys expire
// after WithUniqueTTL ... so a key is never held forever". With no
// consumer to finish the holder, its key is refused at once and free
// again after the TTL.
func TestAuditUniqueTTLReleasesTheKey(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	const ttl = time.Second
	prod := newProducer(t, ctx, js, natsbroker.WithQueue("auditttl"), natsbroker.WithUniqueTTL(ttl))
	start := time.Now()
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "holder", Type: "x", UniqueKey: "k"})
	_, err := prod.Enqueue(ctx, taskpool.Task{ID: "early", Type: "x", UniqueKey: "k"})
	require.ErrorIs(t, err, natsbroker.ErrDuplicateTask)
	n := 0
	require.Eventually(t, func() bool {
		n++
		_, err := prod.Enqueue(ctx, taskpool.Task{ID: "probe" + strconv.Itoa(n), Type: "x", UniqueKey: "k"})
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "the key is never released")
	assert.GreaterOrEqual(t, time.Since(start), ttl-100*time.Millisecond, "held for the TTL")
}

// WithPrefetch: "n = NoPrefetch holds none: no more tasks in flight than
// workers but for the long polls of idle priorities: one that delivers
// while the workers are busy adds its task, so up to one per priority
// more". The consumer's two workers are busy with tasks of the default
// priority when a high and a low task arrive: the long polls that wait
// on those priorities deliver them, and the consumer holds (and the
// server counts in flight) more than its workers, never more than one
// per priority beyond them. (The doc said "never more tasks in flight
// than workers".)
func TestAuditNoPrefetchLongPollsMayExceedTheWorkers(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("auditnoprefetch")
	const workers = 2
	var mu sync.Mutex
	release := make(chan struct{})
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("b", func(ctx context.Context, _ taskpool.Task) error {
		mu.Lock()
		r := release
		mu.Unlock()
		select {
		case <-r:
		case <-ctx.Done():
		}
		return nil
	}))
	c := startConsumer(t, js, reg, q, natsbroker.WithWorkers(workers), natsbroker.WithPrefetch(natsbroker.NoPrefetch))
	t.Cleanup(func() {
		mu.Lock()
		close(release)
		mu.Unlock()
	})
	prod := newProducer(t, ctx, js, q)
	insp := newInspector(t, ctx, js, q)

	exceeded := false
	deadline := time.Now().Add(15 * time.Second)
	for round := 0; !exceeded && time.Now().Before(deadline); round++ {
		for i := range 4 {
			mustEnqueue(t, ctx, prod, taskpool.Task{ID: fmt.Sprint("d", round, "-", i), Type: "b"})
		}
		require.Eventually(t, func() bool { return c.Health().Held >= 1 }, 10*time.Second, 100*time.Microsecond)
		for _, p := range []taskpool.Priority{taskpool.PriorityHigh, taskpool.PriorityLow} {
			mustEnqueue(t, ctx, prod, taskpool.Task{ID: fmt.Sprint("p", p, "-", round), Type: "b", Priority: p})
		}
		// Both workers busy and a long poll delivered: held past them.
		exceeded = assert.Eventually(&quietT{}, func() bool { return c.Health().Held > workers }, 300*time.Millisecond, time.Millisecond)
		if exceeded {
			info, err := insp.Queue(ctx)
			require.NoError(t, err)
			inFlight := 0
			for _, p := range info.Priorities {
				inFlight += p.InFlight
			}
			assert.Greater(t, inFlight, workers, "in flight on the server")
			assert.LessOrEqual(t, inFlight, workers+3, "at most one per priority more")
			assert.LessOrEqual(t, c.Health().Held, workers+3)
		}
		// Run this round's tasks, and start the next one idle.
		mu.Lock()
		close(release)
		release = make(chan struct{})
		mu.Unlock()
		// Later deliveries of this round block on the new channel: free
		// them too until the consumer holds nothing.
		require.Eventually(t, func() bool {
			if c.Health().Held == 0 {
				info, err := insp.Queue(ctx)
				if err != nil {
					return false
				}
				left := uint64(0)
				for _, p := range info.Priorities {
					left += p.Pending + uint64(p.InFlight)
				}
				if left == 0 {
					return true
				}
			}
			mu.Lock()
			close(release)
			release = make(chan struct{})
			mu.Unlock()
			return false
		}, 10*time.Second, 5*time.Millisecond)
		t.Logf("round %d: held past the workers: %v", round, exceeded)
	}
	assert.True(t, exceeded, "a long poll delivered while the workers were busy")
}

// quietT is an assert.TestingT that records nothing, for a probe whose
// failure is not the test's.
type quietT struct{}

func (quietT) Errorf(string, ...any) {}

// README, Priorities: "A priority found empty costs no polling: it gets a
// long poll for one message instead, which brings it back as soon as a
// task arrives (a consumer with room for fewer than three tasks polls the
// empty ones in turn, for 100ms each, so a task may wait that long)". An
// idle consumer with three workers has a long poll waiting on each
// priority, and a task on any of them runs well within the poll wait; one
// with two workers has at most two, and its tasks still run well within
// the poll wait.
func TestAuditIdlePrioritiesAreLongPolled(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	const pollWait = 2 * time.Second
	for _, workers := range []int{3, 2} {
		q := natsbroker.WithQueue(fmt.Sprint("auditpoll", workers))
		reg, ran := idRegistry(t, "x", 4)
		c, err := natsbroker.NewConsumer(ctx, js, reg, q, natsbroker.WithWorkers(workers),
			natsbroker.WithPrefetch(natsbroker.NoPrefetch), natsbroker.WithPollWait(pollWait))
		require.NoError(t, err)
		require.NoError(t, c.Start())
		prod := newProducer(t, ctx, js, q)
		insp := newInspector(t, ctx, js, q)
		if workers == 3 {
			require.EventuallyWithT(t, func(ct *assert.CollectT) {
				info, err := insp.Queue(ctx)
				require.NoError(ct, err)
				for _, p := range info.Priorities {
					assert.Equal(ct, 1, p.Waiting, "priority %d", p.Priority)
				}
			}, 10*time.Second, 10*time.Millisecond)
		} else {
			info, err := insp.Queue(ctx)
			require.NoError(t, err)
			waiting := 0
			for _, p := range info.Priorities {
				waiting += p.Waiting
			}
			assert.LessOrEqual(t, waiting, workers)
		}
		for _, p := range []taskpool.Priority{taskpool.PriorityLow, taskpool.PriorityHigh, taskpool.PriorityDefault} {
			id := fmt.Sprint("t", workers, p)
			start := time.Now()
			mustEnqueue(t, ctx, prod, taskpool.Task{ID: id, Type: "x", Priority: p})
			assert.Equal(t, id, recvT(t, ran, 10*time.Second, id))
			assert.Less(t, time.Since(start), pollWait/2, "workers %d, priority %d: brought back by a poll, not after the poll wait", workers, p)
		}
		require.NoError(t, c.Stop(ctx))
	}
}

// Producer.WaitResult: "waits until the task id has a final outcome
// stored in the results bucket, and returns it"; "it can be called from
// any process, before or after the task ran". A waiter on another
// connection, started before the task is even enqueued (with a delay),
// is not woken by the retry of its first failure: it gets the final
// outcome, the second run's result, with Attempts 2.
func TestAuditWaitResultWaitsForTheFinalOutcome(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	_, js2 := connect(t, srv.URL())
	ctx := ctxT(t)
	q := natsbroker.WithQueue("auditwait")
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("twice", func(_ context.Context, task taskpool.Task) error {
		if task.Attempt == 1 {
			task.SetResult("first")
			return errors.New("transient")
		}
		task.SetResult("second")
		return nil
	}))
	retried := make(chan struct{}, 1)
	prod := newProducer(t, ctx, js, q)
	waiter := newProducer(t, ctx, js2, q)

	type got struct {
		res natsbroker.Result
		err error
	}
	done := make(chan got, 1)
	go func() {
		res, err := waiter.WaitResult(ctx, "w1")
		done <- got{res, err}
	}()
	startConsumer(t, js, reg, q,
		natsbroker.WithBackoff(taskpool.ConstantBackoff(200*time.Millisecond)),
		natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) {
			if a == natsbroker.ActionRetry {
				retried <- struct{}{}
			}
		}))
	r := mustEnqueue(t, ctx, prod, taskpool.Task{ID: "w1", Type: "twice", MaxAttempts: 3}, natsbroker.KeepResult(), natsbroker.Delay(100*time.Millisecond))
	assert.False(t, r.RunAt.IsZero())
	recvT(t, retried, 10*time.Second, "the first run's retry")
	select {
	case g := <-done:
		t.Fatalf("WaitResult returned after a retry, before the final outcome: %+v", g)
	default:
	}
	g := recvT(t, done, 10*time.Second, "the final outcome")
	require.NoError(t, g.err)
	require.NoError(t, g.res.Err)
	assert.Equal(t, "w1", g.res.ID)
	assert.Equal(t, 2, g.res.Attempts)
	assert.False(t, g.res.DeadLettered)
	s, err := taskpool.ResultAs[string](g.res.Value)
	require.NoError(t, err)
	assert.Equal(t, "second", s)
}

// WithPrefetch: "Held tasks keep their lease alive like running ones."
// A task prefetched behind a long one waits for the only worker for
// several ack waits: the server never redelivers it (nothing in flight is
// redelivered, to this consumer or to an idle one), and it runs once, as
// attempt 1.
func TestAuditPrefetchedTasksKeepTheirLease(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("auditlease")
	const ackWait = 200 * time.Millisecond
	release := make(chan struct{})
	type run struct {
		id      string
		attempt int
	}
	ran := make(chan run, 8)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("x", func(ctx context.Context, task taskpool.Task) error {
		ran <- run{task.ID, task.Attempt}
		if task.ID == "long" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil
	}))
	c := startConsumer(t, js, reg, q, natsbroker.WithWorkers(1), natsbroker.WithPrefetch(2), natsbroker.WithAckWait(ackWait),
		natsbroker.WithPollWait(100*time.Millisecond))
	prod := newProducer(t, ctx, js, q)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "long", Type: "x"})
	assert.Equal(t, run{"long", 1}, recvT(t, ran, 10*time.Second, "the long task"))
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "held", Type: "x"})
	require.Eventually(t, func() bool { return c.Health().Held == 2 }, 10*time.Second, time.Millisecond, "the second task prefetched")
	// An idle consumer of the queue that would take a redelivery.
	idle := taskpool.NewRegistry()
	require.NoError(t, idle.HandleFunc("x", func(_ context.Context, task taskpool.Task) error {
		ran <- run{"idle:" + task.ID, task.Attempt}
		return nil
	}))
	startConsumer(t, js, idle, q, natsbroker.WithPollWait(100*time.Millisecond))

	insp := newInspector(t, ctx, js, q)
	waitUntil := time.Now().Add(5 * ackWait)
	for time.Now().Before(waitUntil) {
		info, err := insp.Queue(ctx)
		require.NoError(t, err)
		d := info.Priorities[1]
		require.Zero(t, d.Redelivered, "a held task was redelivered")
		require.EqualValues(t, 2, d.Delivered)
		select {
		case r := <-ran:
			t.Fatalf("ran while the long task holds the worker: %v", r)
		case <-time.After(ackWait / 4):
		}
	}
	close(release)
	assert.Equal(t, run{"held", 1}, recvT(t, ran, 10*time.Second, "the held task"))
	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 2, info.Priorities[1].Delivered, "each delivered once")
}

// WithSettleHook: "Stop waits for the goroutines fn runs on, so fn that
// wants the consumer stopped calls go c.Stop(ctx)". A hook blocked on a
// worker (a task that ran) and one blocked on the fetch loop (a bad
// payload) hold Stop until they return; a hook that calls go c.Stop gets
// nil from it.
func TestAuditStopWaitsForTheSettleHook(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("audithookstop")
	reg := nopRegistry(t, "x")
	inHook := make(chan natsbroker.Action, 4)
	release := make(chan struct{})
	free := sync.OnceFunc(func() { close(release) })
	var returned atomic.Int32
	// Two workers, whatever GOMAXPROCS: the first hook holds one, and the
	// fetch loop needs room for the bad payload.
	c, err := natsbroker.NewConsumer(ctx, js, reg, q, natsbroker.WithPollWait(100*time.Millisecond), natsbroker.WithWorkers(2),
		natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) {
			inHook <- a
			<-release
			returned.Add(1)
		}))
	require.NoError(t, err)
	require.NoError(t, c.Start())
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	t.Cleanup(free) // first, if the test fails before it
	prod := newProducer(t, ctx, js, q)
	// The task first: its hook blocks a worker. The bad payload's then
	// blocks the fetch loop, which fetches nothing more.
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "ok", Type: "x"})
	assert.Equal(t, natsbroker.ActionAck, recvT(t, inHook, 10*time.Second, "the task's hook"))
	_, err = js.Publish(ctx, "taskpool.audithookstop.task.high", []byte("not a task"))
	require.NoError(t, err)
	assert.Equal(t, natsbroker.ActionDeadLetter, recvT(t, inHook, 10*time.Second, "the bad payload's hook"))

	stopped := make(chan error, 1)
	go func() { stopped <- c.Stop(ctx) }()
	require.Eventually(t, func() bool { return errors.Is(c.Start(), natsbroker.ErrConsumerClosed) }, 5*time.Second, time.Millisecond)
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned %v while two settle hooks run", err)
	case <-time.After(300 * time.Millisecond): // past the poll wait
	}
	free()
	require.NoError(t, recvT(t, stopped, 10*time.Second, "Stop"))
	assert.EqualValues(t, 2, returned.Load(), "both hooks returned before Stop")

	// A hook that stops its consumer with go c.Stop.
	var c2 *natsbroker.Consumer
	stopped2 := make(chan error, 1)
	c2, err = natsbroker.NewConsumer(ctx, js, reg, q, natsbroker.WithPollWait(100*time.Millisecond),
		natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) {
			if a == natsbroker.ActionAck {
				go func() { stopped2 <- c2.Stop(ctx) }()
			}
		}))
	require.NoError(t, err)
	require.NoError(t, c2.Start())
	t.Cleanup(func() { _ = c2.Stop(context.Background()) })
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "stopper", Type: "x"})
	require.NoError(t, recvT(t, stopped2, 10*time.Second, "the hook's Stop"))
	assert.False(t, c2.Health().Live())
}

// Connect: "dials url (a comma-separated list of servers for a cluster)
// with settings fit for task workers and producers: reconnect forever,
// every 250ms"; "opts are applied after these and may override them".
func TestAuditConnectDefaults(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	// A list whose other server does not answer: the one that does is used.
	nc, js, err := natsbroker.Connect("nats://127.0.0.1:1," + srv.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	require.NotNil(t, js)
	assert.True(t, nc.IsConnected())
	assert.Equal(t, -1, nc.Opts.MaxReconnect, "reconnect forever")
	assert.Equal(t, 250*time.Millisecond, nc.Opts.ReconnectWait)
	assert.Len(t, nc.Servers(), 2)

	nc2, _, err := natsbroker.Connect(srv.URL(), nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(3))
	require.NoError(t, err)
	t.Cleanup(nc2.Close)
	assert.Equal(t, 50*time.Millisecond, nc2.Opts.ReconnectWait, "overridden")
	assert.Equal(t, 3, nc2.Opts.MaxReconnect, "overridden")
	assert.Equal(t, natsbroker.ConnectionName(), nc2.Opts.Name, "the others kept")
}

// EnqueueError: "ID is the task's ID, generated by Enqueue when the task
// had none"; ErrMaxPayload: "the task was not stored". A task without an
// ID that is too large for the server comes back with the generated ID,
// and nothing is stored under it.
func TestAuditEnqueueErrorCarriesTheGeneratedID(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("auditeeid")
	prod := newProducer(t, ctx, js, q)
	_, err := prod.Enqueue(ctx, taskpool.Task{Type: "x", Params: strings.Repeat("a", 2<<20)})
	var ee *natsbroker.EnqueueError
	require.ErrorAs(t, err, &ee)
	require.ErrorIs(t, err, natsbroker.ErrMaxPayload)
	assert.NotEmpty(t, ee.ID, "the generated ID")
	assert.Contains(t, err.Error(), ee.ID)
	insp := newInspector(t, ctx, js, q)
	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	for _, p := range info.Priorities {
		assert.Zero(t, p.Pending)
	}
	// Nothing stored under it: the same ID is stored as new.
	r := mustEnqueue(t, ctx, prod, taskpool.Task{ID: ee.ID, Type: "x"})
	assert.False(t, r.Duplicate)
}

// WithDeadLetterLimits: "dead letters older than maxAge are removed",
// for any maxAge from the 1s it accepts. (TestDeadLetterLimits covers
// maxBytes and the settings.) A maxAge below the duplicate window (2m by
// default) made creating the queue fail: the server refuses a stream
// whose duplicate window is larger than its max age. The dead-letter
// stream's window is now capped at its max age, when created, when
// reconfigured, and when compared with WithDuplicateWindow.
func TestAuditDeadLetterMaxAgeRemovesThem(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("auditdlage")
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("fail", func(context.Context, taskpool.Task) error {
		return taskpool.SkipRetry(errors.New("no"))
	}))
	dead := make(chan struct{}, 4)
	startConsumer(t, js, reg, q, natsbroker.WithDeadLetterLimits(time.Second, 0),
		natsbroker.WithPollWait(100*time.Millisecond),
		natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) {
			if a == natsbroker.ActionDeadLetter {
				dead <- struct{}{}
			}
		}))
	prod := newProducer(t, ctx, js, q)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "old", Type: "fail"})
	recvT(t, dead, 10*time.Second, "the dead letter")
	start := time.Now()
	insp := newInspector(t, ctx, js, q)
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1, "kept until it is a second old")
	require.Eventually(t, func() bool {
		info, err := insp.Queue(ctx)
		return err == nil && info.DeadLetters == 0
	}, 10*time.Second, 20*time.Millisecond)
	assert.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond, "not before its age")
	dls, err = insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	assert.Empty(t, dls)

	// The same queue opens with its settings, or with the duplicate
	// window alone.
	_, err = natsbroker.NewProducer(ctx, js, q, natsbroker.WithDeadLetterLimits(time.Second, 0))
	require.NoError(t, err)
	_, err = natsbroker.NewProducer(ctx, js, q, natsbroker.WithDuplicateWindow(natsbroker.DefaultDuplicateWindow))
	require.NoError(t, err)
	_, err = natsbroker.NewProducer(ctx, js, q, natsbroker.WithDuplicateWindow(natsbroker.DefaultDuplicateWindow),
		natsbroker.WithDeadLetterLimits(time.Second, 0))
	require.NoError(t, err)
	// A queue created without limits takes a short max age with
	// WithReconfigure.
	other := natsbroker.WithQueue("auditdlage2")
	_, err = natsbroker.NewProducer(ctx, js, other)
	require.NoError(t, err)
	_, err = natsbroker.NewProducer(ctx, js, other, natsbroker.WithReconfigure(), natsbroker.WithDeadLetterLimits(time.Second, 0))
	require.NoError(t, err)
	st, err := js.Stream(ctx, "TASKPOOLDEAD_auditdlage2")
	require.NoError(t, err)
	assert.Equal(t, time.Second, st.CachedInfo().Config.MaxAge)
	assert.Equal(t, time.Second, st.CachedInfo().Config.Duplicates)
	st, err = js.Stream(ctx, "TASKPOOL_auditdlage2")
	require.NoError(t, err)
	assert.Equal(t, natsbroker.DefaultDuplicateWindow, st.CachedInfo().Config.Duplicates, "the task stream's window unchanged")
}

// Health: "FetchErrors counts consecutive fetches that failed with an
// error: 0 once a fetch succeeds. A long poll that expires while the
// connection is down is not an error, so the count may stay 0 while it is
// down"; Ready: "live, connected, and its last fetch succeeded". After
// the server was down and is back the count is 0. A consumer whose
// durable consumers were deleted under it is connected but its fetches
// fail: the count grows, and it is not ready. (The doc said "counts
// consecutive failed fetches"; while the server was down it stayed 0 for
// 10s in some runs.)
func TestAuditHealthFetchErrors(t *testing.T) {
	t.Parallel()
	srv, restart := startRestartable(t)
	_, js := connect(t, srv.URL())
	ctx := ctxT(t)
	q := natsbroker.WithQueue("auditfetcherr")
	c := startConsumer(t, js, taskpool.NewRegistry(), q, natsbroker.WithPollWait(50*time.Millisecond))
	require.Eventually(t, func() bool { return c.Health().Ready() }, 5*time.Second, 5*time.Millisecond)
	assert.Zero(t, c.Health().FetchErrors)

	srv.Shutdown()
	require.Eventually(t, func() bool { h := c.Health(); return !h.Connected && !h.Ready() }, 10*time.Second, 5*time.Millisecond)
	restart()
	require.Eventually(t, func() bool { h := c.Health(); return h.FetchErrors == 0 && h.Ready() }, 10*time.Second, 10*time.Millisecond, "0 once a fetch succeeds")

	for _, p := range []string{"high", "default", "low"} {
		require.NoError(t, js.DeleteConsumer(ctx, "TASKPOOL_auditfetcherr", "taskpool_"+p))
	}
	require.Eventually(t, func() bool { return c.Health().FetchErrors > 0 }, 10*time.Second, 5*time.Millisecond, "fetches of a deleted consumer fail")
	h := c.Health()
	assert.True(t, h.Connected)
	assert.True(t, h.Live())
	assert.False(t, h.Ready(), "connected, but the last fetch failed")
}

// WithUnknownTypeGrace: "The task is put back (NakWithDelay, until the
// grace has passed ...) until the grace ... has passed and it was
// delivered at least twice; a consumer that has the handler and is
// delivered the task meanwhile, or when it comes back, runs it (the
// deliveries before count as attempts)". (The doc said other consumers
// "may take it meanwhile"; the put-back lasts the grace, so they take it
// when it comes back.) A consumer without the handler puts the task back;
// it is stopped and one with the handler, started at once, runs the task
// when it comes back, no earlier than the grace, as attempt 2.
func TestAuditUnknownTypeTakenByAConsumerWithTheHandler(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("auditunknown")
	const grace = 500 * time.Millisecond
	putBack := make(chan natsbroker.Action, 4)
	old, err := natsbroker.NewConsumer(ctx, js, taskpool.NewRegistry(), q, natsbroker.WithUnknownTypeGrace(grace),
		natsbroker.WithPollWait(100*time.Millisecond),
		natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) { putBack <- a }))
	require.NoError(t, err)
	require.NoError(t, old.Start())
	prod := newProducer(t, ctx, js, q)
	start := time.Now()
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "n1", Type: "new", MaxAttempts: 2})
	assert.Equal(t, natsbroker.ActionRetry, recvT(t, putBack, 10*time.Second, "the put-back"))
	require.NoError(t, old.Stop(ctx))

	ran := make(chan int, 2)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("new", func(_ context.Context, task taskpool.Task) error {
		ran <- task.Attempt
		return nil
	}))
	startConsumer(t, js, reg, q, natsbroker.WithPollWait(100*time.Millisecond))
	assert.Equal(t, 2, recvT(t, ran, 10*time.Second, "the run by the consumer with the handler"))
	assert.GreaterOrEqual(t, time.Since(start), grace-50*time.Millisecond, "put back for the grace")
	insp := newInspector(t, ctx, js, q)
	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	assert.Zero(t, info.DeadLetters)
}

// WithPriorityWeights: "A zero weight is polled last, only when the
// others are empty." With weights 1, 1, 0 and tasks waiting on the
// default and the low priority, every default task runs before any low
// one.
func TestAuditZeroWeightPolledLast(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("auditzeroweight")
	order := make(chan string, 20)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("x", func(_ context.Context, task taskpool.Task) error {
		order <- task.ID
		return nil
	}))
	prod := newProducer(t, ctx, js, q)
	var want []string
	for i := range 5 {
		mustEnqueue(t, ctx, prod, taskpool.Task{ID: fmt.Sprint("l", i), Type: "x", Priority: taskpool.PriorityLow})
		mustEnqueue(t, ctx, prod, taskpool.Task{ID: fmt.Sprint("d", i), Type: "x"})
		want = append(want, fmt.Sprint("d", i))
	}
	for i := range 5 {
		want = append(want, fmt.Sprint("l", i))
	}
	startConsumer(t, js, reg, q, natsbroker.WithWorkers(1), natsbroker.WithPrefetch(natsbroker.NoPrefetch),
		natsbroker.WithPriorityWeights(1, 1, 0))
	var got []string
	for range 10 {
		got = append(got, recvT(t, order, 10*time.Second, "a run"))
	}
	assert.Equal(t, want, got)
}

// DefaultMaxAttempts: "how many times a task runs when it keeps failing
// and neither the task, its type, the scheduler-wide taskpool.WithRetry
// nor WithMaxAttempts says otherwise"; WithMaxAttempts(0) means that
// default. A task that always fails runs 10 times, attempts 1 to 10, and
// is dead-lettered with Attempts 10.
func TestAuditDefaultMaxAttempts(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("auditdefmax")
	var mu sync.Mutex
	var attempts []int
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("fail", func(_ context.Context, task taskpool.Task) error {
		mu.Lock()
		attempts = append(attempts, task.Attempt)
		mu.Unlock()
		return errors.New("always")
	}))
	dead := make(chan taskpool.Outcome, 1)
	startConsumer(t, js, reg, q, natsbroker.WithMaxAttempts(0), natsbroker.WithWorkers(4),
		natsbroker.WithBackoff(taskpool.ConstantBackoff(time.Millisecond)),
		sendOnAction(natsbroker.ActionDeadLetter, dead))
	prod := newProducer(t, ctx, js, q)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "f", Type: "fail"})
	out := recvT(t, dead, 20*time.Second, "the dead letter")
	assert.Equal(t, natsbroker.DefaultMaxAttempts, out.Attempts)
	mu.Lock()
	assert.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, attempts)
	mu.Unlock()
	insp := newInspector(t, ctx, js, q)
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	assert.Equal(t, natsbroker.DefaultMaxAttempts, dls[0].Attempts)
}

// WithGlobalLimit: "Give every consumer the same limit: consumers that
// give different ones enforce the larger concurrency". Two consumers with
// limits 1 and 3 run at most 3 tasks of the type at once, and do reach 3.
func TestAuditGlobalLimitsThatDifferEnforceTheLarger(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("auditlimits")
	var running, most atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{}, 16)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("lim", func(ctx context.Context, _ taskpool.Task) error {
		n := running.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		running.Add(-1)
		return nil
	}))
	free := sync.OnceFunc(func() { close(release) })
	for _, l := range []int{1, 3} {
		startConsumer(t, js, reg, q, natsbroker.WithWorkers(4), natsbroker.WithPollWait(100*time.Millisecond),
			natsbroker.WithGlobalLimit("lim", natsbroker.Limit{Concurrency: l}))
	}
	t.Cleanup(free) // before the consumers' Stop, if the test fails first
	prod := newProducer(t, ctx, js, q)
	for i := range 8 {
		mustEnqueue(t, ctx, prod, taskpool.Task{ID: fmt.Sprint("g", i), Type: "lim"})
	}
	for range 3 {
		recvT(t, started, 10*time.Second, "three tasks running")
	}
	insp := newInspector(t, ctx, js, q)
	slots, err := insp.GlobalSlots(ctx)
	require.NoError(t, err)
	assert.Len(t, slots, 3, "three slots held")
	select {
	case <-started:
		t.Fatal("a fourth task started")
	case <-time.After(300 * time.Millisecond):
	}
	free()
	for range 5 {
		recvT(t, started, 10*time.Second, "the other tasks")
	}
	assert.EqualValues(t, 3, most.Load(), "the larger limit, never more")
}

// PriorityInfo: "Pending counts tasks not delivered yet; tasks delayed
// on the client side among them, due or not, until a consumer first puts
// them back"; "InFlight counts tasks delivered and not settled for good:
// held or running, and those a consumer put back for a retry or a
// client-side delay, which the server counts as delivered until their
// delay ends"; QueueInfo.Scheduled: a client-side delayed task is
// "counted in its priority's Pending until a consumer first puts it back,
// then in its InFlight". (The doc said a task put back for a retry and
// waiting for its backoff is Pending; the server counts it in flight.)
func TestAuditQueueCountsTasksPutBackAsInFlight(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("auditbackoffpending")
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("fail", func(context.Context, taskpool.Task) error {
		return errors.New("transient")
	}))
	putBack := make(chan natsbroker.Action, 2)
	startConsumer(t, js, reg, q, natsbroker.WithBackoff(taskpool.ConstantBackoff(time.Hour)),
		natsbroker.WithPollWait(100*time.Millisecond),
		natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) { putBack <- a }))
	prod := newProducer(t, ctx, js, q)
	insp := newInspector(t, ctx, js, q)

	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "b", Type: "fail", MaxAttempts: 3})
	assert.Equal(t, natsbroker.ActionRetry, recvT(t, putBack, 10*time.Second, "the retry"))
	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	d := info.Priorities[1]
	assert.Zero(t, d.Pending, "delivered")
	assert.Equal(t, 1, d.InFlight, "put back for an hour: in flight")
	assert.EqualValues(t, 1, d.Delivered)

	// A task delayed on the client side: pending until a consumer puts it
	// back, then in flight.
	cs := newProducer(t, ctx, js, q, natsbroker.WithClientSideDelays())
	mustEnqueue(t, ctx, cs, taskpool.Task{ID: "later", Type: "fail", Priority: taskpool.PriorityHigh}, natsbroker.Delay(time.Hour))
	assert.Equal(t, natsbroker.ActionDefer, recvT(t, putBack, 10*time.Second, "the deferral"))
	info, err = insp.Queue(ctx)
	require.NoError(t, err)
	h := info.Priorities[0]
	assert.Zero(t, h.Pending)
	assert.Equal(t, 1, h.InFlight)
	assert.Zero(t, info.Scheduled)
}
