package engine

import (
	"context"
	"testing"
	"time"
)

type rvW = Worker[rvUnit, rvLocal]

// serveEarlyGated hands w a one-unit batch gated on g, waits for w's early
// registration and serves it (w's spare is nil: the lazy-spare case).
func serveEarlyGated(t *testing.T, e *Engine[rvUnit, rvLocal], r *rvRunner, w *rvW, id int, g chan struct{}, unit time.Duration) {
	t.Helper()
	w.unit.Store(int64(unit))
	if err := e.Put(context.Background(), 1, rvUnit{id: 100 + id}, false, false); err != nil {
		t.Fatal(err)
	}
	e.handOff(w, []rvUnit{{id: id, wait: g}}, false)
	r.waitStarted(t, id)
	if got := <-e.idle; got != w || w.reg.Load() != regEarly {
		t.Fatalf("no early registration of %d", id)
	}
	if w.spare != nil {
		t.Fatalf("spare %v before the first early hand-off", w.spare)
	}
	if !e.haveWork() || !e.serveEarly(w) {
		t.Fatalf("%d not served", id)
	}
	if !w.isSolo(w.pending) {
		t.Fatalf("nil spare: early batch not in the solo buffer")
	}
}

// The prune before growing in serveEarly drops only the entry that
// is over, reclaims nothing, and leaves firstDue at the earliest current due,
// so that expiry is not delayed.
func TestEarlyListPruneKeepsCurrentAndFirstDue(t *testing.T) {
	e, r, ws := rvEngine(t, 4)
	W1, W2, W3, Z := ws[0], ws[1], ws[2], ws[3]
	g1, g2, g3 := make(chan struct{}), make(chan struct{}), make(chan struct{})
	serveEarlyGated(t, e, r, W1, 1, g1, 10*time.Second)
	serveEarlyGated(t, e, r, W2, 2, g2, 10*time.Second) // grows: W1 current, kept
	if len(e.earlies) != 2 || cap(e.earlies) != 2 || len(e.back) != 0 {
		t.Fatalf("earlies %d/%d back %d", len(e.earlies), cap(e.earlies), len(e.back))
	}
	// W2 commits to its early batch and runs it: its entry is over.
	close(g2)
	r.waitStarted(t, 102)
	if got := <-e.idle; got != W2 || W2.reg.Load() != regPlain {
		t.Fatal("W2 did not register plain")
	}
	if e.earlies[1].current() {
		t.Fatal("W2's entry still current")
	}
	serveEarlyGated(t, e, r, W3, 3, g3, 50*time.Microsecond) // len == cap: sweep
	if len(e.back) != 0 {
		t.Fatalf("the prune before growing took %d batch(es) back", len(e.back))
	}
	if len(e.earlies) != 2 || e.earlies[0].w != W1 || e.earlies[1].w != W3 || cap(e.earlies) != 2 {
		t.Fatalf("earlies after prune: %d/%d", len(e.earlies), cap(e.earlies))
	}
	if W1.reg.Load() != regServed || e.firstDue != e.earlies[1].due || e.earlies[1].due >= e.earlies[0].due {
		t.Fatalf("W1 reg %d firstDue %v, dues %v %v", W1.reg.Load(), e.firstDue, e.earlies[0].due, e.earlies[1].due)
	}
	due := e.earlies[1].due
	// stealAll with no free worker: reclaimEarly(0) resets firstDue too.
	e.stealAll()
	if e.firstDue != due || len(e.back) != 0 {
		t.Fatalf("after stealAll firstDue %v want %v, back %d", e.firstDue, due, len(e.back))
	}
	for time.Since(e.epoch) <= due {
		time.Sleep(50 * time.Microsecond)
	}
	e.expireEarly()
	if len(e.back) != 1 || e.back[0][0].id != 103 || W3.reg.Load() != regTaken || W1.reg.Load() != regServed {
		t.Fatalf("W3's due batch not taken back: back %d W3 reg %d", len(e.back), W3.reg.Load())
	}
	if e.firstDue != e.earlies[0].due || len(e.earlies) != 1 {
		t.Fatalf("firstDue %v want W1's %v", e.firstDue, e.earlies[0].due)
	}
	if &e.back[0][0] == &W3.solo[0] {
		t.Fatal("W3's solo buffer handed on")
	}
	rvFinish(e, 4, []*rvW{Z, W2}, onceCloser(g1), onceCloser(g3))
	for _, id := range []int{1, 2, 3, 101, 102, 103} {
		if r.ran[id] != 1 {
			t.Errorf("unit %d ran %d times", id, r.ran[id])
		}
	}
}

// A worker has no spare until its first hand-off: W's first hand-off is filled into a fresh buffer of one
// slot (fill(nil, ...) with a fair share of 1); its early batch goes into
// the solo buffer; taken back for X, it is copied out; W's 1-slot spare is
// then refilled for W alone.
func TestLazySpareIsNeverShared(t *testing.T) {
	e, r, ws := rvEngine(t, 2)
	W, X := ws[0], ws[1]
	W.unit.Store(int64(time.Millisecond))
	g := make(chan struct{})
	for _, id := range []int{0, 50, 51} {
		u := rvUnit{id: id}
		if id == 0 {
			u.wait = g
		}
		if err := e.Put(context.Background(), 1, u, false, false); err != nil {
			t.Fatal(err)
		}
	}
	if !e.haveWork() {
		t.Fatal("no work")
	}
	b := e.fill(W.spare, 1)
	if cap(b) != 1 || len(b) != 1 || W.isSolo(b) {
		t.Fatalf("first buffer len %d cap %d", len(b), cap(b))
	}
	Y := &b[0]
	W.spare = nil
	e.handOff(W, b, false)
	r.waitStarted(t, 0)
	if got := <-e.idle; got != W || W.reg.Load() != regEarly {
		t.Fatal("no early registration")
	}
	if !e.haveWork() || !e.serveEarly(W) || !W.isSolo(W.pending) {
		t.Fatal("not served into solo")
	}
	e.ready = append(e.ready, X)
	e.stealAll()
	e.ready = e.ready[:0]
	if len(e.back) != 1 || W.isSolo(e.back[0]) || &e.back[0][:1][0] == Y {
		t.Fatalf("take-back: back %d", len(e.back))
	}
	xb := e.back[0]
	e.back = e.back[1:]
	X.spare = nil
	e.handOff(X, xb, false)
	r.waitStarted(t, 50)
	close(g)
	// W registers again (taken back) with its 1-slot spare, Y; X too.
	got := map[*rvW]bool{<-e.idle: true, <-e.idle: true}
	if !got[W] || !got[X] || W.reg.Load() != regPlain {
		t.Fatal("W and X did not both register")
	}
	if cap(W.spare) != 1 || &W.spare[:1][0] != Y {
		t.Fatalf("W's spare is not its first buffer")
	}
	if &X.spare[:1][0] == Y || &X.spare[:1][0] == &W.solo[0] {
		t.Fatal("X's spare aliases W's buffers")
	}
	if !e.haveWork() {
		t.Fatal("no work")
	}
	b2 := e.fill(W.spare, e.batchFor(W))
	W.spare = nil
	e.handOff(W, b2, false)
	r.waitStarted(t, 51)
	rvFinish(e, 2, []*rvW{X})
	for _, id := range []int{0, 50, 51} {
		if r.ran[id] != 1 {
			t.Errorf("unit %d ran %d times", id, r.ran[id])
		}
	}
}

// Close with a batch of several units still being claimed: the dispatcher
// sees units that may be held, parks with its steal timer, and looks
// again. If the batch is fully claimed between its look and park's
// (stealTimer prunes again and finds nothing held), park got no timer and
// waited for a poke that Close had already spent: Close hung (found once
// in ~20 runs of TestReviewEngNoBeginWhileHeld, all workers idle).
func TestParkWhenClosedAndNothingHeldReturns(t *testing.T) {
	e, r, ws := rvEngine(t, 2)
	W, X := ws[0], ws[1]
	e.handOff(W, []rvUnit{{id: 0}, {id: 1}}, false) // a holding entry
	r.waitStarted(t, 0)
	r.waitStarted(t, 1)
	if got := <-e.idle; got != W {
		t.Fatal("W did not register")
	}
	if len(e.holding) != 1 {
		t.Fatalf("%d holding entries", len(e.holding))
	}
	// The dispatcher's look found units maybe held; by park's, none is.
	e.closed.Store(true)
	done := make(chan bool, 1)
	go func() { done <- e.park() }()
	select {
	case more := <-done:
		if more {
			t.Fatal("park, closing with nothing held, did not report that the dispatcher may stop")
		}
	case <-time.After(5 * time.Second):
		e.poke() // let the test end
		<-done
		t.Fatal("park waited with no timer and no poke to come, though Close was called")
	}
	rvFinish(e, 2, []*Worker[rvUnit, rvLocal]{W, X})
}

// A buffer smaller than a lane's batch (a worker's spare of its fair
// share, the copy of a taken-back early task) is not recycled: a lane that
// got it would grow it by appends, allocating at each doubling.
func TestFreeListHoldsOnlyLaneSizedBuffers(t *testing.T) {
	e := New[rvUnit, rvLocal](Config{Workers: 1, QueueSize: 64}, newRvRunner())
	e.putBuf(make([]rvUnit, 1))
	e.putBuf(make([]rvUnit, 0, laneBatch/2))
	if b := e.getBuf(); cap(b) < laneBatch {
		t.Fatalf("getBuf gave a buffer of %d, under a lane's batch (%d)", cap(b), laneBatch)
	}
	big := make([]rvUnit, 0, laneBatch)
	e.putBuf(big)
	if b := e.getBuf(); cap(b) != laneBatch || &b[:1][0] != &big[:1][0] {
		t.Fatal("a lane-sized buffer was not recycled")
	}
}
