package taskpooltest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/taskpooltest"
)

// Run and Clock.WaitArmed refuse a nil ctx with taskpool.ErrNilContext, as
// the scheduler's methods do: Run runs no handler (the scheduler's
// SubmitFuture refuses it), and WaitArmed, with no timer armed, panicked
// on ctx.Done.
func TestReviewLateNilContextIsRefused(t *testing.T) {
	var nilCtx context.Context
	called := false
	h := taskpool.HandlerFunc(func(context.Context, taskpool.Task) error {
		called = true
		return nil
	})
	var err error
	require.NotPanics(t, func() { _, err = taskpooltest.Run(nilCtx, h, taskpool.Task{}) })
	assert.ErrorIs(t, err, taskpool.ErrNilContext)
	assert.False(t, called)

	c := taskpooltest.NewClock(time.Unix(0, 0))
	require.NotPanics(t, func() { err = c.WaitArmed(nilCtx, c.Now()) })
	assert.ErrorIs(t, err, taskpool.ErrNilContext)
}
