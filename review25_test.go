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
