package taskpool_test

// Tests of the 25th review: promises where features meet. Each of the
// first four failed on the code it was written against (b5c6453).

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// Cancel: "when Cancel returns nil ... its unique key released, before
// Cancel returns". With WithUniqueTTL the key of a cancelled task was kept
// for the TTL, so a task cancelled to be submitted again (a reminder moved
// to another time) could not be, for as long as the TTL.
func TestReview25CancelFreesUniqueKeyUnderTTL(t *testing.T) {
	reg := registry(t, map[string]taskpool.HandlerFunc{"ok": nop})
	s := newStarted(t, reg, taskpool.WithUniqueTTL(time.Hour), taskpool.WithWorkers(1))
	ctx := context.Background()

	// Delayed.
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "d1", Type: "ok", UniqueKey: "kd"}, time.Hour))
	require.NoError(t, s.Cancel("d1"))
	assert.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "d2", Type: "ok", UniqueKey: "kd"}, time.Hour),
		"the key of a cancelled delayed task is free when Cancel returns")

	// Queued (held by a Pause, so that no worker starts it).
	require.NoError(t, s.Pause())
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "q1", Type: "ok", UniqueKey: "kq"}))
	require.NoError(t, s.Cancel("q1"))
	assert.NoError(t, s.TrySubmit(taskpool.Task{ID: "q2", Type: "ok", UniqueKey: "kq"}),
		"the key of a cancelled queued task is free when Cancel returns")
	require.NoError(t, s.Resume())

	// The TTL still holds for a task that ran.
	f, err := s.SubmitFuture(ctx, taskpool.Task{ID: "r1", Type: "ok", UniqueKey: "kr"})
	require.NoError(t, err)
	waitFuture(t, f, "r1")
	assert.ErrorIs(t, s.TrySubmit(taskpool.Task{Type: "ok", UniqueKey: "kr"}), taskpool.ErrDuplicateTask,
		"within the TTL after a run")
}

// StopError: "returned by Stop when its context ended before every
// accepted task had run"; NotRun: "the number of accepted tasks that never
// started". A Stop whose ctx had ended, on a scheduler with nothing left
// to run, raced the shutdown goroutine and usually returned a *StopError
// with NotRun 0 ("0 accepted tasks not run"), and sometimes nil.
func TestReview25StopWithEndedCtxAndNothingLeftReturnsNil(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	reg := registry(t, map[string]taskpool.HandlerFunc{"ok": nop})
	for i := range 20 {
		s, err := taskpool.New(reg, taskpool.WithWorkers(2))
		require.NoError(t, err)
		require.NoError(t, s.Start())
		if i%2 == 1 {
			// Some tasks that have all run by the time Stop is called.
			for range 10 {
				f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "ok"})
				require.NoError(t, err)
				waitFuture(t, f, "ok")
			}
		}
		require.NoError(t, stopWithin(t, s, ended), "round %d", i)
		st := s.Stats()
		assert.Zero(t, st.NotRun)
		assert.Equal(t, st.Submitted, st.Succeeded)
	}
}

// The README: "A panic in ... a Backoff ... is logged and contained;
// runtime.Goexit there ... ends only that call". A Backoff that panics
// ends the retries and the outcome is the handler's error; one that called
// Goexit made the outcome ErrHandlerExited, which reports "a handler that
// called runtime.Goexit", though the handler had returned its error.
func TestReview25BackoffGoexitKeepsTheHandlersError(t *testing.T) {
	boom := errors.New("boom")
	for _, named := range []bool{false, true} {
		var runs atomic.Int32
		reg := registry(t, map[string]taskpool.HandlerFunc{
			"f": func(context.Context, taskpool.Task) error { runs.Add(1); return boom },
		})
		got := newOutcomes()
		exiting := func(int) time.Duration { runtime.Goexit(); return 0 }
		s := newStarted(t, reg, taskpool.WithWorkers(1), taskpool.WithCompletionHook(got.hook),
			taskpool.WithRetry(3, exiting), taskpool.WithDeadLetters(4, nil))
		task := taskpool.Task{Type: "f"}
		if named {
			task.ID = "x"
		}
		f, err := s.SubmitFuture(context.Background(), task)
		require.NoError(t, err)
		out := waitFuture(t, f, "f")
		assert.ErrorIs(t, out.Err, boom, "named %v: the run's error is the outcome", named)
		assert.NotErrorIs(t, out.Err, taskpool.ErrHandlerExited, "named %v", named)
		assert.Equal(t, 1, out.Attempts)
		assert.EqualValues(t, 1, runs.Load(), "not retried, as with a Backoff that panics")
		require.NoError(t, stopBounded(t, s, hangAfter/2))
		st := s.Stats()
		assert.EqualValues(t, 1, st.Failed)
		assert.Zero(t, st.Retried)
		assert.Len(t, got.snapshot(), 1)
		assert.Len(t, s.DeadLetters(), 1)
	}
}

// exitOnceLimiter calls runtime.Goexit in its first Reserve and admits
// every start after it at once.
type exitOnceLimiter struct{ calls atomic.Int32 }

func (l *exitOnceLimiter) Reserve(time.Time) time.Duration {
	if l.calls.Add(1) == 1 {
		runtime.Goexit()
	}
	return 0
}

// The same for a RateLimiter: one that panics lets the task start; one
// that called Goexit failed the task with ErrHandlerExited and Attempts 1,
// though its handler never ran (Outcome.Attempts: "the number of times the
// handler ran: 0 for a task that never ran").
func TestReview25RateLimiterGoexitLetsTheTaskRun(t *testing.T) {
	for _, named := range []bool{false, true} {
		var runs atomic.Int32
		reg := taskpool.NewRegistry()
		require.NoError(t, reg.HandleFunc("rl", func(_ context.Context, tk taskpool.Task) error {
			runs.Add(1)
			tk.SetResult(tk.Attempt)
			return nil
		}, taskpool.WithRateLimit(&exitOnceLimiter{})))
		s := newStarted(t, reg, taskpool.WithWorkers(1))
		task := taskpool.Task{Type: "rl"}
		if named {
			task.ID = "x"
		}
		f, err := s.SubmitFuture(context.Background(), task)
		require.NoError(t, err)
		out := waitFuture(t, f, "rl")
		require.NoError(t, out.Err, "named %v", named)
		assert.Equal(t, 1, out.Result, "its first run")
		assert.Equal(t, 1, out.Attempts)
		assert.EqualValues(t, 1, runs.Load())
		require.NoError(t, stopBounded(t, s, hangAfter/2))
		st := s.Stats()
		assert.EqualValues(t, 1, st.Succeeded)
		assert.Equal(t, st.Submitted, st.Succeeded)
	}
}

// Where the features meet, at a Stop whose deadline passes: a paused
// scheduler, resized down, holding a running task, queued tasks, a delayed
// task, a retry waiting, tasks waiting for a concurrency slot, and a
// cancelled one of each kind. Every accepted task gets exactly one outcome
// (hook and Future), and the counters add up.
// (A promise that held; it had no test with all of these at once.)
func TestReview25EveryOutcomeOnceAtADeadlineStop(t *testing.T) {
	boom := errors.New("boom")
	started := make(chan struct{}, 8)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("block", func(ctx context.Context, _ taskpool.Task) error {
		started <- struct{}{}
		<-ctx.Done()
		return nil
	}, taskpool.WithConcurrencyLimit(1)))
	require.NoError(t, reg.HandleFunc("flaky", func(context.Context, taskpool.Task) error { return boom },
		taskpool.WithRetry(3, taskpool.ConstantBackoff(time.Hour))))
	require.NoError(t, reg.HandleFunc("ok", nop))
	got := newOutcomes()
	s, err := taskpool.New(reg, taskpool.WithWorkers(3), taskpool.WithBatchSize(1),
		taskpool.WithCompletionHook(got.hook), taskpool.WithUniqueTTL(time.Hour))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	ctx := context.Background()
	var fs []*taskpool.Future
	submit := func(tk taskpool.Task) {
		f, err := s.SubmitFuture(ctx, tk)
		require.NoError(t, err)
		fs = append(fs, f)
	}
	submit(taskpool.Task{ID: "b0", Type: "block", UniqueKey: "kb0"})
	<-started
	submit(taskpool.Task{ID: "b1", Type: "block", UniqueKey: "kb1"}) // waits for the slot
	submit(taskpool.Task{ID: "b2", Type: "block", UniqueKey: "kb2"}) // waits, then cancelled
	submit(taskpool.Task{ID: "r", Type: "flaky", UniqueKey: "kr"})
	require.True(t, poll(hangAfter, func() bool {
		in := s.Inspect()
		return in.WaitingForSlot["block"] == 2 && len(in.Delayed) == 1
	}), "two tasks wait for the slot and the retry is filed: %+v", s.Inspect())
	require.NoError(t, s.Pause())
	f, err := s.SubmitFuture(ctx, taskpool.Task{ID: "d", Type: "ok", UniqueKey: "kd"})
	require.NoError(t, err)
	fs = append(fs, f)
	require.NoError(t, s.Resize(1))
	require.NoError(t, s.Cancel("d")) // queued, or held by the Pause in a worker's batch
	for i := range 5 {
		submit(taskpool.Task{ID: "q" + string(rune('0'+i)), Type: "ok", UniqueKey: "kq" + string(rune('0'+i))})
	}
	require.NoError(t, s.Cancel("q0"))
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "late", Type: "ok", UniqueKey: "kl"}, time.Hour))
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "late2", Type: "ok"}, time.Hour))
	require.NoError(t, s.Cancel("late2"))
	require.NoError(t, s.Cancel("b2"))

	ended, cancel := context.WithCancel(ctx)
	cancel()
	var stopErr *taskpool.StopError
	require.ErrorAs(t, stopWithin(t, s, ended), &stopErr)

	for _, f := range fs {
		select {
		case <-f.Done():
		default:
			t.Fatal("a Future is not resolved after Stop")
		}
	}
	outs := got.snapshot()
	seen := map[string]int{}
	for _, o := range outs {
		seen[o.Task.ID]++
	}
	for id, n := range seen {
		assert.Equal(t, 1, n, "hook calls of %s", id)
	}
	for _, id := range []string{"b0", "b1", "b2", "r", "d", "q0", "q1", "q4", "late", "late2"} {
		assert.Equal(t, 1, seen[id], "hook calls of %s", id)
	}
	st := s.Stats()
	assert.Equal(t, st.Submitted, st.Succeeded+st.Failed+st.NotRun+st.Canceled, "%+v", st)
	assert.EqualValues(t, len(outs), st.Submitted)
	assert.EqualValues(t, 4, st.Canceled)
	assert.Equal(t, int(st.NotRun), stopErr.NotRun)
	for _, o := range outs {
		if errors.Is(o.Err, taskpool.ErrCanceled) || errors.Is(o.Err, taskpool.ErrSchedulerClosed) {
			assert.Zero(t, o.Attempts-boolInt(o.Task.ID == "r"), "%s never ran (again)", o.Task.ID)
		}
	}
	out, _ := fs[3].Outcome()
	assert.ErrorIs(t, out.Err, taskpool.ErrSchedulerClosed, "the waiting retry is reported not run")
	assert.ErrorIs(t, out.Err, boom, "with its last run's error")
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// WithCompletionHook said "a runtime.Goexit in fn ends only that call",
// but a hook that Cancel runs is on Cancel's caller's goroutine, which
// Goexit ends: Cancel never returns. The doc now says so; what holds is
// that the outcome is still counted and the Future completed.
func TestReview25CompletionHookGoexitUnderCancel(t *testing.T) {
	reg := registry(t, map[string]taskpool.HandlerFunc{"ok": nop})
	var calls atomic.Int32
	s := newStarted(t, reg, taskpool.WithCompletionHook(func(taskpool.Outcome) {
		calls.Add(1)
		runtime.Goexit()
	}))
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "a", Type: "ok"})
	require.NoError(t, err)
	waitFuture(t, f, "a") // its hook ended a worker goroutine, which was replaced
	g, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "b", Type: "ok"})
	require.NoError(t, err)
	waitFuture(t, g, "b")

	require.NoError(t, s.SubmitAfter(context.Background(), taskpool.Task{ID: "c", Type: "ok"}, time.Hour))
	returned := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		_ = s.Cancel("c")
		close(returned)
	}()
	<-exited
	select {
	case <-returned:
		t.Error("Cancel returned although its hook called runtime.Goexit")
	default:
	}
	st := s.Stats()
	assert.EqualValues(t, 1, st.Canceled)
	assert.EqualValues(t, 3, calls.Load())
	assert.ErrorIs(t, s.Cancel("c"), taskpool.ErrTaskNotFound, "settled once")
	require.NoError(t, stopBounded(t, s, hangAfter/2))
}

// "Bad input is an error you can test with errors.Is / errors.As, never a
// panic": a middleware that panicked when the scheduler built a type's
// chain (at the type's first Submit) made Submit panic, on every
// submission of the type.
func TestReview25MiddlewarePanicBuildingTheChainIsAnError(t *testing.T) {
	bad := func(taskpool.Handler) taskpool.Handler { panic("no chain") }
	for _, viaRegistry := range []bool{false, true} {
		reg := registry(t, map[string]taskpool.HandlerFunc{"ok": nop})
		var opts []taskpool.Option
		if viaRegistry {
			require.NoError(t, reg.Use(bad))
		} else {
			opts = append(opts, taskpool.WithMiddleware(bad))
		}
		s := newStarted(t, reg, opts...)
		for range 2 {
			var err error
			require.NotPanics(t, func() { err = s.Submit(context.Background(), taskpool.Task{Type: "ok"}) })
			assert.ErrorIs(t, err, taskpool.ErrInvalidOption, "registry %v", viaRegistry)
			var pe *taskpool.PanicError
			if assert.ErrorAs(t, err, &pe) {
				assert.Equal(t, "no chain", pe.Value)
			}
			require.NotPanics(t, func() { err = s.SubmitAfter(context.Background(), taskpool.Task{Type: "ok"}, time.Hour) })
			assert.ErrorIs(t, err, taskpool.ErrInvalidOption)
		}
		require.NoError(t, stopBounded(t, s, hangAfter/2))
		assert.Zero(t, s.Stats().Submitted)
	}
}
