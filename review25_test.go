package taskpool_test

// Tests of the 25th review: promises where features meet. Each of the
// first four failed on the code it was written against (b5c6453).

import (
	"context"
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
