package taskpool_test

// Promises of Stop, Cancel, the completion hook and Outcome that no
// other test covered; each test is named after the promise it checks.

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/taskpooltest"
)

// Stop: "a later call waits for the same shutdown". With ctx ending first,
// the call that gives up returns the *StopError; the others return nil
// once the shutdown is over.
func TestPromiseLaterStopWaitsForSameShutdown(t *testing.T) {
	t.Parallel()
	running := make(chan struct{})
	release := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"block": func(ctx context.Context, _ taskpool.Task) error {
			close(running)
			<-release // ignores its context: Stop must wait for it
			return nil
		},
		"ok": nop,
	})
	s, err := taskpool.New(reg, taskpool.WithWorkers(1), taskpool.WithBatchSize(1))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "block"}))
	<-running
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "ok"}))

	first := startStop(t, s, context.Background())
	second := make(chan error, 1)
	go func() { second <- s.Stop(context.Background()) }()
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	third := make(chan error, 2)
	go func() { third <- s.Stop(expired) }()
	go func() { third <- s.Stop(expired) }()
	// Not a wait for something to happen: a check that nothing returns
	// while the handler runs.
	select {
	case err := <-first:
		t.Fatalf("first Stop returned %v while a handler runs", err)
	case err := <-second:
		t.Fatalf("second Stop returned %v while a handler runs", err)
	case err := <-third:
		t.Fatalf("a Stop with an expired ctx returned %v while a handler runs", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	assert.NoError(t, awaitStop(t, first))
	assert.NoError(t, awaitStop(t, second))
	var stopErrs int
	for range 2 {
		err := awaitStop(t, third)
		if err == nil {
			continue
		}
		stopErrs++
		var se *taskpool.StopError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, 1, se.NotRun, "the queued task was left unrun")
		assert.ErrorIs(t, err, taskpool.ErrSchedulerClosed)
		assert.ErrorIs(t, err, context.Canceled)
	}
	assert.Equal(t, 1, stopErrs, "exactly one call gives up the shutdown and reports it")
	assert.NoError(t, s.Stop(expired), "after the shutdown, Stop returns nil")
}

// WithCompletionHook: "By the time fn runs, the outcome is counted in
// Stats ...; its Future is completed after fn returns."
func TestPromiseCompletionHookRunsBeforeFuture(t *testing.T) {
	t.Parallel()
	inHook := make(chan taskpool.Outcome)
	release := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{"ok": nop})
	s := start(t, reg, taskpool.WithCompletionHook(func(o taskpool.Outcome) {
		inHook <- o
		<-release
	}))
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "h", Type: "ok"})
	require.NoError(t, err)
	o := <-inHook
	assert.Equal(t, "h", o.Task.ID)
	assert.EqualValues(t, 1, s.Stats().Succeeded, "counted before the hook runs")
	_, done := f.Outcome()
	assert.False(t, done, "the Future is completed only after the hook returns")
	select {
	case <-f.Done():
		t.Fatal("Future done while the hook runs")
	default:
	}
	close(release)
	out := waitFuture(t, f, "after the hook")
	assert.NoError(t, out.Err)
}

// Cancel: "A task that is running cannot be cancelled this way": Cancel
// returns ErrTaskNotFound and the task runs to its own outcome.
func TestPromiseCancelOfRunningTaskIsNotFound(t *testing.T) {
	t.Parallel()
	running := make(chan struct{})
	release := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"block": func(context.Context, taskpool.Task) error { close(running); <-release; return nil },
	})
	got := newOutcomes()
	s := start(t, reg, taskpool.WithCompletionHook(got.hook))
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "r", Type: "block"})
	require.NoError(t, err)
	<-running
	assert.ErrorIs(t, s.Cancel("r"), taskpool.ErrTaskNotFound)
	close(release)
	out := waitFuture(t, f, "the running task")
	assert.NoError(t, out.Err)
	assert.Zero(t, s.Stats().Canceled)
	assert.ErrorIs(t, s.Cancel("r"), taskpool.ErrTaskNotFound, "nor once it is done")
}

// Outcome.Attempts: "the number of times the handler ran: 0 for a task
// that never ran" — for a cancelled delayed task and one Stop reports
// unrun; a retry cancelled after one run counts that run.
func TestPromiseOutcomeAttemptsCountRuns(t *testing.T) {
	t.Parallel()
	clock := taskpooltest.NewClock(epoch)
	var runs atomic.Int32
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"job":  nop,
		"fail": func(context.Context, taskpool.Task) error { runs.Add(1); return errors.New("boom") },
	})
	got := newOutcomes()
	s, err := taskpool.New(reg, taskpool.WithClock(clock), taskpool.WithCompletionHook(got.hook),
		taskpool.WithRetry(3, taskpool.ConstantBackoff(time.Hour)))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	ctx := context.Background()
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "canceled", Type: "job"}, time.Hour))
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "unrun", Type: "job"}, time.Hour))
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "retry", Type: "fail"}))
	require.Eventually(t, func() bool { return runs.Load() == 1 && s.Stats().Delayed == 3 }, waitFor, time.Millisecond)
	require.NoError(t, s.Cancel("canceled"))
	require.NoError(t, s.Cancel("retry"))
	require.NoError(t, s.Stop(ctx))

	want := map[string]struct {
		attempts int
		err      error
	}{
		"canceled": {0, taskpool.ErrCanceled},
		"unrun":    {0, taskpool.ErrSchedulerClosed},
		"retry":    {1, taskpool.ErrCanceled},
	}
	for id, w := range want {
		require.Equal(t, 1, got.count(id), id)
		o := got.byID[id][0]
		assert.Equal(t, w.attempts, o.Attempts, id)
		assert.ErrorIs(t, o.Err, w.err, id)
	}
}
