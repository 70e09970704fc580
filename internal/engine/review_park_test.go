package engine_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/internal/engine"
)

// A unit whose Put returned before Close was called runs before Close
// returns: the dispatcher may find no work, then Put and Close both
// happen, and it then sees closing. Close must not strand the unit.
func TestReviewParkPutBeforeCloseRuns(t *testing.T) {
	deadline := time.Now().Add(reviewStress(2 * time.Second))
	for i := 0; time.Now().Before(deadline); i++ {
		e := engine.New[unit, local](engine.Config{Workers: 1, BatchSize: 16, QueueSize: 64, Weights: [engine.Lanes]int{1, 1, 1}}, closer{})
		e.Start()
		u := unit{id: i, wait: make(chan struct{})}
		require.NoError(t, e.Put(context.Background(), i%engine.Lanes, u, false, false))
		e.CloseAdmission()
		e.Close()
		select {
		case <-u.wait:
		default:
			t.Fatalf("iteration %d: a unit put before Close did not run", i)
		}
	}
}

// Lone units around resizes and holds: the dispatcher parks with surplus
// workers (waiting on the idle channel and the wake channel, not on the
// lanes), and holdDispatch and nextWorker take pokes meant for park. Each
// unit still runs, and surplus workers are still retired, with no control
// change to wake the dispatcher once a unit is put.
func TestReviewParkLoneUnitsAroundResizeAndHold(t *testing.T) {
	e := engine.New[unit, local](engine.Config{Workers: 4, BatchSize: 16, BatchWork: 50 * time.Microsecond, QueueSize: 64, Weights: [engine.Lanes]int{1, 1, 1}}, closer{})
	e.Start()
	defer func() {
		e.CloseAdmission()
		e.Close()
	}()
	ran := func(u unit) {
		select {
		case <-u.wait:
		case <-time.After(5 * time.Second):
			t.Fatalf("unit %d did not run: %s", u.id, e.Dump())
		}
	}
	put := func(i int) {
		u := unit{id: i, wait: make(chan struct{})}
		require.NoError(t, e.Put(context.Background(), i%engine.Lanes, u, false, false))
		ran(u)
	}
	deadline := time.Now().Add(reviewStress(time.Second))
	for i := 0; time.Now().Before(deadline); i++ {
		switch i % 4 {
		case 0: // shrink, with units put while workers are still to retire
			e.Resize(1)
			for j := range 3 {
				put(i*8 + j)
			}
			for d := time.Now().Add(5 * time.Second); e.Workers() != 1; {
				require.True(t, time.Now().Before(d), "surplus workers not retired: %d live", e.Workers())
				runtime.Gosched()
			}
		case 1:
			e.Resize(4)
		case 2: // a unit put while held runs after Unhold
			e.Hold()
			u := unit{id: i * 8, wait: make(chan struct{})}
			require.NoError(t, e.Put(context.Background(), 1, u, false, false))
			e.Unhold()
			ran(u)
		}
		for j := range 3 {
			put(i*8 + 4 + j)
		}
	}
}
