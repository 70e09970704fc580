package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/internal/engine"
)

// rvdEventually polls cond until it holds or d passes.
func rvdEventually(cond func() bool, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Microsecond)
	}
	return true
}

// A blocked Put waits "until there is room" (Put's doc). fill admits
// blocked Puts only once admitRoom (a quarter of the queue, up to a lane's
// batch) is free; when the dispatcher then waits for a worker that does
// not come, the room it freed is never handed to the waiter: here the one
// worker blocks in the first unit of a batch of 8, the lane has room for
// 8 and the blocked Put (and every Put behind it) waits until a worker
// is free, though the lane is not full.
func TestRvdBlockedPutWaitsWithRoomWhileWorkersAreBusy(t *testing.T) {
	b := &blocker{release: make(chan struct{})}
	e := engine.New[unit, local](engine.Config{Workers: 1, BatchSize: 8, QueueSize: 64, Weights: [engine.Lanes]int{1, 1, 1}}, b)
	e.Start()
	e.Hold()
	for i := range 64 {
		require.NoError(t, e.Put(context.Background(), 1, unit{id: i}, false, false))
	}
	done := make(chan error, 1)
	go func() { done <- e.Put(context.Background(), 1, unit{id: 64}, true, false) }()
	require.True(t, rvdEventually(func() bool { return e.Waiting(1) == 1 }, 5*time.Second))
	e.Unhold()
	// The worker takes a batch (of 8, or of 1 when the first Put found
	// the dispatcher parked and sent its unit alone) and blocks in its
	// first unit: the lane has room for as many.
	require.True(t, rvdEventually(func() bool {
		running := false
		e.Inspect(func(_ *local, u *unit, _ uint64, _ []unit) { running = running || u != nil })
		return running
	}, 5*time.Second))
	admitted := rvdEventually(func() bool { return e.Waiting(1) == 0 }, time.Second)
	q := e.Queued()[1]
	close(b.release)
	require.NoError(t, <-done)
	e.CloseAdmission()
	e.Close()
	if !admitted {
		t.Errorf("a blocked Put waited 1s with %d of 64 queued (room for %d) while the worker was busy", q, 64-q)
	}
}
