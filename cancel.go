package taskpool

import (
	"fmt"
	"sync"
)

// cancelIndex finds records by ID for Cancel: those whose ID came from the
// caller, and delayed ones. Several records may share an ID.
type cancelIndex struct {
	mu  sync.Mutex
	ids map[string]*record // the newest record with the ID; older ones follow next
}

func (x *cancelIndex) add(r *record) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.ids == nil {
		x.ids = make(map[string]*record)
	}
	r.next = x.ids[r.task.ID]
	x.ids[r.task.ID] = r
	r.indexed = true
}

func (x *cancelIndex) remove(r *record) {
	x.mu.Lock()
	defer x.mu.Unlock()
	id := r.task.ID
	if head := x.ids[id]; head == r {
		if r.next == nil {
			delete(x.ids, id)
		} else {
			x.ids[id] = r.next
		}
	} else {
		for p := head; p != nil; p = p.next {
			if p.next == r {
				p.next = r.next
				break
			}
		}
	}
	r.next = nil
}

// lookup returns the records with id, oldest first.
func (x *cancelIndex) lookup(id string) []*record {
	x.mu.Lock()
	defer x.mu.Unlock()
	var rs []*record
	for r := x.ids[id]; r != nil; r = r.next {
		rs = append(rs, r)
	}
	for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
		rs[i], rs[j] = rs[j], rs[i]
	}
	return rs
}

// Cancel removes a pending task with the given ID: a delayed task, a retry
// waiting for its next attempt, a task held by a rate limit or waiting for
// a concurrency slot, or a queued task submitted with that ID that no
// worker has started, a periodic activation among them (its ID is
// "<schedule id>@<activation time>", as [Scheduler.SchedulePeriodic]
// says). A periodic schedule is not a task: Cancel of its ID does not
// remove it, [Scheduler.Unschedule] does. Cancel and the worker (or the
// timer) race on one state change of the task, so exactly one of them
// wins: when Cancel returns nil the task will not run, and its outcome,
// [ErrCanceled], has been delivered to the completion hook and its Future,
// counted in Stats.Canceled, and its unique key released, before Cancel
// returns. A task that is running cannot be cancelled this way (cancel its
// context instead). Cancel returns an error wrapping [ErrTaskNotFound]
// when no such task is pending.
func (s *Scheduler) Cancel(id string) error {
	for _, r := range s.index.lookup(id) {
		if s.cancel1(r) {
			t := r.task
			s.finalize(nil, r, &t, nil, ErrCanceled, max(t.Attempt-1, 0), settledCanceled)
			return nil
		}
	}
	return fmt.Errorf("%w: %q", ErrTaskNotFound, id)
}

// cancel1 moves r to stDone if it is pending, taking it out of where it
// waits, and reports whether it did. It reads the state and moves from
// what it read, again if the state moved meanwhile: a task that goes from
// waiting for a slot, or from the timer heap, to its lane between two
// guesses is still pending and must be cancelled, not reported missing.
func (s *Scheduler) cancel1(r *record) bool {
	for {
		switch r.state.Load() {
		case stQueued:
			if r.cas(stQueued, stDone) {
				// It stays in its lane or batch; the worker that meets it
				// skips it.
				s.tombs[r.b.lane].Add(1)
				return true
			}
		case stWaiting:
			if r.cas(stWaiting, stDone) {
				return true // the limit's list skips it
			}
		case stDelayed:
			if s.cancelDelayed(r) {
				return true
			}
		default:
			// Admitting (Submit has not returned), running, or done.
			return false
		}
	}
}

// cancelDelayed moves r from the timer heap to stDone, under the heap's
// lock, and reports whether it did.
func (s *Scheduler) cancelDelayed(r *record) bool {
	q := &s.timers
	q.mu.Lock()
	defer q.mu.Unlock()
	if !r.cas(stDelayed, stDone) {
		return false
	}
	if r.heapIndex >= 0 {
		q.removeLocked(r)
	}
	return true
}
