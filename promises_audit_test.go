package taskpool_test

// Promises of Task.Validate, MaxIDLength, MaxScheduleIDLength, Future and
// the submission paths that no other test covered; each test is named
// after the promise it checks.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/taskpooltest"
)

// Task.Validate: "an ID with an ASCII control character (U+0000 to
// U+001F, or DEL), or with a space at either end" and "a Metadata key
// that is not a header token (ASCII letters, digits and
// !#$%&'*+-.^_`|~), or a value with an ASCII control character or a
// space at either end" are refused with ErrInvalidTask, byte by byte:
// every one-byte key is accepted exactly when it is in the token set, and
// every ASCII control character is refused in an ID and in a value, at
// either end and inside. A space inside, and other characters, pass: a
// control character beyond ASCII (U+0085) among them, which the sentence
// said "a control character" of until Validate was found to accept it.
func TestAuditValidateHeaderRulesByteByByte(t *testing.T) {
	t.Parallel()
	const punct = "!#$%&'*+-.^_`|~"
	for c := 0; c < 256; c++ {
		k := string([]byte{byte(c)})
		isToken := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c < 0x80 && strings.IndexByte(punct, byte(c)) >= 0
		err := taskpool.Task{Type: "t", Metadata: map[string]string{k: "v"}}.Validate()
		if isToken {
			assert.NoError(t, err, "key %q", k)
		} else {
			assert.ErrorIs(t, err, taskpool.ErrInvalidTask, "key %q", k)
		}
	}
	require.NoError(t, taskpool.Task{Type: "t", Metadata: map[string]string{punct + "aZ09": "v"}}.Validate(),
		"a key of every token character")

	ctl := make([]byte, 0, 33)
	for c := byte(0); c < 0x20; c++ {
		ctl = append(ctl, c)
	}
	ctl = append(ctl, 0x7f)
	for _, c := range ctl {
		for _, v := range []string{string(c) + "x", "x" + string(c), "x" + string(c) + "y"} {
			assert.ErrorIs(t, taskpool.Task{Type: "t", ID: v}.Validate(), taskpool.ErrInvalidTask, "ID %q", v)
			assert.ErrorIs(t, taskpool.Task{Type: "t", Metadata: map[string]string{"k": v}}.Validate(),
				taskpool.ErrInvalidTask, "value %q", v)
		}
	}
	for _, v := range []string{" x", "x "} {
		assert.ErrorIs(t, taskpool.Task{Type: "t", ID: v}.Validate(), taskpool.ErrInvalidTask, "ID %q", v)
		assert.ErrorIs(t, taskpool.Task{Type: "t", Metadata: map[string]string{"k": v}}.Validate(),
			taskpool.ErrInvalidTask, "value %q", v)
	}
	for _, v := range []string{"x y", "é~!\"(),/:;<=>?@[\\]{}", "\u00a0x\u00a0", "x\u0085y"} {
		assert.NoError(t, taskpool.Task{Type: "t", ID: v}.Validate(), "ID %q", v)
		assert.NoError(t, taskpool.Task{Type: "t", Metadata: map[string]string{"k": v}}.Validate(), "value %q", v)
	}
}

// MaxScheduleIDLength: "the longest periodic schedule id, in bytes, that
// SchedulePeriodic accepts ... each activation's task ID is the id
// followed by "@" and the activation time (RFC 3339 in UTC with
// nanoseconds, at most 31 bytes more for a time before the year 10000),
// which must itself be at most MaxIDLength". README: "a schedule id over MaxScheduleIDLength (993)".
// An id of MaxScheduleIDLength bytes is accepted and one byte more is
// refused with ErrInvalidTask; the activation of the longest id at the
// longest time (nine digits of nanoseconds, the last year of four digits)
// has an ID of exactly MaxIDLength bytes, which Validate accepts.
func TestAuditMaxScheduleIDLengthBoundary(t *testing.T) {
	t.Parallel()
	assert.Equal(t, 993, taskpool.MaxScheduleIDLength, "the README's number")
	start := time.Date(9999, 12, 31, 23, 59, 58, 123456789, time.UTC)
	clock := taskpooltest.NewClock(start)
	ids := make(chan string, 4)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("tick", func(_ context.Context, tk taskpool.Task) error {
		ids <- tk.ID
		return nil
	}))
	s := newStarted(t, reg, taskpool.WithClock(clock))

	long := strings.Repeat("s", taskpool.MaxScheduleIDLength+1)
	require.ErrorIs(t, s.SchedulePeriodic(long, taskpool.Every(time.Second), taskpool.Task{Type: "tick"}),
		taskpool.ErrInvalidTask)
	id := long[:taskpool.MaxScheduleIDLength]
	require.NoError(t, s.SchedulePeriodic(id, taskpool.Every(time.Second), taskpool.Task{Type: "tick"}))

	due := start.Add(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), hangAfter)
	defer cancel()
	require.NoError(t, clock.WaitArmed(ctx, due))
	clock.Advance(time.Second)
	var got string
	select {
	case got = <-ids:
	case <-ctx.Done():
		t.Fatalf("the activation did not run\n%s", stacks())
	}
	assert.Equal(t, id+"@9999-12-31T23:59:59.123456789Z", got)
	assert.Len(t, got, taskpool.MaxIDLength)
	assert.NoError(t, taskpool.Task{Type: "tick", ID: got}.Validate())
	require.NoError(t, s.Unschedule(id))
}

// Task.Validate: "Scheduler.Submit and every other way of submitting apply
// them in process as well"; SubmitAt and SubmitWait (the Scheduler's and
// through the Client interface), which TestTaskValidate does not try,
// refuse what Validate refuses, with its error, and accept nothing.
func TestAuditValidateAppliedBySubmitAtAndSubmitWait(t *testing.T) {
	t.Parallel()
	s := newStarted(t, taskpool.HandlerFunc(nop))
	var c taskpool.Client = s
	ctx := context.Background()
	bad := []taskpool.Task{
		{Type: "t", Attempt: -1},
		{Type: "t", ID: "bad\xff"},
		{Type: "t", ID: strings.Repeat("i", taskpool.MaxIDLength+1)},
		{Type: "t", UniqueKey: strings.Repeat("k", taskpool.MaxIDLength+1)},
		{Type: "t", ID: "x\n"},
		{Type: "t", Metadata: map[string]string{"a b": "v"}},
		{Type: "t", Metadata: map[string]string{"k": "v "}},
	}
	for _, tk := range bad {
		require.ErrorIs(t, tk.Validate(), taskpool.ErrInvalidTask, "%+v", tk)
		assert.ErrorIs(t, s.SubmitAt(ctx, tk, time.Now().Add(time.Hour)), taskpool.ErrInvalidTask, "SubmitAt %+v", tk)
		assert.ErrorIs(t, c.SubmitAt(ctx, tk, time.Now()), taskpool.ErrInvalidTask, "Client.SubmitAt %+v", tk)
		_, err := s.SubmitWait(ctx, tk)
		assert.ErrorIs(t, err, taskpool.ErrInvalidTask, "SubmitWait %+v", tk)
		_, err = c.SubmitWait(ctx, tk)
		assert.ErrorIs(t, err, taskpool.ErrInvalidTask, "Client.SubmitWait %+v", tk)
	}
	_, err := c.SubmitWait(ctx, taskpool.Task{})
	assert.ErrorIs(t, err, taskpool.ErrInvalidType, "an empty type")
	assert.Empty(t, s.Inspect().Delayed)
	assert.Zero(t, s.Stats().Submitted, "nothing was accepted")
}

// Future.Wait: "A task that has finished gives its outcome even to a ctx
// that has ended since." Future.Outcome: "a zero Outcome and false
// before" the task has finished, its outcome and true after.
func TestAuditFutureWaitAfterCtxEndedAndOutcomeBefore(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	fail := errors.New("fails")
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("t", func(_ context.Context, tk taskpool.Task) error {
		<-release
		tk.SetResult(42)
		return fail
	}))
	s := newStarted(t, reg)
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "f", Type: "t"})
	require.NoError(t, err)
	out, ok := f.Outcome()
	assert.False(t, ok)
	assert.Equal(t, taskpool.Outcome{}, out, "a zero Outcome before")
	close(release)
	select {
	case <-f.Done():
	case <-time.After(hangAfter):
		t.Fatalf("the task did not finish\n%s", stacks())
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for range 100 { // Wait must not pick ctx's error at random
		v, err := f.Wait(ended)
		require.ErrorIs(t, err, fail)
		require.Equal(t, 42, v)
	}
	out, ok = f.Outcome()
	require.True(t, ok)
	assert.Equal(t, "f", out.Task.ID)
	assert.Equal(t, 42, out.Result)
	assert.ErrorIs(t, out.Err, fail)
	assert.Equal(t, taskpool.OutcomeFailed, out.Status)
}

// Task.SetResult: "On a Task that no handler is running (one built by
// hand, an Outcome's) it does nothing": a literal's SetResult does not
// panic, and the completion hook's, the dead-letter hook's, a dead
// letter's and a finished Future's Outcome.Task.SetResult change neither
// that task's result nor that of the next task its worker runs.
func TestAuditSetResultOnATaskNoHandlerRunsDoesNothing(t *testing.T) {
	t.Parallel()
	require.NotPanics(t, func() { taskpool.Task{Type: "t"}.SetResult(1) })
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("set", func(_ context.Context, tk taskpool.Task) error {
		tk.SetResult("handler")
		return nil
	}))
	require.NoError(t, reg.HandleFunc("fail", func(_ context.Context, tk taskpool.Task) error {
		tk.SetResult("failed")
		return errors.New("fails")
	}))
	require.NoError(t, reg.HandleFunc("none", nop))
	hook := func(o taskpool.Outcome) { o.Task.SetResult("hook") }
	s := newStarted(t, reg, taskpool.WithWorkers(1), taskpool.WithCompletionHook(hook),
		taskpool.WithDeadLetters(4, hook))
	ctx := context.Background()
	v, err := s.SubmitWait(ctx, taskpool.Task{ID: "set", Type: "set"})
	require.NoError(t, err)
	assert.Equal(t, "handler", v)
	v, err = s.SubmitWait(ctx, taskpool.Task{Type: "none"})
	require.NoError(t, err)
	assert.Nil(t, v, "the hook of the task before set no result for this one")
	v, err = s.SubmitWait(ctx, taskpool.Task{Type: "fail"})
	require.Error(t, err)
	assert.Equal(t, "failed", v)
	dead := s.DeadLetters()
	require.Len(t, dead, 1)
	dead[0].Task.SetResult("dead letter")
	f, err := s.SubmitFuture(ctx, taskpool.Task{Type: "none"})
	require.NoError(t, err)
	_, err = f.Wait(ctx)
	require.NoError(t, err)
	out, ok := f.Outcome()
	require.True(t, ok)
	out.Task.SetResult("future")
	v, err = s.SubmitWait(ctx, taskpool.Task{Type: "none"})
	require.NoError(t, err)
	assert.Nil(t, v)
	out, _ = f.Outcome()
	assert.Nil(t, out.Result)
	assert.Equal(t, "failed", s.DeadLetters()[0].Result)
}

// auditKindArgs counts the calls of its Kind.
type auditKindArgs struct{ N int }

var auditKindCalls atomic.Int32

func (auditKindArgs) Kind() string {
	auditKindCalls.Add(1)
	return "audit-kind"
}

// Handle: "Kind is called once, at registration": the handler of a T gets
// tasks of its kind, given as a T, a *T and JSON, and Kind is not called
// again (the tasks are built by hand: TaskOf calls Kind on its argument).
func TestAuditHandleCallsKindOnceAtRegistration(t *testing.T) {
	t.Parallel()
	reg := taskpool.NewRegistry()
	got := make(chan int, 3)
	before := auditKindCalls.Load() // -count runs the test again
	require.NoError(t, taskpool.Handle(reg, func(_ context.Context, a auditKindArgs, _ taskpool.Task) error {
		got <- a.N
		return nil
	}))
	require.EqualValues(t, before+1, auditKindCalls.Load())
	s := newStarted(t, reg)
	ctx := context.Background()
	for _, p := range []any{auditKindArgs{N: 1}, &auditKindArgs{N: 2}, []byte(`{"N":3}`)} {
		_, err := s.SubmitWait(ctx, taskpool.Task{Type: "audit-kind", Params: p})
		require.NoError(t, err)
	}
	assert.ElementsMatch(t, []int{1, 2, 3}, []int{<-got, <-got, <-got})
	assert.EqualValues(t, before+1, auditKindCalls.Load(), "Kind is not called per task")
}

// WithTaskTimeout: "a task's own Timeout overrides it", a longer one as
// well as a shorter: under a default of a millisecond, a task with a
// Timeout of an hour runs with a deadline about an hour away.
func TestAuditTaskTimeoutOverridesALongerDefault(t *testing.T) {
	t.Parallel()
	left := make(chan time.Duration, 1)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("t", func(ctx context.Context, _ taskpool.Task) error {
		d, ok := ctx.Deadline()
		if !ok {
			return errors.New("no deadline")
		}
		left <- time.Until(d)
		return nil
	}))
	s := newStarted(t, reg, taskpool.WithTaskTimeout(time.Millisecond))
	_, err := s.SubmitWait(context.Background(), taskpool.Task{Type: "t", Timeout: time.Hour})
	require.NoError(t, err)
	assert.Greater(t, <-left, 59*time.Minute)
}

// Inspection: "Delayed lists the tasks in the timer heap, soonest first",
// each with its ID, type, priority (one of the three), the Attempt of the
// run it waits for, NextRun "when the task is due" and the Reason
// "delayed"; Running lists the task a worker is busy with, with the Reason
// "running".
func TestAuditInspectDelayedSoonestFirstAndRunning(t *testing.T) {
	t.Parallel()
	clock := taskpooltest.NewClock(epoch)
	started := make(chan struct{})
	release := make(chan struct{})
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("t", nop))
	require.NoError(t, reg.HandleFunc("block", func(context.Context, taskpool.Task) error {
		close(started)
		<-release
		return nil
	}))
	s := newStarted(t, reg, taskpool.WithClock(clock))
	defer close(release)
	ctx := context.Background()
	for _, d := range []struct {
		id   string
		in   time.Duration
		prio taskpool.Priority
	}{{"c", 3 * time.Hour, 0}, {"a", time.Hour, 5}, {"b", 2 * time.Hour, -5}} {
		require.NoError(t, s.SubmitAt(ctx, taskpool.Task{ID: d.id, Type: "t", Priority: d.prio}, epoch.Add(d.in)))
	}
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "run", Type: "block"}))
	<-started
	in := s.Inspect()
	assert.Equal(t, []taskpool.TaskInfo{
		{ID: "a", Type: "t", Priority: taskpool.PriorityHigh, Attempt: 1, NextRun: epoch.Add(time.Hour), Reason: "delayed"},
		{ID: "b", Type: "t", Priority: taskpool.PriorityLow, Attempt: 1, NextRun: epoch.Add(2 * time.Hour), Reason: "delayed"},
		{ID: "c", Type: "t", Priority: taskpool.PriorityDefault, Attempt: 1, NextRun: epoch.Add(3 * time.Hour), Reason: "delayed"},
	}, in.Delayed)
	require.Len(t, in.Running, 1)
	assert.Equal(t, "run", in.Running[0].ID)
	assert.Equal(t, "block", in.Running[0].Type)
	assert.Equal(t, "running", in.Running[0].Reason)
}

// Outcome.Task: "the task as submitted, with its ID filled in, its
// Priority one of the three and its Attempt the number of its last run,
// or of the run it waited for when it did not run (again)"; every other
// field as submitted. A task that succeeded at once, one that failed its
// three runs, a delayed task cancelled (submitted with no Attempt, and
// with Attempt 3, as a broker redelivers one) and a retry cancelled while
// it waited for its second run.
func TestAuditOutcomeTaskIsAsSubmittedWithItsAttempt(t *testing.T) {
	t.Parallel()
	outs := make(chan taskpool.Outcome, 8)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("ok", nop))
	require.NoError(t, reg.HandleFunc("fail", func(context.Context, taskpool.Task) error { return errors.New("fails") },
		taskpool.WithRetry(3, taskpool.ConstantBackoff(0))))
	require.NoError(t, reg.HandleFunc("later", func(context.Context, taskpool.Task) error { return errors.New("fails") },
		taskpool.WithRetry(3, taskpool.ConstantBackoff(time.Hour))))
	s := newStarted(t, reg, taskpool.WithCompletionHook(func(o taskpool.Outcome) { outs <- o }))
	ctx := context.Background()
	next := func() taskpool.Outcome {
		t.Helper()
		select {
		case o := <-outs:
			return o
		case <-time.After(hangAfter):
			t.Fatalf("no outcome\n%s", stacks())
			return taskpool.Outcome{}
		}
	}
	base := taskpool.Task{Type: "ok", Params: "p", Timeout: time.Minute, UniqueKey: "u",
		Metadata: map[string]string{"tenant": "acme"}, MaxAttempts: 0}
	check := func(give taskpool.Task, o taskpool.Outcome, attempt, attempts int) {
		t.Helper()
		want := give
		if want.ID == "" {
			require.NotEmpty(t, o.Task.ID)
			want.ID = o.Task.ID
		}
		want.Priority = taskpool.PriorityHigh
		want.Attempt = attempt
		assert.Equal(t, want, o.Task)
		assert.Equal(t, attempts, o.Attempts)
	}

	give := base
	give.Priority = 9
	require.NoError(t, s.Submit(ctx, give))
	check(give, next(), 1, 1)

	give = base
	give.Type, give.ID, give.Priority = "fail", "fail", 1
	require.NoError(t, s.Submit(ctx, give))
	check(give, next(), 3, 3)

	give = base
	give.ID, give.Priority = "delayed", 2
	require.NoError(t, s.SubmitAfter(ctx, give, time.Hour))
	require.NoError(t, s.Cancel("delayed"))
	check(give, next(), 1, 0)

	give.ID, give.Attempt = "redelivered", 3
	require.NoError(t, s.SubmitAfter(ctx, give, time.Hour))
	require.NoError(t, s.Cancel("redelivered"))
	check(give, next(), 3, 2)

	give = base
	give.Type, give.ID, give.Priority = "later", "retry", 1
	require.NoError(t, s.Submit(ctx, give))
	require.True(t, poll(hangAfter, func() bool {
		d := s.Inspect().Delayed
		return len(d) == 1 && d[0].Reason == "retry"
	}), "the retry is not waiting")
	require.NoError(t, s.Cancel("retry"))
	check(give, next(), 2, 1)
}

// Outcome.Task's Attempt, for tasks that Stop's deadline leaves unrun:
// the run each waited for, 1 for a queued task with no ID (settled
// without a record) as for one with an ID, and n for one submitted with
// Attempt n; Attempts one less.
func TestAuditOutcomeTaskAttemptOfATaskStopLeftUnrun(t *testing.T) {
	t.Parallel()
	outs := make(chan taskpool.Outcome, 8)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("ok", nop))
	s, err := taskpool.New(reg, taskpool.WithCompletionHook(func(o taskpool.Outcome) { outs <- o }))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	require.NoError(t, s.Pause())
	ctx := context.Background()
	require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "ok"}))
	require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "ok", ID: "id"}))
	require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "ok", ID: "fifth", Attempt: 5}))
	ended, cancel := context.WithCancel(ctx)
	cancel()
	var se *taskpool.StopError
	require.ErrorAs(t, s.Stop(ended), &se)
	require.Equal(t, 3, se.NotRun)
	got := map[string][2]int{}
	for range 3 {
		o := <-outs // Stop has returned: every outcome is in
		require.Equal(t, taskpool.OutcomeNotRun, o.Status)
		id := o.Task.ID
		if id != "id" && id != "fifth" {
			id = "plain"
		}
		got[id] = [2]int{o.Task.Attempt, o.Attempts}
	}
	assert.Equal(t, map[string][2]int{"plain": {1, 0}, "id": {1, 0}, "fifth": {5, 4}}, got)
}

// README: "zero allocations per fire-and-forget task": submitting tasks
// with no ID, Future or other record (params of a pointer type, which an
// interface holds without allocating) and running them on the workers
// allocates less than once in ten tasks, all goroutines together
// (batches are made per many tasks: the benchmark's allocs/op is 0). Not parallel:
// the count of allocations is the process's. Skipped under the race
// detector, which allocates on its own.
func TestAuditZeroAllocationsPerFireAndForgetTask(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	var ran atomic.Int64
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("t", func(context.Context, taskpool.Task) error {
		ran.Add(1)
		return nil
	}))
	s := newStarted(t, reg, taskpool.WithWorkers(2))
	ctx := context.Background()
	params := &struct{ N int }{}
	run := func(n int64) {
		want := ran.Load() + n
		for range n {
			if err := s.Submit(ctx, taskpool.Task{Type: "t", Params: params}); err != nil {
				panic(err)
			}
		}
		deadline := time.Now().Add(hangAfter)
		for ran.Load() < want {
			if time.Now().After(deadline) {
				panic("the tasks did not run")
			}
			runtime.Gosched()
		}
	}
	run(20000) // warm up: workers' buffers, the type's binding
	const n = 50000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	run(n)
	runtime.ReadMemStats(&after)
	perTask := float64(after.Mallocs-before.Mallocs) / n
	// Under one in ten: the benchmark would show 0 allocs/op below one,
	// but a task in ten allocating is no longer "zero per task".
	assert.Less(t, perTask, 0.1, "allocations per task")
	t.Logf("%.4f allocations per task", perTask)
}

// README: "a queued task takes 32 bytes (its params, its type binding,
// and a pointer to a record that only tasks with an ID, a Future, ...
// get), and a few more (up to 6, measured) for its share of what holds
// the batches": the heap grows by 32 to 40 bytes per task queued on a
// paused scheduler (params of a pointer type, which an interface holds
// without allocating; 32.2 to 38.0 measured, for 10 000 to a million
// tasks, 34.7 for the 200 000 here). Not parallel, and skipped under the
// race detector, for the same reasons as the test above.
func TestAuditQueuedTaskTakes32Bytes(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("t", nop))
	s := newStarted(t, reg, taskpool.WithWorkers(2), taskpool.WithQueueSize(1<<20))
	require.NoError(t, s.Pause())
	ctx := context.Background()
	params := &struct{ N int }{}
	require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "t", Params: params})) // binds the type
	const n = 200000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		if err := s.Submit(ctx, taskpool.Task{Type: "t", Params: params}); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	require.EqualValues(t, n+1, s.Stats().Queued)
	perTask := (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / n
	t.Logf("%.2f bytes per queued task", perTask)
	assert.GreaterOrEqual(t, perTask, 32.0)
	assert.Less(t, perTask, 40.0)
}

// auditCtxKey is a context key of the test below.
type auditCtxKey struct{}

// Submit: "ctx bounds only that wait, not the task's run": the handler's
// context is not derived from the ctx given to Submit, SubmitFuture or
// SubmitAt (it does not carry its values), and cancelling that ctx once
// the task is accepted leaves the running handler's context alive.
func TestAuditSubmitCtxDoesNotBoundTheRun(t *testing.T) {
	t.Parallel()
	type seen struct {
		value   any
		errThen error
	}
	started := make(chan struct{}, 1)
	cancelled := make(chan struct{})
	got := make(chan seen, 1)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("t", func(ctx context.Context, _ taskpool.Task) error {
		v := ctx.Value(auditCtxKey{})
		started <- struct{}{}
		<-cancelled
		got <- seen{v, ctx.Err()}
		return nil
	}))
	s := newStarted(t, reg, taskpool.WithWorkers(1))
	submits := map[string]func(ctx context.Context) error{
		"Submit": func(ctx context.Context) error { return s.Submit(ctx, taskpool.Task{Type: "t"}) },
		"SubmitFuture": func(ctx context.Context) error {
			_, err := s.SubmitFuture(ctx, taskpool.Task{Type: "t"})
			return err
		},
		"SubmitAt": func(ctx context.Context) error { return s.SubmitAt(ctx, taskpool.Task{Type: "t"}, time.Now()) },
	}
	for name, submit := range submits {
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), auditCtxKey{}, "submitter's"))
		require.NoError(t, submit(ctx), name)
		select {
		case <-started:
		case <-time.After(hangAfter):
			t.Fatalf("%s: the task did not start\n%s", name, stacks())
		}
		cancel()
		cancelled <- struct{}{}
		g := <-got
		assert.Nil(t, g.value, "%s: the handler's context carries the submitter's values", name)
		assert.NoError(t, g.errThen, "%s: cancelling the submitter's ctx ended the run's", name)
	}
}

// auditLookupHandler is a Handler, not a Registry, that can look up task
// types: it knows "known".
type auditLookupHandler struct{ ran chan string }

func (h auditLookupHandler) HandleTask(_ context.Context, t taskpool.Task) error {
	h.ran <- t.Type
	return nil
}

func (h auditLookupHandler) Lookup(typ string) (taskpool.Handler, bool) {
	return h, typ == "known"
}

// New: "When h can look up task types (it has a method Lookup(string)
// (Handler, bool), as Registry does), Submit rejects tasks of an unknown
// type at once" with ErrNoHandler, for a handler of one's own as for a
// Registry, and runs the others with h.
func TestAuditCustomHandlerWithLookupRejectsUnknownTypes(t *testing.T) {
	t.Parallel()
	h := auditLookupHandler{ran: make(chan string, 1)}
	s := newStarted(t, h)
	ctx := context.Background()
	assert.ErrorIs(t, s.Submit(ctx, taskpool.Task{Type: "unknown"}), taskpool.ErrNoHandler)
	assert.ErrorIs(t, s.TrySubmit(taskpool.Task{Type: "unknown"}), taskpool.ErrNoHandler)
	assert.ErrorIs(t, s.SubmitAfter(ctx, taskpool.Task{Type: "unknown"}, time.Hour), taskpool.ErrNoHandler)
	_, err := s.SubmitWait(ctx, taskpool.Task{Type: "known"})
	require.NoError(t, err)
	assert.Equal(t, "known", <-h.ran)
	assert.EqualValues(t, 1, s.Stats().Submitted)
}

// RetryPolicy.Wait: "its type's Backoff, else p.Backoff, else the
// default; never negative": a Backoff that returns a negative wait, the
// policy's or the type's, gives 0.
func TestAuditRetryPolicyWaitNeverNegative(t *testing.T) {
	t.Parallel()
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("typed", nop, taskpool.WithRetry(2, taskpool.ConstantBackoff(-time.Minute))))
	p := taskpool.RetryPolicy{Registry: reg, Backoff: func(int) time.Duration { return math.MinInt64 }}
	for _, typ := range []string{"typed", "other"} {
		d, err := p.Wait(taskpool.Task{Type: typ}, 1)
		require.NoError(t, err, typ)
		assert.Zero(t, d, typ)
	}
}

// Task.ID: "When it is empty, the scheduler assigns a unique one before
// the task runs": IDs made on the workers (plain tasks, as the handler
// sees them) and off them (for a Future, a delayed task, a retry, a task
// with a unique key), on several workers at once, are all distinct, in
// the handler as in the hook, and a task keeps its ID from run to run.
func TestAuditAssignedIDsAreUnique(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	inHandler := map[string]int{} // ID -> runs
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("t", func(_ context.Context, tk taskpool.Task) error {
		mu.Lock()
		inHandler[tk.ID]++
		mu.Unlock()
		if tk.MaxAttempts == 2 && tk.Attempt == 1 {
			return errors.New("once")
		}
		return nil
	}))
	const perKind = 500
	hooked := make(chan string, 6*perKind)
	s := newStarted(t, reg, taskpool.WithWorkers(4), taskpool.WithQueueSize(8*perKind), taskpool.WithCompletionHook(func(o taskpool.Outcome) {
		hooked <- o.Task.ID
	}))
	ctx := context.Background()
	for i := range perKind {
		require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "t"}))
		require.NoError(t, s.TrySubmit(taskpool.Task{Type: "t"}))
		_, err := s.SubmitFuture(ctx, taskpool.Task{Type: "t"})
		require.NoError(t, err)
		require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{Type: "t"}, 0))
		require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "t", MaxAttempts: 2}))
		require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "t", UniqueKey: fmt.Sprint("k", i)}))
	}
	seen := map[string]bool{}
	for range 6 * perKind {
		select {
		case id := <-hooked:
			require.NotEmpty(t, id)
			require.False(t, seen[id], "ID %q given twice", id)
			seen[id] = true
		case <-time.After(hangAfter):
			t.Fatalf("an outcome is missing\n%s", stacks())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, inHandler, 6*perKind, "one ID per task in the handler")
	twice := 0
	for id, runs := range inHandler {
		require.True(t, seen[id], "the handler saw %q, the hook did not", id)
		require.LessOrEqual(t, runs, 2, id)
		if runs == 2 {
			twice++
		}
	}
	assert.Equal(t, perKind, twice, "each retried task ran twice under one ID")
}

// PeriodicInfo: "Spec is the schedule as text when it says it (a String
// method ...), else empty", and NextRun is the schedule's next
// activation: a Schedule with no String method is listed with an empty
// Spec, its ID, the type of its task and its first activation.
func TestAuditInspectSpecEmptyWithoutString(t *testing.T) {
	t.Parallel()
	clock := taskpooltest.NewClock(epoch)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("t", nop))
	s := newStarted(t, reg, taskpool.WithClock(clock))
	hourly := schedFunc(func(after time.Time) time.Time { return after.Add(time.Hour) })
	require.NoError(t, s.SchedulePeriodic("hourly", hourly, taskpool.Task{Type: "t"}))
	assert.Equal(t, []taskpool.PeriodicInfo{{ID: "hourly", Type: "t", NextRun: epoch.Add(time.Hour)}},
		s.Inspect().Periodic)
}

// Every: "fires every d, counted from the previous activation": an
// activation that the scheduler fires late (here a second) does not move
// the next one, due d after it, not d after the firing. Once activations
// were missed altogether (the scheduler saw the time only after the next
// had passed as well), the next is counted from the time the scheduler
// caught up, as Every's doc says: the missed one is not replayed.
func TestAuditEveryCountsFromThePreviousActivation(t *testing.T) {
	t.Parallel()
	clock := taskpooltest.NewClock(epoch)
	ran := make(chan string, 4)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("t", func(_ context.Context, tk taskpool.Task) error {
		ran <- tk.ID
		return nil
	}))
	s := newStarted(t, reg, taskpool.WithClock(clock))
	require.NoError(t, s.SchedulePeriodic("p", taskpool.Every(time.Minute), taskpool.Task{Type: "t"}))
	ctx, cancel := context.WithTimeout(context.Background(), hangAfter)
	defer cancel()
	receive := func() string {
		t.Helper()
		select {
		case id := <-ran:
			return id
		case <-ctx.Done():
			t.Fatalf("no activation ran\n%s", stacks())
			return ""
		}
	}
	nextRun := func(want time.Time) {
		t.Helper()
		require.True(t, poll(hangAfter, func() bool {
			p := s.Inspect().Periodic
			return len(p) == 1 && p[0].NextRun.Equal(want)
		}), "want the next run at %v: %+v", want, s.Inspect().Periodic)
	}

	require.NoError(t, clock.WaitArmed(ctx, epoch.Add(time.Minute)))
	clock.Advance(61 * time.Second) // a second late
	assert.Equal(t, "p@2026-01-01T00:01:00Z", receive())
	nextRun(epoch.Add(2 * time.Minute))

	require.NoError(t, clock.WaitArmed(ctx, epoch.Add(2*time.Minute)))
	clock.Advance(150 * time.Second) // now 00:03:31: 00:02 is late, 00:03 missed
	assert.Equal(t, "p@2026-01-01T00:02:00Z", receive())
	nextRun(epoch.Add(4*time.Minute + 31*time.Second))
	assert.EqualValues(t, 2, s.Stats().Submitted, "a missed activation was replayed")
}

// PanicError.Error: "taskpool: handler panic: " and the panic value, "the
// stack is left out", for a handler's panic and a Backoff's alike; Unwrap
// gives the value when it is an error.
func TestAuditPanicErrorMessage(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("p", func(context.Context, taskpool.Task) error { panic("at the disco") }))
	require.NoError(t, reg.HandleFunc("e", func(context.Context, taskpool.Task) error { panic(boom) }))
	require.NoError(t, reg.HandleFunc("b", nop, taskpool.WithRetry(2, func(int) time.Duration { panic(42) })))
	s := newStarted(t, reg)
	ctx := context.Background()
	var pe *taskpool.PanicError
	_, err := s.SubmitWait(ctx, taskpool.Task{Type: "p"})
	require.ErrorAs(t, err, &pe)
	assert.EqualError(t, pe, "taskpool: handler panic: at the disco")
	assert.Contains(t, string(pe.Stack), "goroutine", "the stack is kept in Stack")
	_, err = s.SubmitWait(ctx, taskpool.Task{Type: "e"})
	require.ErrorAs(t, err, &pe)
	assert.EqualError(t, pe, "taskpool: handler panic: boom")
	assert.ErrorIs(t, err, boom)
	_, err = s.RetryPolicy().Wait(taskpool.Task{Type: "b"}, 1)
	require.ErrorAs(t, err, &pe)
	assert.EqualError(t, pe, "taskpool: handler panic: 42")
}

// SkipRetry: "errors.Is(result, err) and errors.Is(result, ErrSkipRetry)
// both hold. SkipRetry(nil) is nil." Priority.String: "low", "default"
// or "high", any value below zero being low and any above high (as
// Task.Priority reads them).
func TestAuditSkipRetryAndPriorityString(t *testing.T) {
	t.Parallel()
	base := errors.New("base")
	err := taskpool.SkipRetry(fmt.Errorf("wrapped: %w", base))
	assert.ErrorIs(t, err, base)
	assert.ErrorIs(t, err, taskpool.ErrSkipRetry)
	assert.EqualError(t, err, "wrapped: base")
	assert.False(t, taskpool.Retryable(err))
	assert.NoError(t, taskpool.SkipRetry(nil))
	assert.Nil(t, taskpool.SkipRetry(nil), "an untyped nil, not a typed one")
	for p, want := range map[taskpool.Priority]string{
		-128: "low", taskpool.PriorityLow: "low", taskpool.PriorityDefault: "default",
		taskpool.PriorityHigh: "high", 127: "high",
	} {
		assert.Equal(t, want, p.String(), "%d", p)
	}
}

// auditLimiter lets its first start through and holds every later one
// back an hour.
type auditLimiter struct{ n atomic.Int32 }

func (l *auditLimiter) Reserve(time.Time) time.Duration {
	if l.n.Add(1) == 1 {
		return 0
	}
	return time.Hour
}

// Stats.Delayed: "counts tasks waiting in the timer heap: delayed tasks,
// retries and rate-limited tasks" (a periodic schedule, which waits there
// too, is not a task); Inspection.Delayed lists the same three, each with
// its Reason.
func TestAuditStatsDelayedCountsDelayedRetriesAndRateLimited(t *testing.T) {
	t.Parallel()
	clock := taskpooltest.NewClock(epoch)
	failed := make(chan struct{})
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("t", nop))
	require.NoError(t, reg.HandleFunc("rated", nop, taskpool.WithRateLimit(&auditLimiter{})))
	require.NoError(t, reg.HandleFunc("fail", func(context.Context, taskpool.Task) error {
		close(failed)
		return errors.New("once")
	}, taskpool.WithRetry(2, taskpool.ConstantBackoff(time.Hour))))
	s := newStarted(t, reg, taskpool.WithClock(clock))
	ctx := context.Background()
	require.NoError(t, s.SchedulePeriodic("p", taskpool.Every(time.Hour), taskpool.Task{Type: "t"}))
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "delayed", Type: "t"}, time.Hour))
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "retry", Type: "fail"}))
	<-failed
	_, err := s.SubmitWait(ctx, taskpool.Task{ID: "first", Type: "rated"})
	require.NoError(t, err)
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "held", Type: "rated"}))
	reasons := func() map[string]string {
		m := map[string]string{}
		for _, d := range s.Inspect().Delayed {
			m[d.ID] = d.Reason
		}
		return m
	}
	want := map[string]string{"delayed": "delayed", "retry": "retry", "held": "rate limited"}
	require.True(t, poll(hangAfter, func() bool { return len(reasons()) == 3 }), "%v", reasons())
	assert.Equal(t, want, reasons())
	assert.Equal(t, 3, s.Stats().Delayed)
	assert.Len(t, s.Inspect().Periodic, 1)
	// Stop would wait for the held task's turn, an hour of the fake clock.
	require.NoError(t, s.Cancel("held"))
}

// WithoutPanicRecovery: "lets a panicking handler crash the process
// instead of turning the panic into a *PanicError". The test runs itself
// in a child process, whose handler panics: the child dies of the panic,
// with its value and the handler's frame on stderr, before anything after
// the submission runs.
func TestAuditWithoutPanicRecoveryCrashesTheProcess(t *testing.T) {
	if os.Getenv("TASKPOOL_AUDIT_CRASH") == "1" {
		reg := taskpool.NewRegistry()
		_ = reg.HandleFunc("crash", func(context.Context, taskpool.Task) error { panic("audit: crash the process") })
		s, err := taskpool.New(reg, taskpool.WithoutPanicRecovery())
		if err != nil {
			os.Exit(3)
		}
		_ = s.Start()
		_, _ = s.SubmitWait(context.Background(), taskpool.Task{Type: "crash"})
		fmt.Println("audit: the process survived")
		os.Exit(0)
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), hangAfter)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestAuditWithoutPanicRecoveryCrashesTheProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TASKPOOL_AUDIT_CRASH=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the child did not crash:\n%s", out)
	assert.Equal(t, 2, exit.ExitCode(), "a panic's exit code:\n%s", out)
	assert.Contains(t, string(out), "panic: audit: crash the process")
	assert.NotContains(t, string(out), "audit: the process survived")
}

// slowPanic is a panic value whose Error, which the runtime calls to print
// it once every deferred call of the dying goroutine has run, waits for
// done (or a second): a window between the worker's deferred calls and
// the crash, in which a wrongly settled task's Future completes.
type slowPanic struct{ done chan struct{} }

func (p slowPanic) Error() string {
	select {
	case <-p.done:
	case <-time.After(time.Second):
	}
	return "audit: slow panic"
}

// WithoutPanicRecovery, where features meet: the task whose handler
// panics is not reported at all, on a plain task or one with a timeout
// (the two paths to the handler). It was reported as if its handler had
// called runtime.Goexit, by the goroutine that replaces the dying worker,
// so that SubmitWait returned ErrHandlerExited and the code after it ran
// before the crash (a 1-in-20 failure of the test above; made certain
// here by a panic value that is slow to print). A panic(nil) under
// GODEBUG=panicnil=1, which recover stops and cannot tell from a Goexit,
// crashes the process too, and does not pass for a success.
func TestAuditWithoutPanicRecoveryReportsNothingBeforeTheCrash(t *testing.T) {
	if mode := os.Getenv("TASKPOOL_AUDIT_SLOW_CRASH"); mode != "" {
		done := make(chan struct{})
		reg := taskpool.NewRegistry()
		_ = reg.HandleFunc("crash", func(context.Context, taskpool.Task) error {
			if strings.HasPrefix(mode, "nil") {
				panic(nil) // recovered as nil under GODEBUG=panicnil=1
			}
			panic(slowPanic{done})
		})
		opts := []taskpool.Option{taskpool.WithoutPanicRecovery()}
		if strings.HasSuffix(mode, "timeout") {
			opts = append(opts, taskpool.WithTaskTimeout(time.Hour))
		}
		s, err := taskpool.New(reg, opts...)
		if err != nil {
			os.Exit(3)
		}
		_ = s.Start()
		_, err = s.SubmitWait(context.Background(), taskpool.Task{Type: "crash"})
		close(done)
		fmt.Printf("audit: SubmitWait returned %v\n", err)
		os.Exit(0)
	}
	t.Parallel()
	for _, mode := range []string{"plain", "timeout", "nilplain", "niltimeout"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), hangAfter)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestAuditWithoutPanicRecoveryReportsNothingBeforeTheCrash$", "-test.count=1")
			cmd.Env = append(os.Environ(), "TASKPOOL_AUDIT_SLOW_CRASH="+mode)
			want := "panic: audit: slow panic"
			if strings.HasPrefix(mode, "nil") {
				cmd.Env = append(cmd.Env, "GODEBUG=panicnil=1")
				want = "panic: nil"
			}
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "the child did not crash:\n%s", out)
			assert.Equal(t, 2, exit.ExitCode(), "a panic's exit code:\n%s", out)
			assert.Contains(t, string(out), want)
			assert.NotContains(t, string(out), "SubmitWait returned")
		})
	}
}

// SubmitWait: "ctx bounds the wait for admission and for the outcome:
// when it ends first, SubmitWait returns ctx's error", and the task goes
// on only if it was accepted by then: one whose ctx had ended already, or
// ended while it waited for room on a full queue, is not submitted (it
// never runs and is not counted); one accepted goes on
// (TestPromiseSubmitWaitCtxEndsWhileWaitingTaskGoesOn).
func TestAuditSubmitWaitCtxEndingBeforeAdmissionSubmitsNothing(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	release := make(chan struct{})
	var mu sync.Mutex
	ran := map[string]bool{}
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("block", func(context.Context, taskpool.Task) error {
		close(started)
		<-release
		return nil
	}))
	require.NoError(t, reg.HandleFunc("t", func(_ context.Context, tk taskpool.Task) error {
		mu.Lock()
		ran[tk.ID] = true
		mu.Unlock()
		return nil
	}))
	s := newStarted(t, reg, taskpool.WithWorkers(1), taskpool.WithQueueSize(1))
	bg := context.Background()

	ended, cancel := context.WithCancel(bg)
	cancel()
	_, err := s.SubmitWait(ended, taskpool.Task{ID: "ended", Type: "t"})
	require.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, s.Stats().Submitted, "a ctx ended before: nothing submitted")

	require.NoError(t, s.Submit(bg, taskpool.Task{Type: "block"}))
	<-started
	queued := 0
	for ; queued < 1000; queued++ { // fill the queue (and the worker's batch)
		if err := s.TrySubmit(taskpool.Task{ID: fmt.Sprint("q", queued), Type: "t"}); err != nil {
			require.ErrorIs(t, err, taskpool.ErrQueueFull)
			break
		}
	}
	require.Less(t, queued, 1000, "the queue never filled")
	short, cancel := context.WithTimeout(bg, 20*time.Millisecond)
	defer cancel()
	_, err = s.SubmitWait(short, taskpool.Task{ID: "blocked", Type: "t"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.EqualValues(t, 1+queued, s.Stats().Submitted, "ended waiting for room: not submitted")

	close(release)
	require.NoError(t, stopBounded(t, s, hangAfter))
	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, ran, queued)
	assert.False(t, ran["ended"])
	assert.False(t, ran["blocked"])
}
