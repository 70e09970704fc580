package taskpool

import (
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
