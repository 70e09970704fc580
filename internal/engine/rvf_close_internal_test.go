package engine

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// A Hold that comes once Close has begun does nothing: had it held, the
// dispatcher and the workers would have waited in it, with units left,
// for an Unhold no one calls (Close ended the hold before it).
func TestRvfHoldOnceCloseBeganDoesNothing(t *testing.T) {
	r := newRvRunner()
	e := New[rvUnit, rvLocal](Config{Workers: 2, BatchSize: 4, QueueSize: 64, Weights: [Lanes]int{1, 1, 1}}, r)
	e.Start()
	gate := make(chan struct{})
	const n = 10
	for i := range n {
		if err := e.Put(context.Background(), 1, rvUnit{id: i, wait: gate}, false, false); err != nil {
			t.Fatal(err)
		}
	}
	e.CloseAdmission()
	closed := make(chan struct{})
	go func() { e.Close(); close(closed) }()
	deadline := time.Now().Add(10 * time.Second)
	for !e.closed.Load() {
		if time.Now().After(deadline) {
			t.Fatal("Close never began")
		}
		runtime.Gosched()
	}
	e.Hold()
	close(gate)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		e.Unhold()
		<-closed
		t.Fatal("Close hangs after a Hold that came while it ran")
	}
	if e.Held() {
		t.Error("held after Close")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ran) != n {
		t.Errorf("%d units ran, want %d", len(r.ran), n)
	}
}
