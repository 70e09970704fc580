package engine_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Finding 4: Close with an early batch outstanding. stuckEarly leaves unit
// 2 in the channel of the worker whose unit 1 waits for it; the other
// worker waits for block. Close: the lanes are empty, so the dispatcher
// shuts down at once, waits for registrations, and never takes unit 2
// back (expireEarly is not run in shutdown), though the other worker
// turns up free. Without early registration unit 2 would be in a lane,
// and handed to that worker before the shutdown.
func TestReveCloseWithEarlyBatchOutstanding(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for try := 0; ; try++ {
		require.Less(t, try, 20, "unit 2 never went early behind unit 1")
		e, r, block := stuckEarly(t, 20*time.Millisecond)
		behind1 := false
		e.Inspect(func(_ *local, u *unit, _ uint64, rest []unit) {
			if u != nil && u.id == 1 && len(rest) == 1 && rest[0].id == 2 {
				behind1 = true
			}
		})
		if !behind1 {
			// behind unit 0: it runs once block is closed
			close(block)
			ranOnce(t, r, e, 3)
			e.CloseAdmission()
			e.Close()
			continue
		}
		e.CloseAdmission()
		closed := make(chan struct{})
		go func() { e.Close(); close(closed) }()
		close(block) // unit 0 ends: its worker registers, free for unit 2
		select {
		case <-closed:
			return
		case <-time.After(3 * time.Second): // unit 2 was due 41ms after its hand-off
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("try %d: Close hangs: ran %v, Inspect next %v, workers %d", try, r.ran, nextUnits(e), e.Workers())
		}
	}
}

// The same with a batch of two (pre-existing, no early registration):
// unit 0 waits for unit 1 behind it, and Close comes before the steal look.
func TestReveCloseWithBatchRestOutstanding(t *testing.T) {
	e, r := heldWaitOnNext(t, 6)
	// 6 units on 3 workers: [0 1] on one. Close while held: the
	// dispatcher hands all out on Unhold and shuts down without parking.
	e.CloseAdmission()
	closed := make(chan struct{})
	go func() { e.Close(); close(closed) }()
	time.Sleep(10 * time.Millisecond) // let Close set closed (only makes the hang likelier)
	e.Unhold()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		r.mu.Lock()
		defer r.mu.Unlock()
		t.Fatalf("Close hangs: ran %v, Inspect next %v", r.ran, nextUnits(e))
	}
}
