package taskpool_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// A task whose run fails while a graceful Stop runs, with attempts left,
// is reported not run (DelayedReport): the completion hook and its Future
// see the same Outcome, the Task with the number of the run that failed.
func TestReviewARetryReportedAtStopFutureAgreesWithHook(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	started := make(chan struct{})
	release := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"flaky": func(_ context.Context, tk taskpool.Task) error {
			if tk.Attempt == 1 {
				close(started)
				<-release
			}
			return boom
		},
	})
	got := newOutcomes()
	s, err := taskpool.New(reg, taskpool.WithRetry(3, taskpool.ConstantBackoff(time.Hour)),
		taskpool.WithCompletionHook(got.hook))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "r", Type: "flaky"})
	require.NoError(t, err)
	<-started
	stopped := startStop(t, s, context.Background())
	close(release)
	require.NoError(t, awaitStop(t, stopped))
	out := waitFuture(t, f, "r")
	require.Equal(t, 1, got.count("r"))
	hook := got.first("r")
	assert.Equal(t, taskpool.OutcomeNotRun, out.Status)
	assert.Equal(t, 1, out.Attempts)
	assert.Equal(t, hook.Task.Attempt, out.Task.Attempt, "Task.Attempt: hook vs Future")
	assert.Equal(t, 1, out.Task.Attempt)
}
