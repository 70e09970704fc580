package taskpool

import (
	"sync/atomic"
	"time"
)

// A record's states. A record moves between them only by compare-and-swap,
// so that when two goroutines race to decide a task's fate (Cancel and a
// worker, Cancel and the timer, Stop and a limit), exactly one wins.
const (
	stAdmitting uint32 = iota // being submitted: not accepted yet, so Cancel cannot take it
	stQueued                  // in a lane or a worker's batch
	stDelayed                 // in the timer heap: delayed, retry or rate-held
	stWaiting                 // waiting for a concurrency slot
	stRunning                 // a worker owns it
	stDone                    // settled: its outcome is delivered or being delivered
)

// record is the one place where the state of a task that needs more than a
// job lives: an ID given by the caller, a timeout, a unique key, attempts,
// a Future, a wait in the timer heap or for a concurrency slot. It is
// allocated only for such tasks.
type record struct {
	state   atomic.Uint32
	task    Task // as submitted, with its ID and the number of the next run
	b       *binding
	indexed bool // in the Cancel index (its ID came from the caller, or it was delayed)

	hasFuture bool
	future    Future

	// Under the timer queue's lock.
	heapIndex int // -1 when not in the heap
	at        time.Time
	seq       uint64
	reason    timerKind

	rated   bool     // the rate limiter has admitted the coming run
	woken   bool     // woken for a concurrency slot: it keeps its place if it must wait again
	lastErr error    // the error of the last run, for a retry that Stop ends
	sched   Schedule // a periodic schedule's

	next *record // the next record with the same ID in the Cancel index
}

// cas moves r from one state to another and reports whether it did.
func (r *record) cas(from, to uint32) bool { return r.state.CompareAndSwap(from, to) }

// claim moves r, which a worker met in its batch, from queued (or from
// admitting: its Submit has not yet marked it queued) to state to, and
// reports whether it did; it did not if Cancel settled r first. It reads
// the state and moves from what it read, again if the Submit moved r from
// admitting to queued meanwhile: two CASes in a row (queued, then
// admitting) both fail when that move falls between them, and the task
// was lost as if cancelled.
func (r *record) claim(to uint32) bool {
	for {
		st := r.state.Load()
		if st != stQueued && st != stAdmitting {
			return false
		}
		if r.cas(st, to) {
			return true
		}
	}
}

// settle moves r to stDone from any state but stDone, and reports whether
// this call did: the caller then owns the outcome.
func (r *record) settle() bool {
	for {
		st := r.state.Load()
		if st == stDone {
			return false
		}
		if r.state.CompareAndSwap(st, stDone) {
			return true
		}
	}
}

// recordFor returns j's record, making one for a plain job that needs one
// from now on (to wait, or to be retried). The caller is the job's owner.
func (s *Scheduler) recordFor(j *job, id string, attempt int) *record {
	if j.rec != nil {
		return j.rec
	}
	r := &record{b: j.b, heapIndex: -1}
	r.task = Task{ID: id, Type: j.b.typ, Params: j.params, Priority: j.b.prio, Attempt: attempt}
	r.state.Store(stRunning)
	return r
}
