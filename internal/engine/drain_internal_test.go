package engine

import "testing"

// Drain counts the batches running when it is called, as workers count
// those they receive from then on: the owner waiting for the last units
// is signalled once the last of them ends, not at the end of each (before
// this, each batch running at Drain signalled as it ended, and Stop looked
// at every worker each time). The test plays the dispatcher; a worker's
// registration after its batch says its progress() has run.
func TestDrainSignalsWhenTheLastRunningBatchEnds(t *testing.T) {
	const n = 4
	e, r, ws := rvEngine(t, n)
	gates := make([]chan struct{}, n+1)
	for i := range gates {
		gates[i] = make(chan struct{})
	}
	for i, w := range ws[:n-1] {
		e.handOff(w, []rvUnit{{id: i, wait: gates[i]}}, false)
		r.waitStarted(t, i)
	}
	e.Drain()
	// A batch received after Drain is counted by its worker.
	e.handOff(ws[n-1], []rvUnit{{id: n - 1, wait: gates[n-1]}}, false)
	r.waitStarted(t, n-1)
	for i := range n {
		close(gates[i])
		if got := <-e.idle; got != ws[i] {
			t.Fatalf("worker %d registered, want %d", indexOf(ws, got), i)
		}
		select {
		case <-e.Progress():
			if i < n-1 {
				t.Fatalf("signalled after %d of %d batches", i+1, n)
			}
		default:
			if i == n-1 {
				t.Fatal("no signal after the last batch")
			}
		}
	}
	if b := e.busy.Load(); b != 0 {
		t.Fatalf("busy %d after every batch ended", b)
	}
	rvFinish(e, n, ws)
}

func indexOf(ws []*rvW, w *rvW) int {
	for i, x := range ws {
		if x == w {
			return i
		}
	}
	return -1
}
