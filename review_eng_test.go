package taskpool_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// A task with an ID that a worker has taken (its record claimed as
// running) but not begun when Pause returns waits, held, in Begin until
// Resume. Cancel must then either cancel it (it has not started) or find
// it running: Cancel said "not found" for a task that, paused, never
// started (Hold no longer waits for a worker on its way to Begin, and the
// record was claimed before Begin).
func TestReviewEngCancelWhilePausedBeforeBegin(t *testing.T) {
	entered, gate := make(chan struct{}), make(chan struct{})
	started := make(chan struct{}, 1)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("rl", func(context.Context, taskpool.Task) error {
		started <- struct{}{}
		return nil
	}, taskpool.WithRateLimit(rateFunc(func(time.Time) time.Duration {
		close(entered) // once: the task runs at most once
		<-gate
		return 0
	}))))
	got := newOutcomes()
	s := newStarted(t, reg, taskpool.WithWorkers(1), taskpool.WithCompletionHook(got.hook))
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{ID: "x", Type: "rl"}))
	<-entered
	paused := make(chan error, 1)
	go func() { paused <- s.Pause() }()
	require.True(t, poll(hangAfter, func() bool { return s.Stats().Paused }))
	close(gate)
	require.NoError(t, <-paused)
	err := s.Cancel("x")
	if err == nil {
		require.NoError(t, s.Resume())
		require.NoError(t, stopBounded(t, s, hangAfter))
		assert.Empty(t, started, "the cancelled task ran")
		assert.ErrorIs(t, got.first("x").Err, taskpool.ErrCanceled)
		return
	}
	require.ErrorIs(t, err, taskpool.ErrTaskNotFound)
	select {
	case <-started: // it was running: Pause does not stop a started task
	case <-time.After(2 * time.Second):
		t.Errorf("Cancel says x is not pending, yet it has not started while paused (Stats %+v)", s.Stats())
	}
	require.NoError(t, s.Resume())
}
