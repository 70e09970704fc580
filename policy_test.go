package taskpool_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// TestRetryPolicy: the exported policy gives the task's MaxAttempts first,
// then its type's WithRetry, then its own defaults, then 1; the type's
// backoff before its own; Retryable is the scheduler's test; a panicking
// Backoff is a *PanicError.
func TestRetryPolicy(t *testing.T) {
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("typed", nop, taskpool.WithRetry(3, taskpool.ConstantBackoff(5*time.Millisecond))))
	require.NoError(t, reg.HandleFunc("plain", nop))
	require.NoError(t, reg.HandleFunc("panicky", nop, taskpool.WithRetry(2, func(int) time.Duration { panic("bo") })))
	p := taskpool.RetryPolicy{Registry: reg, MaxAttempts: 4, Backoff: taskpool.ConstantBackoff(7 * time.Millisecond)}

	assert.Equal(t, 3, p.Attempts(taskpool.Task{Type: "typed"}))
	assert.Equal(t, 6, p.Attempts(taskpool.Task{Type: "typed", MaxAttempts: 6}))
	assert.Equal(t, 4, p.Attempts(taskpool.Task{Type: "plain"}))
	assert.Equal(t, 4, p.Attempts(taskpool.Task{Type: "unknown"}))
	assert.Equal(t, 1, taskpool.RetryPolicy{}.Attempts(taskpool.Task{Type: "typed"}))

	d, err := p.Wait(taskpool.Task{Type: "typed"}, 1)
	require.NoError(t, err)
	assert.Equal(t, 5*time.Millisecond, d)
	d, err = p.Wait(taskpool.Task{Type: "plain"}, 1)
	require.NoError(t, err)
	assert.Equal(t, 7*time.Millisecond, d)
	d, err = taskpool.RetryPolicy{}.Wait(taskpool.Task{Type: "x"}, 1)
	require.NoError(t, err)
	assert.LessOrEqual(t, d, 100*time.Millisecond)
	_, err = p.Wait(taskpool.Task{Type: "panicky"}, 1)
	var pe *taskpool.PanicError
	assert.ErrorAs(t, err, &pe)

	boom := errors.New("boom")
	assert.True(t, p.Retry(taskpool.Task{Type: "typed"}, 2, boom))
	assert.False(t, p.Retry(taskpool.Task{Type: "typed"}, 3, boom))
	assert.False(t, p.Retry(taskpool.Task{Type: "typed"}, 1, taskpool.SkipRetry(boom)))
	for _, err := range []error{taskpool.ErrSkipRetry, taskpool.ErrNoHandler, taskpool.ErrCanceled, taskpool.ErrHandlerExited,
		fmt.Errorf("wrapped: %w", taskpool.ErrNoHandler)} {
		assert.False(t, taskpool.Retryable(err), "%v", err)
	}
	for _, err := range []error{boom, context.DeadlineExceeded, &taskpool.PanicError{Value: "x"}} {
		assert.True(t, taskpool.Retryable(err), "%v", err)
	}
}

// TestSchedulerFollowsRetryPolicy: the scheduler runs a failing task as
// many times as the policy built from the same registry and defaults says.
func TestSchedulerFollowsRetryPolicy(t *testing.T) {
	reg := taskpool.NewRegistry()
	fail := func(context.Context, taskpool.Task) error { return errors.New("boom") }
	require.NoError(t, reg.HandleFunc("typed", fail, taskpool.WithRetry(3, taskpool.ConstantBackoff(0))))
	require.NoError(t, reg.HandleFunc("plain", fail))
	s := start(t, reg, taskpool.WithRetry(2, taskpool.ConstantBackoff(0)))
	p := taskpool.RetryPolicy{Registry: reg, MaxAttempts: 2, Backoff: taskpool.ConstantBackoff(0)}
	for _, task := range []taskpool.Task{{Type: "typed"}, {Type: "plain"}, {Type: "typed", MaxAttempts: 4}} {
		f, err := s.SubmitFuture(context.Background(), task)
		require.NoError(t, err)
		_, err = f.Wait(context.Background())
		require.Error(t, err)
		out, _ := f.Outcome()
		assert.Equal(t, p.Attempts(task), out.Attempts, "%+v", task)
	}
}

func TestSchedulerRetryPolicy(t *testing.T) {
	t.Parallel()
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("x", func(ctx context.Context, t taskpool.Task) error { return nil }))

	s, err := taskpool.New(reg)
	require.NoError(t, err)
	p := s.RetryPolicy()
	assert.Same(t, reg, p.Registry)
	assert.Zero(t, p.MaxAttempts, "nothing given: the built-in default")
	assert.Nil(t, p.Backoff)
	assert.Equal(t, 1, p.Attempts(taskpool.Task{Type: "x"}))

	s, err = taskpool.New(reg, taskpool.WithRetry(3, taskpool.ConstantBackoff(time.Second)))
	require.NoError(t, err)
	p = s.RetryPolicy()
	assert.Equal(t, 3, p.MaxAttempts)
	assert.Equal(t, 3, p.Attempts(taskpool.Task{Type: "x"}))
	d, err := p.Wait(taskpool.Task{Type: "x"}, 1)
	require.NoError(t, err)
	assert.Equal(t, time.Second, d)

	s, err = taskpool.New(taskpool.HandlerFunc(func(ctx context.Context, t taskpool.Task) error { return nil }))
	require.NoError(t, err)
	assert.Nil(t, s.RetryPolicy().Registry, "a handler that is not a registry")
}
