package engine

import (
	"sync"
	"sync/atomic"
)

// Worker runs the batches handed to it on its private channel. It
// registers itself on the engine's channel of worker channels whenever it
// has room for work.
type Worker[T, L any] struct {
	e  *Engine[T, L]
	ch chan []T // private task channel; only the dispatcher sends and closes

	// Local is the owner's per-worker state, passed to every Runner call.
	Local L

	mu    sync.Mutex   // held by Inspect, and by the worker when it swaps batch
	batch []T          // batch being run
	cur   atomic.Int32 // 1 + index in batch of the unit running (| committing until it begins); -(1 + index) while held before it; 0 before the first
	i     int          // the unit being run or dropped
	dying int8         // what the goroutine was doing, for its replacement
	spare []T          // empty buffer offered with the registration
	state atomic.Int32 // wRunning, wParked or wWoken
	woke  uint64       // dispatcher only: the number of the hand-off that last woke it
}

// Worker states, for the dispatcher's handOff.
const (
	wRunning = iota // not parked on its channel
	wParked         // parked on its channel: a send wakes it
	wWoken          // woken by a hand-off, not running yet
)

// committing marks cur while a worker has announced a unit that has not
// begun.
const committing = 1 << 30

// What a worker goroutine is doing, for the goroutine that replaces it if
// it dies.
const (
	inRun  = iota // Run or Drop of batch[i]
	inExit        // Exited for batch[i]
)

// startWorker adds a worker. The caller holds e.mu.
func (e *Engine[T, L]) startWorker() {
	w := &Worker[T, L]{
		e:     e,
		ch:    make(chan []T, 1),
		spare: make([]T, 0, e.cfg.BatchSize),
	}
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
		if !returned {
			// runtime.Goexit (or a panic on its way to crashing the
			// process) in a Runner call: carry on in a new goroutine.
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
		w.i++
	}
	for {
		w.runBatch()
		w.cur.Store(0)
		if e.draining.Load() {
			e.Notify()
		}
		w.mu.Lock()
		clear(w.batch) // let the units be collected
		w.spare, w.batch, w.i = w.batch[:0], nil, 0
		w.mu.Unlock()
		e.idle <- w
		b, ok := w.receive()
		if !ok {
			e.mu.Lock()
			delete(e.workers, w)
			e.r.Retired(&e.retired, &w.Local)
			e.mu.Unlock()
			returned = true
			return
		}
		w.mu.Lock()
		w.batch = b
		w.mu.Unlock()
	}
}

// runBatch runs the batch from w.i on. Before each unit the worker
// announces it (cur, with the committing bit) and then reads the control
// word: the only check on the way from one unit to the next. Hold waits
// for announced units to begin (Begin) or to see the hold, so that after
// Hold returns no unit begins.
func (w *Worker[T, L]) runBatch() {
	e := w.e
	for ; w.i < len(w.batch); w.i++ {
		for {
			w.cur.Store(int32(w.i+1) | committing)
			c := e.ctl.Load()
			if c == 0 {
				break
			}
			if c&ctlAbandon != 0 {
				w.cur.Store(int32(-w.i - 1))
				for ; w.i < len(w.batch); w.i++ {
					e.r.Drop(&w.Local, &w.batch[w.i])
				}
				return
			}
			w.hold()
		}
		e.r.Run(w, &w.batch[w.i])
	}
}

// Begin marks the unit announced by the worker as begun: the Runner calls
// it right before it starts the unit's work. A Hold that began earlier
// waits for it.
func (w *Worker[T, L]) Begin() { w.cur.Store(int32(w.i + 1)) }

// hold waits while a hold is on.
func (w *Worker[T, L]) hold() {
	e := w.e
	w.cur.Store(int32(-w.i - 1))
	e.mu.Lock()
	resume, held := e.resume, e.ctl.Load()&ctlHold != 0
	e.mu.Unlock()
	if held {
		<-resume
	}
}

// receive waits for the next batch. It parks at once: a worker that
// yields instead, waiting for the dispatcher, takes the processor from
// submitters and busy workers, and burns CPU when no work comes. Before
// parking it says so in state, for the dispatcher's handOff.
func (w *Worker[T, L]) receive() ([]T, bool) {
	select {
	case b, ok := <-w.ch:
		return b, ok
	default:
	}
	w.state.Store(wParked)
	b, ok := <-w.ch
	w.state.Store(wRunning)
	return b, ok
}
