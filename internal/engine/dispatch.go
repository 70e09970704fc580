package engine

import (
	"runtime"
	"time"
)

// dispatch is the dispatcher: the only goroutine that takes batches out of
// the task channels, the only one that sends to workers, and the only one
// that retires them.
func (e *Engine[T, L]) dispatch() {
	defer e.wg.Done()
	for {
		e.now = -1
		if len(e.earlies) > 0 {
			e.expireEarly()
		}
		// Units taken back are handed out even under a hold (the
		// workers hold them, where Inspect shows them): a hold that began
		// after they were taken must not hide them in back.
		if e.ctl.Load()&ctlHold != 0 && len(e.back) == 0 {
			e.holdDispatch()
			continue
		}
		if !e.haveWork() {
			if e.closed.Load() {
				// A Put that returned before Close was called may have
				// come after haveWork looked: look again now that closing
				// is seen, which every such Put happens before.
				if e.haveWork() {
					continue
				}
				// Units may wait behind running ones, in a batch's rest
				// or an early batch: park keeps looking for idle workers
				// to take them until none is left, and then says so.
				if e.park() {
					continue
				}
				// Nothing left: retire every worker once all are idle,
				// unless a unit still running put another meanwhile.
				if !e.shutdown() {
					continue
				}
				return
			}
			e.park()
			continue
		}
		w := e.nextWorker()
		if w == nil {
			continue // control changed while waiting: look again
		}
		if e.serveEarly(w) {
			continue
		}
		// The worker is between batches: it claims nothing until it has
		// the next one. Its counter at 0 with no batch tells Inspect that
		// a batch is on its way to it, from before fill counts the units
		// out of the lanes until the worker has them (see Inspect).
		w.next.Store(0)
		var b []T
		if len(e.back) > 0 {
			// Taken from behind a long unit: before any lane's units.
			b = e.back[0]
			e.back[0] = nil
			e.back = e.back[1:]
		} else {
			b = e.fill(w.spare, e.batchFor(w))
		}
		w.spare = nil
		e.lastEarly = false
		e.handOff(w, b, false)
	}
}

// wake is a hand-off that woke a parked worker: the worker and the
// hand-off's number.
type wake[T, L any] struct {
	w *Worker[T, L]
	n uint64
}

// pending reports whether the worker of k has not run since k woke it.
func (k wake[T, L]) pending() bool {
	return k.w.state.Load() == wWoken && k.w.woke == k.n
}

// handOff sends b to w. The send is buffered, and the worker waits for
// it: it never blocks.
//
// A send that wakes a parked worker puts it in the next-to-run slot of
// the dispatcher's processor, and a second wake-up pushes the first worker
// out of that slot into the processor's local run queue. A processor runs
// its local queue only when the slot is empty, and another processor
// steals from it only when it has nothing else to run. So while one worker
// and the dispatcher hand off to each other through the slot (the worker
// registers, the dispatcher sends it the next batch, each inheriting the
// other's time slice), the pushed-out worker starves until the runtime
// preempts the pair, 10ms or more later, holding back its batch and
// leaving its processor share unused: a backlog that turned the median
// latency at 90% load into milliseconds once workers parked at once.
//
// The same holds without a ping-pong, while the worker in the slot runs a
// long batch and the other processors stay busy.
//
// So before it wakes a worker while an earlier wake-up is still pending,
// handOff yields: its processor runs the pending workers, and the
// dispatcher goes on from the global run queue, on whichever processor
// comes for it first. With more workers than processors a burst of
// wake-ups, each worker woken once, does not yield (a worker waiting its
// turn is the cost of having more of them than processors, and a yield
// per wake-up made trivial tasks on 64 workers a third slower); a
// ping-pong, a worker woken again while an earlier wake-up is pending,
// still does.
func (e *Engine[T, L]) handOff(w *Worker[T, L], b []T, early bool) {
	if !early && w.next.Load() != 0 {
		// The worker is between batches: it claims nothing until it
		// has b. (An early batch's worker runs the last one still.)
		// dispatch has stored it already, before fill; a test that
		// plays the dispatcher may not have.
		w.next.Store(0)
	}
	w.hseq++
	if len(b) > 1 {
		// Pruned when it parks, and here too: a dispatcher that never
		// parks, under steady load, kept one entry per hand-off.
		if len(e.holding) >= 2*int(e.nlive.Load())+64 {
			e.prune()
		}
		e.holding = append(e.holding, holding[T, L]{w, w.hseq})
	}
	if w.state.CompareAndSwap(wParked, wWoken) {
		last := w.woke
		w.woke = 0 // its last wake-up is not pending: it is parked
		for e.wq < len(e.wakes) && !e.wakes[e.wq].pending() {
			e.wakes[e.wq] = wake[T, L]{}
			e.wq++
		}
		if e.wq < len(e.wakes) && (last > e.wakes[e.wq].n || e.nlive.Load() <= e.procs.Load()) {
			runtime.Gosched()
		}
		if e.wq > len(e.wakes)/2 {
			n := copy(e.wakes, e.wakes[e.wq:])
			clear(e.wakes[n:])
			e.wakes, e.wq = e.wakes[:n], 0
		}
		e.nwake++
		w.woke = e.nwake
		e.wakes = append(e.wakes, wake[T, L]{w, e.nwake})
	}
	w.ch <- b
}

// holdDispatch waits while a hold is on, retiring surplus workers.
func (e *Engine[T, L]) holdDispatch() {
	e.mu.Lock()
	resume, held := e.resume, e.ctl.Load()&ctlHold != 0
	e.mu.Unlock()
	if !held {
		return
	}
	// No fill comes while held: the room there is goes to blocked Puts.
	e.admitStranded()
	select {
	case <-resume:
	case <-e.wake:
		e.shrink()
	}
}

// shutdown closes every worker's channel once every worker is idle (has
// registered, not early) and the lanes are still empty, and waits for the
// workers to exit. It reports false, keeping the idle workers in ready,
// when a unit turned up meanwhile: one still running may put another
// with force (a retry), which must be handed out before the workers go.
// Meanwhile it is parked, so that such a Put pokes it.
func (e *Engine[T, L]) shutdown() bool {
	e.mu.Lock()
	n := e.live
	e.mu.Unlock()
	// An early registration is a worker still running its batch: let it
	// go, and wait for its registration once the batch is over.
	k := 0
	for _, w := range e.ready {
		if !w.bounce() {
			e.ready[k] = w
			k++
		}
	}
	clear(e.ready[k:])
	e.ready = e.ready[:k]
	for {
		e.nparks++
		e.parked.Store(e.nparks)
		if e.haveWork() {
			e.parked.Store(0)
			return false
		}
		if len(e.ready) >= n {
			break
		}
		select {
		case w := <-e.idle:
			if !w.bounce() {
				e.ready = append(e.ready, w)
			}
		case <-e.wake:
		}
		e.parked.Store(0)
	}
	e.parked.Store(0)
	e.mu.Lock()
	e.live, e.target = 0, 0
	e.nlive.Store(0)
	e.mu.Unlock()
	for _, w := range e.ready {
		close(w.ch)
	}
	e.ready = nil
	go func() {
		e.wg.Wait()
		close(e.done)
	}()
	return true
}

// pending reports whether lane p has units the dispatcher has not taken.
func (e *Engine[T, L]) pending(p int) bool {
	l := &e.lanes[p]
	return e.pos[p] < len(e.cur[p]) || l.in.Load() > e.taken[p] || l.buffered.Load()
}

// haveWork reports whether any lane has a unit to hand out.
func (e *Engine[T, L]) haveWork() bool {
	return len(e.back) > 0 || e.avail(0) || e.avail(1) || e.avail(2)
}

// avail reports whether lane p has a unit ready in cur, taking the next
// batch from the lane if it must.
func (e *Engine[T, L]) avail(p int) bool {
	if e.pos[p] < len(e.cur[p]) {
		return true
	}
	l := &e.lanes[p]
	if l.in.Load() == e.taken[p] && !l.buffered.Load() {
		return false
	}
	var b []T
	select {
	case b = <-l.ch:
	default:
		return e.grab(p)
	}
	e.setCur(p, b)
	return true
}

// grab takes lane p's next batch, or its accumulator itself when the
// channel is empty, under the lock that orders the accumulator after
// every batch already on the channel. It reports whether it took a unit.
func (e *Engine[T, L]) grab(p int) bool {
	l := &e.lanes[p]
	var b []T
	l.mu.Lock()
	select {
	case b = <-l.ch:
	default:
		b, l.buf = l.buf, nil
		if len(b) > 0 {
			l.in.Add(int64(len(b)))
			l.buffered.Store(false)
		}
	}
	l.mu.Unlock()
	if len(b) == 0 { // an accumulator is nil or holds units
		return false
	}
	e.setCur(p, b)
	return true
}

func (e *Engine[T, L]) setCur(p int, b []T) {
	if e.cur[p] != nil {
		e.putBuf(e.cur[p])
	}
	e.cur[p], e.pos[p] = b, 0
	e.taken[p] += int64(len(b))
}

// park waits for a poke: from a submitter that put a batch on a task
// channel, or for a control change. It sets parked first, so that a
// submitter that appends afterwards puts its accumulator on the channel at
// once and pokes (see push); and it looks at the lanes once more after
// setting it, so that a unit appended before is not left behind.
//
// Once closing, it waits only while units may be held behind running ones
// (for the steal timer), and reports false when none may be: the
// dispatcher may then retire the workers.
func (e *Engine[T, L]) park() (more bool) {
	e.nparks++
	e.parked.Store(e.nparks)
	defer e.parked.Store(0)
	if e.pending(0) || e.pending(1) || e.pending(2) {
		return true
	}
	if closing := e.closed.Load(); !e.surplus.Load() || closing { // closing: shutdown retires them all
		timer := e.stealTimer() // nil, which never fires, unless units may be held
		if timer == nil && closing {
			// Closing, and nothing may be held: no poke is coming
			// (Close's may have been spent already), and nothing is
			// left to wait for.
			return false
		}
		select {
		case <-e.wake:
			e.shrink()
		case <-timer:
			e.stealAll()
		}
		return true
	}
	// With surplus workers, take registrations too, to retire them. No
	// units are taken meanwhile: a worker that registers is retired, not
	// given them; once the surplus is gone, the next park looks.
	select {
	case w := <-e.idle:
		if !e.retire(w) {
			e.ready = append(e.ready, w)
		}
	case <-e.wake:
		e.shrink()
	}
	return true
}

// nextWorker waits for a worker with room, retiring surplus ones on the
// way. It returns nil when a control change needs a look first.
//
// Right after an early hand-off, among more workers than processors, it
// yields once before it waits. Workers of long units, woken one by one by
// their timers or their I/O, register early about as fast as the
// dispatcher serves them, and a dispatcher that waited for each one
// parked and was woken once per unit (1ms sleeps on 1000 workers: 3-4k
// waits per 10k units). A yield puts it behind the runnable goroutines,
// which register meanwhile, and it serves them in one turn (the same
// 1ms sleeps: CPU per unit 1644 -> 1336 ns, wall 1952 -> 1867 ns, 30
// interleaved runs). The registrations it keeps waiting are early ones:
// their workers are busy with a unit, and an early unit handed a little
// later starts no later. A worker that turns idle during the yield waits
// for it, one pass of the processors over their run queues at most; with
// short units (no early hand-offs) or no more workers than processors it
// waits as before (TestDispatcherYieldsForEarlyRegistrations).
func (e *Engine[T, L]) nextWorker() *Worker[T, L] {
	for {
		if n := len(e.ready); n > 0 {
			w := e.ready[n-1]
			e.ready = e.ready[:n-1]
			return w
		}
		if !e.surplus.Load() {
			// The common case, a worker already registered, without
			// locking the wake channel too.
			select {
			case w := <-e.idle:
				return w
			default:
			}
			if e.lastEarly && e.nlive.Load() > e.procs.Load() {
				e.now = -1
				runtime.Gosched()
				select {
				case w := <-e.idle:
					return w
				default:
				}
			}
		}
		e.now = -1 // it may wait here: the turn's clock goes stale
		e.nwaits++
		// Blocked Puts wait for admitRoom (fill): while every worker is
		// busy that room may not come, and the room there is goes to
		// them after stealAfter.
		var admit <-chan time.Time
		if e.stranded() {
			admit = e.timer()
		}
		select {
		case w := <-e.idle:
			if e.surplus.Load() && e.retire(w) {
				continue
			}
			return w
		case <-e.wake:
			e.shrink()
			if e.ctl.Load()&ctlHold != 0 {
				return nil
			}
		case <-admit:
			e.admitStranded()
		}
	}
}

// stranded reports whether a lane has blocked Puts and maybe room for
// some, which fill leaves to them only once admitRoom is free: room not
// counting the accumulator, and not found taken by it at this out
// already (admitStranded).
func (e *Engine[T, L]) stranded() bool {
	for p := range e.lanes {
		l := &e.lanes[p]
		if l.nwait.Load() > 0 {
			out := l.out.Load()
			if l.in.Load()-out < int64(e.cfg.QueueSize) && e.futile[p] != out+1 {
				return true
			}
		}
	}
	return false
}

// admitStranded admits blocked Puts wherever there is room, and notes
// the lanes where there was none after all (the accumulator held it).
func (e *Engine[T, L]) admitStranded() {
	for p := range e.lanes {
		l := &e.lanes[p]
		if l.nwait.Load() == 0 {
			continue
		}
		l.mu.Lock()
		n := len(l.waiters)
		poke := e.admitLocked(l)
		if len(l.waiters) == n {
			e.futile[p] = l.out.Load() + 1
		}
		e.unlock(l, poke)
	}
}

// retire closes w's channel if there are more workers than asked for.
func (e *Engine[T, L]) retire(w *Worker[T, L]) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.live <= e.target || e.closed.Load() {
		e.surplus.Store(false)
		return false
	}
	e.live--
	e.nlive.Store(int32(e.live))
	e.surplus.Store(e.live > e.target)
	close(w.ch)
	return true
}

// shrink retires idle workers while there are more than asked for.
func (e *Engine[T, L]) shrink() {
	for e.surplus.Load() && len(e.ready) > 0 {
		w := e.ready[len(e.ready)-1]
		if !e.retire(w) {
			break
		}
		e.ready = e.ready[:len(e.ready)-1]
	}
	for e.surplus.Load() {
		select {
		case w := <-e.idle:
			if !e.retire(w) {
				// Not surplus after all: keep it for the next batch.
				e.ready = append(e.ready, w)
				return
			}
		default:
			return
		}
	}
}

// firstBatch is the most units handed to a worker whose time per unit is
// not known yet.
const firstBatch = 16

// batchFor is the most units w may be handed now: the batch size, or with
// BatchWork, as many units as w takes about BatchWork to run, judging by
// its last batch; once a worker has timed long units it gets them one by
// one, so that a unit rarely waits behind another on a busy worker.
func (e *Engine[T, L]) batchFor(w *Worker[T, L]) int {
	n := e.cfg.BatchSize
	if e.cfg.BatchWork <= 0 {
		return n
	}
	unit := w.unit.Load()
	if unit == 0 {
		return min(n, firstBatch)
	}
	return int(min(max(int64(e.cfg.BatchWork)/unit, 1), int64(n)))
}

// fill copies units into buf, up to most and to a fair share of what is
// queued per worker, taking the lanes in weighted turn.
func (e *Engine[T, L]) fill(buf []T, most int) []T {
	queued := int64(0)
	for p := range e.lanes {
		queued += e.lanes[p].in.Load() - e.lanes[p].out.Load()
	}
	live := int64(max(e.nlive.Load(), 1))
	limit := min(int64(most), max((queued+live-1)/live, 1))
	if buf == nil {
		buf = make([]T, 0, min(limit, firstBatch))
	}
	var outs [Lanes]int64
	var zero T
	for int64(len(buf)) < limit {
		p := e.pick()
		if p < 0 {
			break
		}
		// Alone with work, a lane gives a run at once.
		n := 1
		if !e.others(p) {
			n = min(int(limit)-len(buf), len(e.cur[p])-e.pos[p])
		}
		src := e.cur[p][e.pos[p] : e.pos[p]+n]
		buf = append(buf, src...)
		for i := range src {
			src[i] = zero
		}
		e.pos[p] += n
		outs[p] += int64(n)
		if e.pos[p] == len(e.cur[p]) {
			e.putBuf(e.cur[p])
			e.cur[p], e.pos[p] = nil, 0
		}
	}
	for p := range outs {
		if outs[p] == 0 {
			continue
		}
		l := &e.lanes[p]
		out := l.out.Add(outs[p])
		// Blocked Puts are admitted once a batch's worth of room is free,
		// not one slot at a time: a submitter that blocks on a full queue
		// then wakes once per batch, not once per task.
		if l.nwait.Load() > 0 && int64(e.cfg.QueueSize)-(l.in.Load()-out) >= e.admitRoom() {
			e.admitWaiters(l)
		}
	}
	return buf
}

// admitRoom is how much room a lane must have before blocked Puts are
// admitted: a batch, or a quarter of a small queue.
func (e *Engine[T, L]) admitRoom() int64 {
	return int64(max(min(laneBatch, e.cfg.QueueSize/4), 1))
}

// others reports whether a lane other than p has units pending.
func (e *Engine[T, L]) others(p int) bool {
	for q := range e.lanes {
		if q != p && e.pending(q) {
			return true
		}
	}
	return false
}

// pick chooses the lane of the next unit: strictly by priority, or by the
// weighted cycle and then any lane with work. It returns -1 when none has.
func (e *Engine[T, L]) pick() int {
	if !e.cfg.Strict {
		p := e.cycle[e.next]
		if e.next++; e.next == len(e.cycle) {
			e.next = 0
		}
		if e.avail(p) {
			return p
		}
	}
	for p := range e.lanes {
		if e.avail(p) {
			return p
		}
	}
	return -1
}
