package taskpool_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

func TestPauseHoldsTasksUntilResume(t *testing.T) {
	t.Parallel()
	var resumed atomic.Bool
	var early, ran atomic.Int64
	release := make(chan struct{})
	running := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"block": func(context.Context, taskpool.Task) error {
			close(running)
			<-release
			return nil
		},
		"count": func(context.Context, taskpool.Task) error {
			if !resumed.Load() {
				early.Add(1)
			}
			ran.Add(1)
			return nil
		},
	})
	s := start(t, reg, taskpool.WithWorkers(2))
	ctx := context.Background()
	blocked, err := s.SubmitFuture(ctx, taskpool.Task{Type: "block"})
	require.NoError(t, err)
	<-running

	require.NoError(t, s.Pause())
	require.NoError(t, s.Pause(), "pausing twice does nothing")
	assert.True(t, s.Stats().Paused)
	const n = 50
	for range n {
		require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "count"}))
	}
	// The running task is not interrupted by Pause.
	close(release)
	_, err = blocked.Wait(ctx)
	require.NoError(t, err)
	// Both workers are free now and fifty tasks wait: none may start.
	require.Eventually(t, func() bool {
		st := s.Stats()
		return st.Running == 0 && st.Queued == n
	}, 5*time.Second, time.Millisecond)
	assert.Zero(t, ran.Load())

	resumed.Store(true)
	require.NoError(t, s.Resume())
	require.NoError(t, s.Resume(), "resuming twice does nothing")
	assert.False(t, s.Stats().Paused)
	require.Eventually(t, func() bool { return ran.Load() == n }, 5*time.Second, time.Millisecond)
	assert.Zero(t, early.Load(), "tasks started while paused")
}

func TestPausedQueueFills(t *testing.T) {
	t.Parallel()
	var ran atomic.Int64
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"count": func(context.Context, taskpool.Task) error { ran.Add(1); return nil },
	})
	s := start(t, reg, taskpool.WithWorkers(1), taskpool.WithQueueSize(4), taskpool.WithBatchSize(1))
	require.NoError(t, s.Pause())
	accepted := 0
	var err error
	for range 100 {
		if err = s.TrySubmit(taskpool.Task{Type: "count"}); err != nil {
			break
		}
		accepted++
	}
	require.ErrorIs(t, err, taskpool.ErrQueueFull)
	// The queue, plus at most one task the dispatcher holds and one batch
	// handed to the worker before the pause reached them.
	assert.LessOrEqual(t, accepted, 4+2)
	require.NoError(t, s.Resume())
	require.Eventually(t, func() bool { return ran.Load() == int64(accepted) }, 5*time.Second, time.Millisecond)
}

func TestStopResumesPausedScheduler(t *testing.T) {
	t.Parallel()
	var ran atomic.Int64
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"count": func(context.Context, taskpool.Task) error { ran.Add(1); return nil },
	})
	s, err := taskpool.New(reg, taskpool.WithWorkers(2))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	require.NoError(t, s.Pause())
	for range 20 {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "count"}))
	}
	require.NoError(t, s.Stop(context.Background()))
	assert.EqualValues(t, 20, ran.Load(), "a graceful stop runs every accepted task")
	assert.False(t, s.Stats().Paused)
}

// Stop with a ctx that has ended already gives up at once: a paused
// scheduler starts nothing more, and every queued task is reported not
// run. Stop lifted the pause first, and workers started tasks until it
// gave up: to catch that every time, the logger holds Stop at its
// "stopping" record, between the two, until a task starts or 50ms pass.
func TestStopWithAnEndedCtxStartsNothingOnAPausedScheduler(t *testing.T) {
	t.Parallel()
	var ran atomic.Int64
	started := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"count": func(context.Context, taskpool.Task) error {
			if ran.Add(1) == 1 {
				close(started)
			}
			return nil
		},
	})
	log := slog.New(funcHandler(func(r slog.Record) {
		if r.Message == "taskpool: stopping" {
			select {
			case <-started:
			case <-time.After(50 * time.Millisecond): // nothing starts: the check of this test
			}
		}
	}))
	s, err := taskpool.New(reg, taskpool.WithWorkers(4), taskpool.WithQueueSize(4096), taskpool.WithLogger(log))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	require.NoError(t, s.Pause())
	const n = 2000
	for range n {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "count"}))
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	var se *taskpool.StopError
	require.ErrorAs(t, s.Stop(ended), &se)
	assert.Equal(t, n, se.NotRun)
	assert.Zero(t, ran.Load(), "tasks started after Stop with an ended ctx")
	assert.False(t, s.Stats().Paused)
}

// Stop with an ended ctx on a paused scheduler with nothing queued has
// nothing to give up: it lifts the pause and returns nil.
func TestStopWithAnEndedCtxOnAPausedIdleScheduler(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{"count": nop})
	s, err := taskpool.New(reg, taskpool.WithWorkers(2))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	require.NoError(t, s.Pause())
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, s.Stop(ended))
	assert.False(t, s.Stats().Paused)
}

// funcHandler is a slog.Handler that calls f with every record.
type funcHandler func(slog.Record)

func (f funcHandler) Enabled(context.Context, slog.Level) bool { return true }
func (f funcHandler) Handle(_ context.Context, r slog.Record) error {
	f(r)
	return nil
}
func (f funcHandler) WithAttrs([]slog.Attr) slog.Handler { return f }
func (f funcHandler) WithGroup(string) slog.Handler      { return f }

func TestPauseErrors(t *testing.T) {
	t.Parallel()
	s, err := taskpool.New(registry(t, map[string]taskpool.HandlerFunc{"nop": nop}))
	require.NoError(t, err)
	assert.ErrorIs(t, s.Pause(), taskpool.ErrNotStarted)
	assert.ErrorIs(t, s.Resume(), taskpool.ErrNotStarted)
	require.NoError(t, s.Start())
	require.NoError(t, s.Stop(context.Background()))
	assert.ErrorIs(t, s.Pause(), taskpool.ErrSchedulerClosed)
	assert.ErrorIs(t, s.Resume(), taskpool.ErrSchedulerClosed)
}
