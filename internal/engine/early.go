package engine

import "time"

// A worker of long units, among more workers than processors, registers
// for its next batch as soon as it has received the one it runs, when the
// lanes hold more units than there are registrations to take them: the
// dispatcher, one goroutine among many workers, may wait in the run
// queues for a millisecond or more (each expiring timer readies its
// goroutine ahead of it), and a worker that registers only when its batch
// is over sits idle meanwhile. Its next unit then waits in its channel and
// it goes on without parking. With no more workers than processors the
// dispatcher gets its turn at once, and a unit committed to a busy worker
// only waits longer than it would for the next free one (tried: at 90%
// load on 2 workers, the median wait from submit to start went from
// 0.1 ms to 3 ms).
//
// Who settles what is one compare-and-swap on the worker's reg:
//
//   - regEarly: registered early, not served yet. The dispatcher serves
//     it (regServed) with one unit from the lanes, or bounces it
//     (regBounced) when it has only units taken back, is held, or has
//     fewer units than waiting registrations; the worker, at the end of
//     its batch, turns it into a plain registration (regPlain) that
//     stays where it is in the channel of worker channels.
//   - regServed: an early batch is in the worker's channel. The worker,
//     at the end of its batch, commits to it (regPlain) and receives it;
//     or the dispatcher takes it back first (regTaken, see reclaim) when
//     a worker waits with nothing to do, or when it has waited behind a
//     unit longer than twice the worker's time per unit and stealAfter.
//   - regBounced, regTaken: the worker registers again when its batch is
//     over, as if it had never registered early.
//
// An early registration taken while there are surplus workers is retired
// like an idle one (retire closes the worker's channel; reg stays
// regEarly): the worker runs its batch to the end, turns the registration
// plain, finds its channel closed and exits. Nothing of its batch is lost;
// live drops at once, and Workers counts the worker until it exits.
//
// So a worker has one registration or one batch outstanding at a time,
// and an early batch is run by the worker it was handed to or taken back
// by the dispatcher, never both: the batch is, like any other, no promise.
const (
	regPlain   int32 = iota // no early registration outstanding
	regEarly                // registered early, not served
	regServed               // an early batch waits in the channel
	regBounced              // the dispatcher let the early registration go
	regTaken                // the dispatcher took the early batch back
)

// earlyFactor times BatchWork is the time per unit from which a worker
// registers early: units that short go many to a batch, and the batch
// hides the dispatcher's wait.
const earlyFactor = 4

// early is an early hand-off whose worker may not have committed to it.
type early[T, L any] struct {
	w   *Worker[T, L]
	seq uint64        // w.hseq at the hand-off
	due time.Duration // on the engine's clock: taken back after this
}

// registerEarly registers w, which has just received its batch, for the
// next one if its units are long and the lanes hold more units than
// there are registrations.
func (w *Worker[T, L]) registerEarly() {
	e := w.e
	if e.cfg.BatchWork <= 0 || e.nlive.Load() <= e.procs.Load() || w.unit.Load() < earlyFactor*int64(e.cfg.BatchWork) ||
		e.ctl.Load() != 0 || e.surplus.Load() || len(w.batch) > 1 || e.laneUnits() <= int64(len(e.idle)) {
		// A batch of more than one (from back) stays stealable: an early
		// hand-off would bump hseq and retire its holding entry.
		return
	}
	w.reg.Store(regEarly)
	select {
	case e.idle <- w:
	default:
		// The channel of worker channels is sized for the workers at
		// Start: after a Resize up it may be full, and a worker must not
		// wait there with a batch not run. It registers when the batch
		// is over, as always.
		w.reg.Store(regPlain)
	}
}

// bounce lets w's registration go if it is still an early one, not
// served, and reports whether it did: the worker registers again when its
// batch is over (settleReg).
func (w *Worker[T, L]) bounce() bool { return w.reg.CompareAndSwap(regEarly, regBounced) }

// settleReg decides, at the end of w's batch and under w.mu, what becomes
// of its early registration, and reports whether w must register again.
func (w *Worker[T, L]) settleReg() bool {
	if w.reg.CompareAndSwap(regEarly, regPlain) {
		return false // its registration now stands for an idle worker
	}
	if w.reg.CompareAndSwap(regServed, regPlain) {
		return false // its early batch is in the channel: receive it
	}
	w.reg.Store(regPlain) // none, bounced or taken back
	return true
}

// laneUnits is about the number of units in the lanes: those in the task
// channels and the dispatcher's hands, and one for each accumulator that
// has any (its length is under the lane's lock).
func (e *Engine[T, L]) laneUnits() int64 {
	n := int64(0)
	for p := range e.lanes {
		l := &e.lanes[p]
		n += l.in.Load() - l.out.Load()
		if l.buffered.Load() {
			n++
		}
	}
	return n
}

// serveEarly decides what to do with w, taken from the channel of worker
// channels with work to hand out, if it registered early: it reports
// whether it handed w an early batch, or let the registration go
// (handled: the caller looks for another worker). When w's registration
// turned plain meanwhile, it is an idle worker like any other.
func (e *Engine[T, L]) serveEarly(w *Worker[T, L]) (handled bool) {
	if w.reg.Load() != regEarly {
		return false
	}
	if len(e.back) > 0 || e.ctl.Load() != 0 || e.laneUnits() <= int64(len(e.idle)) {
		// Units taken back go to idle workers only, and with no more
		// units than waiting registrations, to the waiting ones.
		return w.bounce()
	}
	if !w.reg.CompareAndSwap(regEarly, regServed) {
		return false // turned plain: the worker is idle
	}
	// Into the worker's spare buffer, which it replaces under w.mu when
	// its batch ends; pending, for Inspect, under the same lock. A worker
	// that had its spare taken by the hand-off it runs has its solo
	// buffer, unless it runs the batch in it.
	w.mu.Lock()
	buf := w.spare
	if buf == nil && !w.isSolo(w.batch) {
		buf = w.solo[:0]
	}
	b := e.fill(buf, 1)
	w.spare, w.pending = nil, b
	w.mu.Unlock()
	e.handOff(w, b, true)
	e.nearly.Add(1)
	e.lastEarly = true
	now := e.now
	if now < 0 {
		now = time.Since(e.epoch)
	}
	due := now + 2*time.Duration(w.unit.Load()) + stealAfter
	if len(e.earlies) == cap(e.earlies) {
		// Drop the ones that are over before growing: most are, since
		// only expiry and parking drop them otherwise, and the list
		// then holds about one entry per worker with an early batch.
		e.sweepEarly(-1, 0)
	}
	e.earlies = append(e.earlies, early[T, L]{w, w.hseq, due})
	e.firstDue = min(e.firstDue, due)
	return true
}

// reclaim takes w's early batch back, if w has not committed to it, into
// back; it reports whether it did.
func (e *Engine[T, L]) reclaim(w *Worker[T, L]) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.reg.CompareAndSwap(regServed, regTaken) {
		return false
	}
	// Only the dispatcher sends, and it sent the batch before this; the
	// worker receives only once it has committed or registered again,
	// which it does under w.mu after seeing regTaken: it is there.
	var b []T
	select {
	case b = <-w.ch:
	default:
		panic("engine: an early batch not committed to is not in its channel")
	}
	w.pending = nil
	if w.isSolo(b) {
		// Handed on whole, it would be another worker's batch while
		// this one's next early batch is filled into it. The copy is
		// its size: a buffer of a lane's batch would end as the spare
		// of the worker that runs it (1000 workers sleeping 1ms took
		// 150 of them, 300 KB, per 10k tasks).
		b = append(make([]T, 0, len(b)), b...)
		clear(w.solo[:])
	}
	e.back = append(e.back, b)
	return true
}

// isSolo reports whether b is w's solo buffer, which holds an early batch
// when the worker's spare is out: it is w's alone, never a spare, never
// in the free list and never handed to another worker.
func (w *Worker[T, L]) isSolo(b []T) bool {
	return cap(b) == 1 && &b[:1][0] == &w.solo[0]
}

// current reports whether h is still the last hand-off to its worker and
// the worker has not committed to it.
func (h early[T, L]) current() bool {
	return h.w.hseq == h.seq && h.w.reg.Load() == regServed
}

// expireEarly drops the early hand-offs that are over and takes back the
// ones that waited too long. Their due times are not in order (each is
// from its worker's own time per unit), so it looks at all of them, but
// only once the first due time has come.
func (e *Engine[T, L]) expireEarly() {
	e.now = time.Since(e.epoch) // for serveEarly, this turn
	if e.now >= e.firstDue {
		e.sweepEarly(e.now, 0)
	} // else none is due: do not look at every worker on every turn
}

// pruneEarly drops the early hand-offs that are over, and reports
// whether any is left.
func (e *Engine[T, L]) pruneEarly() bool {
	e.sweepEarly(-1, 0)
	return len(e.earlies) > 0
}

// reclaimEarly takes back up to n early batches whose workers have not
// committed to them, and reports how many it took.
func (e *Engine[T, L]) reclaimEarly(n int) int { return e.sweepEarly(-1, n) }

// sweepEarly is the one pass over the early hand-offs: it drops those that
// are over, takes back the ones due by dueBy and, due or not, up to n
// more, and keeps firstDue for the rest. It reports how many it took back.
func (e *Engine[T, L]) sweepEarly(dueBy time.Duration, n int) (took int) {
	k := 0
	e.firstDue = 1<<63 - 1
	for _, h := range e.earlies {
		if !h.current() {
			continue
		}
		if (h.due <= dueBy || took < n) && e.reclaim(h.w) {
			took++
			continue
		}
		e.earlies[k] = h
		k++
		e.firstDue = min(e.firstDue, h.due)
	}
	clear(e.earlies[k:])
	e.earlies = e.earlies[:k]
	return took
}

// EarlyHandOffs is the number of batches handed to workers that
// registered early.
func (e *Engine[T, L]) EarlyHandOffs() uint64 { return e.nearly.Load() }
