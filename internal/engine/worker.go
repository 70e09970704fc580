package engine

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Worker runs the batches handed to it on its private channel. It
// registers itself on the engine's channel of worker channels whenever it
// has room for work.
type Worker[T, L any] struct {
	e  *Engine[T, L]
	ch chan []T // private task channel; only the dispatcher sends and closes

	// Local is the owner's per-worker state, passed to every Runner call.
	Local L

	mu      sync.Mutex    // held by Inspect, and by the worker when it swaps batch
	batch   []T           // batch being run
	cur     atomic.Uint64 // the unit begun (1 + index in batch, | held while held before it; 0 before the first) and, above curBits, its tag
	i       int           // the unit being run or dropped
	next    atomic.Int64  // the next unit of batch to claim: the worker adds one, the dispatcher takes the rest (steal.go)
	end     int           // under mu: the units of batch that are the worker's (less than its length once the rest is taken)
	hseq    uint64        // dispatcher only: hand-offs to it so far
	dying   int8          // what the goroutine was doing, for its replacement
	spare   []T           // empty buffer offered with the registration
	state   atomic.Int32  // wRunning, wParked or wWoken
	woke    uint64        // dispatcher only: the number of the hand-off that last woke it
	unit    atomic.Int64  // ns per unit in its last batch, 0 if unknown: set before it registers, read by the dispatcher
	counted bool          // under mu: busy counts its batch (running when Drain was called, or received since)
	reg     atomic.Int32  // what became of an early registration (early.go)
	pending []T           // under mu: an early batch in the channel, for Inspect
	parks   atomic.Uint64 // times it parked in receive (written by the worker alone)
	solo    [1]T          // the buffer of an early batch when the dispatcher has the spare (early.go)
}

// receiveYields is how many times a worker yields for its next batch
// before it parks, when it may (see receive).
const receiveYields = 3

// Worker states, for the dispatcher's handOff.
const (
	wRunning = iota // not parked on its channel
	wParked         // parked on its channel: a send wakes it
	wWoken          // woken by a hand-off, not running yet
)

// The layout of Worker.cur: the state in the low curBits bits, the tag
// given to Begin above them.
const (
	curBits = 16
	curMask = 1<<curBits - 1
	held    = 1 << (curBits - 1) // held before the unit, which has not begun
	// TagBits is how many bits of Begin's tag Inspect gives back.
	TagBits = 64 - curBits
)

// What a worker goroutine is doing, for the goroutine that replaces it if
// it dies.
const (
	inRun    = iota // Run or Drop of batch[i]
	inExit          // Exited for batch[i]
	inRetire        // Retired: it has left for good
)

// startWorker adds a worker. The caller holds e.mu.
func (e *Engine[T, L]) startWorker() {
	// No spare yet: the first hand-off makes a buffer the size of the
	// worker's fair share (a thousand workers each given one task would
	// otherwise hold a buffer of sixteen from Start).
	w := &Worker[T, L]{e: e, ch: make(chan []T, 1)}
	// Not 0: with no batch, 0 says that one is on its way (Inspect).
	w.next.Store(1)
	e.workers[w] = struct{}{}
	e.wg.Add(1)
	go w.loop(false)
}

// loop is the worker's life: run the batch, register, receive the next,
// until the dispatcher closes the channel. replaced is true when it
// carries on after the goroutine before it died in a Runner call.
func (w *Worker[T, L]) loop(replaced bool) {
	e := w.e
	returned := false
	defer func() {
		if !returned && w.dying != inRetire {
			// runtime.Goexit (or a panic on its way to crashing the
			// process) in a Runner call: carry on in a new goroutine.
			// Not in Retired: the worker has left, and has no unit.
			e.wg.Add(1) // before this goroutine's Done, so Wait cannot slip through
			go w.loop(true)
		}
		e.wg.Done()
	}()
	if replaced {
		again := w.dying == inExit
		w.dying = inExit
		e.r.Exited(&w.Local, &w.batch[w.i], again)
		w.dying = inRun
	}
	start := time.Duration(-1)
	for {
		if start < 0 && e.cfg.BatchWork > 0 && !replaced {
			start = time.Since(e.epoch) // one clock read, where time.Now takes two
		}
		n := w.runBatch()
		end := w.measure(start, n)
		replaced = false
		ok, waited := w.between()
		if !ok {
			returned = true
			return
		}
		// A batch received without waiting starts where the last one
		// ended, give or take between's bookkeeping: one clock read per
		// batch instead of two.
		start = end
		if waited {
			start = -1
		}
	}
}

// between does what a worker does between two batches: put the last one
// away, register, receive the next. It reports false when the worker is
// retired, and whether it waited for the next batch. It is not part of
// loop, so that its frame is not on the stack while a unit runs: loop,
// runBatch and the Runner leave the rest of a new goroutine's first stack
// to the unit's work.
//
//go:noinline
func (w *Worker[T, L]) between() (ok, waited bool) {
	e := w.e
	w.mu.Lock()
	// Under the lock with the batch: Inspect reads cur 0 with a batch as
	// a batch not begun, and showed the units just run as unstarted.
	w.cur.Store(0)
	clear(w.batch) // let the units be collected
	if w.batch != nil && !w.isSolo(w.batch) {
		// Before the first batch there is none. A spare no hand-off took
		// goes back to the free list. The solo buffer is never a spare.
		if w.spare != nil {
			e.putBuf(w.spare)
		}
		w.spare = w.batch[:0]
	}
	w.batch, w.end, w.i = nil, 0, 0
	again := w.settleReg()
	w.mu.Unlock()
	w.progress()
	if again {
		e.idle <- w
	}
	b, ok, waited := w.receive()
	if !ok {
		w.leave()
		return false, waited
	}
	w.mu.Lock()
	// An early batch was handed while the last one ran: its counter is
	// the worker's to reset (a plain hand-off's is the dispatcher's,
	// before it sends).
	w.next.Store(0)
	w.batch, w.end, w.pending = b, len(b), nil
	if !w.counted && e.draining.Load() {
		w.counted = true // under w.mu, as Drain counts
		e.busy.Add(1)
	}
	w.mu.Unlock()
	w.registerEarly()
	return true, waited
}

// leave removes w, retired, from the engine and folds its state into the
// retired workers'. Retired may end the goroutine (runtime.Goexit): the
// lock is let go by a defer, and loop, seeing dying at inRetire, does not
// replace the worker; it has left all the same. It is not part of between,
// which runs once per batch, so that between has no defer.
func (w *Worker[T, L]) leave() {
	e := w.e
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.workers, w)
	w.dying = inRetire
	e.r.Retired(&e.retired, &w.Local)
}

// progress signals Progress, once Drain was called, at the end of a
// batch, only when no other batch is running, so that an owner waiting for
// the last units is not woken, to look at every worker's state, once per
// batch (1000 workers sleeping 1ms each spent a fifth of their CPU in
// that). busy counts the batches running when Drain was called and those
// received since; the worker whose counted batch ends last signals. A
// batch that ended while Drain was counting is not counted: its worker
// signals unless a counted one is running, whose end will.
func (w *Worker[T, L]) progress() {
	e := w.e
	if w.counted {
		w.counted = false
		if e.busy.Add(-1) == 0 {
			e.Notify()
		}
		return
	}
	if e.draining.Load() && e.busy.Load() == 0 {
		e.Notify()
	}
}

// measure records the time per unit of the batch just run, which took
// n units since start, on the engine's clock (negative: not timed), for
// the dispatcher's next hand-off. It returns the time it read, or -1 if
// it read none.
func (w *Worker[T, L]) measure(start time.Duration, n int) time.Duration {
	if start < 0 || n <= 0 {
		w.unit.Store(0)
		return -1
	}
	end := time.Since(w.e.epoch)
	w.unit.Store(max(int64(end-start)/int64(n), 1))
	return end
}

// runBatch runs the units of the batch it claims, and returns how many it
// ran or dropped. Each unit is claimed with one atomic add on the worker's
// own counter, so that the dispatcher can take the rest of a batch that
// waits behind a long unit (see steal.go) with each unit run once.
//
// Before each unit the worker reads the control word, and waits while a
// hold is on: the only check on the way from one unit to the next that
// costs nothing but a load. A unit that passed it while a Hold began is
// caught by Begin.
func (w *Worker[T, L]) runBatch() int {
	e := w.e
	ran := 0
	for w.claim() {
		ran++
		for {
			c := e.ctl.Load()
			if c == 0 {
				break
			}
			if c&ctlAbandon != 0 {
				w.cur.Store(uint64(w.i+1) | held)
				e.r.Drop(&w.Local, &w.batch[w.i])
				for w.claim() {
					ran++
					// Inspect shows from the unit being dropped on: the
					// ones dropped already are finished.
					w.cur.Store(uint64(w.i+1) | held)
					e.r.Drop(&w.Local, &w.batch[w.i])
				}
				return ran
			}
			w.hold()
		}
		e.r.Run(w, &w.batch[w.i])
	}
	return ran
}

// claim takes the next unit of the batch, making it w.i, and reports
// whether there was one the dispatcher had not taken.
func (w *Worker[T, L]) claim() bool {
	i := w.next.Add(1) - 1
	if i >= int64(len(w.batch)) {
		return false
	}
	w.i = int(i)
	return true
}

// Begin marks the unit being run as begun, with tag (of which Inspect
// gives back the low TagBits bits): the Runner calls it right before it
// starts the unit's work. It publishes that first and then reads the
// control word, while Hold sets the control word and then reads nothing:
// either Begin sees the hold or the unit began before Hold returned. A
// Begin that sees a hold waits in it, marked as held, and begins when it
// ends by an Unhold. A unit that passed runBatch's check before an
// Abandon is begun all the same: it was committed before the engine gave
// up. But a hold that an Abandon ends was on before the unit began:
// Begin then reports false, and the Runner must not start the unit but
// settle it as Drop does (a paused owner that gives up starts nothing).
func (w *Worker[T, L]) Begin(tag uint64) bool {
	c := tag<<curBits | uint64(w.i+1)
	w.cur.Store(c)
	for w.e.ctl.Load()&ctlHold != 0 {
		w.hold()
		if w.e.ctl.Load()&ctlAbandon != 0 {
			return false
		}
		w.cur.Store(c)
	}
	return true
}

// hold waits while a hold is on.
func (w *Worker[T, L]) hold() {
	e := w.e
	w.cur.Store(uint64(w.i+1) | held)
	e.mu.Lock()
	resume, on := e.resume, e.ctl.Load()&ctlHold != 0
	e.mu.Unlock()
	if on {
		<-resume
	}
}

// receive waits for the next batch, and reports whether it waited (for
// the clock: the next batch is timed from when it has it).
//
// A worker of tasks so short that a full batch is less than BatchWork of
// work (or that has not timed a batch yet: at its first registration, or
// as the replacement of one that died), among no more workers than
// processors, yields up to receiveYields times before it parks while the
// lanes hold units: the dispatcher, which its registration has just
// readied on this processor if it was waiting, is about to hand it a
// batch, and takes the processor for that during a yield, so the worker
// finds the batch without a park and a wake-up, which cost about as much
// as the batch's work (with 4 and 8 parallel submitters and 2 workers,
// 75 -> 64 and 84 -> 68 ns per task, 40 interleaved runs each).
// Otherwise it parks at once: among more workers than processors a yield
// hands the processor to another worker, not to the dispatcher; with the
// lanes empty no batch is coming soon, and a yielding worker would only
// take the processor from submitters and busy workers; and a worker of
// longer tasks gains little (a park is a small part of its batch), while
// woken by the dispatcher's send it runs first on that processor, where
// after a yield it would queue behind the other goroutines. Before
// parking it says so in state, for the dispatcher's handOff, and counts
// the park in parks.
func (w *Worker[T, L]) receive() (b []T, ok, waited bool) {
	select {
	case b, ok := <-w.ch:
		return b, ok, false
	default:
	}
	if e := w.e; e.nlive.Load() <= e.procs.Load() && w.unit.Load() < e.shortUnit && e.laneUnits() > 0 {
		for range receiveYields {
			runtime.Gosched()
			select {
			case b, ok := <-w.ch:
				return b, ok, true
			default:
			}
		}
	}
	w.state.Store(wParked)
	w.parks.Store(w.parks.Load() + 1)
	b, ok = <-w.ch
	w.state.Store(wRunning)
	return b, ok, true
}
