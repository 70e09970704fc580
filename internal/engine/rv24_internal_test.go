package engine

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Resize before Start starts workers at once, and each one, having
// registered, reads e.procs in receive (is it among no more workers than
// processors?) before it parks, while Start writes e.procs under e.mu,
// which the worker does not take: a data race under -race. Before receive
// yielded, a worker read procs only after its first batch, which the
// dispatcher Start launches after the write hands it.
func TestResizeBeforeStartReadsProcsWithoutARace(t *testing.T) {
	const n = 32
	r := &countRunner{n: n, done: make(chan struct{})}
	e := New[int, struct{}](Config{Workers: 1, BatchSize: 8, BatchWork: time.Second, QueueSize: n, Weights: [Lanes]int{1, 1, 1}}, r)
	e.Resize(2)
	// Wait until a worker is parked in receive, past its read of procs,
	// by its stack alone: an atomic load of its state, say, would order
	// the read before Start's write (and once Start has stored nlive, the
	// worker's load of it orders the write before its read).
	deadline := time.Now().Add(10 * time.Second)
	for !parkedInReceive() {
		if time.Now().After(deadline) {
			t.Fatal("no worker parked in receive")
		}
		runtime.Gosched()
	}
	e.Start()
	for i := range n {
		if err := e.Put(context.Background(), 0, i, false, false); err != nil {
			t.Fatal(err)
		}
	}
	r.waitAll(t)
	e.CloseAdmission()
	e.Close()
}

// parkedInReceive reports whether a goroutine is blocked in
// Worker.receive, from the stacks of all goroutines.
func parkedInReceive() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		if strings.Contains(header, "[chan receive") && strings.Contains(g, ").receive(") {
			return true
		}
	}
	return false
}
