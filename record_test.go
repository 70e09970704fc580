package taskpool

import (
	"context"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// A worker's claim on a record races with its Submit marking it queued:
// the claim must succeed whichever comes first (two CASes in a row, from
// queued then from admitting, both failed when the Submit's move fell
// between them, and the task was dropped as if cancelled).
func TestClaimRacesSubmitsMove(t *testing.T) {
	t.Parallel()
	n := 20000
	if testing.Short() {
		n = 2000
	}
	var r record
	for i := range n {
		r.state.Store(stAdmitting)
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r.cas(stAdmitting, stQueued)
		}()
		close(start)
		if i%2 == 0 {
			runtime.Gosched()
		}
		claimed := r.claim(stRunning)
		wg.Wait()
		require.True(t, claimed, "iteration %d: claim failed on a record nobody cancelled", i)
		require.Equal(t, stRunning, r.state.Load())
	}
}

// Cancel of a pending task must succeed while the task moves to its lane
// from the wait for a concurrency slot or from the timer heap: guessing
// the state (queued? waiting? delayed?) one CAS after another missed a
// task that moved between two guesses, and Cancel reported it not found
// while it went on to run.
func TestCancelRacesMoveToLane(t *testing.T) {
	t.Parallel()
	s, err := New(HandlerFunc(func(context.Context, Task) error { return nil }))
	require.NoError(t, err)
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for _, from := range []uint32{stWaiting, stDelayed} {
		for i := range n {
			r := &record{b: &binding{lane: 1}, heapIndex: -1}
			r.state.Store(from)
			start := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if from == stDelayed {
					s.timers.mu.Lock() // the timer fires under its lock
					defer s.timers.mu.Unlock()
				}
				r.cas(from, stQueued)
			}()
			close(start)
			if i%2 == 0 {
				runtime.Gosched()
			}
			ok := s.cancel1(r)
			wg.Wait()
			require.True(t, ok, "from %d, iteration %d: a pending task was not cancelled", from, i)
			require.Equal(t, stDone, r.state.Load())
		}
	}
}
