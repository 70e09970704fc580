package engine

import "time"

// Units handed out together run one after another on one worker. If one
// of them blocks, the units behind it wait with it, though other workers
// may be idle; and if it waits for one of them (a task waiting for a task
// submitted after it), it waits forever. So a batch is never a promise:
// the dispatcher takes the units a worker has not claimed yet back when
// it would otherwise sit idle beside them.
//
// A worker claims each unit with one atomic add on its counter (next);
// the dispatcher takes the rest with one swap, under the worker's mutex
// so that the worker's end of batch, which clears the units under it,
// comes after the copy. Each unit is claimed once, by one of them.
//
// The dispatcher looks only when it parks for lack of work while some
// hand-off of more than one unit may have units left: it parks for
// stealAfter at most, and then, unless a hold is on, takes the unclaimed
// units of one such batch per registered worker, to hand out first (so
// that what it takes waits only for the hand-off, not hidden from Queued
// and Inspect). A worker that registers does not wake a parked
// dispatcher: hence the timer, also while no worker waits yet, so that
// while every worker runs a batch of several units and nothing is queued
// the dispatcher wakes once per stealAfter to look.

// stealAfter is how long the dispatcher, idle beside an idle worker, lets
// the units behind a running one wait before it takes them.
const stealAfter = time.Millisecond

// holding is a hand-off of more than one unit.
type holding[T, L any] struct {
	w   *Worker[T, L]
	seq uint64 // w.hseq at the hand-off: a later hand-off to w is another one
}

// prune drops the hand-offs that are over or fully claimed, and reports
// whether any is left.
func (e *Engine[T, L]) prune() bool {
	k := 0
	for _, h := range e.holding {
		if h.w.hseq == h.seq && !h.claimed() {
			e.holding[k] = h
			k++
		}
	}
	clear(e.holding[k:])
	e.holding = e.holding[:k]
	return k > 0
}

// claimed reports whether every unit of h's batch is claimed: the worker
// has it and its counter is at its length, or it has ended it (the
// dispatcher set the counter to 0 when it handed the batch, and a worker
// that ends a batch has failed a claim).
func (h holding[T, L]) claimed() bool {
	w := h.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.batch == nil {
		return w.next.Load() > 0
	}
	return w.next.Load() >= int64(len(w.batch))
}

// mayHold reports whether units may wait behind running ones: in a
// hand-off of several units not all claimed, or in an early batch not
// committed to. It drops the hand-offs that are over.
func (e *Engine[T, L]) mayHold() bool {
	return (len(e.holding) > 0 && e.prune()) || (len(e.earlies) > 0 && e.pruneEarly())
}

// stealTimer returns the channel of a timer of stealAfter, when parking
// now may leave units behind a running one; nil otherwise.
func (e *Engine[T, L]) stealTimer() <-chan time.Time {
	if !e.mayHold() {
		return nil
	}
	return e.timer()
}

// timer starts the dispatcher's timer of stealAfter and returns its
// channel (park's steal timer, nextWorker's for stranded blocked Puts).
func (e *Engine[T, L]) timer() <-chan time.Time {
	if e.stealTime == nil {
		e.stealTime = time.NewTimer(stealAfter)
	} else {
		e.stealTime.Reset(stealAfter)
	}
	return e.stealTime.C
}

// stealAll takes the unclaimed units of hand-offs that may have any, one
// hand-off per waiting worker, and none while a hold is on: what is taken
// waits in back, where neither Queued nor Inspect shows it, only until the
// dispatcher hands it to those workers. A hand-off whose worker has not
// received its batch yet is kept for the next look.
func (e *Engine[T, L]) stealAll() {
	if e.ctl.Load()&ctlHold != 0 {
		return
	}
	// Only plain registrations are free workers: an early one is a
	// worker still running its batch.
	for more := true; more; {
		select {
		case w := <-e.idle:
			e.ready = append(e.ready, w)
		default:
			more = false
		}
	}
	free := 0
	for _, w := range e.ready {
		if w.reg.Load() != regEarly {
			free++
		}
	}
	if free == 0 {
		return
	}
	// Early batches first: nothing of them has begun.
	free -= e.reclaimEarly(free)
	for _, h := range e.holding {
		if free > 0 && h.w.hseq == h.seq && e.steal(h.w) {
			free--
		}
	}
	e.prune()
}

// steal takes the units of w's batch that w has not claimed, and reports
// whether there were any.
func (e *Engine[T, L]) steal(w *Worker[T, L]) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.batch == nil {
		return false // not received yet, or over
	}
	n := int64(len(w.batch))
	old := w.next.Swap(n)
	if old >= n {
		return false
	}
	b := append(e.getBuf(), w.batch[old:n]...)
	w.end = int(old)
	e.back = append(e.back, b)
	return true
}
