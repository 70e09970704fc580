package engine

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Resize before Start started workers at once, and each one, having
// registered, read e.procs in receive (is it among no more workers than
// processors?) before it parked, while Start wrote e.procs under e.mu,
// which the worker does not take: a data race under -race. Resize before
// Start now starts nothing (it sets the number Start starts), so no
// worker runs before Start's write; had one started, it would be parked
// in receive by now, where the stacks show it.
func TestResizeBeforeStartReadsProcsWithoutARace(t *testing.T) {
	const n = 32
	r := &countRunner{n: n, done: make(chan struct{})}
	e := New[int, struct{}](Config{Workers: 1, BatchSize: 8, BatchWork: time.Second, QueueSize: n, Weights: [Lanes]int{1, 1, 1}}, r)
	e.Resize(2)
	if w := e.Workers(); w != 0 || parkedInReceive() {
		t.Fatalf("%d workers before Start", w)
	}
	e.Start()
	for i := range n {
		if err := e.Put(context.Background(), 0, i, false, false); err != nil {
			t.Fatal(err)
		}
	}
	r.waitAll(t)
	if w := e.Workers(); w != 2 {
		t.Errorf("%d workers, want the 2 of the Resize before Start", w)
	}
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
