package taskpool_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// A task whose run fails while a graceful Stop runs, with attempts left,
// is reported not run (DelayedReport): the completion hook and its Future
// see the same Outcome, whether Stop's flush of the timer heap came
// before the retry was filed or after: Attempts 1, and the Task with the
// number of the run that never came, 2, as a waiting retry that Stop
// reports has. (Filed after the flush, the Future said 2 and the hook 1;
// filed before, both said 2.)
func TestReviewARetryReportedAtStopFutureAgreesWithHook(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	started := make(chan struct{})
	release := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"flaky": func(_ context.Context, tk taskpool.Task) error {
			if tk.Attempt == 1 {
				close(started)
				<-release
			}
			return boom
		},
	})
	got := newOutcomes()
	s, err := taskpool.New(reg, taskpool.WithRetry(3, taskpool.ConstantBackoff(time.Hour)),
		taskpool.WithCompletionHook(got.hook))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "r", Type: "flaky"})
	require.NoError(t, err)
	<-started
	stopped := startStop(t, s, context.Background())
	close(release)
	require.NoError(t, awaitStop(t, stopped))
	out := waitFuture(t, f, "r")
	require.Equal(t, 1, got.count("r"))
	hook := got.first("r")
	assert.Equal(t, taskpool.OutcomeNotRun, out.Status)
	assert.Equal(t, 1, out.Attempts)
	assert.Equal(t, hook.Task.Attempt, out.Task.Attempt, "Task.Attempt: hook vs Future")
	assert.Equal(t, 2, out.Task.Attempt)
}

// Tasks that Stop's deadline leaves unrun are reported alike whether they
// were submitted with an ID or without: Task.Attempt is 1, the number of
// the run that never came (as for a delayed task, or one with an ID), and
// Attempts is 0.
func TestReviewANotRunPlainTaskLikeNamed(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"block": func(ctx context.Context, _ taskpool.Task) error {
			close(started)
			<-ctx.Done()
			return nil
		},
		"ok": nop,
	})
	got := newOutcomes()
	s, err := taskpool.New(reg, taskpool.WithWorkers(1), taskpool.WithCompletionHook(got.hook))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	ctx := context.Background()
	require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "block"}))
	<-started
	require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "ok", Params: "plain"}))
	require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "ok", Params: "named", ID: "n"}))
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{Type: "ok", Params: "delayed"}, time.Hour))
	ended, cancel := context.WithCancel(ctx)
	cancel()
	var se *taskpool.StopError
	require.ErrorAs(t, stopWithin(t, s, ended), &se)
	assert.Equal(t, 3, se.NotRun)
	byParams := map[any]taskpool.Outcome{}
	for _, out := range got.snapshot() {
		byParams[out.Task.Params] = out
	}
	for _, p := range []string{"plain", "named", "delayed"} {
		out, ok := byParams[p]
		require.True(t, ok, p)
		assert.Equal(t, taskpool.OutcomeNotRun, out.Status, p)
		assert.Equal(t, 0, out.Attempts, p)
		assert.Equal(t, 1, out.Task.Attempt, p)
		assert.NotEmpty(t, out.Task.ID, p)
	}
}

// Stop waits for the scheduler's goroutines, so a handler (or hook) that
// wants the scheduler stopped starts Stop in a goroutine of its own, as
// Stop's doc says (called on the worker itself, it waits for its caller
// forever, whatever its ctx). Started so, Stop runs the rest and returns
// nil, and the handler's own task gets its outcome.
func TestReviewAStopStartedFromAHandler(t *testing.T) {
	t.Parallel()
	var s *taskpool.Scheduler
	stopped := make(chan error, 1)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"stop": func(context.Context, taskpool.Task) error {
			go func() { stopped <- s.Stop(context.Background()) }()
			return nil
		},
		"ok": nop,
	})
	got := newOutcomes()
	var err error
	s, err = taskpool.New(reg, taskpool.WithWorkers(1), taskpool.WithCompletionHook(got.hook))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	require.NoError(t, s.Pause())
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "stop", Type: "stop"})
	require.NoError(t, err)
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{ID: "after", Type: "ok"}))
	require.NoError(t, s.Resume())
	require.NoError(t, awaitStop(t, stopped))
	assert.Equal(t, taskpool.OutcomeSucceeded, waitFuture(t, f, "stop").Status)
	assert.Equal(t, 1, got.count("after"))
	st := s.Stats()
	assert.Equal(t, st.Submitted, st.Succeeded)
}

// A dead-letter hook and a completion hook that both call runtime.Goexit
// (a require in each, in a test) end only their calls: the task's Future
// is completed all the same. (It was completed after the completion hook,
// in the defer that ran it, which the second Goexit ended: the Future
// never completed.)
func TestReviewABothHooksGoexitStillCompleteTheFuture(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"fail": func(context.Context, taskpool.Task) error { return boom },
		"exit": func(context.Context, taskpool.Task) error { runtime.Goexit(); return nil },
	})
	var dead, done atomic.Int32
	s, err := taskpool.New(reg,
		taskpool.WithDeadLetters(4, func(taskpool.Outcome) { dead.Add(1); runtime.Goexit() }),
		taskpool.WithCompletionHook(func(taskpool.Outcome) { done.Add(1); runtime.Goexit() }))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	ff, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "fail"})
	require.NoError(t, err)
	fe, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "exit"})
	require.NoError(t, err)
	out := waitFuture(t, ff, "fail")
	assert.Equal(t, taskpool.OutcomeFailed, out.Status)
	assert.ErrorIs(t, out.Err, boom)
	out = waitFuture(t, fe, "exit")
	assert.Equal(t, taskpool.OutcomeFailed, out.Status)
	assert.ErrorIs(t, out.Err, taskpool.ErrHandlerExited)
	require.NoError(t, stopWithin(t, s, context.Background()))
	assert.EqualValues(t, 2, dead.Load())
	assert.EqualValues(t, 2, done.Load())
	assert.Len(t, s.DeadLetters(), 2)
	assert.EqualValues(t, 2, s.Stats().Failed)
}

// A handler that panics with an error whose Unwrap panics (a typed nil
// pointer) fails its task with a *PanicError that keeps the value, as
// one that returns such an error does (TestHandlerErrorWhoseUnwrapPanics):
// with attempts left, the retry policy walked the chain with errors.Is
// outside any recover, and the panic crashed the process. The hook can
// walk the outcome's error too.
func TestReviewAPanicWithAnErrorWhoseUnwrapPanics(t *testing.T) {
	inChild(t, func(t *testing.T) {
		var runs atomic.Int32
		h := taskpool.HandlerFunc(func(context.Context, taskpool.Task) error {
			runs.Add(1)
			var e *unwrapPanicsError
			panic(e)
		})
		var hookSkip atomic.Bool
		s, err := taskpool.New(h, taskpool.WithRetry(2, taskpool.ConstantBackoff(0)),
			taskpool.WithCompletionHook(func(out taskpool.Outcome) {
				hookSkip.Store(errors.Is(out.Err, taskpool.ErrSkipRetry))
			}))
		require.NoError(t, err)
		require.NoError(t, s.Start())
		_, err = s.SubmitWait(context.Background(), taskpool.Task{ID: "x", Type: "t"})
		var pe *taskpool.PanicError
		require.ErrorAs(t, err, &pe)
		assert.IsType(t, (*unwrapPanicsError)(nil), pe.Value)
		assert.Nil(t, pe.Unwrap())
		assert.False(t, hookSkip.Load())
		require.NoError(t, stopWithin(t, s, context.Background()))
		assert.EqualValues(t, 2, runs.Load(), "a panic is retried")
		st := s.Stats()
		assert.EqualValues(t, 2, st.Panicked)
		assert.EqualValues(t, 1, st.Failed)
	})
}

// A panic with an ordinary error still unwraps to it.
func TestReviewAPanicErrorUnwrapsAnOrdinaryError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	h := taskpool.HandlerFunc(func(context.Context, taskpool.Task) error { panic(boom) })
	s, err := taskpool.New(h)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	_, err = s.SubmitWait(context.Background(), taskpool.Task{Type: "t"})
	assert.ErrorIs(t, err, boom)
	require.NoError(t, stopWithin(t, s, context.Background()))
}

// The context of a handler that ran under a timeout is cancelled once the
// run is over, however it ended: one that called runtime.Goexit too
// (invoke cancelled it only when the handler returned, so each such run
// left its context, and its timer, to live until the timeout).
func TestReviewATimeoutContextReleasedAfterGoexit(t *testing.T) {
	t.Parallel()
	ctxs := make(chan context.Context, 2)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"exit": func(ctx context.Context, _ taskpool.Task) error {
			ctxs <- ctx
			runtime.Goexit()
			return nil
		},
		"ok": func(ctx context.Context, _ taskpool.Task) error {
			ctxs <- ctx
			return nil
		},
	})
	s := start(t, reg, taskpool.WithTaskTimeout(time.Hour))
	for _, typ := range []string{"exit", "ok"} {
		_, err := s.SubmitWait(context.Background(), taskpool.Task{Type: typ, ID: typ})
		if typ == "exit" {
			require.ErrorIs(t, err, taskpool.ErrHandlerExited)
		} else {
			require.NoError(t, err)
		}
		ctx := <-ctxs
		_, ok := ctx.Deadline()
		require.True(t, ok, typ)
		assert.ErrorIs(t, ctx.Err(), context.Canceled, "%s: the run's context once it is over", typ)
	}
}

// The same past Stop's deadline: a run that fails once its context is
// cancelled, with attempts left, is reported not run with the number of
// the attempt that never came, in the hook and the Future alike.
func TestReviewARetryReportedAtTheDeadlineFutureAgreesWithHook(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"block": func(ctx context.Context, _ taskpool.Task) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		},
	})
	got := newOutcomes()
	s, err := taskpool.New(reg, taskpool.WithRetry(3, taskpool.ConstantBackoff(0)),
		taskpool.WithCompletionHook(got.hook))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "b", Type: "block"})
	require.NoError(t, err)
	<-started
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	var se *taskpool.StopError
	require.ErrorAs(t, stopWithin(t, s, ended), &se)
	assert.Equal(t, 1, se.NotRun)
	out := waitFuture(t, f, "b")
	require.Equal(t, 1, got.count("b"))
	hook := got.first("b")
	assert.Equal(t, taskpool.OutcomeNotRun, out.Status)
	assert.ErrorIs(t, out.Err, taskpool.ErrSchedulerClosed)
	assert.Equal(t, 1, out.Attempts)
	assert.Equal(t, 2, out.Task.Attempt)
	assert.Equal(t, hook.Task.Attempt, out.Task.Attempt, "Task.Attempt: hook vs Future")
	assert.Equal(t, hook.Attempts, out.Attempts)
}

// WithQueueSize: a task removed by Cancel while queued keeps its place in
// its queue, and counts against the bound, until the dispatcher hands it
// out and its worker passes over it; Stats.Queued no longer counts it.
// While the scheduler is paused nothing is handed out: after Cancel of
// every queued task TrySubmit still says ErrQueueFull, and after Resume
// the room comes back. (A room freed at Cancel would be freed again by a
// task already handed to a worker, which the bound does not count.)
func TestReviewACancelledTaskKeepsItsQueueRoomUntilHandedOut(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{"ok": nop})
	s := start(t, reg, taskpool.WithWorkers(1), taskpool.WithQueueSize(4), taskpool.WithBatchSize(1))
	require.NoError(t, s.Pause())
	var ids []string
	for i := range 100 {
		id := fmt.Sprint("t", i)
		if err := s.TrySubmit(taskpool.Task{ID: id, Type: "ok"}); err != nil {
			require.ErrorIs(t, err, taskpool.ErrQueueFull)
			break
		}
		ids = append(ids, id)
	}
	require.NotEmpty(t, ids)
	for _, id := range ids {
		require.NoError(t, s.Cancel(id))
	}
	assert.Zero(t, s.Stats().Queued)
	assert.ErrorIs(t, s.TrySubmit(taskpool.Task{Type: "ok"}), taskpool.ErrQueueFull, "the cancelled tasks' places, while paused")
	require.NoError(t, s.Resume())
	deadline := time.Now().Add(hangAfter)
	for s.TrySubmit(taskpool.Task{Type: "ok"}) != nil {
		require.True(t, time.Now().Before(deadline), "no room after Resume")
		runtime.Gosched()
	}
}

// reviewABlockedKeySubmitter is a goroutine parked in Submit, found by
// name in the stacks.
func reviewABlockedKeySubmitter(ctx context.Context, s *taskpool.Scheduler, done chan<- error) {
	done <- s.Submit(ctx, taskpool.Task{Type: "ok", UniqueKey: "k"})
}

// A UniqueKey is taken from the moment Submit checks it, while Submit
// waits for room in a full queue as well: a duplicate is refused then,
// though the first task is not accepted yet, and it is free again when
// that Submit fails (its ctx ended). Task.UniqueKey's doc said only
// "queued, delayed or running".
func TestReviewAUniqueKeyTakenWhileSubmitBlocks(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{"ok": nop})
	s := start(t, reg, taskpool.WithWorkers(1), taskpool.WithQueueSize(1), taskpool.WithBatchSize(1))
	require.NoError(t, s.Pause())
	for {
		if err := s.TrySubmit(taskpool.Task{Type: "ok"}); err != nil {
			require.ErrorIs(t, err, taskpool.ErrQueueFull)
			break
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go reviewABlockedKeySubmitter(ctx, s, done)
	require.True(t, poll(hangAfter, func() bool {
		return parked("reviewABlockedKeySubmitter", "(*Scheduler).Submit") == 1
	}), "the Submit blocks")
	dup := taskpool.Task{Type: "ok", UniqueKey: "k", Priority: taskpool.PriorityHigh}
	require.ErrorIs(t, s.TrySubmit(dup), taskpool.ErrDuplicateTask)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.NoError(t, s.TrySubmit(dup), "the key is free once that Submit failed")
	require.NoError(t, s.Resume())
}
