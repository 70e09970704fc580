package taskpool_test

// Tests of the review of Pause/Resume, Resize, limits, delayed tasks,
// periodic schedules, Futures, typed handlers, Inspect/Stats and
// taskpooltest (review25r). Each names the promise it holds.

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
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
