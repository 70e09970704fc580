package engine_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/internal/engine"
)

type blockedCtxKey struct{}

// Config.Blocked is called by a Put about to wait for room, with its ctx,
// and what it returns once that Put returns, admitted or not; a Put that
// finds room, or is refused with ErrFull, does not call it.
func TestBlockedIsCalledAroundAPutThatWaits(t *testing.T) {
	r := newRec()
	c := cfg(1, 1)
	var blocked, unblocked atomic.Int32
	inWait := make(chan any, 2)
	c.Blocked = func(ctx context.Context) func() {
		blocked.Add(1)
		inWait <- ctx.Value(blockedCtxKey{})
		return func() { unblocked.Add(1) }
	}
	e := engine.New[unit, local](c, r)
	e.Start()
	e.Hold()
	require.NoError(t, e.Put(context.Background(), 1, unit{id: 0}, true, false))
	assert.ErrorIs(t, e.Put(context.Background(), 1, unit{id: 1}, false, false), engine.ErrFull)
	assert.Zero(t, blocked.Load(), "no Put waited")

	// Admitted once there is room.
	ctx := context.WithValue(context.Background(), blockedCtxKey{}, "admitted")
	admitted := make(chan error, 1)
	go func() { admitted <- e.Put(ctx, 1, unit{id: 2}, true, false) }()
	assert.Equal(t, "admitted", <-inWait)
	assert.Zero(t, unblocked.Load(), "still waiting")
	e.Unhold()
	require.NoError(t, <-admitted)
	assert.EqualValues(t, 1, unblocked.Load())

	// Given up with its ctx. The lane is emptied before the hold: the
	// dispatcher hands nothing out under one, so a Hold that came before
	// it took unit 2 left the lane full for good.
	require.Eventually(t, func() bool { return e.Queued()[1] == 0 }, 5*time.Second, time.Millisecond)
	e.Hold()
	require.NoError(t, e.Put(context.Background(), 1, unit{id: 3}, true, false))
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), blockedCtxKey{}, "cancelled"))
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- e.Put(ctx, 1, unit{id: 4}, true, false) }()
	assert.Equal(t, "cancelled", <-inWait)
	cancel()
	assert.ErrorIs(t, <-gaveUp, context.Canceled)
	assert.EqualValues(t, 2, blocked.Load())
	assert.EqualValues(t, 2, unblocked.Load())
	e.Unhold()
	e.CloseAdmission()
	e.Close()
}
