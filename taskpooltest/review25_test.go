package taskpooltest_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/taskpooltest"
)

// blockedInWaitArmed counts the goroutines parked in Clock.WaitArmed.
func blockedInWaitArmed() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "[select") && strings.Contains(g, "taskpooltest.(*Clock).WaitArmed") {
			n++
		}
	}
	return n
}

// The Clock "is safe for concurrent use", and WaitArmed "waits until a
// timer is set to fire at or before by": two goroutines waiting at once
// both return once such a timer is set.
func TestReview25ConcurrentWaitArmed(t *testing.T) {
	clock := taskpooltest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	due := clock.Now().Add(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- clock.WaitArmed(ctx, due) }()
	}
	require.Eventually(t, func() bool { return blockedInWaitArmed() == 2 }, 10*time.Second, time.Millisecond,
		"both waiters parked")

	tm := clock.NewTimer(time.Hour)
	defer tm.Stop()
	for range 2 {
		assert.NoError(t, <-errs)
	}
}

// WaitArmed does not take the signal that Armed gives a test: a test that
// waits on Armed still sees the timer set while WaitArmed waited.
func TestReview25WaitArmedLeavesArmed(t *testing.T) {
	clock := taskpooltest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	due := clock.Now().Add(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- clock.WaitArmed(ctx, due) }()
	require.Eventually(t, func() bool { return blockedInWaitArmed() == 1 }, 10*time.Second, time.Millisecond)
	tm := clock.NewTimer(time.Hour)
	defer tm.Stop()
	require.NoError(t, <-done)
	select {
	case <-clock.Armed():
	case <-ctx.Done():
		t.Fatal("Armed did not receive for the timer set")
	}
}
