package natsbroker_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// The differential conformance test: random tasks, odd ones included (IDs
// with dots, wildcards and spaces, metadata a NATS header cannot carry,
// params JSON cannot encode, out-of-range priorities and attempts),
// submitted in the same order to the in-process scheduler (with the wire
// codec) and to a NATS producer and consumer. Both must answer each
// Submit and Cancel with the same error, and each accepted task must run
// the same way on both: the same attempts, each seen by its handler with
// the same fields, and the same final error. Where the table of scenarios
// (conformance_test.go) checks what its authors thought of, this checks
// what they did not.
//
// TASKPOOL_DIFF_SEED=S runs the program of seed S; TASKPOOL_DIFF_OPS=N
// makes programs of N tasks.

// diffOp is one submit of a program.
type diffOp struct {
	task    taskpool.Task
	delayed bool // SubmitAfter an hour: pending until the program cancels it
}

// unencodable is a params value JSON cannot encode.
type unencodable struct{ C chan int }

func pickOne[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

func genDiffProgram(r *rand.Rand, prefix string, n int) []diffOp {
	ops := make([]diffOp, n)
	for i := range ops {
		t := taskpool.Task{
			ID: prefix + strconv.Itoa(i) + pickOne(r, "", "", "", ".dot", " space", "*", ">", "é", "/slash", "-"+strings.Repeat("x", 200), "-"+strings.Repeat("y", taskpool.MaxIDLength), "-"+strings.Repeat("z", 3000), "tab\t", "nul\x00"),
			Type: pickOne(r, "conf.ok", "conf.ok", "conf.ok", "conf.flaky", "conf.skip", "conf.panic", "conf.default",
				"conf.result", "conf.params", "conf.mw", "conf.nope", ""),
			Priority:    taskpool.Priority(pickOne(r, 0, 0, -1, 1, -3, 2)),
			Attempt:     pickOne(r, 0, 0, 0, 1, 2, -1),
			MaxAttempts: pickOne(r, 0, 0, 0, 1, 2, -1),
			Timeout:     pickOne(r, time.Duration(0), 0, time.Hour, -time.Second, 1500*time.Microsecond),
		}
		if r.IntN(8) == 0 {
			t.ID = "" // generated: only the Submit's error is compared
		}
		switch r.IntN(8) {
		case 0:
			t.Params = confParams{Name: "n", N: r.IntN(100), Tags: []string{"a"}, Attrs: map[string]string{"k": "v"}}
		case 1:
			t.Params = "text"
		case 2:
			t.Params = 42
		case 3:
			t.Params = unencodable{C: make(chan int)}
		case 4:
			t.Params = map[string]any{"a": 1.5, "b": []any{"x"}}
		}
		switch r.IntN(10) {
		case 0:
			t.Metadata = map[string]string{"k": "v"}
		case 1:
			t.Metadata = map[string]string{"tenant": "é"}
		case 2:
			t.Metadata = map[string]string{"": "v"}
		case 3:
			t.Metadata = map[string]string{"a b": "v"}
		case 4:
			t.Metadata = map[string]string{"k": "line\nbreak"}
		case 5:
			t.Metadata = map[string]string{"Taskpool-Attempt": "9"}
		case 6:
			t.Metadata = map[string]string{"k": ""}
		}
		op := diffOp{task: t, delayed: r.IntN(5) == 0}
		if op.delayed {
			t.UniqueKey = pickOne(r, "", "", "k1", "k2", strings.Repeat("k", 3000))
			op.task = t
		}
		ops[i] = op
	}
	return ops
}

// errClass names the sentinel errors err wraps, for comparison across
// transports.
func errClass(err error) string {
	if err == nil {
		return "nil"
	}
	var names []string
	for _, s := range []struct {
		name string
		err  error
	}{
		{"InvalidType", taskpool.ErrInvalidType},
		{"NoHandler", taskpool.ErrNoHandler},
		{"InvalidTask", taskpool.ErrInvalidTask},
		{"InvalidOption", taskpool.ErrInvalidOption},
		{"DuplicateTask", taskpool.ErrDuplicateTask},
		{"TaskNotFound", taskpool.ErrTaskNotFound},
		{"Canceled", taskpool.ErrCanceled},
		{"SkipRetry", taskpool.ErrSkipRetry},
		{"HandlerExited", taskpool.ErrHandlerExited},
		{"InvalidParams", taskpool.ErrInvalidParams},
		{"SchedulerClosed", taskpool.ErrSchedulerClosed},
		{"DeadlineExceeded", context.DeadlineExceeded},
	} {
		if errors.Is(err, s.err) {
			names = append(names, s.name)
		}
	}
	var pe *taskpool.PanicError
	if errors.As(err, &pe) {
		names = append(names, fmt.Sprintf("Panic(%v)", pe.Value))
	}
	if len(names) == 0 {
		return "other"
	}
	return strings.Join(names, "+")
}

// runView is what a handler saw of one run, for comparison.
type runView struct {
	ID          string
	Type        string
	Priority    taskpool.Priority
	Attempt     int
	MaxAttempts int
	Timeout     time.Duration
	UniqueKey   string
	Metadata    map[string]string
	Params      any
}

func viewOf(t taskpool.Task) runView {
	md := t.Metadata
	if len(md) == 0 {
		md = nil
	}
	return runView{t.ID, t.Type, t.Priority, t.Attempt, t.MaxAttempts, t.Timeout, t.UniqueKey, md, t.Params}
}

func TestConformanceDifferential(t *testing.T) {
	t.Parallel()
	var names []string
	var worlds []*world
	for _, tr := range transports {
		if tr.name == "inprocess" {
			continue // params compared as the wire delivers them: inprocess-strict
		}
		w := &world{runs: map[string][]taskpool.Task{}, finals: map[string]chan final{}, ticks: make(chan string, 16)}
		w.client = tr.start(t, conformanceRegistry(w), w, confSchedulerRetry, confSchedulerMW)
		names, worlds = append(names, tr.name), append(worlds, w)
	}
	n := 60
	if v, err := strconv.Atoi(os.Getenv("TASKPOOL_DIFF_OPS")); err == nil && v > 0 {
		n = v
	}
	seeds := []uint64{1, 2, rand.Uint64() >> 1}
	if v := os.Getenv("TASKPOOL_DIFF_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err)
		seeds = []uint64{s}
	}
	for pi, seed := range seeds {
		prefix := fmt.Sprintf("d%d-", pi)
		ops := genDiffProgram(rand.New(rand.NewPCG(seed, seed)), prefix, n)
		t.Run(fmt.Sprintf("TASKPOOL_DIFF_SEED=%d", seed), func(t *testing.T) {
			runDiffProgram(t, names, worlds, ops)
		})
	}
}

func runDiffProgram(t *testing.T, names []string, worlds []*world, ops []diffOp) {
	ctx := context.Background()
	differ := func(what string, got []string) {
		t.Helper()
		for _, g := range got[1:] {
			if g != got[0] {
				var b strings.Builder
				for i, g := range got {
					fmt.Fprintf(&b, "\n  %s: %s", names[i], g)
				}
				t.Errorf("%s differs:%s", what, b.String())
				return
			}
		}
	}
	var pending []string
	for _, op := range ops {
		tk := op.task
		what := fmt.Sprintf("task %q (%s, delayed %v, %+v)", tk.ID, tk.Type, op.delayed, tk)
		classes := make([]string, len(worlds))
		accepted := true
		for i, w := range worlds {
			var err error
			if op.delayed {
				err = w.client.SubmitAfter(ctx, tk, time.Hour)
			} else {
				err = w.client.Submit(ctx, tk)
			}
			classes[i] = errClass(err)
			if classes[i] == "other" {
				classes[i] += ": " + err.Error()
			}
			accepted = accepted && err == nil
		}
		differ(what+": Submit's error", classes)
		if !accepted || tk.ID == "" {
			continue
		}
		if op.delayed {
			pending = append(pending, tk.ID)
			continue
		}
		finals := make([]string, len(worlds))
		runs := make([]string, len(worlds))
		for i, w := range worlds {
			f := w.wait(t, tk.ID)
			finals[i] = fmt.Sprintf("%s attempts %d %v, task %+v", errClass(f.err), f.attempts, f.status, viewOf(f.task))
			var vs []runView
			for _, r := range w.runsOf(tk.ID) {
				vs = append(vs, viewOf(r))
			}
			runs[i] = fmt.Sprintf("%+v", vs)
		}
		differ(what+": the final outcome", finals)
		differ(what+": the runs", runs)
	}
	// Periodic schedules an hour apart (no tick while the test runs):
	// the same answers to SchedulePeriodic, Unschedule and Unschedule
	// again, with the odd IDs and tasks above.
	var scheduled []string
	for i, op := range ops[:min(len(ops), 20)] {
		id := op.task.ID
		if id == "" || i%4 == 3 {
			id = fmt.Sprintf("sched-%d", i)
		}
		tk := op.task
		// A unique key on a periodic task is a documented difference
		// (TestSchedulePeriodicUniqueKeyIsRefused).
		tk.UniqueKey = ""
		classes := make([]string, len(worlds))
		accepted := true
		for j, w := range worlds {
			err := w.client.SchedulePeriodic(id, taskpool.Every(time.Hour), tk)
			classes[j] = errClass(err)
			accepted = accepted && err == nil
		}
		differ(fmt.Sprintf("SchedulePeriodic(%q, %+v)", id, tk), classes)
		if accepted {
			scheduled = append(scheduled, id)
		}
	}
	for _, id := range append(scheduled, scheduled...) {
		errs := make([]string, len(worlds))
		for i, w := range worlds {
			errs[i] = errClass(w.client.Unschedule(id))
		}
		differ(fmt.Sprintf("Unschedule(%q)", id), errs)
	}
	pending = append(pending, "d-unknown")
	for _, id := range pending {
		errs := make([]string, len(worlds))
		for i, w := range worlds {
			errs[i] = errClass(w.client.Cancel(id))
		}
		differ(fmt.Sprintf("Cancel(%q)", id), errs)
	}
}

// IDs over taskpool.MaxIDLength: nothing is stored under one (Enqueue and
// Schedule refuse it), so Cancel and Unschedule answer ErrTaskNotFound and
// WaitResult ErrInvalidTask, as in process, without putting a subject that
// long on the wire (WaitResult's watch of a 5000-byte one made the server
// close the connection); a global limit on such a type is an invalid
// option.
func TestIDsOverMaxIDLength(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	ctx := ctxT(t)
	p, err := natsbroker.NewProducer(ctx, js)
	require.NoError(t, err)
	c := natsbroker.NewClient(p)
	s, err := taskpool.New(taskpool.HandlerFunc(func(context.Context, taskpool.Task) error { return nil }))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	defer func() { require.NoError(t, s.Stop(context.Background())) }()
	long := strings.Repeat("x", 5000)
	for _, cl := range []taskpool.Client{c, s} {
		assert.ErrorIs(t, cl.Cancel(long), taskpool.ErrTaskNotFound)
		assert.ErrorIs(t, cl.Unschedule(long), taskpool.ErrTaskNotFound)
		assert.ErrorIs(t, cl.SubmitAfter(ctx, taskpool.Task{ID: long, Type: "t"}, time.Hour), taskpool.ErrInvalidTask)
		assert.ErrorIs(t, cl.SchedulePeriodic(long, taskpool.Every(time.Hour), taskpool.Task{Type: "t"}), taskpool.ErrInvalidTask)
	}
	assert.ErrorIs(t, p.Cancel(ctx, long), taskpool.ErrTaskNotFound)
	_, err = p.WaitResult(ctx, long)
	assert.ErrorIs(t, err, taskpool.ErrInvalidTask)
	_, err = natsbroker.NewConsumer(ctx, js, taskpool.NewRegistry(), natsbroker.WithGlobalLimit(long, natsbroker.Limit{Concurrency: 1}))
	assert.ErrorIs(t, err, taskpool.ErrInvalidOption)
	// The connection is still up.
	_, err = p.Enqueue(ctx, taskpool.Task{ID: "after", Type: "t"})
	assert.NoError(t, err)
}
