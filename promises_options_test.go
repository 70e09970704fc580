package taskpool_test

// Promises of the options, New, Resize and the Registry that no other
// test covered; each test is named after the promise it checks.

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

// Middleware: the scheduler builds a type's chain once, the first time a
// task of that type is submitted, never per task; for its own middleware
// and the registry's alike.
func TestPromiseMiddlewareChainBuiltOncePerType(t *testing.T) {
	t.Parallel()
	var schedBuilt, regBuilt atomic.Int32
	counting := func(n *atomic.Int32) taskpool.Middleware {
		return func(next taskpool.Handler) taskpool.Handler {
			n.Add(1)
			return next
		}
	}
	var ran atomic.Int32
	count := func(context.Context, taskpool.Task) error { ran.Add(1); return nil }
	reg := registry(t, map[string]taskpool.HandlerFunc{"a": count, "b": count, "unused": count})
	require.NoError(t, reg.Use(counting(&regBuilt)))
	s := start(t, reg, taskpool.WithMiddleware(counting(&schedBuilt)), taskpool.WithWorkers(2))
	assert.Zero(t, schedBuilt.Load()+regBuilt.Load(), "nothing is built before a type is submitted")
	const n = 100
	for i := range n {
		typ := "a"
		if i%2 == 1 {
			typ = "b"
		}
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: typ}))
	}
	require.Eventually(t, func() bool { return ran.Load() == n }, waitFor, time.Millisecond)
	assert.EqualValues(t, 2, schedBuilt.Load(), "the scheduler's middleware: once per type used")
	assert.EqualValues(t, 2, regBuilt.Load(), "the registry's middleware: once per type used")
}

// Every option documented as invalid for some input returns an error
// wrapping ErrInvalidOption for it (WithDeadLetters, WithUniqueTTL,
// WithDelayedOnStop, WithClock, WithPriorityWeights, WithRetry on the
// scheduler and on a type, a nil HandleOption, a nil middleware among
// others), and the documented maxima are accepted, just above them not.
func TestPromiseOptionsRejectOutOfRange(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{"ok": nop})
	mw := func(next taskpool.Handler) taskpool.Handler { return next }
	bad := map[string]taskpool.Option{
		"negative dead letter capacity": taskpool.WithDeadLetters(-1, nil),
		"negative unique TTL":           taskpool.WithUniqueTTL(-time.Second),
		"unknown delayed policy":        taskpool.WithDelayedOnStop(taskpool.DelayedPolicy(7)),
		"nil clock":                     taskpool.WithClock(nil),
		"zero high weight":              taskpool.WithPriorityWeights(0, 1, 1),
		"zero normal weight":            taskpool.WithPriorityWeights(1, 0, 1),
		"zero low weight":               taskpool.WithPriorityWeights(1, 1, 0),
		"weight above max":              taskpool.WithPriorityWeights(1, 1, taskpool.MaxPriorityWeight+1),
		"negative max attempts":         taskpool.WithRetry(-1, nil),
		"nil middleware after a good":   taskpool.WithMiddleware(mw, nil),
		"workers above max":             taskpool.WithWorkers(taskpool.MaxWorkers + 1),
		"queue above max":               taskpool.WithQueueSize(taskpool.MaxQueueSize + 1),
		"batch above max":               taskpool.WithBatchSize(taskpool.MaxBatchSize + 1),
	}
	for name, opt := range bad {
		t.Run(name, func(t *testing.T) {
			s, err := taskpool.New(reg, opt)
			assert.ErrorIs(t, err, taskpool.ErrInvalidOption)
			assert.Nil(t, s)
		})
	}
	t.Run("type options", func(t *testing.T) {
		r := taskpool.NewRegistry()
		assert.ErrorIs(t, r.HandleFunc("a", nop, taskpool.WithRetry(-1, nil)), taskpool.ErrInvalidOption)
		assert.ErrorIs(t, r.HandleFunc("b", nop, nil), taskpool.ErrInvalidOption)
		assert.Empty(t, r.Types(), "a refused registration leaves no trace")
	})
	t.Run("the maxima are valid", func(t *testing.T) {
		// MaxQueueSize is accepted and its memory is not taken up front.
		var ran atomic.Bool
		r := registry(t, map[string]taskpool.HandlerFunc{
			"ok": func(context.Context, taskpool.Task) error { ran.Store(true); return nil },
		})
		s, err := taskpool.New(r, taskpool.WithQueueSize(taskpool.MaxQueueSize),
			taskpool.WithBatchSize(taskpool.MaxBatchSize),
			taskpool.WithPriorityWeights(taskpool.MaxPriorityWeight, taskpool.MaxPriorityWeight, taskpool.MaxPriorityWeight))
		require.NoError(t, err)
		require.NoError(t, s.Start())
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "ok"}))
		require.NoError(t, stopWithin(t, s, context.Background()))
		assert.True(t, ran.Load())
	})
}

// Resize: "an error wrapping ErrInvalidOption for n < 1 or n > MaxWorkers,
// and ErrNotStarted or ErrSchedulerClosed when the scheduler is not
// running".
func TestPromiseResizeErrors(t *testing.T) {
	t.Parallel()
	s, err := taskpool.New(registry(t, map[string]taskpool.HandlerFunc{"ok": nop}), taskpool.WithWorkers(1))
	require.NoError(t, err)
	assert.ErrorIs(t, s.Resize(2), taskpool.ErrNotStarted)
	require.NoError(t, s.Start())
	assert.ErrorIs(t, s.Resize(-1), taskpool.ErrInvalidOption)
	assert.ErrorIs(t, s.Resize(taskpool.MaxWorkers+1), taskpool.ErrInvalidOption)
	assert.Equal(t, 1, s.Stats().Workers, "a refused Resize changes nothing")
	require.NoError(t, s.Stop(context.Background()))
	assert.ErrorIs(t, s.Resize(2), taskpool.ErrSchedulerClosed)
}

// WithWorkers: "The default, and the meaning of 0, is
// runtime.GOMAXPROCS(0)." WithQueueSize: the default is DefaultQueueSize,
// and the bound is per priority: exactly that many accepted tasks of each
// priority wait while paused (README: "exactly WithQueueSize tasks per
// priority").
func TestPromiseDefaultWorkersAndQueueSize(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{"ok": nop})
	for name, opts := range map[string][]taskpool.Option{
		"no option": nil,
		"zero":      {taskpool.WithWorkers(0), taskpool.WithQueueSize(0)},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := taskpool.New(reg, opts...)
			require.NoError(t, err)
			require.NoError(t, s.Start())
			assert.Equal(t, runtime.GOMAXPROCS(0), s.Stats().Workers)
			require.NoError(t, s.Pause())
			prios := []taskpool.Priority{taskpool.PriorityHigh, taskpool.PriorityDefault, taskpool.PriorityLow}
			for i, p := range prios {
				for n := range taskpool.DefaultQueueSize {
					require.NoError(t, s.TrySubmit(taskpool.Task{Type: "ok", Priority: p}), "priority %v: task %d", p, n)
				}
				assert.ErrorIs(t, s.TrySubmit(taskpool.Task{Type: "ok", Priority: p}), taskpool.ErrQueueFull, "priority %v", p)
				assert.Equal(t, taskpool.DefaultQueueSize, s.Stats().QueuedByPriority[i], "priority %v", p)
			}
			require.NoError(t, stopWithin(t, s, context.Background()))
			assert.EqualValues(t, 3*taskpool.DefaultQueueSize, s.Stats().Succeeded)
		})
	}
}

// WithBaseContext: "Cancelling ctx cancels running handlers but does not
// stop the scheduler."
func TestPromiseBaseContextCancelDoesNotStopScheduler(t *testing.T) {
	t.Parallel()
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	running := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"wait": func(ctx context.Context, _ taskpool.Task) error {
			close(running)
			<-ctx.Done()
			return ctx.Err()
		},
		"ok": nop,
	})
	s := start(t, reg, taskpool.WithBaseContext(base))
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "wait"})
	require.NoError(t, err)
	<-running
	cancel()
	out := waitFuture(t, f, "the running handler")
	assert.ErrorIs(t, out.Err, context.Canceled, "cancelling the base context cancels the running handler")

	// The scheduler goes on: it accepts and runs tasks.
	assert.False(t, s.Stats().Paused)
	f, err = s.SubmitFuture(context.Background(), taskpool.Task{Type: "ok"})
	require.NoError(t, err, "the scheduler still accepts tasks")
	out = waitFuture(t, f, "a task after the cancel")
	assert.NoError(t, out.Err)
	assert.Equal(t, 1, out.Attempts)
}

// Registry: "handlers may be registered while tasks run": a type
// registered after the scheduler started is accepted and runs with its own
// settings (New: "Per-type settings apply when h is a *Registry").
func TestPromiseTypeRegisteredAfterStartRuns(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{"ok": nop})
	s := start(t, reg)
	assert.ErrorIs(t, s.Submit(context.Background(), taskpool.Task{Type: "late"}), taskpool.ErrNoHandler)
	var runs atomic.Int32
	require.NoError(t, reg.HandleFunc("late", func(context.Context, taskpool.Task) error {
		runs.Add(1)
		return errors.New("boom")
	}, taskpool.WithRetry(2, taskpool.ConstantBackoff(0))))
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "late"})
	require.NoError(t, err)
	out := waitFuture(t, f, "late type")
	assert.Error(t, out.Err)
	assert.Equal(t, 2, out.Attempts, "the late type's WithRetry applies")
	assert.EqualValues(t, 2, runs.Load())
}
