package engine

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// rvdU is a unit of rvdRunner: retry puts one more unit (id+1000), with
// force, once gate is closed, before it ends.
type rvdU struct {
	id    int
	gate  chan struct{}
	retry bool
	pre   chan struct{} // waited for before Begin, after reporting -id on started
	drop  chan struct{} // Drop waits for it, after reporting -id on started
}

type rvdRunner struct {
	e       *Engine[rvdU, struct{}]
	started chan int
	mu      sync.Mutex
	ran     map[int]int
	dropped map[int]int
}

func newRvdRunner() *rvdRunner {
	return &rvdRunner{started: make(chan int, 64), ran: map[int]int{}, dropped: map[int]int{}}
}

func (r *rvdRunner) Run(w *Worker[rvdU, struct{}], u *rvdU) {
	if u.pre != nil {
		r.started <- -u.id
		<-u.pre
	}
	if !w.Begin(0) {
		r.Drop(nil, u)
		return
	}
	r.started <- u.id
	if u.gate != nil {
		<-u.gate
	}
	if u.retry {
		_ = r.e.Put(context.Background(), 1, rvdU{id: u.id + 1000}, false, true)
	}
	r.mu.Lock()
	r.ran[u.id]++
	r.mu.Unlock()
}
func (r *rvdRunner) Drop(_ *struct{}, u *rvdU) {
	if u.drop != nil {
		r.started <- -u.id
		<-u.drop
	}
	r.mu.Lock()
	r.dropped[u.id]++
	r.mu.Unlock()
}
func (r *rvdRunner) Exited(*struct{}, *rvdU, bool) {}
func (r *rvdRunner) Retired(*struct{}, *struct{})  {}

func (r *rvdRunner) ended(id int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ran[id] + r.dropped[id]
}

// rvdPoll polls cond until it holds or 10s pass.
func rvdPoll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		runtime.Gosched()
		time.Sleep(50 * time.Microsecond)
	}
}

// A unit running while Close retires the workers puts a retry (a Put with
// force, which admission's closing lets through, "for units already
// accepted once"). The dispatcher had found the lanes empty and was
// waiting for the workers' registrations to close their channels: the
// retry stayed in its lane, neither run nor dropped, and Close returned.
func TestRvdRetryPutWhileCloseRetiresIsRun(t *testing.T) {
	r := newRvdRunner()
	e := New[rvdU, struct{}](Config{Workers: 2, BatchSize: 4, QueueSize: 64, Weights: [Lanes]int{1, 1, 1}}, r)
	r.e = e
	e.Start()
	gate := make(chan struct{})
	if err := e.Put(context.Background(), 1, rvdU{id: 1, gate: gate, retry: true}, false, false); err != nil {
		t.Fatal(err)
	}
	waitUnit(t, r.started, 1, "started")
	e.CloseAdmission()
	closed := make(chan struct{})
	go func() {
		e.Close()
		close(closed)
	}()
	// The dispatcher waits in shutdown for the running worker.
	rvdPoll(t, "shutdown", func() bool { return blockedIn(").shutdown(") })
	close(gate)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if n := r.ended(1001); n != 1 {
		t.Errorf("the retry put by a running unit during Close ended %d times, want 1 (ran or dropped)", n)
	}
}

// blockedIn reports whether a goroutine is blocked in a channel operation
// (a select included) in the function fn names, from the stacks of all
// goroutines.
func blockedIn(fn string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, rest, _ := strings.Cut(g, "\n")
		if !strings.Contains(header, "[chan receive") && !strings.Contains(header, "[select") {
			continue
		}
		// The innermost frame of the engine's own.
		for _, line := range strings.Split(rest, "\n") {
			if strings.Contains(line, "internal/engine.") {
				if strings.Contains(line, fn) {
					return true
				}
				break
			}
		}
	}
	return false
}

// A unit that passed runBatch's check, then met a Hold in Begin, is held
// there: Inspect shows it not started, Hold's promise holds it until
// Unhold. An Abandon that ends the hold does not start it: Begin reports
// false, and the Runner drops it (it began after Abandon returned, with no
// Unhold, though the owner was told by Hold and Inspect that it had not
// begun; the root package promises that Stop with an ended ctx on a paused
// scheduler starts nothing).
func TestRvdUnitHeldInBeginIsDroppedAfterAbandon(t *testing.T) {
	r := newRvdRunner()
	e := New[rvdU, struct{}](Config{Workers: 1, BatchSize: 4, QueueSize: 64, Weights: [Lanes]int{1, 1, 1}}, r)
	r.e = e
	e.Start()
	pre := make(chan struct{})
	if err := e.Put(context.Background(), 1, rvdU{id: 1, pre: pre}, false, false); err != nil {
		t.Fatal(err)
	}
	waitUnit(t, r.started, -1, "entered Run")
	e.Hold()
	close(pre)
	// Held in Begin: Inspect shows it not begun.
	rvdPoll(t, "held in Begin", func() bool {
		held := false
		e.Inspect(func(_ *struct{}, u *rvdU, _ uint64, rest []rvdU) {
			held = u == nil && len(rest) == 1 && rest[0].id == 1
		})
		return held && blockedIn(").hold(")
	})
	e.Abandon()
	e.CloseAdmission()
	e.Close()
	r.mu.Lock()
	ran, dropped := r.ran[1], r.dropped[1]
	r.mu.Unlock()
	if ran != 0 || dropped != 1 || len(r.started) != 0 {
		t.Errorf("unit 1, held in Begin when Abandon came: ran %d, dropped %d; want dropped once", ran, dropped)
	}
}

// A finished unit is never shown as unstarted (TestInspectNeverShowsFinishedUnits):
// a dropped one is finished too. After an Abandon the worker drops the
// rest of its batch without a word to Inspect, which went on showing the
// units it had dropped as not started until the batch ended.
func TestRvdInspectNeverShowsDroppedUnits(t *testing.T) {
	r := newRvdRunner()
	e := New[rvdU, struct{}](Config{Workers: 1, BatchSize: 4, QueueSize: 64, Weights: [Lanes]int{1, 1, 1}}, r)
	r.e = e
	e.Start()
	gate, drop := make(chan struct{}), make(chan struct{})
	e.Hold()
	units := []rvdU{{id: 1, gate: gate}, {id: 2}, {id: 3, drop: drop}, {id: 4}}
	for _, u := range units {
		if err := e.Put(context.Background(), 1, u, false, false); err != nil {
			t.Fatal(err)
		}
	}
	e.Unhold()
	waitUnit(t, r.started, 1, "started")
	e.Abandon()
	close(gate)
	waitUnit(t, r.started, -3, "being dropped") // unit 2 was dropped
	var rest []int
	e.Inspect(func(_ *struct{}, _ *rvdU, _ uint64, unstarted []rvdU) {
		for _, u := range unstarted {
			rest = append(rest, u.id)
		}
	})
	close(drop)
	e.CloseAdmission()
	e.Close()
	if r.ended(2) != 1 {
		t.Fatalf("unit 2 ended %d times", r.ended(2))
	}
	for _, id := range rest {
		if id == 2 {
			t.Errorf("Inspect shows %v not started while unit 3 is dropped: unit 2 was dropped already", rest)
		}
	}
}

// shutdown meets an early registration, in the channel of worker channels
// or in ready: its worker is still running, and is waited for (its
// registration bounced) before the channels close. The test plays the
// dispatcher.
func TestRvdShutdownWaitsForAWorkerRegisteredEarly(t *testing.T) {
	for _, inReady := range []bool{false, true} {
		e, r, ws := rvEngine(t, 2)
		W, X := ws[0], ws[1]
		W.unit.Store(int64(time.Millisecond))
		if err := e.Put(context.Background(), 1, rvUnit{id: 9}, false, false); err != nil {
			t.Fatal(err)
		}
		g := make(chan struct{})
		e.handOff(W, []rvUnit{{id: 0, wait: g}}, false)
		r.waitStarted(t, 0)
		if len(e.idle) != 1 || W.reg.Load() != regEarly {
			t.Fatal("no early registration")
		}
		// Unit 9 goes to X, which registers again when it is done.
		if !e.haveWork() {
			t.Fatal("no work")
		}
		e.handOff(X, e.fill(nil, 1), false)
		r.waitStarted(t, 9)
		if inReady {
			if w := <-e.idle; w != W {
				t.Fatal("not W's early registration first")
			}
			e.ready = append(e.ready, W)
		}
		e.closed.Store(true)
		res := make(chan bool, 1)
		go func() { res <- e.shutdown() }()
		rvdPoll(t, "shutdown waits", func() bool { return blockedIn(").shutdown(") })
		select {
		case ok := <-res:
			t.Fatalf("shutdown returned %v with W running", ok)
		default:
		}
		if W.reg.Load() != regBounced {
			t.Fatalf("W's early registration not bounced: %d", W.reg.Load())
		}
		close(g)
		select {
		case ok := <-res:
			if !ok {
				t.Fatal("shutdown found work")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("shutdown did not return")
		}
		<-e.done
		r.mu.Lock()
		if r.ran[0] != 1 || r.ran[9] != 1 {
			t.Fatalf("ran %v", r.ran)
		}
		r.mu.Unlock()
	}
}
