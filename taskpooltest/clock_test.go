package taskpooltest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

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
