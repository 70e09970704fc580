package taskpool_test

// Tests of the review of Pause/Resume, Resize, limits, delayed tasks,
// periodic schedules, Futures, typed handlers, Inspect/Stats and
// taskpooltest (review25r). Each names the promise it holds.

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/taskpooltest"
)

// Future.Wait: "When ctx ends first it returns ctx's error". A Future
// whose task finished before ctx ended returns the outcome, however often
// it is asked (a select between two ready channels picks one at random).
func TestReview25rWaitAfterTheOutcomeWithAnEndedCtx(t *testing.T) {
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"r": func(_ context.Context, tk taskpool.Task) error { tk.SetResult(7); return nil },
	})
	s := newStarted(t, reg)
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "r"})
	require.NoError(t, err)
	waitFuture(t, f, "r")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 200 {
		v, err := f.Wait(ctx)
		require.NoError(t, err, "Wait %d", i)
		require.Equal(t, 7, v, "Wait %d", i)
	}
}

// taskpooltest.Run: "Run runs h on t once, the way a scheduler's worker
// does, and returns what the task's Future would".
func TestReview25rTaskpooltestRunRunsOnce(t *testing.T) {
	var calls atomic.Int64
	boom := errors.New("boom")
	var seen atomic.Int64
	h := taskpool.HandlerFunc(func(_ context.Context, tk taskpool.Task) error {
		calls.Add(1)
		seen.Store(int64(tk.MaxAttempts))
		return boom
	})
	ctx, cancel := context.WithTimeout(context.Background(), hangAfter)
	defer cancel()
	_, err := taskpooltest.Run(ctx, h, taskpool.Task{MaxAttempts: 3})
	require.ErrorIs(t, err, boom)
	assert.EqualValues(t, 1, calls.Load(), "Run ran the handler more than once")
	assert.EqualValues(t, 3, seen.Load(), "the handler sees the task's MaxAttempts")

	calls.Store(0)
	_, err = taskpooltest.Run(ctx, h, taskpool.Task{}, taskpool.WithRetry(3, taskpool.ConstantBackoff(0)))
	require.ErrorIs(t, err, boom)
	assert.EqualValues(t, 1, calls.Load(), "a WithRetry in opts made Run retry")
	assert.EqualValues(t, 0, seen.Load())

	_, err = taskpooltest.Run(ctx, h, taskpool.Task{MaxAttempts: -1})
	assert.ErrorIs(t, err, taskpool.ErrInvalidTask)
}
