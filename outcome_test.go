package taskpool_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// statusOutcomes collects the completion hook's outcomes and tells each
// one's ID on seen.
type statusOutcomes struct {
	mu   sync.Mutex
	byID map[string]taskpool.Outcome
	seen chan string
}

func (o *statusOutcomes) hook(out taskpool.Outcome) {
	o.mu.Lock()
	o.byID[out.Task.ID] = out
	o.mu.Unlock()
	o.seen <- out.Task.ID
}

func (o *statusOutcomes) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-o.seen:
		case <-time.After(hangAfter):
			t.Fatalf("an outcome missing after %v\n%s", hangAfter, stacks())
		}
	}
}

// Outcome.Status: "how the task ended, as the scheduler counts it in
// Stats". A mix of tasks that end every way, by every path that settles
// one (the plain fast path with a hook, a record, a unique key, a
// concurrency limit, retries, a panic, runtime.Goexit, SkipRetry,
// Cancel of a delayed and of a queued task, a task, a delayed task and a
// retry that Stop's deadline leaves unrun, and a run whose handler returns
// its context's cause after that deadline): each Outcome the completion
// hook, the dead-letter hook, the Futures and DeadLetters see has the
// status expected, and the hook's count of each status is the Stats
// counter of that name.
func TestOutcomeStatusAgreesWithStats(t *testing.T) {
	t.Parallel()
	outs := &statusOutcomes{byID: map[string]taskpool.Outcome{}, seen: make(chan string, 64)}
	var deadMu sync.Mutex
	var dead []taskpool.Outcome
	started := make(chan struct{})
	failedOnce := make(chan struct{})
	reg := taskpool.NewRegistry()
	must := func(err error) { require.NoError(t, err) }
	must(reg.HandleFunc("ok", nop))
	must(reg.HandleFunc("limited", nop, taskpool.WithConcurrencyLimit(1)))
	must(reg.HandleFunc("fail", func(context.Context, taskpool.Task) error { return errors.New("fails") },
		taskpool.WithRetry(2, taskpool.ConstantBackoff(time.Millisecond))))
	must(reg.HandleFunc("fail-later", func(context.Context, taskpool.Task) error {
		close(failedOnce)
		return errors.New("fails, retried in an hour")
	}, taskpool.WithRetry(2, taskpool.ConstantBackoff(time.Hour))))
	must(reg.HandleFunc("panic", func(context.Context, taskpool.Task) error { panic("boom") }))
	must(reg.HandleFunc("exit", func(context.Context, taskpool.Task) error { runtime.Goexit(); return nil }))
	must(reg.HandleFunc("skip", func(context.Context, taskpool.Task) error {
		return taskpool.SkipRetry(errors.New("final"))
	}, taskpool.WithRetry(3, nil)))
	must(reg.HandleFunc("block", func(ctx context.Context, _ taskpool.Task) error {
		close(started)
		<-ctx.Done()
		return context.Cause(ctx)
	}))
	s, err := taskpool.New(reg, taskpool.WithWorkers(1), taskpool.WithCompletionHook(outs.hook),
		taskpool.WithDeadLetters(16, func(o taskpool.Outcome) {
			deadMu.Lock()
			defer deadMu.Unlock()
			dead = append(dead, o)
		}))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	ctx := context.Background()
	futures := map[string]*taskpool.Future{}
	future := func(tk taskpool.Task) {
		f, err := s.SubmitFuture(ctx, tk)
		require.NoError(t, err)
		futures[tk.ID] = f
	}

	// One worker: the retry of fail-later is filed before the worker
	// takes the next task.
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "fail-later", Type: "fail-later"}))
	<-failedOnce
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "ok", Type: "ok"}))
	future(taskpool.Task{ID: "ok-future", Type: "ok"})
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "ok-unique", Type: "ok", UniqueKey: "k"}))
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "limited", Type: "limited"}))
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "fail", Type: "fail"}))
	future(taskpool.Task{ID: "fail-future", Type: "fail"})
	future(taskpool.Task{ID: "panic", Type: "panic"})
	future(taskpool.Task{ID: "exit", Type: "exit"})
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "skip", Type: "skip"}))
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "canceled", Type: "ok"}, time.Hour))
	require.NoError(t, s.Cancel("canceled"))
	outs.wait(t, 10)

	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "delayed", Type: "ok"}, time.Hour))
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "cause", Type: "block"}))
	<-started
	future(taskpool.Task{ID: "never", Type: "ok"})
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "never-unique", Type: "ok", UniqueKey: "k2"}))
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "never-redelivered", Type: "ok", Attempt: 3}))
	future(taskpool.Task{ID: "canceled-queued", Type: "ok"})
	require.NoError(t, s.Cancel("canceled-queued"))
	expired, cancel := context.WithCancel(ctx)
	cancel()
	var se *taskpool.StopError
	require.ErrorAs(t, s.Stop(expired), &se)
	outs.wait(t, 7)

	want := map[string]taskpool.OutcomeStatus{
		"ok": taskpool.OutcomeSucceeded, "ok-future": taskpool.OutcomeSucceeded,
		"ok-unique": taskpool.OutcomeSucceeded, "limited": taskpool.OutcomeSucceeded,
		"fail": taskpool.OutcomeFailed, "fail-future": taskpool.OutcomeFailed,
		"panic": taskpool.OutcomeFailed, "exit": taskpool.OutcomeFailed, "skip": taskpool.OutcomeFailed,
		"cause":    taskpool.OutcomeFailed,
		"canceled": taskpool.OutcomeCanceled, "canceled-queued": taskpool.OutcomeCanceled,
		"fail-later": taskpool.OutcomeNotRun, "delayed": taskpool.OutcomeNotRun,
		"never": taskpool.OutcomeNotRun, "never-unique": taskpool.OutcomeNotRun,
		"never-redelivered": taskpool.OutcomeNotRun,
	}
	outs.mu.Lock()
	defer outs.mu.Unlock()
	got := map[string]taskpool.OutcomeStatus{}
	counts := map[taskpool.OutcomeStatus]uint64{}
	for id, o := range outs.byID {
		got[id] = o.Status
		counts[o.Status]++
	}
	assert.Equal(t, want, got)
	assert.ErrorIs(t, outs.byID["cause"].Err, taskpool.ErrSchedulerClosed, "failed with the cause, not unrun")
	for id, f := range futures {
		o, ok := f.Outcome()
		require.True(t, ok, id)
		assert.Equal(t, want[id], o.Status, "the Future of %s", id)
	}
	st := s.Stats()
	assert.Equal(t, map[taskpool.OutcomeStatus]uint64{
		taskpool.OutcomeSucceeded: st.Succeeded, taskpool.OutcomeFailed: st.Failed,
		taskpool.OutcomeCanceled: st.Canceled, taskpool.OutcomeNotRun: st.NotRun,
	}, counts, "the hook's statuses are Stats' counts")
	deadMu.Lock()
	defer deadMu.Unlock()
	assert.Len(t, dead, int(st.Failed), "a dead letter per failure")
	for _, o := range append(dead, s.DeadLetters()...) {
		assert.Equal(t, taskpool.OutcomeFailed, o.Status, o.Task.ID)
	}
}

// OutcomeStatus.String names the four statuses as the OpenTelemetry
// integration's taskpool.task.outcome values, and any other value,
// the zero one an Outcome built by hand has among them, by its number.
func TestOutcomeStatusString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give taskpool.OutcomeStatus
		want string
	}{
		{taskpool.OutcomeSucceeded, "succeeded"},
		{taskpool.OutcomeFailed, "failed"},
		{taskpool.OutcomeCanceled, "canceled"},
		{taskpool.OutcomeNotRun, "not_run"},
		{taskpool.Outcome{}.Status, "status(0)"},
		{taskpool.OutcomeNotRun + 1, "status(5)"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.give.String())
	}
}
