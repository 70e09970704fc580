package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/internal/engine"
)

// rvfClose calls Close and fails the test if it has not returned within
// a generous deadline; then it calls rescue, if any, which must let
// Close return, and waits for Close, so that no goroutine is left behind
// (without one, the test fails at once and goleak reports the rest).
func rvfClose(t *testing.T, e *engine.Engine[unit, local], rescue func(), what string) {
	t.Helper()
	closed := make(chan struct{})
	go func() { e.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		if rescue != nil {
			rescue()
			<-closed
		}
		t.Fatalf("Close hangs %s", what)
	}
}

// Item 1: a Hold that is on when Close is called ended Close's wait
// never: the dispatcher waited in holdDispatch for an Unhold, whether
// units were queued or not. Close ends the hold, and what is left runs.
func TestRvfCloseEndsAHold(t *testing.T) {
	tests := []struct {
		name string
		give int // units queued under the hold
	}{
		{"nothing queued", 0},
		{"units queued", 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRec()
			e := engine.New[unit, local](cfg(2, 64), r)
			e.Start()
			e.Hold()
			for i := range tt.give {
				require.NoError(t, e.Put(context.Background(), 1, unit{id: i}, false, false))
			}
			e.CloseAdmission()
			rvfClose(t, e, e.Unhold, "while a Hold is on")
			assert.False(t, e.Held(), "Close ended the hold")
			assert.Len(t, r.ran, tt.give, "what was queued ran")
			assert.Equal(t, 2, r.retired)
		})
	}
}

// gated reports a unit on passed before it calls Begin, waits for gate,
// and reports on begun what Begin returned.
type gated struct {
	passed chan int
	gate   chan struct{}
	begun  chan bool
}

func (g *gated) Run(w *engine.Worker[unit, local], u *unit) {
	g.passed <- u.id
	<-g.gate
	g.begun <- w.Begin(0)
}
func (g *gated) Drop(*local, *unit)         {}
func (g *gated) Exited(*local, *unit, bool) {}
func (g *gated) Retired(*local, *local)     {}

// A unit that calls Begin under a Hold waits in it: Close releases it,
// and it begins.
func TestRvfCloseReleasesAUnitHeldInBegin(t *testing.T) {
	g := &gated{passed: make(chan int, 1), gate: make(chan struct{}), begun: make(chan bool, 1)}
	e := engine.New[unit, local](cfg(1, 64), g)
	e.Start()
	require.NoError(t, e.Put(context.Background(), 1, unit{id: 1}, false, false))
	<-g.passed // past runBatch's look at the hold, before Begin
	e.Hold()
	close(g.gate)
	e.CloseAdmission()
	rvfClose(t, e, e.Unhold, "with a unit held in Begin")
	assert.True(t, <-g.begun, "the unit began")
}

// Item 2: Resize(0) leaves no worker; units queued then were never run
// and Close, which hands out what is left, waited for a worker forever.
// Close starts one when none is asked for.
func TestRvfCloseAfterResizeToZeroRunsWhatIsLeft(t *testing.T) {
	r := newRec()
	e := engine.New[unit, local](cfg(2, 64), r)
	e.Start()
	e.Resize(0)
	require.Eventually(t, func() bool { return e.Workers() == 0 }, 10*time.Second, time.Millisecond)
	for i := range 5 {
		require.NoError(t, e.Put(context.Background(), 1, unit{id: i}, false, false))
	}
	e.CloseAdmission()
	rvfClose(t, e, nil, "after Resize(0) with units queued")
	assert.Len(t, r.ran, 5)
	assert.Equal(t, 3, r.retired, "the two retired by Resize and the one Close started")
}
