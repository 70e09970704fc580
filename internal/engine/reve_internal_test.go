package engine

// White-box review tests: the test goroutine plays the dispatcher (Start
// is not called), so every dispatcher-only field is touched by it alone
// and each interleaving is forced, not hoped for.

import (
	"context"
	"sync"
	"testing"
	"time"
)

type rvUnit struct {
	id     int
	wait   chan struct{}
	signal func()
}

type rvLocal struct{}

type rvRunner struct {
	started chan int
	mu      sync.Mutex
	ran     map[int]int
}

func newRvRunner() *rvRunner { return &rvRunner{started: make(chan int, 64), ran: map[int]int{}} }

func (r *rvRunner) Run(w *Worker[rvUnit, rvLocal], u *rvUnit) {
	if !w.Begin(0) {
		r.Drop(&w.Local, u)
		return
	}
	if u.signal != nil {
		u.signal()
	}
	r.started <- u.id
	if u.wait != nil {
		<-u.wait
	}
	r.mu.Lock()
	r.ran[u.id]++
	r.mu.Unlock()
}
func (r *rvRunner) Drop(*rvLocal, *rvUnit)         {}
func (r *rvRunner) Exited(*rvLocal, *rvUnit, bool) {}
func (r *rvRunner) Retired(*rvLocal, *rvLocal)     {}

func onceCloser(ch chan struct{}) func() {
	var o sync.Once
	return func() { o.Do(func() { close(ch) }) }
}

// rvEngine starts n workers, with one processor as far as early
// registration is concerned, and takes every first registration out of
// the channel of worker channels.
func rvEngine(t *testing.T, n int) (*Engine[rvUnit, rvLocal], *rvRunner, []*Worker[rvUnit, rvLocal]) {
	t.Helper()
	r := newRvRunner()
	e, ws := playedEngine[rvUnit, rvLocal](n, r)
	return e, r, ws
}

// playedEngine starts n workers of r for a test that plays the
// dispatcher, with one processor as far as early registration is
// concerned, and returns them in the order of their first registrations,
// which it takes out of the channel of worker channels.
func playedEngine[U, L any](n int, r Runner[U, L]) (*Engine[U, L], []*Worker[U, L]) {
	e := New[U, L](Config{Workers: n, BatchSize: 8, BatchWork: 10 * time.Microsecond, QueueSize: 64, Weights: [Lanes]int{1, 1, 1}}, r)
	e.mu.Lock()
	e.procs.Store(1)
	e.resizeLocked(n)
	e.mu.Unlock()
	ws := make([]*Worker[U, L], n)
	for i := range ws {
		ws[i] = <-e.idle
	}
	return e, ws
}

func (r *rvRunner) waitStarted(t *testing.T, id int) {
	t.Helper()
	waitUnit(t, r.started, id, "started")
}

// waitUnit waits for unit want on ch, which reports what happened to it.
func waitUnit(t *testing.T, ch chan int, want int, what string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("%s %d, want %d", what, got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("unit %d never %s", want, what)
	}
}

// rvFinish plays the dispatcher to the end: lets gates go, hands back's
// batches out, and closes each worker's channel as it registers.
func rvFinish(e *Engine[rvUnit, rvLocal], n int, free []*Worker[rvUnit, rvLocal], release ...func()) {
	for _, f := range release {
		f()
	}
	next := func() *Worker[rvUnit, rvLocal] {
		if len(free) > 0 {
			w := free[0]
			free = free[1:]
			return w
		}
		if n := len(e.ready); n > 0 {
			w := e.ready[n-1]
			e.ready = e.ready[:n-1]
			return w
		}
		return <-e.idle
	}
	for len(e.back) > 0 {
		w := next()
		if w.bounce() {
			continue
		}
		b := e.back[0]
		e.back = e.back[1:]
		w.spare = nil
		e.handOff(w, b, false)
	}
	closed := map[*Worker[rvUnit, rvLocal]]bool{}
	for len(closed) < n {
		if w := next(); !closed[w] {
			closed[w] = true
			close(w.ch)
		}
	}
	e.wg.Wait()
}

// Finding 1: an early hand-off to a worker bumps its hseq, which makes the
// holding entry of the multi-unit batch it runs look over: the rest of
// that batch can no longer be taken back for an idle worker. A worker of
// long units gets a multi-unit batch from back (the rest taken from
// behind a blocked unit); here U1 waits for U2 behind it.
func TestReveEarlyHandOffHidesBatchRestFromSteal(t *testing.T) {
	e, r, ws := rvEngine(t, 3)
	W, X, Y := ws[0], ws[1], ws[2]
	W.unit.Store(int64(time.Millisecond)) // W timed 1ms units (it is parked)

	ch := make(chan struct{})
	sig := onceCloser(ch)
	// One unit in the lanes, more than the registrations waiting (none).
	if err := e.Put(context.Background(), 1, rvUnit{id: 3}, false, false); err != nil {
		t.Fatal(err)
	}
	// W gets a batch of two from back: U1 waits for U2.
	e.handOff(W, []rvUnit{{id: 1, wait: ch}, {id: 2, signal: sig}}, false)
	r.waitStarted(t, 1)
	// W registered early (if at all) before it started U1.
	select {
	case got := <-e.idle:
		if got != W || W.reg.Load() != regEarly {
			t.Fatalf("not W's early registration (reg %d)", W.reg.Load())
		}
		if !e.haveWork() || !e.serveEarly(W) {
			t.Fatal("early registration not served")
		}
	default:
		// no early registration: unit 3 stays in its lane
	}
	// X and Y turn up idle; the dispatcher parks and looks at its steal
	// timer: two free workers, one early batch and one batch rest.
	e.ready = append(e.ready, X, Y)
	e.stealAll()
	var ids []int
	for _, b := range e.back {
		for _, u := range b {
			ids = append(ids, u.id)
		}
	}
	e.ready = e.ready[:0]
	if len(ids) != 2 && !(len(ids) == 1 && ids[0] == 2) {
		t.Errorf("taken back %v, want [3 2]: unit 2 is stuck behind unit 1, which waits for it, "+
			"while two workers are idle (holding %d, W.hseq %d)", ids, len(e.holding), W.hseq)
	}
	rvFinish(e, 3, []*Worker[rvUnit, rvLocal]{X, Y}, sig)
}

// Finding 2: stealAll counts registrations in the channel of worker
// channels as free workers, early ones included: it takes the rest of a
// batch for a worker that is busy, bounces it, and the units wait in back
// (neither Queued nor Inspect shows them) until some batch ends.
func TestReveStealForEarlyRegistration(t *testing.T) {
	e, r, ws := rvEngine(t, 2)
	W, X := ws[0], ws[1]
	W.unit.Store(int64(time.Millisecond))

	gW, gX := make(chan struct{}), make(chan struct{})
	if err := e.Put(context.Background(), 1, rvUnit{id: 9}, false, false); err != nil {
		t.Fatal(err)
	}
	e.handOff(W, []rvUnit{{id: 0, wait: gW}}, false)
	r.waitStarted(t, 0)
	if len(e.idle) != 1 || W.reg.Load() != regEarly {
		t.Fatal("no early registration")
	}
	// The lane's last unit goes to X with three others, the first blocked.
	if !e.haveWork() {
		t.Fatal("no work")
	}
	p := e.fill(nil, 1)
	e.handOff(X, append([]rvUnit{{id: 1, wait: gX}, {id: 2}, {id: 3}}, p...), false)
	r.waitStarted(t, 1)
	if e.haveWork() {
		t.Fatal("work left")
	}
	// The dispatcher parks; its steal timer fires.
	e.stealAll()
	waiting := 0
	e.Inspect(func(_ *rvLocal, _ *rvUnit, _ uint64, rest []rvUnit) { waiting += len(rest) })
	if len(e.back) != 0 || waiting != 3 {
		w := <-e.idle
		t.Errorf("with no worker free, stealAll took %d batch(es) for the early registration of a busy worker (%v, reg %d); "+
			"Inspect shows %d of the 3 units not started, Queued %v", len(e.back), w == W, w.reg.Load(), waiting, e.Queued())
		if !e.serveEarly(w) || w.reg.Load() != regBounced {
			t.Errorf("not bounced")
		}
		rvFinish(e, 2, nil, onceCloser(gX), onceCloser(gW))
		return
	}
	rvFinish(e, 2, nil, onceCloser(gX), onceCloser(gW))
}

// Finding 3: expireEarly stops at the first current entry that is not due,
// though entries are in hand-off order and each is due after its own
// worker's unit: a worker of short units behind one of long units keeps
// its early batch past its due.
func TestReveExpiryHeadOfLine(t *testing.T) {
	e, r, ws := rvEngine(t, 3)
	W1, W2, Z := ws[0], ws[1], ws[2]
	W1.unit.Store(int64(10 * time.Second))
	W2.unit.Store(int64(50 * time.Microsecond))
	g1, g2 := make(chan struct{}), make(chan struct{})
	for i, w := range []*Worker[rvUnit, rvLocal]{W1, W2} {
		if err := e.Put(context.Background(), 1, rvUnit{id: 10 + i}, false, false); err != nil {
			t.Fatal(err)
		}
		g := []chan struct{}{g1, g2}[i]
		e.handOff(w, []rvUnit{{id: i, wait: g}}, false)
		r.waitStarted(t, i)
		if got := <-e.idle; got != w {
			t.Fatal("no early registration")
		}
		if !e.haveWork() || !e.serveEarly(w) {
			t.Fatal("not served")
		}
	}
	due := e.earlies[1].due
	for time.Since(e.epoch) <= due {
		time.Sleep(100 * time.Microsecond)
	}
	e.expireEarly()
	if len(e.back) != 1 {
		t.Errorf("W2's early batch, due %v ago, not taken back: W1's, due in %v, is in front",
			time.Since(e.epoch)-due, e.earlies[0].due-time.Since(e.epoch))
	}
	rvFinish(e, 3, []*Worker[rvUnit, rvLocal]{Z}, onceCloser(g1), onceCloser(g2))
}

// After a Resize up, the channel of worker channels (sized for the workers
// at Start) may be full when a worker would register early: the worker
// must not wait there with the batch it has not run (the core's stress
// test caught Stop hanging on it), but register when its batch is over.
func TestEarlyRegistrationIntoAFullChannelAfterResizeUp(t *testing.T) {
	r := newRvRunner()
	e := New[rvUnit, rvLocal](Config{Workers: 1, BatchSize: 8, BatchWork: 10 * time.Microsecond, QueueSize: 256, Weights: [Lanes]int{1, 1, 1}}, r)
	e.mu.Lock()
	e.procs.Store(1)
	e.resizeLocked(3) // the channel of worker channels holds one
	e.mu.Unlock()
	var ws []*Worker[rvUnit, rvLocal]
	for range 3 {
		ws = append(ws, <-e.idle)
	}
	W, X, Y := ws[0], ws[1], ws[2]
	W.unit.Store(int64(time.Millisecond))
	e.idle <- X // X registers again: the channel is full
	// More units than waiting registrations: a full batch goes to the
	// task channel (the accumulator counts as one).
	for i := range laneBatch + 1 {
		if err := e.Put(context.Background(), 1, rvUnit{id: 10 + i}, false, false); err != nil {
			t.Fatal(err)
		}
	}
	g := make(chan struct{})
	e.handOff(W, []rvUnit{{id: 0, wait: g}}, false)
	if e.laneUnits() <= 1 {
		t.Fatalf("%d units in the lanes: W would not register early", e.laneUnits())
	}
	r.waitStarted(t, 0) // W would register early before it starts unit 0
	if got := W.reg.Load(); got != regPlain {
		t.Errorf("W's registration %d, want plain: it could not register early", got)
	}
	if len(e.idle) != 1 {
		t.Errorf("%d registrations waiting, want X's alone", len(e.idle))
	}
	rvFinish(e, 3, []*Worker[rvUnit, rvLocal]{Y}, onceCloser(g))
}
