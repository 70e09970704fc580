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

// received reports whether a value waits on tm's channel now.
func received(tm taskpool.Timer) bool {
	select {
	case <-tm.C():
		return true
	default:
		return false
	}
}

// Clock.NewTimer: the fake timer "behaves as a time.Timer does since Go
// 1.23": the same script, on a time.Timer (taskpool.SystemClock) and on
// the fake, gives the same answers. A timer that fired and whose value was
// not received is stopped by Stop and Reset, which report true and
// discard the value: none is received after they return. Once the value
// is received, they report false.
func TestClockTimerMatchesTimeTimer(t *testing.T) {
	clocks := []struct {
		name  string
		clock taskpool.Clock
	}{
		{"time.Timer", taskpool.SystemClock{}},
		{"fake", taskpooltest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))},
	}
	for _, cl := range clocks {
		t.Run(cl.name, func(t *testing.T) {
			c := cl.clock
			// Fired (due at once), not received.
			tm := c.NewTimer(0)
			assert.True(t, tm.Stop(), "Stop of a fired timer whose value was not received")
			assert.False(t, received(tm), "a value after Stop")
			assert.False(t, tm.Stop(), "stopped already")

			tm = c.NewTimer(0)
			assert.True(t, tm.Reset(time.Hour), "Reset of a fired timer whose value was not received")
			assert.False(t, received(tm), "a value after Reset")
			assert.True(t, tm.Stop(), "set again")

			// Fired and received.
			tm = c.NewTimer(0)
			<-tm.C()
			assert.False(t, tm.Stop(), "Stop after the value was received")
			assert.False(t, tm.Reset(time.Hour), "Reset after the value was received")
			assert.True(t, tm.Stop(), "set again")

			// Stopped, then set to fire at once: one value.
			tm = c.NewTimer(time.Hour)
			assert.True(t, tm.Stop())
			assert.False(t, tm.Reset(0), "Reset of a stopped timer")
			<-tm.C()
			assert.False(t, received(tm), "one value per firing")
			assert.False(t, tm.Stop())
		})
	}
}

// The fake Clock keeps only the timers that are set and have not fired: a
// long test that makes timer after timer, as a scheduler's timer loop
// does, does not grow it without bound. It kept every timer it had made,
// and Advance and WaitArmed went through them all. Pending, WaitArmed and
// Advance see a timer set again as before.
func TestClockKeepsOnlyTimersSet(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := taskpooltest.NewClock(start)
	fired := make([]taskpool.Timer, 100)
	for i := range fired {
		fired[i] = c.NewTimer(time.Second)
	}
	stopped := make([]taskpool.Timer, 100)
	for i := range stopped {
		stopped[i] = c.NewTimer(time.Hour)
	}
	assert.Equal(t, 200, c.Timers())
	c.Advance(time.Minute)
	assert.Equal(t, 100, c.Timers(), "fired timers dropped")
	assert.Equal(t, start.Add(time.Minute), <-fired[0].C(), "the fake time when it fired")
	for _, tm := range stopped {
		assert.True(t, tm.Stop())
	}
	assert.Zero(t, c.Timers(), "stopped timers dropped")
	assert.Empty(t, c.Pending())

	// Set again: kept once, seen by Pending, WaitArmed and Advance.
	tm := fired[1]
	assert.True(t, tm.Reset(time.Hour), "its value was not received")
	assert.True(t, tm.Reset(2*time.Hour), "set: active")
	assert.Equal(t, 1, c.Timers())
	due := c.Now().Add(2 * time.Hour)
	assert.Equal(t, []time.Time{due}, c.Pending())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.WaitArmed(ctx, due))
	c.Advance(2 * time.Hour)
	assert.Equal(t, due, <-tm.C())
	assert.Zero(t, c.Timers())

	// Set to fire at once: fired, not kept.
	assert.False(t, stopped[0].Reset(0))
	assert.Equal(t, c.Now(), <-stopped[0].C())
	assert.Zero(t, c.Timers())
}
