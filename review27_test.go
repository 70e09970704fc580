package taskpool_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// unwrapPanicsError is an error type whose methods read through its
// pointer: a nil one panics in Error and in Unwrap.
type unwrapPanicsError struct{ err error }

func (e *unwrapPanicsError) Error() string { return e.err.Error() }
func (e *unwrapPanicsError) Unwrap() error { return e.err }

// A handler's error whose Unwrap panics (a typed nil pointer) fails its
// task with a *PanicError, as a handler that panics does, for both kinds
// of job: the worker walked its chain with errors.As outside any recover,
// and the panic crashed the process.
func TestHandlerErrorWhoseUnwrapPanics(t *testing.T) {
	t.Parallel()
	h := taskpool.HandlerFunc(func(context.Context, taskpool.Task) error {
		var e *unwrapPanicsError
		return e
	})
	s, err := taskpool.New(h)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	defer func() { require.NoError(t, s.Stop(context.Background())) }()
	ctx := context.Background()

	// A plain job (no ID): its outcome is not kept, and Stop waits for it.
	require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "t"}))
	_, err = s.SubmitWait(ctx, taskpool.Task{ID: "recorded", Type: "t", MaxAttempts: 1})
	var pe *taskpool.PanicError
	assert.ErrorAs(t, err, &pe)
}
