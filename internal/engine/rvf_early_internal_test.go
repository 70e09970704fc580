package engine

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// Item 5: the dispatcher retires surplus workers as it takes them from
// the channel of worker channels, and an early registration there is a
// worker still running its batch. Retiring it closes its channel while it
// runs: it runs its batch to the end, does not register again, and exits.
// No unit is lost, and the counts stay right: live drops at once (the
// dispatcher no longer counts on it), Workers counts it until it exits,
// so that no more units run than Workers says. The test plays the
// dispatcher, as nextWorker, park and shrink do with surplus.
func TestRvfRetiringAnEarlyRegistrationKeepsItsBatch(t *testing.T) {
	e, r, ws := rvEngine(t, 2)
	W, X := ws[0], ws[1]
	W.unit.Store(int64(time.Millisecond)) // long units: W registers early
	for i := range 2 {
		if err := e.Put(context.Background(), 1, rvUnit{id: 100 + i}, false, false); err != nil {
			t.Fatal(err)
		}
	}
	g := make(chan struct{})
	e.handOff(W, []rvUnit{{id: 0, wait: g}}, false)
	r.waitStarted(t, 0) // W registers early before it starts unit 0
	if got := <-e.idle; got != W || W.reg.Load() != regEarly {
		t.Fatal("W did not register early")
	}
	e.Resize(1)
	if !e.retire(W) {
		t.Fatal("W's early registration was not retired")
	}
	if n := e.nlive.Load(); n != 1 {
		t.Errorf("nlive %d after the retirement, want 1", n)
	}
	if n := e.Workers(); n != 2 {
		t.Errorf("Workers %d while W runs unit 0, want 2", n)
	}
	close(g)
	deadline := time.Now().Add(10 * time.Second)
	for e.Workers() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("W never exited")
		}
		runtime.Gosched()
	}
	r.mu.Lock()
	ran := r.ran[0]
	r.mu.Unlock()
	if ran != 1 {
		t.Errorf("unit 0 ran %d times, want once", ran)
	}
	if len(e.idle) != 0 {
		t.Error("W registered again after it was retired")
	}
	e.handOff(X, []rvUnit{{id: 2}}, false)
	r.waitStarted(t, 2)
	rvFinish(e, 1, []*Worker[rvUnit, rvLocal]{X})
}
