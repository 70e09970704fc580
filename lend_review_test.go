package taskpool_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// Stats.Workers counts the worker a handler lends while its Submit waits
// for room in a full queue, as it counts one lent to a Future.Wait: here
// the scheduler is paused, so the Submit waits until Resume, and the
// pool is one worker larger meanwhile, and back to its size after.
func TestReviewLendStatsWorkersCountsASubmitWaitingForRoom(t *testing.T) {
	t.Parallel()
	var s *taskpool.Scheduler
	started, submit, submitted := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"child": nop,
		"parent": func(ctx context.Context, _ taskpool.Task) error {
			close(started)
			<-submit
			var err error
			for range 2 { // the second waits: the queue holds one
				if err = s.Submit(ctx, taskpool.Task{Type: "child"}); err != nil {
					break
				}
			}
			submitted <- err
			return err
		},
	})
	s = newStarted(t, reg, taskpool.WithWorkers(1), taskpool.WithQueueSize(1))
	ctx, cancel := context.WithTimeout(context.Background(), lendHang)
	defer cancel()
	f, err := s.SubmitFuture(ctx, taskpool.Task{Type: "parent"})
	require.NoError(t, err)
	<-started
	require.NoError(t, s.Pause())
	close(submit)
	require.Eventually(t, func() bool { return s.Stats().Workers == 2 }, lendHang, time.Millisecond,
		"the worker of the handler waiting for room is lent")
	assert.Empty(t, submitted, "still waiting for room")
	require.NoError(t, s.Resume())
	require.NoError(t, <-submitted)
	_, err = f.Wait(ctx)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.Stats().Workers == 1 }, lendHang, time.Millisecond)
}

// A release deferred right after Lend gives the worker back when the
// handler panics or calls runtime.Goexit, as Lend's doc says to do: the
// pool comes back to its size. (A release never called keeps the worker
// lent: Lend cannot tell when the handler that called it has returned.)
func TestReviewLendDeferredReleaseIsReturnedOnPanicAndGoexit(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"panic", "goexit"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			reg := registry(t, map[string]taskpool.HandlerFunc{
				"lend": func(ctx context.Context, _ taskpool.Task) error {
					release := taskpool.Lend(ctx)
					defer release()
					if how == "panic" {
						panic("lent")
					}
					runtime.Goexit()
					return nil
				},
			})
			s := newStarted(t, reg, taskpool.WithWorkers(1))
			_, err := s.SubmitWait(context.Background(), taskpool.Task{Type: "lend"})
			require.Error(t, err)
			require.Eventually(t, func() bool { return s.Stats().Workers == 1 }, lendHang, time.Millisecond)
		})
	}
}
