// Package engine is the ground floor of taskpool: the shape and nothing
// else. Submitters put units of work into a task channel per priority (in
// batches), one dispatcher goroutine takes them out and hands them, again
// in batches, to workers that register their private channels on a
// channel of worker channels whenever they have room for work. A worker
// runs each unit through a [Runner].
//
// The engine knows nothing of task types, retries, timers, limits, unique
// keys, pause or statistics: those are layers above it, in the root
// package. It offers them four things: bounded admission with blocked
// callers admitted in order, a hold (no unit starts while it is on), an
// abandon (no unit starts again; the rest are handed to [Runner.Drop]),
// and a worker that survives runtime.Goexit.
package engine

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of Put.
var (
	// ErrClosed: admission is closed.
	ErrClosed = errors.New("engine: closed")
	// ErrFull: the lane is at its bound and the caller would not wait.
	ErrFull = errors.New("engine: full")
)

// Lanes is the number of priority lanes, highest first.
const Lanes = 3

// laneBatch is how many units a lane accumulates before it puts them on
// its task channel as one batch.
const laneBatch = 64

// spinYields is how many times a blocking Put, finding its lane full,
// yields for room before it parks (taking the lane's lock again after
// each yield may yield too: lane.lock).
const spinYields = 4

// lockSpins and lockYields are how many times a submitter tries a lane's
// lock again at once, and then after a yield, before it waits in the
// mutex (lane.lock).
const (
	lockSpins  = 32
	lockYields = 4
)

// Runner runs the units of an engine. Every method is called on the worker
// goroutine that owns l, one call at a time per worker.
type Runner[T, L any] interface {
	// Run runs t on worker w (whose state is w.Local), calling w.Begin
	// right before it starts t's work, if it does, and settling t as
	// Drop does instead when Begin reports false. Until then, Inspect
	// still shows the unit the worker began last. It must not keep t:
	// the slot is reused.
	Run(w *Worker[T, L], t *T)
	// Drop is called instead of Run for a unit that will never run
	// because the engine was abandoned.
	Drop(l *L, t *T)
	// Exited is called, on a new goroutine that carries on as the same
	// worker, when the goroutine in Run(l, t), Drop(l, t) or Exited(l, t)
	// ended without returning (runtime.Goexit, or a panic that will crash
	// the process). again reports that it died in Exited.
	Exited(l *L, t *T, again bool)
	// Retired folds the state of a worker that exits for good into acc,
	// under the lock Each holds. A Retired that ends its goroutine
	// (runtime.Goexit) retires the worker all the same: the lock is let
	// go, the worker count is right, and Exited is not called (there is
	// no unit); what it folded so far stays folded.
	Retired(acc, l *L)
}

// Config sizes an engine.
type Config struct {
	Workers   int           // workers at Start
	BatchSize int           // most units in one hand-off to a worker
	BatchWork time.Duration // work aimed at per hand-off, from the worker's time per unit; 0: BatchSize always
	QueueSize int           // bound of each lane, in units
	Weights   [Lanes]int    // share of hand-offs per lane when all have work
	Strict    bool          // always take the highest lane first

	// Blocked, if set, is called by a Put that is about to wait for room,
	// with its ctx, outside the lane's lock; the function it returns, if
	// not nil, is called once that Put returns.
	Blocked func(ctx context.Context) (unblock func())
}

// control bits of Engine.ctl, read by workers before every unit.
const (
	ctlHold    = 1 << iota // no unit starts
	ctlAbandon             // no unit starts, ever: Drop instead
)

// Engine is a batch-passing worker pool. The zero value is not usable;
// call New.
type Engine[T, L any] struct {
	cfg Config
	r   Runner[T, L]

	shortUnit int64 // BatchWork / BatchSize: a worker with a shorter time per unit may yield for its next batch (receive)

	lanes  [Lanes]lane[T]
	parked atomic.Uint64 // nonzero, a new number each time, while the dispatcher waits for work: submitters flush at once

	_   [64]byte
	ctl atomic.Uint32 // ctlHold | ctlAbandon
	_   [60]byte

	mu       sync.Mutex // guards workers, live, target, started, resume, retired; Close sets closed under it
	workers  map[*Worker[T, L]]struct{}
	live     int           // workers not retired
	target   int           // workers asked for (before Start: the workers Start starts)
	started  bool          // Start was called
	resume   chan struct{} // closed when a hold ends
	closed   atomic.Bool   // Close was called
	retired  L             // the folded state of retired workers
	surplus  atomic.Bool   // live > target: the dispatcher retires the next idle worker
	nlive    atomic.Int32
	idle     chan *Worker[T, L] // the channel of worker channels
	wake     chan struct{}      // tells the dispatcher to look at control state
	done     chan struct{}      // closed when the dispatcher and workers have exited
	wg       sync.WaitGroup
	procs    atomic.Int32 // GOMAXPROCS at Start: read by workers that may run before it (Resize first)
	draining atomic.Bool
	_        [60]byte
	busy     atomic.Int64 // batches received while draining that have not ended
	_        [56]byte
	progress chan struct{}
	epoch    time.Time // the workers' clock: time.Since(epoch) reads the monotonic clock alone
	free     chan []T  // recycled batch buffers
	waiters  sync.Pool // *waiter[T], for blocked Puts

	// dispatcher only
	nparks    uint64     // parks so far
	cur       [Lanes][]T // the batch being handed out, per lane
	pos       [Lanes]int
	taken     [Lanes]int64    // units taken out of each lane
	ready     []*Worker[T, L] // registered workers set aside by shrink
	cycle     []int
	next      int
	wakes     []wake[T, L]    // hand-offs that woke a worker, oldest first (from wq)
	holding   []holding[T, L] // hand-offs of more than one unit, maybe not all claimed yet
	back      [][]T           // units taken from behind a long unit, to hand out first
	earlies   []early[T, L]   // early hand-offs, oldest first, maybe not committed to yet; filtered in place, never sliding through its array
	firstDue  time.Duration   // no early hand-off is due before it (expireEarly)
	now       time.Duration   // the engine's clock as expireEarly read it this turn, -1 when stale (serveEarly)
	nearly    atomic.Uint64   // early hand-offs so far
	stealTime *time.Timer     // while parked with holding and a worker idle
	futile    [Lanes]int64    // per lane, 1 + out when admitStranded found no room there
	wq        int
	lastEarly bool   // the last hand-off was early (nextWorker)
	nwaits    uint64 // times nextWorker waited for a registration (dispatcher only)
	nwake     uint64 // hand-offs that woke a worker so far
}

// lane is one priority's admission and task channel. Submitters append to
// buf under mu; a full buf goes onto ch as one batch, or at once when the
// dispatcher is parked. The dispatcher takes batches from ch, and takes buf
// itself when ch is empty, so order within a lane is kept.
//
// A submitter touches only the first cache line on its way (the lock and
// the accumulator), and what the dispatcher reads for every batch changes
// once per batch, not once per unit: in counts the units that left the
// accumulator (onto ch, or taken by the dispatcher), so that the lane's
// queue is in + len(buf) - out, and buffered says that buf has units.
type lane[T any] struct {
	mu       sync.Mutex
	buf      []T
	closed   bool
	waiters  []*waiter[T] // blocked Put calls, oldest first
	accepted uint64       // units admitted without force
	outSeen  int64        // a recent out: while in + len(buf) - outSeen is below the bound, so is the queue
	_        [64]byte
	in       atomic.Int64 // units that left buf; changes under mu
	nwait    atomic.Int32
	buffered atomic.Bool // len(buf) > 0; changes under mu
	_        [51]byte
	out      atomic.Int64 // units handed to workers (dispatcher)
	_        [56]byte
	ch       chan []T
}

// lock takes l.mu for a submitter, on procs processors. When another
// holds it, it first tries again a few times at once (with more than one
// processor: the holder, the dispatcher taking the accumulator or another
// submitter, runs meanwhile and lets go within a few dozen nanoseconds),
// then yields up to lockYields times, trying again after each, before it
// waits in Lock. Parallel submitters on few processors contend for the
// lane at every Put, and one that waits in Lock parks at once when its
// processor has other goroutines to run, to be woken by an Unlock, where
// after a yield the lock is most often free (with 2 processors and 4, 8
// and 16 submitters, 70/65/88 -> 64/56/67 ns per task, 20 interleaved
// runs each; trying at once first keeps that). A yield comes after the
// tries at once, not before: a lone submitter that yielded whenever it
// met the dispatcher in the lock would wait in the global run queue,
// maybe while workers hold every processor, for a lock free again within
// nanoseconds. Lock, the fallback, keeps sync.Mutex's guarantee that no
// caller waits forever. The dispatcher, which must not queue behind
// submitters, locks l.mu itself.
func (l *lane[T]) lock(procs int32) {
	if l.mu.TryLock() {
		return
	}
	if procs > 1 {
		for range lockSpins {
			if l.mu.TryLock() {
				return
			}
		}
	}
	for range lockYields {
		runtime.Gosched()
		if l.mu.TryLock() {
			return
		}
	}
	l.mu.Lock()
}

// queuedLocked is the number of units in the lane. The caller holds l.mu.
func (l *lane[T]) queuedLocked() int64 {
	return l.in.Load() + int64(len(l.buf)) - l.out.Load()
}

type waiter[T any] struct {
	t    T
	done chan error // buffered: nil (admitted) or ErrClosed
	gone bool       // under lane.mu: answered
}

// New returns an engine that runs units with r. Call Start to run it.
func New[T, L any](cfg Config, r Runner[T, L]) *Engine[T, L] {
	e := &Engine[T, L]{
		cfg:      cfg,
		r:        r,
		workers:  make(map[*Worker[T, L]]struct{}, min(cfg.Workers, 1<<16)),
		idle:     make(chan *Worker[T, L], min(cfg.Workers, 1<<16)),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		progress: make(chan struct{}, 1),
		free:     make(chan []T, 256),
		cycle:    weightedCycle(cfg.Weights),
		epoch:    time.Now(),
		now:      -1,
		target:   cfg.Workers,
	}
	e.shortUnit = int64(cfg.BatchWork) / int64(max(cfg.BatchSize, 1))
	// Enough batches in a task channel for a full lane of full batches,
	// and a few partial ones; more than that waits in the accumulator.
	n := min(max(cfg.QueueSize/laneBatch, 1)+4, 1024)
	for i := range e.lanes {
		e.lanes[i].ch = make(chan []T, n)
	}
	return e
}

// Start starts the dispatcher and the workers: Config.Workers of them, or
// as many as the last Resize before it asked for.
func (e *Engine[T, L]) Start() {
	e.mu.Lock()
	e.procs.Store(int32(runtime.GOMAXPROCS(0)))
	e.started = true
	e.resizeLocked(e.target)
	e.mu.Unlock()
	e.wg.Add(1)
	go e.dispatch()
}

// Put adds t to lane p. With force it ignores the bound and the closed
// admission (for units already accepted once, such as retries); otherwise
// it returns ErrClosed once admission is closed, and at the bound either
// ErrFull (block false) or waits, behind earlier waiters, until there is
// room, admission closes or ctx ends.
func (e *Engine[T, L]) Put(ctx context.Context, p int, t T, block, force bool) error {
	l := &e.lanes[p]
	l.lock(e.procs.Load())
	if !force {
		if l.closed {
			l.mu.Unlock()
			return ErrClosed
		}
		for spins := 0; len(l.waiters) > 0 || e.full(l); spins++ {
			if !block {
				l.mu.Unlock()
				return ErrFull
			}
			if spins == spinYields || len(l.waiters) > 0 {
				return e.wait(ctx, l, t)
			}
			// Yield a few times before parking: under a steady flood the
			// dispatcher frees room within a yield, and a parked caller
			// costs a waiter, a channel and a wake-up.
			l.mu.Unlock()
			runtime.Gosched()
			l.lock(e.procs.Load())
			if l.closed {
				l.mu.Unlock()
				return ErrClosed
			}
		}
		l.accepted++
	}
	e.unlock(l, e.push(l, t))
	return nil
}

// full reports whether lane l is at its bound, reading out again only
// when the one seen last says so. The caller holds l.mu.
func (e *Engine[T, L]) full(l *lane[T]) bool {
	q, put := int64(e.cfg.QueueSize), l.in.Load()+int64(len(l.buf))
	if put-l.outSeen < q {
		return false
	}
	l.outSeen = l.out.Load()
	return put-l.outSeen >= q
}

// wait is Put's slow path. The caller holds l.mu.
func (e *Engine[T, L]) wait(ctx context.Context, l *lane[T], t T) error {
	w, _ := e.waiters.Get().(*waiter[T])
	if w == nil {
		w = &waiter[T]{done: make(chan error, 1)}
	}
	w.t, w.gone = t, false
	defer e.recycle(w)
	l.waiters = append(l.waiters, w)
	l.nwait.Add(1)
	// fill adds to out and then reads nwait without the lock: look at the
	// room again now that nwait is published, or a fill that made room
	// between the check in Put and here leaves this waiter behind.
	e.unlock(l, e.admitLocked(l))
	if f := e.cfg.Blocked; f != nil {
		select {
		case err := <-w.done: // admitted already
			return err
		default:
		}
		if unblock := f(ctx); unblock != nil {
			defer unblock()
		}
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
	}
	l.mu.Lock()
	if w.gone {
		l.mu.Unlock()
		return <-w.done
	}
	for i, x := range l.waiters {
		if x == w {
			l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
			break
		}
	}
	l.nwait.Add(-1)
	w.gone = true
	l.mu.Unlock()
	return ctx.Err()
}

// push appends t to the lane. The caller holds l.mu, and releases it with
// unlock, passing what push returns.
func (e *Engine[T, L]) push(l *lane[T], t T) (poke bool) {
	if l.buf == nil {
		l.buf = e.getBuf()
	}
	l.buf = append(l.buf, t)
	if len(l.buf) == 1 {
		// Published before parked is read: a dispatcher that parks
		// after this either sees buffered or is seen parked.
		l.buffered.Store(true)
	}
	if park := e.parked.Load(); len(l.buf) >= laneBatch || park != 0 {
		// Counted before the send: once the dispatcher has the batch,
		// in must count it.
		n := int64(len(l.buf))
		l.in.Add(n)
		select {
		case l.ch <- l.buf:
			l.buf = nil
			l.buffered.Store(false)
			// A parked dispatcher waits on its wake channel alone (one
			// channel to lock and queue on, not four), so the batch is
			// followed by a poke. parked is read again after in was
			// counted, as park reads in after setting parked: either
			// the dispatcher saw this batch before it slept, or it is
			// seen parked here and poked.
			//
			// Until it runs, later units accumulate: each one sent alone
			// would cost a buffer and a send, and fill the channel with
			// tiny batches, after which the accumulator grows past a
			// batch (and allocates). Only the park seen is cleared: the
			// dispatcher may wake and park again, and must be flushed to
			// then.
			if p := e.parked.Load(); p != 0 {
				e.parked.CompareAndSwap(p, 0)
				poke = true
			}
		default: // the channel is full: keep accumulating
			l.in.Add(-n)
		}
	}
	return poke
}

// unlock releases l.mu, then pokes the dispatcher if a push under it said
// so: a wake-up under the lock held every other submitter up for it.
func (e *Engine[T, L]) unlock(l *lane[T], poke bool) {
	l.mu.Unlock()
	if poke {
		e.poke()
	}
}

// recycle keeps a waiter whose Put has returned for the next one: its
// channel is empty and no list refers to it any more.
func (e *Engine[T, L]) recycle(w *waiter[T]) {
	var zero T
	w.t = zero
	e.waiters.Put(w)
}

// admitWaiters moves blocked Put calls into the lane while it has room.
func (e *Engine[T, L]) admitWaiters(l *lane[T]) {
	l.mu.Lock()
	e.unlock(l, e.admitLocked(l))
}

// admitLocked is admitWaiters with l.mu held; it reports whether the
// dispatcher must be poked once the lock is released.
func (e *Engine[T, L]) admitLocked(l *lane[T]) (poke bool) {
	for len(l.waiters) > 0 && l.queuedLocked() < int64(e.cfg.QueueSize) {
		w := l.waiters[0]
		l.waiters[0] = nil
		l.waiters = l.waiters[1:]
		l.nwait.Add(-1)
		w.gone = true
		l.accepted++
		poke = e.push(l, w.t) || poke
		w.done <- nil
	}
	return poke
}

// CloseAdmission makes every later Put without force fail with ErrClosed
// and answers the blocked ones with it.
func (e *Engine[T, L]) CloseAdmission() {
	for i := range e.lanes {
		l := &e.lanes[i]
		l.mu.Lock()
		l.closed = true
		for _, w := range l.waiters {
			w.gone = true
			w.done <- ErrClosed
		}
		l.waiters = nil
		l.nwait.Store(0)
		l.mu.Unlock()
	}
}

// Waiting is the number of Put calls blocked on lane p.
func (e *Engine[T, L]) Waiting(p int) int { return int(e.lanes[p].nwait.Load()) }

// Accepted is the number of units admitted by Put without force.
func (e *Engine[T, L]) Accepted() uint64 {
	var n uint64
	for i := range e.lanes {
		l := &e.lanes[i]
		l.mu.Lock()
		n += l.accepted
		l.mu.Unlock()
	}
	return n
}

// Queued returns, per lane, the units put and not yet handed to a worker.
// A batch handed to a worker is shown by Inspect from before it leaves
// the lane (Inspect waits for the worker to receive it), so a caller that
// reads Queued and then Inspect sees each unit put before it and not
// begun in one of them at least (in both if it moved meanwhile), except
// the units the dispatcher takes back from behind a running unit
// (steal.go), between the take and their next hand-off.
func (e *Engine[T, L]) Queued() [Lanes]int {
	var q [Lanes]int
	for i := range e.lanes {
		l := &e.lanes[i]
		l.mu.Lock()
		q[i] = int(max(l.queuedLocked(), 0))
		l.mu.Unlock()
	}
	return q
}

// Hold stops units from starting until Unhold, Abandon or Close: after
// Hold returns, no unit begins (see Worker.Begin for why it need not wait
// for anyone). Once Close was called it does nothing.
func (e *Engine[T, L]) Hold() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctl.Load()&ctlHold != 0 || e.closed.Load() {
		return
	}
	e.resume = make(chan struct{})
	e.ctl.Or(ctlHold)
}

// Unhold ends a Hold.
func (e *Engine[T, L]) Unhold() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.endHoldLocked() {
		e.poke()
	}
}

// endHoldLocked ends a hold, if one is on, and reports whether one was.
// The caller holds e.mu.
func (e *Engine[T, L]) endHoldLocked() bool {
	if e.ctl.Load()&ctlHold == 0 {
		return false
	}
	e.ctl.And(^uint32(ctlHold))
	close(e.resume)
	return true
}

// Held reports whether a Hold is on.
func (e *Engine[T, L]) Held() bool { return e.ctl.Load()&ctlHold != 0 }

// Abandon makes workers Drop every unit they have not started, from now
// on. It also ends a Hold.
func (e *Engine[T, L]) Abandon() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ctl.Or(ctlAbandon)
	e.endHoldLocked()
	e.poke()
}

// Abandoned reports whether Abandon was called.
func (e *Engine[T, L]) Abandoned() bool { return e.ctl.Load()&ctlAbandon != 0 }

// Drain makes workers signal Progress when their batches end, for an owner
// that waits for the last units to settle: after the last unit a worker
// runs or drops, a signal follows once no other batch is running.
//
// It counts in busy the batches running already, as a worker counts the
// ones it receives from now on, so that the signal comes when the last of
// them ends and not at the end of each (an owner woken a thousand times,
// looking at every worker each time, took a processor from the last
// thousand units).
func (e *Engine[T, L]) Drain() {
	e.draining.Store(true)
	for _, w := range e.workerList() {
		// Under the lock the worker takes to set and clear its batch,
		// and to count one it receives: each batch is counted once.
		w.mu.Lock()
		if w.batch != nil && !w.counted {
			w.counted = true
			e.busy.Add(1)
		}
		w.mu.Unlock()
	}
}

// Progress returns the channel signalled by workers once Drain was
// called, and by Notify.
func (e *Engine[T, L]) Progress() <-chan struct{} { return e.progress }

// Notify signals Progress.
func (e *Engine[T, L]) Notify() {
	select {
	case e.progress <- struct{}{}:
	default:
	}
}

// Resize sets the number of workers. New workers start at once; surplus
// ones are retired by the dispatcher, the only goroutine that retires, as
// they register idle (or early, see early.go: a worker still running its
// batch, which it runs to the end before it exits; Workers counts it
// until then). Resize(0) leaves the units queued until a Resize up, or
// Close, which starts a worker for them. Before Start it starts nothing
// and sets the number Start starts; after Close it does nothing.
func (e *Engine[T, L]) Resize(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed.Load() {
		return
	}
	if !e.started {
		e.target = n
		return
	}
	e.resizeLocked(n)
	e.poke()
}

// resizeLocked starts workers up to n and marks any surplus. The caller
// holds e.mu.
func (e *Engine[T, L]) resizeLocked(n int) {
	e.target = n
	for ; e.live < n; e.live++ {
		e.startWorker()
	}
	e.nlive.Store(int32(e.live))
	e.surplus.Store(e.live > e.target)
}

// Workers is the number of workers not retired.
func (e *Engine[T, L]) Workers() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.workers)
}

// Close stops the engine once the lanes are empty: the dispatcher hands
// out what is left, then closes every worker's channel; Close returns when
// the dispatcher and the workers have exited. Admission must be closed,
// and Start called.
//
// What is left runs (unless Abandon was called: then it is dropped). So
// Close ends a Hold, as Unhold does, and a later Hold does nothing; and
// after Resize(0), which leaves no worker to run it, Close starts one.
// Resize does nothing once Close was called. A later Close starts
// nothing, and returns when the first one does.
func (e *Engine[T, L]) Close() {
	e.mu.Lock()
	first := !e.closed.Swap(true)
	e.endHoldLocked()
	if first && e.target == 0 {
		// Only the first Close: a later one finds the number the
		// shutdown set to 0, and no dispatcher to retire a worker.
		e.resizeLocked(1)
	}
	e.poke()
	e.mu.Unlock()
	<-e.done
}

// Each calls f with each live worker's local state and then with the
// folded state of the retired ones, under the lock Retired is called
// under, so that no worker is seen twice or missed. f must not keep l.
func (e *Engine[T, L]) Each(f func(l *L)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for w := range e.workers {
		f(&w.Local)
	}
	f(&e.retired)
}

// workerList returns the workers, for a caller that then locks each one's
// mu without holding e.mu.
func (e *Engine[T, L]) workerList() []*Worker[T, L] {
	e.mu.Lock()
	ws := make([]*Worker[T, L], 0, len(e.workers))
	for w := range e.workers {
		ws = append(ws, w)
	}
	e.mu.Unlock()
	return ws
}

// Inspect calls f for each worker with its local state, the unit it runs
// (nil if none) with the tag its Begin was given, and the units of its
// batch it has not started, followed by those of an early batch waiting
// for it. f must not keep them. A worker to which the dispatcher is
// handing a batch is looked at once it has received it (see Queued).
func (e *Engine[T, L]) Inspect(f func(l *L, running *T, tag uint64, unstarted []T)) {
	var tmp []T
	for _, w := range e.workerList() {
		w.mu.Lock()
		for w.batch == nil && len(w.pending) == 0 && w.next.Load() == 0 {
			// A plain hand-off is on its way: the dispatcher set the
			// counter to 0 before it took the units out of the lanes,
			// and the worker sets its batch under w.mu when it receives
			// it, which it does at once (the dispatcher sends without
			// waiting, and nothing holds the worker back); the hot path
			// pays nothing for this look.
			w.mu.Unlock()
			runtime.Gosched()
			w.mu.Lock()
		}
		b := w.batch[:w.end]
		c := w.cur.Load()
		i := int(c & curMask &^ held)
		// An early batch waits in the channel behind the batch: it is
		// the worker's next.
		after := func(rest []T) []T {
			if len(w.pending) == 0 {
				return rest
			}
			tmp = append(append(tmp[:0], rest...), w.pending...)
			return tmp
		}
		switch {
		case c&held != 0 && i > 0 && i-1 <= len(b):
			f(&w.Local, nil, 0, after(b[i-1:])) // held before unit i-1
		case i > 0 && i <= len(b):
			f(&w.Local, &b[i-1], c>>curBits, after(b[i:]))
		case i == 0 && (len(b) > 0 || len(w.pending) > 0):
			f(&w.Local, nil, 0, after(b))
		}
		w.mu.Unlock()
	}
}

// poke wakes the dispatcher to look at the control state.
func (e *Engine[T, L]) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// getBuf returns an empty buffer of at least a lane's batch, from the free
// list when it has one.
func (e *Engine[T, L]) getBuf() []T {
	select {
	case b := <-e.free:
		return b
	default:
		return make([]T, 0, laneBatch)
	}
}

// putBuf gives b to the free list, if it is a lane's batch in size: a
// smaller one (a worker's spare of its fair share, a copy of a taken-back
// early task) would be grown by appends where a lane accumulates, and a
// grown accumulator holds memory a lane rarely needs again.
func (e *Engine[T, L]) putBuf(b []T) {
	if cap(b) < laneBatch || cap(b) > 4*laneBatch {
		return
	}
	clear(b)
	select {
	case e.free <- b[:0]:
	default:
	}
}

// weightedCycle spreads the lane indexes over a cycle in proportion to
// their weights (smooth weighted round robin).
func weightedCycle(w [Lanes]int) []int {
	total := 0
	for _, x := range w {
		total += max(x, 0)
	}
	if total == 0 {
		return []int{0, 1, 2}
	}
	cycle := make([]int, 0, total)
	var cur [Lanes]int
	for range total {
		best := 0
		for i := range cur {
			cur[i] += w[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		cycle = append(cycle, best)
	}
	return cycle
}
