package natsbroker_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
	"github.com/taskpool/taskpool/cron"
)

// The conformance suite: one table of scenarios, written once against
// taskpool.Client and one registry, run on both transports (the
// in-process Scheduler; a NATS producer and consumer on the embedded
// server). Every scenario must pass on both.

// final is a task's final outcome as a transport reports it.
type final struct {
	err      error
	attempts int
	status   taskpool.OutcomeStatus
	task     taskpool.Task // the outcome's
	result   any
}

// world is what a scenario sees: the client, and what the handlers and
// the final outcomes recorded, by task ID.
type world struct {
	client taskpool.Client
	mu     sync.Mutex
	runs   map[string][]taskpool.Task
	finals map[string]chan final
	ticks  chan string // IDs of periodic ticks run
}

func (w *world) ran(t taskpool.Task) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.runs[t.ID] = append(w.runs[t.ID], t)
}

func (w *world) runsOf(id string) []taskpool.Task {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]taskpool.Task(nil), w.runs[id]...)
}

func (w *world) finalCh(id string) chan final {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := w.finals[id]
	if ch == nil {
		ch = make(chan final, 1)
		w.finals[id] = ch
	}
	return ch
}

func (w *world) settle(out taskpool.Outcome) {
	w.finalCh(out.Task.ID) <- final{out.Err, out.Attempts, out.Status, out.Task, out.Result}
}

// firstTick waits for the final outcome of the first tick of schedule id
// (the task "<id>@<time>" with the earliest time settled so far), and
// returns that task's ID and its outcome.
func (w *world) firstTick(t *testing.T, id string) (string, final) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		w.mu.Lock()
		first := ""
		for k, ch := range w.finals {
			if strings.HasPrefix(k, id+"@") && len(ch) > 0 && (first == "" || k < first) {
				first = k
			}
		}
		w.mu.Unlock()
		if first != "" {
			return first, w.wait(t, first)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no tick of %q settled in 15s", id)
		}
		time.Sleep(10 * time.Millisecond) // polling, with a deadline
	}
}

// wait returns the final outcome of task id.
func (w *world) wait(t *testing.T, id string) final {
	t.Helper()
	select {
	case f := <-w.finalCh(id):
		return f
	case <-time.After(20 * time.Second):
		t.Fatalf("task %s: no final outcome", id)
		return final{}
	}
}

// confParams are params that survive the wire: exported fields, ints as
// typed fields, times in UTC.
type confParams struct {
	Name  string            `json:"name"`
	N     int               `json:"n"`
	Tags  []string          `json:"tags"`
	Attrs map[string]string `json:"attrs"`
	At    time.Time         `json:"at"`
}

// conformanceRegistry is the one registry both transports run.
func conformanceRegistry(w *world) *taskpool.Registry {
	reg := taskpool.NewRegistry()
	record := func(ctx context.Context, t taskpool.Task) error { w.ran(t); return nil }
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(reg.HandleFunc("conf.ok", record, taskpool.WithRetry(1, nil)))
	must(reg.HandleFunc("conf.flaky", func(ctx context.Context, t taskpool.Task) error {
		w.ran(t)
		return errors.New("always fails")
	}, taskpool.WithRetry(3, taskpool.ConstantBackoff(10*time.Millisecond))))
	must(reg.HandleFunc("conf.skip", func(ctx context.Context, t taskpool.Task) error {
		w.ran(t)
		return taskpool.SkipRetry(errors.New("final"))
	}, taskpool.WithRetry(3, taskpool.ConstantBackoff(10*time.Millisecond))))
	must(reg.HandleFunc("conf.tick", func(ctx context.Context, t taskpool.Task) error {
		select {
		case w.ticks <- t.ID:
		default: // ticks after the scenario
		}
		return nil
	}))
	must(reg.HandleFunc("conf.default", func(ctx context.Context, t taskpool.Task) error {
		w.ran(t)
		return errors.New("fails, no retry of its own")
	})) // no WithRetry: the scheduler-wide default applies
	must(reg.HandleFunc("conf.result", func(ctx context.Context, t taskpool.Task) error {
		w.ran(t)
		t.SetResult(confResult{Sum: 42, ID: t.ID})
		return nil
	}, taskpool.WithRetry(1, nil)))
	must(reg.HandleFunc("conf.panic", func(ctx context.Context, t taskpool.Task) error {
		w.ran(t)
		panic("handler bug")
	}, taskpool.WithRetry(1, nil)))
	must(reg.HandleFunc("conf.params", func(ctx context.Context, t taskpool.Task) error {
		w.ran(t)
		p, err := taskpool.ParamsAs[confParams](t)
		if err != nil {
			return taskpool.SkipRetry(err)
		}
		t.Params = p // recorded decoded, for the comparison
		w.ran(t)
		return nil
	}, taskpool.WithRetry(1, nil)))
	// Results set as a pointer: the Params says which.
	must(reg.HandleFunc("conf.ptrresult", func(ctx context.Context, t taskpool.Task) error {
		w.ran(t)
		if which, _ := taskpool.ParamsAs[string](t); which == "nil" {
			t.SetResult((*confResult)(nil))
		} else {
			t.SetResult(&confResult{Sum: 7, ID: t.ID})
		}
		return nil
	}, taskpool.WithRetry(1, nil)))
	// A handler that fans out: it waits for a conf.result task it submits
	// through the transport's own client, with its ctx (which lends its
	// worker), and returns that task's Sum plus its own Params.
	must(reg.HandleFunc("conf.fanout", func(ctx context.Context, t taskpool.Task) error {
		v, err := w.client.SubmitWait(ctx, taskpool.Task{Type: "conf.result"})
		if err != nil {
			return err
		}
		r, err := taskpool.ResultAs[confResult](v)
		if err != nil {
			return err
		}
		n, err := taskpool.ParamsAs[int](t)
		t.SetResult(r.Sum + n)
		return err
	}, taskpool.WithRetry(1, nil)))
	// Middleware given once, on the registry, runs on every transport,
	// inside the scheduler-wide middleware (confSchedulerMW).
	must(reg.Use(confTag("reg-a"), confTag("reg-b")))
	must(reg.HandleFunc("conf.mw", record, taskpool.WithRetry(1, nil)))
	must(taskpool.Handle(reg, func(ctx context.Context, a confArgs, t taskpool.Task) error {
		t.Params = a // recorded typed, for the comparison
		w.ran(t)
		return nil
	}, taskpool.WithRetry(3, taskpool.ConstantBackoff(10*time.Millisecond))))
	return reg
}

// confSchedulerRetry is the scheduler-wide retry default both transports
// are given.
var confSchedulerRetry = taskpool.WithRetry(2, taskpool.ConstantBackoff(10*time.Millisecond))

// confTag is middleware that appends its name to the "mw" metadata of
// conf.mw tasks, on a copy, before the handler sees it.
func confTag(name string) taskpool.Middleware {
	return func(next taskpool.Handler) taskpool.Handler {
		return taskpool.HandlerFunc(func(ctx context.Context, t taskpool.Task) error {
			if t.Type != "conf.mw" {
				return next.HandleTask(ctx, t)
			}
			md := make(map[string]string, len(t.Metadata)+1)
			for k, v := range t.Metadata {
				md[k] = v
			}
			if md["mw"] != "" {
				md["mw"] += ","
			}
			md["mw"] += name
			t.Metadata = md
			return next.HandleTask(ctx, t)
		})
	}
}

// confSchedulerMW is scheduler-wide middleware both transports are given.
var confSchedulerMW = taskpool.WithMiddleware(confTag("sched"))

// confResult is a handler's result.
type confResult struct {
	Sum int    `json:"sum"`
	ID  string `json:"id"`
}

// confArgs are typed params (taskpool.Handle, taskpool.TaskOf).
type confArgs struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

func (confArgs) Kind() string { return "conf.typed" }

type transport struct {
	name string
	// start runs reg on the transport, with the scheduler options sopts,
	// and returns the client; hooks report final outcomes to w.settle.
	start func(t *testing.T, reg *taskpool.Registry, w *world, sopts ...taskpool.Option) taskpool.Client
}

var transports = []transport{
	{"inprocess", func(t *testing.T, reg *taskpool.Registry, w *world, sopts ...taskpool.Option) taskpool.Client {
		s, err := taskpool.New(reg, append(sopts, taskpool.WithCompletionHook(w.settle))...)
		require.NoError(t, err)
		require.NoError(t, s.Start())
		t.Cleanup(func() { assert.NoError(t, s.Stop(context.Background())) })
		return s
	}},
	// The in-process scheduler with the wire codec: handlers see params as
	// NATS delivers them (taskpool.WithStrictCodec).
	{"inprocess-strict", func(t *testing.T, reg *taskpool.Registry, w *world, sopts ...taskpool.Option) taskpool.Client {
		s, err := taskpool.New(reg, append(sopts, taskpool.WithStrictCodec(natsbroker.JSONCodec{}),
			taskpool.WithCompletionHook(w.settle))...)
		require.NoError(t, err)
		require.NoError(t, s.Start())
		t.Cleanup(func() { assert.NoError(t, s.Stop(context.Background())) })
		return s
	}},
	{"nats", func(t *testing.T, reg *taskpool.Registry, w *world, sopts ...taskpool.Option) taskpool.Client {
		srv := startServer(t)
		_, js := connect(t, srv.URL())
		// A short long poll: a retry's redelivery on a priority the
		// consumer is not polling waits for at most that.
		startConsumer(t, js, reg, natsbroker.WithPollWait(50*time.Millisecond), natsbroker.WithSchedulerOptions(sopts...), natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
			if a == natsbroker.ActionAck || a == natsbroker.ActionDeadLetter {
				w.settle(out)
			}
		}))
		p := newProducer(t, ctxT(t), js, natsbroker.WithKnownTypes(reg))
		return natsbroker.NewClient(p)
	}},
}

var scenarios = []struct {
	name string
	run  func(t *testing.T, w *world)
}{
	{"plain task runs once", func(t *testing.T, w *world) {
		require.NoError(t, w.client.Submit(context.Background(), taskpool.Task{ID: "plain", Type: "conf.ok"}))
		f := w.wait(t, "plain")
		assert.NoError(t, f.err)
		assert.Equal(t, 1, f.attempts)
		runs := w.runsOf("plain")
		require.Len(t, runs, 1)
		assert.Equal(t, 1, runs[0].Attempt)
	}},
	{"per-type retry attempts honoured", func(t *testing.T, w *world) {
		require.NoError(t, w.client.Submit(context.Background(), taskpool.Task{ID: "flaky", Type: "conf.flaky"}))
		f := w.wait(t, "flaky")
		assert.Error(t, f.err)
		assert.Equal(t, 3, f.attempts)
		var attempts []int
		for _, r := range w.runsOf("flaky") {
			attempts = append(attempts, r.Attempt)
		}
		assert.Equal(t, []int{1, 2, 3}, attempts)
	}},
	{"scheduler-wide retry default for types without their own", func(t *testing.T, w *world) {
		require.NoError(t, w.client.Submit(context.Background(), taskpool.Task{ID: "default-retry", Type: "conf.default"}))
		f := w.wait(t, "default-retry")
		assert.Error(t, f.err)
		assert.Equal(t, 2, f.attempts)
		assert.Len(t, w.runsOf("default-retry"), 2)
	}},
	{"task MaxAttempts overrides the type", func(t *testing.T, w *world) {
		require.NoError(t, w.client.Submit(context.Background(), taskpool.Task{ID: "own", Type: "conf.flaky", MaxAttempts: 2}))
		f := w.wait(t, "own")
		assert.Equal(t, 2, f.attempts)
		assert.Len(t, w.runsOf("own"), 2)
	}},
	{"a task submitted with Attempt n counts the n-1 runs before", func(t *testing.T, w *world) {
		require.NoError(t, w.client.Submit(context.Background(), taskpool.Task{ID: "from2", Type: "conf.flaky", Attempt: 2}))
		f := w.wait(t, "from2")
		assert.Error(t, f.err)
		assert.Equal(t, 3, f.attempts, "run 2 and run 3 of 3, and the run before")
		var attempts []int
		for _, r := range w.runsOf("from2") {
			attempts = append(attempts, r.Attempt)
		}
		assert.Equal(t, []int{2, 3}, attempts)

		// Past its MaxAttempts: run once, as its last attempt.
		require.NoError(t, w.client.Submit(context.Background(), taskpool.Task{ID: "from5", Type: "conf.flaky", Attempt: 5}))
		f = w.wait(t, "from5")
		assert.Error(t, f.err)
		assert.Equal(t, 5, f.attempts)
		runs := w.runsOf("from5")
		require.Len(t, runs, 1)
		assert.Equal(t, 5, runs[0].Attempt)
	}},
	{"handlers and outcomes see the task's MaxAttempts and Timeout as submitted", func(t *testing.T, w *world) {
		for _, tk := range []taskpool.Task{
			{ID: "own-max", Type: "conf.flaky", MaxAttempts: 2, Timeout: 1500 * time.Microsecond},
			{ID: "no-max", Type: "conf.ok", Timeout: -time.Second},
		} {
			require.NoError(t, w.client.Submit(context.Background(), tk))
			f := w.wait(t, tk.ID)
			assert.Equal(t, tk.MaxAttempts, f.task.MaxAttempts, "the outcome's")
			assert.Equal(t, tk.Timeout, f.task.Timeout, "the outcome's")
			for _, r := range w.runsOf(tk.ID) {
				assert.Equal(t, tk.MaxAttempts, r.MaxAttempts, "run %d", r.Attempt)
				assert.Equal(t, tk.Timeout, r.Timeout, "run %d", r.Attempt)
			}
		}
	}},
	{"SkipRetry is final", func(t *testing.T, w *world) {
		require.NoError(t, w.client.Submit(context.Background(), taskpool.Task{ID: "skip", Type: "conf.skip"}))
		f := w.wait(t, "skip")
		assert.ErrorIs(t, f.err, taskpool.ErrSkipRetry)
		assert.Equal(t, 1, f.attempts)
		assert.Len(t, w.runsOf("skip"), 1)
	}},
	{"panic is a failure", func(t *testing.T, w *world) {
		require.NoError(t, w.client.Submit(context.Background(), taskpool.Task{ID: "panic", Type: "conf.panic"}))
		f := w.wait(t, "panic")
		var pe *taskpool.PanicError
		require.ErrorAs(t, f.err, &pe)
		assert.Equal(t, "handler bug", pe.Value)
		assert.Equal(t, 1, f.attempts)
	}},
	{"the final outcome's status", func(t *testing.T, w *world) {
		// Outcome.Status, as the completion hook and the settle hook (of
		// an ack or a dead letter) give it: succeeded, or failed however
		// the task failed.
		ctx := context.Background()
		want := map[string]taskpool.OutcomeStatus{
			"st-ok": taskpool.OutcomeSucceeded, "st-result": taskpool.OutcomeSucceeded,
			"st-flaky": taskpool.OutcomeFailed, "st-skip": taskpool.OutcomeFailed,
			"st-panic": taskpool.OutcomeFailed, "st-typed-bad": taskpool.OutcomeFailed,
		}
		require.NoError(t, w.client.Submit(ctx, taskpool.Task{ID: "st-ok", Type: "conf.ok"}))
		require.NoError(t, w.client.Submit(ctx, taskpool.Task{ID: "st-result", Type: "conf.result"}))
		require.NoError(t, w.client.Submit(ctx, taskpool.Task{ID: "st-flaky", Type: "conf.flaky", MaxAttempts: 2}))
		require.NoError(t, w.client.Submit(ctx, taskpool.Task{ID: "st-skip", Type: "conf.skip"}))
		require.NoError(t, w.client.Submit(ctx, taskpool.Task{ID: "st-panic", Type: "conf.panic"}))
		require.NoError(t, w.client.Submit(ctx, taskpool.Task{ID: "st-typed-bad", Type: "conf.typed", Params: "not an object"}))
		got := map[string]taskpool.OutcomeStatus{}
		for id := range want {
			f := w.wait(t, id)
			got[id] = f.status
			assert.Equal(t, f.err == nil, f.status == taskpool.OutcomeSucceeded, "%s: %v", id, f.err)
		}
		assert.Equal(t, want, got)
	}},
	{"metadata round trip", func(t *testing.T, w *world) {
		md := map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tenant": "acme"}
		require.NoError(t, w.client.Submit(context.Background(), taskpool.Task{ID: "meta", Type: "conf.ok", Metadata: md}))
		require.NoError(t, w.wait(t, "meta").err)
		runs := w.runsOf("meta")
		require.Len(t, runs, 1)
		assert.Equal(t, md, runs[0].Metadata)
	}},
	{"unknown type rejected", func(t *testing.T, w *world) {
		err := w.client.Submit(context.Background(), taskpool.Task{ID: "unknown", Type: "conf.nope"})
		assert.ErrorIs(t, err, taskpool.ErrNoHandler)
		err = w.client.SubmitAfter(context.Background(), taskpool.Task{ID: "unknown2", Type: "conf.nope"}, time.Hour)
		assert.ErrorIs(t, err, taskpool.ErrNoHandler)
	}},
	{"duplicate unique key rejected", func(t *testing.T, w *world) {
		ctx := context.Background()
		require.NoError(t, w.client.SubmitAfter(ctx, taskpool.Task{ID: "uniq1", Type: "conf.ok", UniqueKey: "conf-key"}, time.Hour))
		err := w.client.Submit(ctx, taskpool.Task{ID: "uniq2", Type: "conf.ok", UniqueKey: "conf-key"})
		assert.ErrorIs(t, err, taskpool.ErrDuplicateTask)
		require.NoError(t, w.client.Cancel("uniq1"))
	}},
	{"handlers see the unique key", func(t *testing.T, w *world) {
		require.NoError(t, w.client.Submit(context.Background(), taskpool.Task{ID: "uniq3", Type: "conf.ok", UniqueKey: "conf-key-3"}))
		require.NoError(t, w.wait(t, "uniq3").err)
		runs := w.runsOf("uniq3")
		require.Len(t, runs, 1)
		assert.Equal(t, "conf-key-3", runs[0].UniqueKey)
	}},
	{"empty type rejected", func(t *testing.T, w *world) {
		assert.ErrorIs(t, w.client.Submit(context.Background(), taskpool.Task{}), taskpool.ErrInvalidType)
	}},
	{"strings that are not valid UTF-8 rejected", func(t *testing.T, w *world) {
		// The JSON envelope would carry them with U+FFFD in place of the
		// bad bytes: refused by both, with the same error, and nothing
		// runs. A type that is not valid UTF-8 is ErrInvalidTask too, not
		// ErrNoHandler: no registry can hold it.
		ctx := context.Background()
		for _, give := range []taskpool.Task{
			{ID: "utf8-\xff", Type: "conf.ok"},
			{ID: "utf8-type", Type: "conf.ok\xc3"},
			{ID: "utf8-key", Type: "conf.ok", UniqueKey: "key\xfe"},
		} {
			assert.ErrorIs(t, w.client.Submit(ctx, give), taskpool.ErrInvalidTask, "Submit %q", give.ID)
			assert.ErrorIs(t, w.client.SubmitAfter(ctx, give, time.Hour), taskpool.ErrInvalidTask, "SubmitAfter %q", give.ID)
			_, err := w.client.SubmitWait(ctx, give)
			assert.ErrorIs(t, err, taskpool.ErrInvalidTask, "SubmitWait %q", give.ID)
			assert.Empty(t, w.runsOf(give.ID))
		}
		// A periodic schedule's id, whatever the task's ID, and its type.
		assert.ErrorIs(t, w.client.SchedulePeriodic("utf8-\xff", taskpool.Every(time.Hour), taskpool.Task{Type: "conf.ok"}), taskpool.ErrInvalidTask)
		assert.ErrorIs(t, w.client.SchedulePeriodic("utf8-\xff", taskpool.Every(time.Hour), taskpool.Task{ID: "utf8-sched", Type: "conf.ok"}), taskpool.ErrInvalidTask)
		assert.ErrorIs(t, w.client.SchedulePeriodic("utf8-sched", taskpool.Every(time.Hour), taskpool.Task{Type: "conf.ok\xc3"}), taskpool.ErrInvalidTask)
		assert.ErrorIs(t, w.client.Unschedule("utf8-sched"), taskpool.ErrTaskNotFound)
	}},
	{"params round trip via ParamsAs", func(t *testing.T, w *world) {
		p := confParams{Name: "ada", N: 1 << 40, Tags: []string{"a", "b"}, Attrs: map[string]string{"k": "v"},
			At: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)}
		require.NoError(t, w.client.Submit(context.Background(), taskpool.Task{ID: "params", Type: "conf.params", Params: p}))
		require.NoError(t, w.wait(t, "params").err)
		runs := w.runsOf("params")
		require.Len(t, runs, 2)
		assert.Equal(t, p, runs[1].Params)
	}},
	{"typed task round trip; params that do not fit are final", func(t *testing.T, w *world) {
		a := confArgs{Name: "ada", N: 7}
		task := taskpool.TaskOf(a)
		task.ID = "typed"
		require.NoError(t, w.client.Submit(context.Background(), task))
		require.NoError(t, w.wait(t, "typed").err)
		runs := w.runsOf("typed")
		require.Len(t, runs, 1)
		assert.Equal(t, a, runs[0].Params)

		require.NoError(t, w.client.Submit(context.Background(), taskpool.Task{ID: "typed-bad", Type: "conf.typed", Params: "not an object"}))
		f := w.wait(t, "typed-bad")
		assert.ErrorIs(t, f.err, taskpool.ErrSkipRetry)
		assert.Empty(t, w.runsOf("typed-bad"), "the handler never sees params it cannot take")
	}},
	{"results and errors", func(t *testing.T, w *world) {
		ctx := ctxT(t)
		v, err := w.client.SubmitWait(ctx, taskpool.Task{ID: "res", Type: "conf.result"})
		require.NoError(t, err)
		got, err := taskpool.ResultAs[confResult](v)
		require.NoError(t, err)
		assert.Equal(t, confResult{Sum: 42, ID: "res"}, got)

		v, err = w.client.SubmitWait(ctx, taskpool.Task{ID: "res-none", Type: "conf.ok"})
		assert.NoError(t, err)
		assert.Nil(t, v, "no result set")

		v, err = w.client.SubmitWait(ctx, taskpool.Task{ID: "res-skip", Type: "conf.skip"})
		assert.Nil(t, v)
		assert.ErrorIs(t, err, taskpool.ErrSkipRetry)
		assert.EqualError(t, err, "final")

		_, err = w.client.SubmitWait(ctx, taskpool.Task{ID: "res-flaky", Type: "conf.flaky"})
		assert.EqualError(t, err, "always fails", "the error of the last attempt")
		assert.Len(t, w.runsOf("res-flaky"), 3)

		_, err = w.client.SubmitWait(ctx, taskpool.Task{ID: "res-panic", Type: "conf.panic"})
		var pe *taskpool.PanicError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, "handler bug", pe.Value)
		assert.NotEmpty(t, pe.Stack)

		_, err = w.client.SubmitWait(ctx, taskpool.Task{ID: "res-unknown", Type: "conf.nope"})
		assert.ErrorIs(t, err, taskpool.ErrNoHandler)

		short, cancel := context.WithCancel(ctx)
		cancel()
		_, err = w.client.SubmitWait(short, taskpool.Task{ID: "res-canceled", Type: "conf.ok"})
		assert.ErrorIs(t, err, context.Canceled)
	}},
	{"handlers that wait for tasks they submitted lend their workers", func(t *testing.T, w *world) {
		// More parents than workers, all waiting at once: without the
		// loans, the children would find no worker (or, on NATS, no room
		// to be fetched).
		ctx := ctxT(t)
		n := 3 * runtime.GOMAXPROCS(0)
		got := make(chan any, n)
		for i := range n {
			go func() {
				v, err := w.client.SubmitWait(ctx, taskpool.Task{Type: "conf.fanout", Params: i})
				if err != nil {
					got <- err
					return
				}
				r, err := taskpool.ResultAs[int](v)
				if err != nil {
					got <- err
					return
				}
				got <- r
			}()
		}
		var want, results []any
		for i := range n {
			want = append(want, 42+i)
			results = append(results, <-got)
		}
		assert.ElementsMatch(t, want, results)
	}},
	{"a result set as a pointer reads as a value, and the other way round", func(t *testing.T, w *world) {
		ctx := ctxT(t)
		v, err := w.client.SubmitWait(ctx, taskpool.Task{ID: "ptr", Type: "conf.ptrresult"})
		require.NoError(t, err)
		got, err := taskpool.ResultAs[confResult](v)
		require.NoError(t, err)
		assert.Equal(t, confResult{Sum: 7, ID: "ptr"}, got)
		p, err := taskpool.ResultAs[*confResult](v)
		require.NoError(t, err)
		assert.Equal(t, &confResult{Sum: 7, ID: "ptr"}, p)

		v, err = w.client.SubmitWait(ctx, taskpool.Task{ID: "nilptr", Type: "conf.ptrresult", Params: "nil"})
		require.NoError(t, err)
		got, err = taskpool.ResultAs[confResult](v)
		require.NoError(t, err, "a nil pointer is JSON null: the zero value")
		assert.Equal(t, confResult{}, got)
		p, err = taskpool.ResultAs[*confResult](v)
		require.NoError(t, err)
		assert.Nil(t, p)
	}},
	{"periodic once per tick", func(t *testing.T, w *world) {
		// t's own ID is not used: every tick is "<id>@<time>".
		require.NoError(t, w.client.SchedulePeriodic("tick", taskpool.Every(time.Second), taskpool.Task{ID: "not-used", Type: "conf.tick"}))
		var at []time.Time
		seen := map[string]bool{}
		for len(at) < 2 {
			select {
			case id := <-w.ticks:
				require.False(t, seen[id], "tick %s ran twice", id)
				seen[id] = true
				stamp, ok := strings.CutPrefix(id, "tick@")
				require.True(t, ok, id)
				ts, err := time.Parse(time.RFC3339Nano, stamp)
				require.NoError(t, err, "the ID is id@RFC3339Nano")
				assert.Equal(t, ts.UTC().Format(time.RFC3339Nano), stamp, "in UTC")
				at = append(at, ts)
			case <-time.After(10 * time.Second):
				t.Fatalf("%d ticks of an every-second schedule in 10s", len(at))
			}
		}
		assert.GreaterOrEqual(t, at[1].Sub(at[0]), time.Second)
		require.NoError(t, w.client.Unschedule("tick"))
		assert.ErrorIs(t, w.client.Unschedule("tick"), taskpool.ErrTaskNotFound)
	}},
	{"middleware: the registry's once for both, inside the scheduler's", func(t *testing.T, w *world) {
		require.NoError(t, w.client.Submit(context.Background(), taskpool.Task{ID: "mw", Type: "conf.mw"}))
		require.NoError(t, w.wait(t, "mw").err)
		runs := w.runsOf("mw")
		require.Len(t, runs, 1)
		assert.Equal(t, "sched,reg-a,reg-b", runs[0].Metadata["mw"])
	}},
	{"delayed task runs after its delay", func(t *testing.T, w *world) {
		start := time.Now()
		const d = 300 * time.Millisecond
		require.NoError(t, w.client.SubmitAfter(context.Background(), taskpool.Task{ID: "later", Type: "conf.ok"}, d))
		require.NoError(t, w.wait(t, "later").err)
		assert.GreaterOrEqual(t, time.Since(start), d-10*time.Millisecond) // the server's clock granularity
	}},
	{"cancel a delayed task", func(t *testing.T, w *world) {
		require.NoError(t, w.client.SubmitAt(context.Background(), taskpool.Task{ID: "cancelme", Type: "conf.ok"}, time.Now().Add(time.Hour)))
		require.NoError(t, w.client.Cancel("cancelme"))
		assert.ErrorIs(t, w.client.Cancel("cancelme"), taskpool.ErrTaskNotFound)
		assert.ErrorIs(t, w.client.Cancel("never-submitted"), taskpool.ErrTaskNotFound)
		assert.Empty(t, w.runsOf("cancelme"))
	}},
	{"Cancel takes tasks, Unschedule schedules", func(t *testing.T, w *world) {
		// A schedule is not a task: Cancel of its ID finds nothing and
		// leaves it; a delayed task is not a schedule: Unschedule of its
		// ID finds nothing and leaves it. An hour apart, so neither
		// fires during the scenario.
		ctx := context.Background()
		require.NoError(t, w.client.SchedulePeriodic("kinds-sched", taskpool.Every(time.Hour), taskpool.Task{Type: "conf.ok"}))
		require.NoError(t, w.client.SubmitAfter(ctx, taskpool.Task{ID: "kinds-delayed", Type: "conf.ok"}, time.Hour))

		assert.ErrorIs(t, w.client.Cancel("kinds-sched"), taskpool.ErrTaskNotFound)
		assert.ErrorIs(t, w.client.Unschedule("kinds-delayed"), taskpool.ErrTaskNotFound)

		require.NoError(t, w.client.Unschedule("kinds-sched"), "the schedule was kept")
		require.NoError(t, w.client.Cancel("kinds-delayed"), "the delayed task was kept")
		assert.ErrorIs(t, w.client.Unschedule("kinds-sched"), taskpool.ErrTaskNotFound)
		assert.ErrorIs(t, w.client.Cancel("kinds-delayed"), taskpool.ErrTaskNotFound)
	}},
	{"a delayed task and a schedule may share an ID", func(t *testing.T, w *world) {
		// Delayed tasks and periodic schedules are two namespaces:
		// neither replaces the other, whichever comes first.
		ctx := context.Background()
		require.NoError(t, w.client.SchedulePeriodic("shared", taskpool.Every(time.Second), taskpool.Task{Type: "conf.tick"}))
		require.NoError(t, w.client.SubmitAfter(ctx, taskpool.Task{ID: "shared", Type: "conf.ok"}, 100*time.Millisecond))
		require.NoError(t, w.wait(t, "shared").err, "the delayed task ran")
		deadline := time.After(10 * time.Second)
		for ticked := false; !ticked; {
			select {
			case id := <-w.ticks:
				ticked = strings.HasPrefix(id, "shared@") // not a tick of an earlier scenario
			case <-deadline:
				t.Fatal("the schedule no longer ticks")
			}
		}
		require.NoError(t, w.client.Unschedule("shared"), "the schedule was kept")
		assert.ErrorIs(t, w.client.Cancel("shared"), taskpool.ErrTaskNotFound, "the delayed task ran")

		require.NoError(t, w.client.SubmitAfter(ctx, taskpool.Task{ID: "shared2", Type: "conf.ok"}, time.Hour))
		require.NoError(t, w.client.SchedulePeriodic("shared2", taskpool.Every(time.Hour), taskpool.Task{Type: "conf.ok"}))
		require.NoError(t, w.client.Cancel("shared2"), "the delayed task was kept")
		require.NoError(t, w.client.Unschedule("shared2"), "the schedule was kept")
		assert.Len(t, w.runsOf("shared"), 1)
		assert.Empty(t, w.runsOf("shared2"))
	}},
	{"a schedule with no activation is an invalid option", func(t *testing.T, w *world) {
		// February 30th and April 31st never come: SchedulePeriodic
		// refuses such a schedule before it is stored, on both.
		for _, expr := range []string{"0 0 30 2 *", "0 0 31 4 *", "CRON_TZ=Europe/Paris 0 0 30 2 *"} {
			sched, err := cron.Parse(expr)
			require.NoError(t, err, expr)
			assert.ErrorIs(t, w.client.SchedulePeriodic("never", sched, taskpool.Task{Type: "conf.tick"}), taskpool.ErrInvalidOption, expr)
			assert.ErrorIs(t, w.client.Unschedule("never"), taskpool.ErrTaskNotFound, "not stored")
		}
	}},
	{"a Schedule that panics is an invalid option", func(t *testing.T, w *world) {
		// A nil *nilSchedule, whose methods dereference it: in process
		// its first Next panics, on a broker its String does. Either is
		// refused with ErrInvalidOption wrapping the *PanicError, not
		// panicked in the caller.
		var sched *nilSchedule
		err := w.client.SchedulePeriodic("nil-sched", sched, taskpool.Task{Type: "conf.tick"})
		assert.ErrorIs(t, err, taskpool.ErrInvalidOption)
		var pe *taskpool.PanicError
		assert.ErrorAs(t, err, &pe)
		assert.ErrorIs(t, w.client.Unschedule("nil-sched"), taskpool.ErrTaskNotFound, "not stored")
	}},
	{"cancel a delayed task frees its unique key", func(t *testing.T, w *world) {
		ctx := context.Background()
		require.NoError(t, w.client.SubmitAt(ctx, taskpool.Task{ID: "uk-cancel", Type: "conf.ok", UniqueKey: "conf-cancel"}, time.Now().Add(time.Hour)))
		require.ErrorIs(t, w.client.Submit(ctx, taskpool.Task{ID: "uk-dup", Type: "conf.ok", UniqueKey: "conf-cancel"}), taskpool.ErrDuplicateTask)
		require.NoError(t, w.client.Cancel("uk-cancel"))
		require.NoError(t, w.client.Submit(ctx, taskpool.Task{ID: "uk-after", Type: "conf.ok", UniqueKey: "conf-cancel"}))
		require.NoError(t, w.wait(t, "uk-after").err)
		assert.Empty(t, w.runsOf("uk-cancel"))
	}},
	{"a nil context is refused", func(t *testing.T, w *world) {
		// Refused with ErrNilContext, and nothing else done, on both:
		// never a panic.
		var nilCtx context.Context
		task := taskpool.Task{ID: "nil-ctx", Type: "conf.ok"}
		assert.NotPanics(t, func() {
			assert.ErrorIs(t, w.client.Submit(nilCtx, task), taskpool.ErrNilContext)
			assert.ErrorIs(t, w.client.SubmitAt(nilCtx, task, time.Now().Add(time.Hour)), taskpool.ErrNilContext)
			assert.ErrorIs(t, w.client.SubmitAfter(nilCtx, task, time.Hour), taskpool.ErrNilContext)
			_, err := w.client.SubmitWait(nilCtx, task)
			assert.ErrorIs(t, err, taskpool.ErrNilContext)
		})
		// No delayed task was stored, and the ID is free: a task with it
		// runs once (on NATS a stored one would make this Submit a
		// duplicate; in process it would run twice).
		assert.ErrorIs(t, w.client.Cancel("nil-ctx"), taskpool.ErrTaskNotFound, "no delayed task stored")
		require.NoError(t, w.client.Submit(context.Background(), task))
		require.NoError(t, w.wait(t, "nil-ctx").err)
		assert.Len(t, w.runsOf("nil-ctx"), 1)
	}},
}

func TestConformance(t *testing.T) {
	t.Parallel()
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			w := &world{runs: map[string][]taskpool.Task{}, finals: map[string]chan final{}, ticks: make(chan string, 16)}
			// The same scheduler options on both: the scheduler-wide
			// retry default is one of the policies under test.
			w.client = tr.start(t, conformanceRegistry(w), w, confSchedulerRetry, confSchedulerMW)
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) { sc.run(t, w) })
			}
		})
	}
}

// nilSchedule is a Schedule with a String, whose methods read through the
// pointer: a nil one panics in both.
type nilSchedule struct{ every time.Duration }

func (s *nilSchedule) Next(after time.Time) time.Time { return after.Add(s.every) }
func (s *nilSchedule) String() string                 { return "@every " + s.every.String() }
