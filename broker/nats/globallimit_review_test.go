package natsbroker_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
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

// gatedRun is a handler for type "limited" whose runs each block until the
// test releases them, and which records which tasks run at once.
type gatedRun struct {
	mu      sync.Mutex
	running map[string]bool
	overlap []string // "x with y": a start while another task ran
	started map[string]chan struct{}
	release map[string]chan struct{}
}

func newGatedRun(ids ...string) (*gatedRun, *taskpool.Registry) {
	g := &gatedRun{running: map[string]bool{}, started: map[string]chan struct{}{}, release: map[string]chan struct{}{}}
	for _, id := range ids {
		g.started[id] = make(chan struct{})
		g.release[id] = make(chan struct{})
	}
	reg := taskpool.NewRegistry()
	_ = reg.HandleFunc("limited", func(ctx context.Context, task taskpool.Task) error {
		g.mu.Lock()
		for o := range g.running {
			g.overlap = append(g.overlap, task.ID+" with "+o)
		}
		g.running[task.ID] = true
		g.mu.Unlock()
		close(g.started[task.ID])
		select {
		case <-g.release[task.ID]:
		case <-ctx.Done():
		}
		g.mu.Lock()
		delete(g.running, task.ID)
		g.mu.Unlock()
		return nil
	})
	return g, reg
}

func (g *gatedRun) overlaps() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.overlap...)
}

func slotKey(typ string, n int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(typ)) + "." + string(rune('0'+n))
}

// A task whose slot lease was lost while it ran (here deleted under it, as
// an expiry during a partition would) exceeds the limit until it ends, as
// the README says, but no longer: when it ends it must not give back the
// slot that another task of the same consumer has taken since.
func TestGlobalLimitLostLeaseGivesBackOnlyItsOwn(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const queue = "glost"
	run, reg := newGatedRun("a", "b", "c")
	logs := newLogSignal("lease lost")
	settledA := make(chan struct{})
	var once sync.Once
	_, js := connect(t, srv.URL())
	c := startConsumer(t, js, reg, natsbroker.WithQueue(queue), natsbroker.WithWorkers(3),
		natsbroker.WithLogger(slog.New(logs)),
		natsbroker.WithSettleHook(func(out taskpool.Outcome, _ natsbroker.Action) {
			if out.Task.ID == "a" {
				once.Do(func() { close(settledA) })
			}
		}),
		natsbroker.WithGlobalLimit("limited", natsbroker.Limit{Concurrency: 1}))
	p := newProducer(t, ctxT(t), js, natsbroker.WithQueue(queue))
	enqueue := func(id string) {
		mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: id, Type: "limited"})
	}
	kv, err := js.KeyValue(ctxT(t), "taskpool_slots_"+queue)
	require.NoError(t, err)

	enqueue("a")
	waitDone(t, run.started["a"], 10*time.Second, "a's start")
	require.NoError(t, kv.Delete(ctxT(t), slotKey("limited", 0))) // a's lease is lost
	waitDone(t, logs.ch, 10*time.Second, "the consumer noticing the lost lease")
	enqueue("b")
	waitDone(t, run.started["b"], 10*time.Second, "b's start on the freed slot")
	close(run.release["a"])
	waitDone(t, settledA, 10*time.Second, "a's settlement")
	// b holds the only slot now: c must wait for b. Give a wrong give-back
	// of a's old slot a moment to let c in.
	enqueue("c")
	select {
	case <-run.started["c"]:
	case <-time.After(2 * time.Second):
	}
	close(run.release["b"])
	waitDone(t, run.started["c"], 10*time.Second, "c's start")
	close(run.release["c"])
	require.NoError(t, c.Stop(ctxT(t)))
	assert.Equal(t, []string{"b with a"}, run.overlaps(), "only the lost lease's task may overlap")
	assert.Empty(t, slotsHeld(t, js, queue), "slots not given back")
}

// On an R3 queue, consumers on different nodes race to take a slot given
// back (its key deleted). The losers' Create fails with the replicated
// streams' "wrong last sequence" code (10164), which nats.go does not wrap
// in ErrKeyExists on that path: it is a slot held by another, not a failed
// request to log and back off from.
func TestClusterGlobalSlotRaceIsNotAFailure(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	const (
		queue = "gcrace"
		n     = 40
	)
	q := natsbroker.WithQueue(queue)
	run, reg := newLimitedRun(t, n, 0)
	logs := newLogSignal("take a slot failed")
	for i := range 3 {
		_, js := connect(t, cl.url(i))
		startConsumer(t, js, reg, q, natsbroker.WithReplicas(3), natsbroker.WithWorkers(2),
			natsbroker.WithLogger(slog.New(logs)),
			natsbroker.WithGlobalLimit("limited", natsbroker.Limit{Concurrency: 1}))
	}
	_, js := connect(t, cl.url(0))
	p := newProducer(t, ctxT(t), js, q)
	for i := range n {
		mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: "r" + string(rune('A'+i)), Type: "limited"})
	}
	waitDone(t, run.done.done, 60*time.Second, "the limited tasks")
	assert.LessOrEqual(t, run.peak.Load(), int64(1), "global concurrency exceeded")
	select {
	case <-logs.ch:
		t.Errorf("a lost race for a slot was taken for a failure: %q", logs.messages())
	default:
	}
}

// lostAnswerKV applies the first Update it is asked for but answers it
// with a timeout, as when the server's answer is lost; it counts the
// Updates after that one which succeed.
type lostAnswerKV struct {
	jetstream.KeyValue
	mu      sync.Mutex
	lost    bool
	after   int
	renewed chan struct{} // closed at the third Update after the lost one
}

func (kv *lostAnswerKV) Update(ctx context.Context, key string, value []byte, last uint64) (uint64, error) {
	rev, err := kv.KeyValue.Update(ctx, key, value, last)
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if !kv.lost && err == nil {
		kv.lost = true
		return 0, context.DeadlineExceeded
	}
	if kv.lost && err == nil {
		kv.after++
		if kv.after == 3 {
			close(kv.renewed)
		}
	}
	return rev, err
}

// A renewal that the server applied but whose answer was lost (a request
// timeout) leaves the lease held: the next renewal must not take the
// revision mismatch for a lost lease, stop renewing, and let the lease
// expire under the running task.
func TestGlobalSlotRenewalWithLostAnswer(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const queue = "grenew"
	run, reg := newGatedRun("a")
	logs := newLogSignal("lease lost")
	_, js := connect(t, srv.URL())
	c, err := natsbroker.NewConsumer(ctxT(t), js, reg, natsbroker.WithQueue(queue), natsbroker.WithWorkers(1),
		natsbroker.WithAckWait(time.Second), natsbroker.WithLogger(slog.New(logs)),
		natsbroker.WithGlobalLimit("limited", natsbroker.Limit{Concurrency: 1}))
	require.NoError(t, err)
	kv := &lostAnswerKV{renewed: make(chan struct{})}
	c.WrapGlobalSlots(func(in jetstream.KeyValue) jetstream.KeyValue { kv.KeyValue = in; return kv })
	require.NoError(t, c.Start())
	p := newProducer(t, ctxT(t), js, natsbroker.WithQueue(queue))
	mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: "a", Type: "limited"})
	waitDone(t, run.started["a"], 10*time.Second, "a's start")
	select {
	case <-kv.renewed:
	case <-logs.ch:
		t.Error("a lease renewed by the server taken for lost")
	case <-time.After(20 * time.Second):
		t.Fatal("no renewals")
	}
	held := slotsHeld(t, js, queue)
	close(run.release["a"])
	require.NoError(t, c.Stop(ctxT(t)))
	assert.Equal(t, []string{slotKey("limited", 0)}, held, "a's slot while it ran")
	assert.Empty(t, slotsHeld(t, js, queue), "slots not given back")
}

// A Rate so low (or a Burst so large) that Burst intervals overflow a
// time.Duration was accepted and not enforced: at 1e-10 starts per second
// every task started at once. Such limits are refused; slow ones that fit
// are accepted.
func TestGlobalLimitRateRange(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	reg := taskpool.NewRegistry()
	for _, l := range []natsbroker.Limit{{Rate: 1e-10}, {Rate: 1, Burst: 1e10}, {Concurrency: 1, Rate: 1e-9}} {
		_, err := natsbroker.NewConsumer(ctxT(t), js, reg, natsbroker.WithQueue("grange"), natsbroker.WithGlobalLimit("t", l))
		assert.ErrorIs(t, err, natsbroker.ErrInvalidOption, "%+v", l)
	}
	for _, l := range []natsbroker.Limit{{Rate: 1e-6}, {Rate: 1, Burst: 1_000_000}} {
		c, err := natsbroker.NewConsumer(ctxT(t), js, reg, natsbroker.WithQueue("grange"), natsbroker.WithGlobalLimit("t", l))
		require.NoError(t, err, "%+v", l)
		require.NoError(t, c.Stop(ctxT(t)))
	}
}

// A Stop whose context ends while tasks wait for a global limit puts them
// back: they did not run, so Stop reports them in a *StopError, as it
// does the tasks the local scheduler had not started; the local scheduler
// alone, idle, may answer nil or count none.
func TestGlobalLimitStopDeadlineReportsWaiting(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const queue = "gstoperr"
	_, reg := newGatedRun()
	var released sync.WaitGroup
	released.Add(2)
	var notRun atomic.Int32
	_, js := connect(t, srv.URL())
	c, err := natsbroker.NewConsumer(ctxT(t), js, reg, natsbroker.WithQueue(queue), natsbroker.WithWorkers(2),
		natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
			if a == natsbroker.ActionRelease {
				if out.Status == taskpool.OutcomeNotRun {
					notRun.Add(1)
				}
				released.Done()
			}
		}),
		natsbroker.WithGlobalLimit("limited", natsbroker.Limit{Concurrency: 1}))
	require.NoError(t, err)
	require.NoError(t, c.Start())
	kv, err := js.KeyValue(ctxT(t), "taskpool_slots_"+queue)
	require.NoError(t, err)
	// The only slot, held by another process for longer than the test.
	_, err = kv.Create(ctxT(t), slotKey("limited", 0), []byte("other"))
	require.NoError(t, err)
	p := newProducer(t, ctxT(t), js, natsbroker.WithQueue(queue))
	for _, id := range []string{"w1", "w2"} {
		mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: id, Type: "limited"})
	}
	require.Eventually(t, func() bool { return c.Health().Waiting == 2 }, 10*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = c.Stop(ctx)
	released.Wait()
	var se *taskpool.StopError
	require.ErrorAs(t, err, &se, "tasks put back at the deadline")
	assert.Equal(t, 2, se.NotRun)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, int32(2), notRun.Load(), "put back unrun: OutcomeNotRun (WithSettleHook)")
}

// lostCreateKV applies the first Create it is asked for but answers it
// with a timeout, as when the server's answer is lost, and fails the
// first failGets Gets after that one, as a server out of reach would;
// the next moreLost Creates after it are answered with a timeout too,
// whatever the server did. With noWatch its watches fail, so the gate
// polls and learns of a slot held only from its own requests.
type lostCreateKV struct {
	jetstream.KeyValue
	mu       sync.Mutex
	lost     bool
	failGets int
	moreLost int
	noWatch  bool
}

func (kv *lostCreateKV) Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	if kv.noWatch {
		return nil, context.DeadlineExceeded
	}
	return kv.KeyValue.Watch(ctx, keys, opts...)
}

func (kv *lostCreateKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	rev, err := kv.KeyValue.Create(ctx, key, value, opts...)
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if !kv.lost && err == nil {
		kv.lost = true
		return 0, context.DeadlineExceeded
	}
	if kv.lost && kv.moreLost > 0 {
		kv.moreLost--
		return 0, context.DeadlineExceeded
	}
	return rev, err
}

func (kv *lostCreateKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	kv.mu.Lock()
	fail := kv.lost && kv.failGets > 0
	if fail {
		kv.failGets--
	}
	kv.mu.Unlock()
	if fail {
		return nil, context.DeadlineExceeded
	}
	return kv.KeyValue.Get(ctx, key)
}

// A slot whose Create the server applied but whose answer was lost is
// held with this process's value: the gate must recognise it as its own
// (at once, or at its next try when the look fails too) instead of
// taking it for someone else's and waiting for the lease's TTL (here 30s)
// with the only slot held by no one; and it gives it back as usual. With
// moreLost, the look fails twice and the next try's Create of the same
// slot (not seen held: no watcher) gets no answer either: the gate must
// not lose track of the first Create's value for the second's.
func TestGlobalSlotCreateWithLostAnswer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		failGets, moreLost int
		noWatch            bool
	}{{0, 0, false}, {1, 0, false}, {2, 1, true}} {
		t.Run(fmt.Sprintf("failGets=%d,moreLost=%d,noWatch=%v", tc.failGets, tc.moreLost, tc.noWatch), func(t *testing.T) {
			t.Parallel()
			srv := startServer(t)
			queue := fmt.Sprintf("gcreate%d%d", tc.failGets, tc.moreLost)
			run, reg := newGatedRun("a", "b")
			_, js := connect(t, srv.URL())
			c, err := natsbroker.NewConsumer(ctxT(t), js, reg, natsbroker.WithQueue(queue), natsbroker.WithWorkers(2),
				natsbroker.WithAckWait(30*time.Second),
				natsbroker.WithGlobalLimit("limited", natsbroker.Limit{Concurrency: 1}))
			require.NoError(t, err)
			kv := &lostCreateKV{failGets: tc.failGets, moreLost: tc.moreLost, noWatch: tc.noWatch}
			c.WrapGlobalSlots(func(in jetstream.KeyValue) jetstream.KeyValue { kv.KeyValue = in; return kv })
			require.NoError(t, c.Start())
			p := newProducer(t, ctxT(t), js, natsbroker.WithQueue(queue))
			mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: "a", Type: "limited"})
			waitDone(t, run.started["a"], 10*time.Second, "a's start with the slot it created")
			assert.Equal(t, []string{slotKey("limited", 0)}, slotsHeld(t, js, queue), "a's slot while it runs")
			mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: "b", Type: "limited"})
			close(run.release["a"])
			waitDone(t, run.started["b"], 10*time.Second, "b's start once a gave the slot back")
			close(run.release["b"])
			require.NoError(t, c.Stop(ctxT(t)))
			assert.Empty(t, run.overlaps(), "tasks over the limit")
			assert.Empty(t, slotsHeld(t, js, queue), "slots not given back")
		})
	}
}

// A Create applied without an answer, whose lookups fail too, leaves the
// task to take another slot; the first is then held with this process's
// value by no one. The gate gives it back at its next renewal (here every
// 10s) rather than leaving it to the TTL (30s), while the task still runs.
func TestGlobalSlotUnsureGivenBackWhenNoTaskWaits(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const queue = "gunsure"
	run, reg := newGatedRun("a")
	_, js := connect(t, srv.URL())
	c, err := natsbroker.NewConsumer(ctxT(t), js, reg, natsbroker.WithQueue(queue), natsbroker.WithWorkers(2),
		natsbroker.WithAckWait(30*time.Second),
		natsbroker.WithGlobalLimit("limited", natsbroker.Limit{Concurrency: 2}))
	require.NoError(t, err)
	kv := &lostCreateKV{failGets: 2, noWatch: true}
	c.WrapGlobalSlots(func(in jetstream.KeyValue) jetstream.KeyValue { kv.KeyValue = in; return kv })
	require.NoError(t, c.Start())
	p := newProducer(t, ctxT(t), js, natsbroker.WithQueue(queue))
	mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: "a", Type: "limited"})
	waitDone(t, run.started["a"], 10*time.Second, "a's start on the other slot")
	require.Len(t, slotsHeld(t, js, queue), 2, "a's slot and the one whose Create got no answer")
	require.Eventually(t, func() bool { return len(slotsHeld(t, js, queue)) == 1 }, 20*time.Second, 50*time.Millisecond,
		"the unanswered slot was not given back before the TTL")
	close(run.release["a"])
	require.NoError(t, c.Stop(ctxT(t)))
	assert.Empty(t, slotsHeld(t, js, queue), "slots not given back")
}
