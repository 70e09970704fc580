package taskpool_test

// Tests of review25d: the Goexit stages (stageRate, stageBackoff), the
// retry given up at Stop's deadline, and Stop with an ended ctx.

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

// gateExitLimiter's first Reserve signals entered, waits for release and
// calls runtime.Goexit; every later one admits at once.
type gateExitLimiter struct {
	calls   atomic.Int32
	entered chan struct{}
	release chan struct{}
}

func (l *gateExitLimiter) Reserve(time.Time) time.Duration {
	if l.calls.Add(1) == 1 {
		close(l.entered)
		<-l.release
		runtime.Goexit()
	}
	return 0
}

// A RateLimiter's Reserve that calls Goexit after Stop's deadline has
// passed: the task goes back to its lane with its start admitted, and
// must then be reported not run, once, and Stop must return.
func TestReview25dReserveGoexitAfterTheDeadline(t *testing.T) {
	for _, withFuture := range []bool{false, true} {
		t.Run(fmt.Sprint("future=", withFuture), func(t *testing.T) {
			lim := &gateExitLimiter{entered: make(chan struct{}), release: make(chan struct{})}
			cancelled := make(chan struct{})
			running := make(chan struct{})
			var rlRuns atomic.Int32
			reg := taskpool.NewRegistry()
			require.NoError(t, reg.HandleFunc("block", func(ctx context.Context, _ taskpool.Task) error {
				close(running)
				<-ctx.Done()
				close(cancelled)
				return ctx.Err()
			}))
			require.NoError(t, reg.HandleFunc("rl", func(context.Context, taskpool.Task) error {
				rlRuns.Add(1)
				return nil
			}, taskpool.WithRateLimit(lim), taskpool.WithConcurrencyLimit(1)))
			got := newOutcomes()
			s, err := taskpool.New(reg, taskpool.WithWorkers(2), taskpool.WithCompletionHook(got.hook))
			require.NoError(t, err)
			require.NoError(t, s.Start())
			require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "block"}))
			<-running
			var f *taskpool.Future
			if withFuture {
				f, err = s.SubmitFuture(context.Background(), taskpool.Task{Type: "rl", UniqueKey: "k"})
			} else {
				err = s.Submit(context.Background(), taskpool.Task{Type: "rl"})
			}
			require.NoError(t, err)
			<-lim.entered

			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			stopped := make(chan error, 1)
			go func() { stopped <- s.Stop(ctx) }()
			<-cancelled // Stop has given up
			close(lim.release)

			timer := time.NewTimer(hangAfter)
			defer timer.Stop()
			select {
			case err = <-stopped:
			case <-timer.C:
				t.Fatalf("Stop did not return\n%s", stacks())
			}
			var se *taskpool.StopError
			require.ErrorAs(t, err, &se)
			if withFuture {
				out := waitFuture(t, f, "rl")
				assert.ErrorIs(t, out.Err, taskpool.ErrSchedulerClosed)
			}
			st := s.Stats()
			assert.EqualValues(t, 2, st.Succeeded+st.Failed+st.NotRun+st.Canceled)
			assert.Len(t, got.snapshot(), 2)
			assert.Zero(t, rlRuns.Load(), "nothing starts past the deadline")
		})
	}
}

// A Backoff that calls Goexit, for tasks under a concurrency limit with
// unique keys: each ends with the run's error once, the slot is given
// back (the next task runs), the key is free, Stats add up.
func TestReview25dBackoffGoexitFreesSlotAndKey(t *testing.T) {
	boom := errors.New("boom")
	var runs atomic.Int32
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("f", func(context.Context, taskpool.Task) error {
		runs.Add(1)
		return boom
	}, taskpool.WithConcurrencyLimit(1),
		taskpool.WithRetry(3, func(int) time.Duration { runtime.Goexit(); return 0 })))
	got := newOutcomes()
	s := newStarted(t, reg, taskpool.WithWorkers(3), taskpool.WithCompletionHook(got.hook),
		taskpool.WithDeadLetters(16, nil))
	const n = 6
	var fs []*taskpool.Future
	for i := range n {
		task := taskpool.Task{Type: "f", UniqueKey: fmt.Sprint("k", i)}
		if i%2 == 0 {
			f, err := s.SubmitFuture(context.Background(), task)
			require.NoError(t, err)
			fs = append(fs, f)
		} else {
			require.NoError(t, s.Submit(context.Background(), task))
		}
	}
	for _, f := range fs {
		out := waitFuture(t, f, "f")
		assert.ErrorIs(t, out.Err, boom)
	}
	deadline := time.Now().Add(hangAfter)
	for len(got.snapshot()) < n && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	require.Len(t, got.snapshot(), n)
	// The keys are free: a task with each goes in.
	for i := range n {
		f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "f", UniqueKey: fmt.Sprint("k", i)})
		require.NoError(t, err)
		waitFuture(t, f, "again")
	}
	require.NoError(t, stopBounded(t, s, hangAfter/2))
	st := s.Stats()
	assert.EqualValues(t, 2*n, st.Failed)
	assert.Zero(t, st.Retried)
	assert.EqualValues(t, 2*n, runs.Load())
	assert.Len(t, s.DeadLetters(), 2*n)
}

// Plain tasks (no ID, no Future) whose limiter exits in Reserve now and
// then: every one runs once.
func TestReview25dReserveGoexitPlainTasksAllRun(t *testing.T) {
	var calls, runs atomic.Int32
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("rl", func(context.Context, taskpool.Task) error {
		runs.Add(1)
		return nil
	}, taskpool.WithRateLimit(rateFunc(func(time.Time) time.Duration {
		if calls.Add(1)%3 == 0 {
			runtime.Goexit()
		}
		return 0
	})), taskpool.WithConcurrencyLimit(2)))
	s := newStarted(t, reg, taskpool.WithWorkers(4))
	const n = 60
	for range n {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "rl"}))
	}
	require.NoError(t, stopBounded(t, s, hangAfter/2))
	st := s.Stats()
	assert.EqualValues(t, n, st.Succeeded)
	assert.EqualValues(t, n, runs.Load())
}
