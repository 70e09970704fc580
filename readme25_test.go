package taskpool_test

// Tests of README promises that had none (review 25x). Each test quotes
// the sentence it checks.

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/taskpooltest"
)

// readme25Retries polls until the timer heap holds n retries of attempt
// attempt and returns them.
func readme25Retries(t *testing.T, s *taskpool.Scheduler, n, attempt int) []taskpool.TaskInfo {
	t.Helper()
	var got []taskpool.TaskInfo
	ok := poll(hangAfter, func() bool {
		got = got[:0]
		for _, d := range s.Inspect().Delayed {
			if d.Reason == "retry" && d.Attempt == attempt {
				got = append(got, d)
			}
		}
		return len(got) == n
	})
	require.True(t, ok, "want %d retries of attempt %d, have %d (%+v)", n, attempt, len(got), s.Stats())
	return got
}

// Scheduling, Retries: "Backoff is exponential with full jitter by
// default (`ExponentialBackoff(100ms, 1m)`)". With no Backoff given, the
// wait after the first run is drawn from [0, 100ms], after the second from
// [0, 200ms]: tasks that failed together do not all wait the same time,
// and the second waits go past the first ceiling.
func TestReadme25DefaultBackoffIsExponentialWithFullJitter(t *testing.T) {
	const n = 32
	clock := taskpooltest.NewClock(epoch)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"fail": func(context.Context, taskpool.Task) error { return errors.New("boom") },
	})
	// No WithRetry anywhere: the task's MaxAttempts asks for retries, the
	// backoff is the default.
	s := newStarted(t, reg, taskpool.WithClock(clock), taskpool.WithWorkers(2))
	for i := range n {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{ID: fmt.Sprint("f", i), Type: "fail", MaxAttempts: 3}))
	}

	first := readme25Retries(t, s, n, 2)
	waits := map[time.Duration]bool{}
	for _, d := range first {
		w := d.NextRun.Sub(epoch)
		assert.GreaterOrEqual(t, w, time.Duration(0), d.ID)
		assert.LessOrEqual(t, w, 100*time.Millisecond, "%s: the first wait is at most 100ms", d.ID)
		waits[w] = true
	}
	assert.Greater(t, len(waits), 1, "jitter: %d retries that failed together all wait the same time", n)

	ctx, cancel := context.WithTimeout(context.Background(), hangAfter)
	defer cancel()
	now := epoch.Add(100 * time.Millisecond)
	require.NoError(t, clock.WaitArmed(ctx, now))
	clock.Advance(100 * time.Millisecond)

	second := readme25Retries(t, s, n, 3)
	longest := time.Duration(0)
	for _, d := range second {
		w := d.NextRun.Sub(now)
		assert.GreaterOrEqual(t, w, time.Duration(0), d.ID)
		assert.LessOrEqual(t, w, 200*time.Millisecond, "%s: the second wait is at most 200ms", d.ID)
		longest = max(longest, w)
	}
	assert.Greater(t, longest, 100*time.Millisecond, "exponential: of %d second waits, none is over the first ceiling", n)
	require.NoError(t, stopBounded(t, s, hangAfter))
	st := s.Stats()
	assert.EqualValues(t, n, st.NotRun, "the third runs, not due, are reported at Stop")
	assert.EqualValues(t, 2*n, st.Retried)
}

// Scheduling, Retries: "A waiting retry holds no worker." With one worker
// and a retry waiting an hour, other tasks run on that worker, and the
// retry still runs when it is due.
func TestReadme25WaitingRetryHoldsNoWorker(t *testing.T) {
	clock := taskpooltest.NewClock(epoch)
	var runs atomic.Int32
	ran := make(chan string, 8)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"flaky": func(context.Context, taskpool.Task) error {
			if runs.Add(1) == 1 {
				return errors.New("not yet")
			}
			return nil
		},
		"ok": func(_ context.Context, tk taskpool.Task) error { ran <- tk.ID; return nil },
	})
	s := newStarted(t, reg, taskpool.WithClock(clock), taskpool.WithWorkers(1),
		taskpool.WithRetry(2, taskpool.ConstantBackoff(time.Hour)))
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "r", Type: "flaky"})
	require.NoError(t, err)
	retry := readme25Retries(t, s, 1, 2)
	assert.Equal(t, "r", retry[0].ID)

	ctx, cancel := context.WithTimeout(context.Background(), hangAfter)
	defer cancel()
	for i := range 5 {
		require.NoError(t, s.Submit(ctx, taskpool.Task{ID: fmt.Sprint("ok", i), Type: "ok"}))
	}
	for i := range 5 {
		select {
		case <-ran:
		case <-ctx.Done():
			t.Fatalf("only %d of 5 tasks ran on the one worker while a retry waits (%+v)", i, s.Stats())
		}
	}
	assert.Equal(t, 1, s.Stats().Delayed, "the retry still waits")
	assert.Equal(t, int32(1), runs.Load())

	require.NoError(t, clock.WaitArmed(ctx, epoch.Add(time.Hour)))
	clock.Advance(time.Hour)
	out := waitFuture(t, f, "r")
	require.NoError(t, out.Err)
	assert.Equal(t, 2, out.Attempts)
	require.NoError(t, stopBounded(t, s, hangAfter))
}

// Graceful stop, 2: "Delayed tasks and retries that are not due are run
// early or reported as not run (`ErrSchedulerClosed`), as
// `WithDelayedOnStop` says; [...] Periodic schedules end." Even with
// DelayedRunEarly, a schedule's next activation is not run early nor
// reported: the schedule is gone, and no task of it has an outcome.
func TestReadme25StopEndsPeriodicSchedules(t *testing.T) {
	clock := taskpooltest.NewClock(epoch)
	var ticks atomic.Int32
	delayedRan := make(chan struct{}, 1)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"tick": func(context.Context, taskpool.Task) error { ticks.Add(1); return nil },
		"job":  func(context.Context, taskpool.Task) error { delayedRan <- struct{}{}; return nil },
	})
	got := newOutcomes()
	s := newStarted(t, reg, taskpool.WithClock(clock), taskpool.WithDelayedOnStop(taskpool.DelayedRunEarly),
		taskpool.WithCompletionHook(got.hook))
	require.NoError(t, s.SchedulePeriodic("tick", taskpool.Every(time.Hour), taskpool.Task{Type: "tick"}))
	require.NoError(t, s.SubmitAfter(context.Background(), taskpool.Task{ID: "d", Type: "job"}, time.Hour))
	require.Len(t, s.Inspect().Periodic, 1)

	require.NoError(t, stopBounded(t, s, hangAfter))
	select {
	case <-delayedRan:
	default:
		t.Fatal("the delayed task was not run early: the test's premise fails")
	}
	assert.Zero(t, ticks.Load(), "a periodic activation ran at Stop")
	assert.Empty(t, s.Inspect().Periodic, "the schedule outlived Stop")
	outs := got.snapshot()
	require.Len(t, outs, 1, "%+v", outs)
	assert.Equal(t, "d", outs[0].Task.ID)
	st := s.Stats()
	assert.EqualValues(t, 1, st.Submitted)
	assert.Zero(t, st.NotRun)
	assert.ErrorIs(t, s.Unschedule("tick"), taskpool.ErrSchedulerClosed, "the schedule ended with the scheduler")
	clock.Advance(2 * time.Hour)
	assert.Zero(t, ticks.Load())
}

// Scheduling, Delayed tasks and cancellation: "`Cancel` reaches [...]
// tasks held by a rate or concurrency limit". Tasks a RateLimiter put off
// for an hour, one named and one without an ID (cancelled by the ID
// Inspect lists), are cancelled: ErrCanceled, delivered before Cancel
// returns, and they never run.
func TestReadme25CancelReachesRateHeldTasks(t *testing.T) {
	clock := taskpooltest.NewClock(epoch)
	var reserves atomic.Int32
	ran := make(chan string, 4)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("paced", func(_ context.Context, tk taskpool.Task) error {
		ran <- tk.ID
		return nil
	}, taskpool.WithRateLimit(rateFunc(func(time.Time) time.Duration {
		if reserves.Add(1) == 1 {
			return 0
		}
		return time.Hour
	}))))
	got := newOutcomes()
	s := newStarted(t, reg, taskpool.WithClock(clock), taskpool.WithWorkers(1), taskpool.WithCompletionHook(got.hook))
	ctx, cancel := context.WithTimeout(context.Background(), hangAfter)
	defer cancel()
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "first", Type: "paced"}))
	select {
	case id := <-ran:
		require.Equal(t, "first", id)
	case <-ctx.Done():
		t.Fatal("the first task did not run")
	}
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "named", Type: "paced"}))
	require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "paced"}))

	var held []taskpool.TaskInfo
	require.True(t, poll(hangAfter, func() bool {
		held = held[:0]
		for _, d := range s.Inspect().Delayed {
			if d.Reason == "rate limited" {
				held = append(held, d)
			}
		}
		return len(held) == 2
	}), "two tasks held by the rate limit: %+v", s.Inspect().Delayed)

	for _, d := range held {
		require.NoError(t, s.Cancel(d.ID), "Cancel of %q, held by the rate limit", d.ID)
		require.Equal(t, 1, got.count(d.ID), "%s: the outcome is delivered before Cancel returns", d.ID)
		assert.ErrorIs(t, got.first(d.ID).Err, taskpool.ErrCanceled, d.ID)
	}
	st := s.Stats()
	assert.EqualValues(t, 2, st.Canceled)
	assert.Zero(t, st.Delayed)
	require.NoError(t, stopBounded(t, s, hangAfter))
	assert.Empty(t, ran, "a cancelled task ran")
	st = s.Stats()
	assert.Equal(t, st.Submitted, st.Succeeded+st.Failed+st.NotRun+st.Canceled)
}

type readme25Args struct {
	N  int
	Ch chan int // JSON could not carry it: only the value itself can
}

func (readme25Args) Kind() string { return "readme25" }

type readme25ValArgs struct {
	Ch chan int
}

func (readme25ValArgs) Kind() string { return "readme25val" }

// Quick start, typed tasks: "In process the handler gets the value as
// submitted". A handler of *A gets the very pointer submitted, and a
// handler of A a value with the same channel: nothing was copied through
// an encoding.
func TestReadme25TypedHandlerGetsTheValueAsSubmitted(t *testing.T) {
	reg := taskpool.NewRegistry()
	ptrs := make(chan *readme25Args, 1)
	vals := make(chan readme25ValArgs, 1)
	require.NoError(t, taskpool.Handle(reg, func(_ context.Context, a *readme25Args, _ taskpool.Task) error {
		ptrs <- a
		return nil
	}))
	require.NoError(t, taskpool.Handle(reg, func(_ context.Context, a readme25ValArgs, _ taskpool.Task) error {
		vals <- a
		return nil
	}))
	s := newStarted(t, reg)
	ctx, cancel := context.WithTimeout(context.Background(), hangAfter)
	defer cancel()

	p := &readme25Args{N: 7, Ch: make(chan int)}
	require.NoError(t, s.Submit(ctx, taskpool.TaskOf(p)))
	select {
	case got := <-ptrs:
		assert.Same(t, p, got, "the handler of *A gets the pointer submitted")
	case <-ctx.Done():
		t.Fatal("the *A handler did not run")
	}

	v := readme25ValArgs{Ch: make(chan int)}
	require.NoError(t, s.Submit(ctx, taskpool.TaskOf(v)))
	select {
	case got := <-vals:
		assert.True(t, got.Ch == v.Ch, "the handler of A gets the value submitted, its channel included")
	case <-ctx.Done():
		t.Fatal("the A handler did not run")
	}
	require.NoError(t, stopBounded(t, s, hangAfter))
}
