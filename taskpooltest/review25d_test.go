package taskpooltest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/taskpooltest"
)

// stopOrDrain is the pre-Go 1.23 idiom for stopping a timer, which code
// written for both semantics keeps: on a time.Timer since Go 1.23 it
// never blocks, as Stop reports true for a fired value not yet received
// (and discards it). It reports whether it returned within a second.
func stopOrDrain(tm taskpool.Timer) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if !tm.Stop() {
			<-tm.C()
		}
	}()
	select {
	case <-done:
		return true
	case <-time.After(time.Second):
		tm.Reset(0) // let the goroutine go, for goleak
		<-done
		return false
	}
}

// Timer is "the part of time.Timer a Clock provides", and the fake
// timer's Stop (2a2b9d7) discards a fired value not yet received "as a
// time.Timer's does since Go 1.23"; but it reported false then, where a
// time.Timer (go 1.24 in go.mod) reports true: the value was never
// delivered, the call stopped the timer. So the idiom above, which worked
// on the fake timer before 2a2b9d7 (the value stayed to be received) and
// works on a time.Timer, hung: Stop said the value had been sent, and
// had thrown it away. Reset likewise reported false.
func TestReview25dFakeTimerStopAndResetReportAFiredValueDiscarded(t *testing.T) {
	c := taskpooltest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	tm := c.NewTimer(time.Second)
	c.Advance(time.Second)
	assert.True(t, stopOrDrain(tm), "the stop-or-drain idiom hung")
	assert.False(t, tm.Stop(), "stopped already")

	tm = c.NewTimer(time.Second)
	c.Advance(time.Second)
	assert.True(t, tm.Reset(time.Hour), "Reset of a fired timer whose value was not received")
	select {
	case v := <-tm.C():
		t.Errorf("received %v after Reset", v)
	default:
	}
	assert.True(t, tm.Stop(), "set again: active")

	// A value received: Stop and Reset report false, as a time.Timer's.
	tm = c.NewTimer(time.Second)
	c.Advance(time.Second)
	<-tm.C()
	assert.False(t, tm.Stop())
	assert.False(t, tm.Reset(time.Hour))
	tm.Stop()
}
