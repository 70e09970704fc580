package natsbroker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
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
// params JSON cannot encode or whose MarshalJSON panics, out-of-range
// priorities and attempts),
// submitted in the same order to the in-process scheduler (with the wire
// codec) and to a NATS producer and consumer, through taskpool.Client:
// Submit, SubmitWait, SubmitAfter and SubmitAt (an hour away, cancelled at
// the end, or a few milliseconds away, run), then SchedulePeriodic,
// Unschedule and Cancel. Both must answer each call with the same error,
// and each accepted task must run the same way on both: the same
// attempts, each seen by its handler with the same fields, and the same
// final error and status. SubmitWait must return the same result (read
// with ResultAs) and error (its message too), and the same error class
// as the hooks' outcome. A cancelled task's unique key must be free again
// on both. The handlers (diffRegistry) end every way a handler can: a
// timeout, runtime.Goexit, errors wrapping core sentinels, panics with
// values that are not strings, a result with a failure, a result JSON
// cannot encode. Where the table of scenarios
// (conformance_test.go) checks what its authors thought of, this checks
// what they did not.
//
// TASKPOOL_DIFF_SEED=S runs the program of seed S; TASKPOOL_DIFF_OPS=N
// makes programs of N tasks.

// diffMode is how a program submits a task.
type diffMode int

const (
	modeSubmit   diffMode = iota // Submit, then wait for the hooks' outcome
	modeWait                     // SubmitWait: its result and error too
	modeDelayed                  // SubmitAfter an hour: pending until the program cancels it
	modeSoon                     // SubmitAfter a few ms: runs
	modeAt                       // SubmitAt a few ms from now: runs
	modePast                     // SubmitAt an hour ago: runs at once
	modeZero                     // SubmitAt the zero time: runs at once
	modeNegative                 // SubmitAfter a negative delay: runs at once
)

func (m diffMode) String() string {
	return [...]string{"Submit", "SubmitWait", "SubmitAfter(1h)", "SubmitAfter(soon)", "SubmitAt(soon)",
		"SubmitAt(an hour ago)", "SubmitAt(zero time)", "SubmitAfter(-1s)"}[m]
}

// diffOp is one submit of a program.
type diffOp struct {
	task taskpool.Task
	mode diffMode
}

// unencodable is a params value JSON cannot encode.
type unencodable struct{ C chan int }

// panicMarshal is a params value whose MarshalJSON panics.
type panicMarshal struct{}

func (panicMarshal) MarshalJSON() ([]byte, error) { panic("marshal boom") }

func pickOne[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

func genDiffProgram(r *rand.Rand, prefix string, n int) []diffOp {
	ops := make([]diffOp, n)
	for i := range ops {
		t := taskpool.Task{
			ID: prefix + strconv.Itoa(i) + pickOne(r, "", "", "", ".dot", " space", "*", ">", "é", "/slash", "-"+strings.Repeat("x", 200), "-"+strings.Repeat("y", taskpool.MaxIDLength), "-"+strings.Repeat("z", 3000), "tab\t", "nul\x00"),
			Type: pickOne(r, "conf.ok", "conf.ok", "conf.ok", "conf.flaky", "conf.skip", "conf.panic", "conf.default",
				"conf.result", "conf.params", "conf.mw", "conf.nope", "", "conf.typed", "conf.typed",
				"diff.ctxwait", "diff.goexit", "diff.errcanceled", "diff.errclosed", "diff.skipwrap",
				"diff.panicerr", "diff.panicint", "diff.panicnil", "diff.resultfail", "diff.resultbad", "diff.nilerr"),
			Priority:    taskpool.Priority(pickOne(r, 0, 0, -1, 1, -3, 2, 100, math.MinInt32)),
			Attempt:     pickOne(r, 0, 0, 0, 1, 2, -1, 5),
			MaxAttempts: pickOne(r, 0, 0, 0, 1, 2, -1, 3),
			Timeout:     pickOne(r, time.Duration(0), 0, time.Hour, -time.Second, 1500*time.Microsecond, math.MaxInt64),
		}
		// Each ID is used once: a reused ID is a documented difference
		// (README, Going distributed, "Task IDs"; TestReusedTaskID).
		if r.IntN(8) == 0 {
			t.ID = "" // generated: only the Submit's error is compared
		}
		switch t.Type {
		case "diff.ctxwait":
			// Waits for its context: a short timeout ends it.
			t.Timeout = pickOne(r, 20*time.Millisecond, 1500*time.Microsecond)
		case "conf.ok", "conf.skip", "conf.result", "conf.mw", "diff.goexit", "diff.errcanceled", "diff.skipwrap":
			// Types that do not fail in a way retried: a huge MaxAttempts
			// or Attempt cannot make them run for ever.
			if r.IntN(6) == 0 {
				t.MaxAttempts = pickOne(r, math.MaxInt32, math.MaxInt)
			}
			if r.IntN(8) == 0 {
				t.Attempt = pickOne(r, math.MaxInt32, math.MaxInt-1)
			}
		}
		switch r.IntN(14) {
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
		case 5:
			t.Params = confArgs{Name: "typed", N: r.IntN(100)}
		case 6:
			t.Params = []byte(`{"name": "bytes", "n": 3}`)
		case 7:
			t.Params = []byte(`{not json`)
		case 8:
			t.Params = json.RawMessage(`{"name":"raw","n":4}`)
		case 9:
			t.Params = map[string]any(nil)
		case 10:
			t.Params = map[string]any{"name": 5, "n": "five"} // the wrong shape for confArgs
		case 11:
			t.Params = panicMarshal{}
		}
		switch r.IntN(13) { // 10, 11, 12: no metadata
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
		case 7:
			t.Metadata = map[string]string{"a": "lower", "A": "upper", "Mixed-Case": "v"}
		case 8:
			t.Metadata = map[string]string{"x-y_z.w": strings.Repeat("v", 300)}
		case 9:
			// Each refused, for one reason: which of two a refusal
			// names would depend on the map's order.
			t.Metadata = pickOne(r, map[string]string{"ключ": "значение"}, map[string]string{"k": " padded "})
		}
		if r.IntN(2) == 0 {
			// Half the tasks have only what both accept, so that most
			// handler behaviours run, not only the checks at submit.
			t = acceptable(t, prefix+strconv.Itoa(i))
		}
		op := diffOp{task: t, mode: pickOne(r, modeSubmit, modeSubmit, modeSubmit, modeSubmit, modeWait, modeWait, modeWait, modeDelayed, modeSoon, modeAt, pickOne(r, modePast, modeZero, modeNegative))}
		if t.ID != "" {
			// Not for a task whose outcome is not waited for (no ID to
			// wait on): its key might still be held on one transport
			// only when the next task with it comes.
			op.task.UniqueKey = pickOne(r, "", "", "", "k1", "k2", "k3", strings.Repeat("k", 3000))
		}
		ops[i] = op
	}
	return ops
}

// diffRegistry is the conformance registry and handlers that end in other
// ways: waiting for their context, runtime.Goexit, errors wrapping core
// sentinels, panics with values that are not strings, a result with an
// error, a result JSON cannot encode.
func diffRegistry(w *world) *taskpool.Registry {
	reg := conformanceRegistry(w)
	once := taskpool.WithRetry(1, nil)
	handlers := []struct {
		typ  string
		h    taskpool.HandlerFunc
		opts []taskpool.HandleOption
	}{
		{"diff.ctxwait", func(ctx context.Context, t taskpool.Task) error {
			<-ctx.Done()
			return ctx.Err()
		}, []taskpool.HandleOption{taskpool.WithRetry(2, taskpool.ConstantBackoff(10*time.Millisecond))}},
		{"diff.goexit", func(ctx context.Context, t taskpool.Task) error {
			runtime.Goexit()
			return nil
		}, nil},
		{"diff.errcanceled", func(ctx context.Context, t taskpool.Task) error {
			return fmt.Errorf("handler: %w", taskpool.ErrCanceled)
		}, nil},
		{"diff.errclosed", func(ctx context.Context, t taskpool.Task) error {
			return fmt.Errorf("handler: %w", taskpool.ErrSchedulerClosed)
		}, []taskpool.HandleOption{once}},
		{"diff.skipwrap", func(ctx context.Context, t taskpool.Task) error {
			return fmt.Errorf("outer: %w", taskpool.SkipRetry(errors.New("inner")))
		}, nil},
		{"diff.panicerr", func(ctx context.Context, t taskpool.Task) error {
			panic(fmt.Errorf("boom: %w", taskpool.ErrSkipRetry))
		}, []taskpool.HandleOption{once}},
		{"diff.panicint", func(ctx context.Context, t taskpool.Task) error {
			panic(42)
		}, []taskpool.HandleOption{once}},
		{"diff.panicnil", func(ctx context.Context, t taskpool.Task) error {
			panic(nil) // a *runtime.PanicNilError since Go 1.21
		}, []taskpool.HandleOption{once}},
		{"diff.resultfail", func(ctx context.Context, t taskpool.Task) error {
			t.SetResult(confResult{Sum: 1, ID: t.ID})
			return taskpool.SkipRetry(errors.New("failed with a result"))
		}, nil},
		{"diff.nilerr", func(ctx context.Context, t taskpool.Task) error {
			var e *diffError // a typed nil: its Error panics
			return e
		}, []taskpool.HandleOption{once}},
		{"diff.resultbad", func(ctx context.Context, t taskpool.Task) error {
			t.SetResult(unencodable{})
			return nil
		}, nil},
	}
	for _, h := range handlers {
		f := h.h
		err := reg.HandleFunc(h.typ, func(ctx context.Context, t taskpool.Task) error {
			w.ran(t)
			return f(ctx, t)
		}, h.opts...)
		if err != nil {
			panic(err)
		}
	}
	return reg
}

// acceptable is t without what a submit refuses: the ID id, attempts not
// negative, params JSON can encode, metadata a header carries.
func acceptable(t taskpool.Task, id string) taskpool.Task {
	t.ID = id
	t.Attempt = max(t.Attempt, 0)
	t.MaxAttempts = max(t.MaxAttempts, 0)
	switch p := t.Params.(type) {
	case unencodable, panicMarshal:
		t.Params = nil
	case []byte:
		if !json.Valid(p) {
			t.Params = nil
		}
	}
	if t.Metadata != nil && t.Validate() != nil {
		t.Metadata = map[string]string{"k": "v"}
	}
	return t
}

// errMsg is err's message; an Error that panics says so.
func errMsg(err error) (msg string) {
	if err == nil {
		return ""
	}
	defer func() {
		if v := recover(); v != nil {
			msg = fmt.Sprintf("Error panicked: %v", v)
		}
	}()
	return err.Error()
}

// diffError is an error type whose Error reads through its pointer.
type diffError struct{ msg string }

func (e *diffError) Error() string { return e.msg }

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
		{"ContextCanceled", context.Canceled},
		{"InvalidResult", taskpool.ErrInvalidResult},
		{"BadResult", natsbroker.ErrBadResult},
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
		w.client = tr.start(t, diffRegistry(w), w, confSchedulerRetry, confSchedulerMW)
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
			runDiffProgram(t, names, worlds, prefix, ops)
		})
	}
}

// runDiffProgram runs ops on every world; prefix begins the IDs the
// program makes up.
func runDiffProgram(t *testing.T, names []string, worlds []*world, prefix string, ops []diffOp) {
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
	// outcomeOf compares a task's final outcome and runs, as the hooks
	// and the handlers saw them.
	outcomeOf := func(what, id string) []final {
		t.Helper()
		fs := make([]final, len(worlds))
		finals := make([]string, len(worlds))
		runs := make([]string, len(worlds))
		for i, w := range worlds {
			f := w.wait(t, id)
			fs[i] = f
			res, rerr := taskpool.ResultAs[confResult](f.result)
			finals[i] = fmt.Sprintf("%s attempts %d %v, task %+v, result %+v (%s)", errClass(f.err), f.attempts, f.status, viewOf(f.task), res, errClass(rerr))
			var vs []runView
			for _, r := range w.runsOf(id) {
				vs = append(vs, viewOf(r))
			}
			runs[i] = fmt.Sprintf("%+v", vs)
		}
		differ(what+": the final outcome", finals)
		differ(what+": the runs", runs)
		return fs
	}
	// afterRun checks what follows a task's final outcome, on both: there
	// is nothing left to Cancel under its ID, and its unique key is free
	// (unless a pending task holds it: refused on both).
	afterRun := func(what string, tk taskpool.Task, probeID string) {
		t.Helper()
		errs := make([]string, len(worlds))
		for i, w := range worlds {
			errs[i] = errClass(w.client.Cancel(tk.ID))
		}
		differ(what+": Cancel after its outcome", errs)
		if tk.UniqueKey == "" {
			return
		}
		probe := taskpool.Task{ID: probeID, Type: "conf.ok", UniqueKey: tk.UniqueKey}
		accepted := true
		for i, w := range worlds {
			err := w.client.Submit(ctx, probe)
			errs[i] = errClass(err)
			accepted = accepted && err == nil
		}
		what = fmt.Sprintf("task %q with the key of %q after its outcome", probe.ID, tk.ID)
		differ(what+": Submit's error", errs)
		if accepted {
			outcomeOf(what, probe.ID)
		}
	}
	type pendingTask struct{ id, key string }
	var pending []pendingTask
	for n, op := range ops {
		tk := op.task
		probeID := fmt.Sprintf("%sprobe-%d", prefix, n)
		what := fmt.Sprintf("task %q (%s, %v, %+v)", tk.ID, tk.Type, op.mode, tk)
		classes := make([]string, len(worlds))
		waitVals := make([]any, len(worlds))
		waitErrs := make([]error, len(worlds))
		accepted := true
		for i, w := range worlds {
			var err error
			switch op.mode {
			case modeSubmit:
				err = w.client.Submit(ctx, tk)
			case modeWait:
				var v any
				wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				v, err = w.client.SubmitWait(wctx, tk)
				cancel()
				waitErrs[i], waitVals[i] = err, v
			case modeDelayed:
				err = w.client.SubmitAfter(ctx, tk, time.Hour)
			case modeSoon:
				err = w.client.SubmitAfter(ctx, tk, 30*time.Millisecond)
			case modeAt:
				err = w.client.SubmitAt(ctx, tk, time.Now().Add(20*time.Millisecond))
			case modePast:
				err = w.client.SubmitAt(ctx, tk, time.Now().Add(-time.Hour))
			case modeZero:
				err = w.client.SubmitAt(ctx, tk, time.Time{})
			case modeNegative:
				err = w.client.SubmitAfter(ctx, tk, -time.Second)
			}
			classes[i] = errClass(err)
			if classes[i] == "other" {
				classes[i] += ": " + errMsg(err)
			}
			accepted = accepted && err == nil
		}
		if op.mode == modeWait {
			// A refusal is compared by its class (its message names
			// the check that refused it); the task's own error by its
			// message too, and its result through ResultAs.
			if refused(waitErrs) {
				differ(what+": SubmitWait's error", classes)
				continue
			}
			// A result JSON cannot encode is a documented difference
			// (README, Going distributed, "Results"): the value in
			// process, ErrBadResult for a NATS waiter, whose task
			// succeeded all the same. Its outcome and runs are compared.
			badResult := tk.Type == "diff.resultbad"
			waited := make([]string, len(worlds))
			for i := range worlds {
				waited[i] = diffResult(tk.ID, waitVals[i], waitErrs[i])
				if tk.Type == "diff.nilerr" {
					// An error whose Error panics has no message to
					// compare: in process the Future has the error as
					// it is, on NATS a RemoteError says that Error
					// panicked (RemoteError.Message).
					waited[i] = errClass(waitErrs[i])
				}
			}
			if !badResult {
				differ(what+": SubmitWait", waited)
			}
			// Through the front door the same as through the hooks.
			if tk.ID != "" {
				fs := outcomeOf(what, tk.ID)
				for i := range worlds {
					if got, want := errClass(waitErrs[i]), errClass(fs[i].err); got != want && !badResult {
						t.Errorf("%s on %s: SubmitWait's error %s, the hook's %s", what, names[i], got, want)
					}
					if got, want := diffResult(tk.ID, waitVals[i], nil), diffResult(tk.ID, fs[i].result, nil); got != want && !badResult {
						t.Errorf("%s on %s: SubmitWait's result %s, the hook's %s", what, names[i], got, want)
					}
				}
				afterRun(what, tk, probeID)
			}
			continue
		}
		differ(what+": Submit's error", classes)
		if !accepted || tk.ID == "" {
			continue
		}
		if op.mode == modeDelayed {
			pending = append(pending, pendingTask{tk.ID, tk.UniqueKey})
			continue
		}
		outcomeOf(what, tk.ID)
		afterRun(what, tk, probeID)
	}
	// Periodic schedules an hour apart (no tick while the test runs):
	// the same answers to SchedulePeriodic, Unschedule and Unschedule
	// again, with the odd IDs and tasks above.
	var scheduled []string
	var ticking []taskpool.Task // the tasks of scheduled
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
			ticking = append(ticking, tk)
		}
	}
	// The first tick of a few of them, every second: each runs as its
	// template says, the same way on both (its ID is "<id>@<time>": the
	// time is left out of the comparison).
	var tickIDs []string
	for i, tk := range ticking[:min(len(ticking), 3)] {
		id := fmt.Sprintf("%stick-%d", prefix, i)
		for _, w := range worlds {
			require.NoError(t, w.client.SchedulePeriodic(id, taskpool.Every(time.Second), tk))
		}
		tickIDs = append(tickIDs, id)
	}
	for _, id := range tickIDs {
		finals := make([]string, len(worlds))
		runs := make([]string, len(worlds))
		for i, w := range worlds {
			tick, f := w.firstTick(t, id)
			f.task.ID = strings.TrimPrefix(f.task.ID, tick)
			res, rerr := taskpool.ResultAs[confResult](f.result)
			res.ID = strings.TrimPrefix(res.ID, tick) // conf.result's holds the task's ID
			finals[i] = fmt.Sprintf("%s attempts %d %v, task %+v, result %+v (%s)", errClass(f.err), f.attempts, f.status, viewOf(f.task), res, errClass(rerr))
			var vs []runView
			for _, r := range w.runsOf(tick) {
				r.ID = strings.TrimPrefix(r.ID, tick)
				vs = append(vs, viewOf(r))
			}
			runs[i] = fmt.Sprintf("%+v", vs)
		}
		differ(fmt.Sprintf("the first tick of %q: the final outcome", id), finals)
		differ(fmt.Sprintf("the first tick of %q: the runs", id), runs)
		for _, w := range worlds {
			require.NoError(t, w.client.Unschedule(id))
		}
	}
	for _, id := range append(scheduled, scheduled...) {
		errs := make([]string, len(worlds))
		for i, w := range worlds {
			errs[i] = errClass(w.client.Unschedule(id))
		}
		differ(fmt.Sprintf("Unschedule(%q)", id), errs)
	}
	// Cancel each pending task; one with a unique key frees it: a task
	// with that key is accepted again, and runs.
	pending = append(pending, pendingTask{id: "d-unknown"})
	for i, p := range pending {
		errs := make([]string, len(worlds))
		canceled := true
		for i, w := range worlds {
			err := w.client.Cancel(p.id)
			errs[i] = errClass(err)
			canceled = canceled && err == nil
		}
		differ(fmt.Sprintf("Cancel(%q)", p.id), errs)
		if !canceled || p.key == "" {
			continue
		}
		again := taskpool.Task{ID: fmt.Sprintf("%sagain-%d", prefix, i), Type: "conf.ok", UniqueKey: p.key}
		accepted := true
		for i, w := range worlds {
			err := w.client.Submit(ctx, again)
			errs[i] = errClass(err)
			accepted = accepted && err == nil
		}
		what := fmt.Sprintf("task %q with the key of cancelled %q", again.ID, p.id)
		differ(what+": Submit's error", errs)
		if accepted {
			outcomeOf(what, again.ID)
		}
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
	js, ctx := startJetStream(t)
	p := newProducer(t, ctx, js)
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

// refused reports whether any of errs is a submission refused.
func refused(errs []error) bool {
	for _, err := range errs {
		switch {
		case errors.Is(err, taskpool.ErrInvalidTask), errors.Is(err, taskpool.ErrInvalidType),
			errors.Is(err, taskpool.ErrDuplicateTask), errors.Is(err, taskpool.ErrInvalidOption):
			return true
		case errors.Is(err, taskpool.ErrNoHandler):
			// An unknown type is refused at submit on both (WithKnownTypes).
			return true
		}
	}
	return false
}

// diffResult is what SubmitWait returned, for comparison: the error's
// classes and message, and the result read with ResultAs.
// A task submitted without an ID has one generated, in another format on
// each transport: its result's ID is not compared.
func diffResult(id string, v any, err error) string {
	res, rerr := taskpool.ResultAs[confResult](v)
	msg := errMsg(err)
	if id == "" {
		res.ID = ""
	}
	return fmt.Sprintf("error %s %q; result %+v (%s, nil %v)", errClass(err), msg, res, errClass(rerr), v == nil)
}

// TestReusedTaskID holds the difference README's Going distributed lists
// under "Task IDs", which the differential test leaves out (its IDs are
// unique): a task with the ID of one that ran is accepted and runs in
// process, and refused with ErrDuplicateTask on NATS, whose stream would
// drop it.
func TestReusedTaskID(t *testing.T) {
	t.Parallel()
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			w := &world{runs: map[string][]taskpool.Task{}, finals: map[string]chan final{}, ticks: make(chan string, 16)}
			w.client = tr.start(t, conformanceRegistry(w), w)
			ctx := context.Background()
			require.NoError(t, w.client.Submit(ctx, taskpool.Task{ID: "reused", Type: "conf.ok"}))
			require.NoError(t, w.wait(t, "reused").err)
			err := w.client.Submit(ctx, taskpool.Task{ID: "reused", Type: "conf.ok"})
			if tr.name == "nats" {
				require.ErrorIs(t, err, taskpool.ErrDuplicateTask)
				return
			}
			require.NoError(t, err)
			require.NoError(t, w.wait(t, "reused").err)
			require.Len(t, w.runsOf("reused"), 2)
		})
	}
}
