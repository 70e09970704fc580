package engine

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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
		dRegistered(t, e, ws[i])
		if i < n-1 {
			dNoSignal(t, e, fmt.Sprintf("after %d of %d batches", i+1, n))
		}
	}
	dSignal(t, e, "after the last batch") // and busy is 0
	rvFinish(e, n, ws)
}

// The cases below were written by an adversarial review of Drain's census:
// each plays the dispatcher through one way a batch can end while draining.

type dU struct {
	id       int
	gate     chan struct{} // Run waits for it after it starts
	exit     bool          // Run ends in runtime.Goexit after the gate
	exitGate chan struct{} // Exited waits for it
}

type dL struct{}

type dRunner struct {
	started chan int
	exited  chan int
	dropped chan int
	done    atomic.Int64 // units run, exited or dropped
}

func (r *dRunner) Run(w *Worker[dU, dL], u *dU) {
	if !w.Begin(0) {
		r.Drop(&w.Local, u)
		return
	}
	r.started <- u.id
	if u.gate != nil {
		<-u.gate
	}
	if u.exit {
		runtime.Goexit()
	}
	r.done.Add(1)
}
func (r *dRunner) Drop(_ *dL, u *dU) { r.done.Add(1); r.dropped <- u.id }
func (r *dRunner) Exited(_ *dL, u *dU, _ bool) {
	r.exited <- u.id
	if u.exitGate != nil {
		<-u.exitGate
	}
	r.done.Add(1)
}
func (r *dRunner) Retired(*dL, *dL) {}

type dW = Worker[dU, dL]

func dEngine(t *testing.T, n int) (*Engine[dU, dL], *dRunner, []*dW) {
	t.Helper()
	r := &dRunner{started: make(chan int, 64), exited: make(chan int, 64), dropped: make(chan int, 64)}
	e, ws := playedEngine[dU, dL](n, r)
	return e, r, ws
}

// dRegistered waits for w's registration, which says its progress() ran.
func dRegistered[U, L any](t *testing.T, e *Engine[U, L], w *Worker[U, L]) {
	t.Helper()
	select {
	case got := <-e.idle:
		if got != w {
			t.Fatalf("another worker registered")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no registration")
	}
}

func dNoSignal[U, L any](t *testing.T, e *Engine[U, L], when string) {
	t.Helper()
	select {
	case <-e.Progress():
		t.Fatalf("signalled %s, with a counted batch still running (busy %d)", when, e.busy.Load())
	default:
	}
}

func dSignal[U, L any](t *testing.T, e *Engine[U, L], when string) {
	t.Helper()
	select {
	case <-e.Progress():
	default:
		t.Fatalf("no signal %s (busy %d)", when, e.busy.Load())
	}
	if b := e.busy.Load(); b != 0 {
		t.Fatalf("busy %d %s", b, when)
	}
}

func dFinish(e *Engine[dU, dL], ws []*dW) {
	for _, w := range ws {
		close(w.ch)
	}
	e.wg.Wait()
}

// A batch whose goroutine dies in runtime.Goexit is carried on by a new
// goroutine: counted once, by Drain, it ends once, after Exited and the
// units behind, and the last end signals.
func TestDrainGoexitReplacement(t *testing.T) {
	e, r, ws := dEngine(t, 2)
	g0, eg0, g1, g2 := make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{})
	e.handOff(ws[0], []dU{{id: 0, gate: g0, exit: true, exitGate: eg0}, {id: 1, gate: g1}}, false)
	waitUnit(t, r.started, 0, "started")
	e.handOff(ws[1], []dU{{id: 2, gate: g2}}, false)
	waitUnit(t, r.started, 2, "started")
	e.Drain()
	if b := e.busy.Load(); b != 2 {
		t.Fatalf("busy %d after Drain, want 2", b)
	}
	close(g0)
	waitUnit(t, r.exited, 0, "exited")
	close(g2)
	dRegistered(t, e, ws[1])
	dNoSignal(t, e, "after W1's batch, W0's replacement in Exited")
	close(eg0)
	waitUnit(t, r.started, 1, "started")
	dNoSignal(t, e, "with W0 in its second unit")
	close(g1)
	dRegistered(t, e, ws[0])
	dSignal(t, e, "after the last batch")
	dFinish(e, ws)
}

// Drain called while the replacement goroutine runs Exited: the batch is
// still the worker's and is counted.
func TestDrainDuringExited(t *testing.T) {
	e, r, ws := dEngine(t, 1)
	eg0 := make(chan struct{})
	e.handOff(ws[0], []dU{{id: 0, exit: true, exitGate: eg0}}, false)
	waitUnit(t, r.exited, 0, "exited")
	e.Drain()
	if b := e.busy.Load(); b != 1 {
		t.Fatalf("busy %d after Drain, want 1", b)
	}
	dNoSignal(t, e, "while Exited runs")
	close(eg0)
	dRegistered(t, e, ws[0])
	dSignal(t, e, "after the batch")
	dFinish(e, ws)
}

// The rest of a counted batch taken into back and handed to another
// worker: two counted batches, one signal, after the second ends.
func TestDrainStealRest(t *testing.T) {
	e, r, ws := dEngine(t, 2)
	W, X := ws[0], ws[1]
	g0, g1 := make(chan struct{}), make(chan struct{})
	e.handOff(W, []dU{{id: 0, gate: g0}, {id: 1, gate: g1}, {id: 2}}, false)
	waitUnit(t, r.started, 0, "started")
	e.Drain()
	e.ready = append(e.ready, X)
	e.stealAll()
	if len(e.back) != 1 || len(e.back[0]) != 2 {
		t.Fatalf("back %v, want the rest [1 2]", e.back)
	}
	e.ready = e.ready[:0]
	b := e.back[0]
	e.back = e.back[:0]
	e.handOff(X, b, false)
	waitUnit(t, r.started, 1, "started")
	if n := e.busy.Load(); n != 2 {
		t.Fatalf("busy %d, want 2", n)
	}
	close(g0)
	dRegistered(t, e, W)
	dNoSignal(t, e, "after W's batch, X running its rest")
	close(g1)
	dRegistered(t, e, X)
	if d := r.done.Load(); d != 3 {
		t.Fatalf("%d units done, want 3", d)
	}
	dSignal(t, e, "after the rest")
	dFinish(e, ws)
}

// A solo early batch taken back while draining: its copy, of its size, is
// not the worker's solo buffer, the solo buffer is cleared, and the batch
// is counted only by the worker that receives it.
func TestDrainSoloEarlyReclaimed(t *testing.T) {
	e, r, ws := dEngine(t, 3)
	W, X := ws[0], ws[1]
	W.unit.Store(int64(time.Millisecond))
	if err := e.Put(context.Background(), 1, dU{id: 10}, false, false); err != nil {
		t.Fatal(err)
	}
	g0 := make(chan struct{})
	e.handOff(W, []dU{{id: 0, gate: g0}}, false)
	waitUnit(t, r.started, 0, "started")
	dRegistered(t, e, W) // early
	if W.reg.Load() != regEarly {
		t.Fatalf("reg %d, want early", W.reg.Load())
	}
	if !e.haveWork() || !e.serveEarly(W) {
		t.Fatal("not served")
	}
	W.mu.Lock()
	solo := W.isSolo(W.pending)
	W.mu.Unlock()
	if !solo {
		t.Fatal("the early batch is not in the solo buffer")
	}
	e.Drain()
	if n := e.busy.Load(); n != 1 {
		t.Fatalf("busy %d, want 1 (the early batch is not running)", n)
	}
	if e.reclaimEarly(1) != 1 || len(e.back) != 1 {
		t.Fatal("not taken back")
	}
	b := e.back[0]
	e.back = e.back[:0]
	if cap(b) != 1 || len(b) != 1 || &b[0] == &W.solo[0] || W.solo[0].id != 0 || b[0].id != 10 {
		t.Fatalf("copy cap %d len %d, solo %v, unit %d", cap(b), len(b), &b[0] == &W.solo[0], b[0].id)
	}
	e.handOff(X, b, false)
	waitUnit(t, r.started, 10, "started")
	dRegistered(t, e, X)
	dNoSignal(t, e, "after X's batch, W running")
	X.mu.Lock()
	spare := cap(X.spare)
	X.mu.Unlock()
	if spare != 1 {
		t.Fatalf("X's spare cap %d, want the copy's 1", spare)
	}
	close(g0)
	dRegistered(t, e, W) // taken back: registers again
	dSignal(t, e, "after W's batch")
	dFinish(e, ws)
}

// Abandoned while draining: the units dropped end the counted batch, whose
// end signals.
func TestDrainAbandonDrops(t *testing.T) {
	e, r, ws := dEngine(t, 1)
	g0 := make(chan struct{})
	e.handOff(ws[0], []dU{{id: 0, gate: g0}, {id: 1}, {id: 2}}, false)
	waitUnit(t, r.started, 0, "started")
	e.Hold()
	e.Drain()
	e.Abandon()
	close(g0)
	waitUnit(t, r.dropped, 1, "dropped")
	waitUnit(t, r.dropped, 2, "dropped")
	dRegistered(t, e, ws[0])
	dSignal(t, e, "after the dropped units")
	dFinish(e, ws)
}

// A worker that has received its batch and waits for its lock to set it,
// while Drain waits for the same lock to count it: whichever goes first,
// the batch is counted once.
func TestDrainCensusAgainstReceipt(t *testing.T) {
	for i := range 200 {
		e, r, ws := dEngine(t, 1)
		W := ws[0]
		deadline := time.Now().Add(10 * time.Second)
		for W.state.Load() != wParked {
			if time.Now().After(deadline) {
				t.Fatal("not parked")
			}
			runtime.Gosched()
		}
		g := make(chan struct{})
		W.mu.Lock()
		e.handOff(W, []dU{{id: i, gate: g}}, false)
		for W.state.Load() != wRunning {
			if time.Now().After(deadline) {
				t.Fatal("not received")
			}
			runtime.Gosched()
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); e.Drain() }()
		for !e.draining.Load() {
			runtime.Gosched()
		}
		W.mu.Unlock()
		wg.Wait()
		waitUnit(t, r.started, i, "started")
		if n := e.busy.Load(); n != 1 {
			t.Fatalf("round %d: busy %d, want 1", i, n)
		}
		close(g)
		dRegistered(t, e, W)
		dSignal(t, e, "after the batch")
		dFinish(e, ws)
	}
}
