package taskpool

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// typeLimit is a per-type concurrency limit: the number of running tasks
// of the type and the tasks waiting for a slot. A task takes a slot when
// a worker is about to run it and gives it back when the run ends; a task
// that finds none waits here, holding no worker. Each slot given back
// wakes the oldest waiting task, which goes back to its lane for any
// worker to take: the worker that frees a slot never runs the type's
// backlog itself.
type typeLimit struct {
	typ string
	max int

	mu      sync.Mutex
	running int
	waiting []*record // oldest first
}

// tryAcquire takes a slot if one is free.
func (lim *typeLimit) tryAcquire() bool {
	lim.mu.Lock()
	defer lim.mu.Unlock()
	if lim.running < lim.max {
		lim.running++
		return true
	}
	return false
}

// acquireOrWait takes a slot, or files r, which the caller owns and
// which is running, as waiting for one. Once Stop's deadline has passed
// (gaveUp) it files nothing: it marks r done and reports filed false, for
// the caller to have r reported not run. Reading gaveUp under lim.mu keeps
// a task from being filed after dropWaiting emptied the list.
func (lim *typeLimit) acquireOrWait(r *record, gaveUp *atomic.Bool) (acquired, filed bool) {
	lim.mu.Lock()
	defer lim.mu.Unlock()
	if lim.running < lim.max {
		lim.running++
		return true, false
	}
	if gaveUp.Load() {
		r.state.Store(stDone)
		return false, false
	}
	r.state.Store(stWaiting)
	if r.woken {
		// It was woken for a slot that someone else took: it keeps its
		// place at the head.
		lim.waiting = append([]*record{r}, lim.waiting...)
	} else {
		lim.waiting = append(lim.waiting, r)
	}
	return false, true
}

// wake takes the oldest task still waiting and moves it back to queued.
// The caller holds lim.mu.
func (lim *typeLimit) wake() *record {
	for len(lim.waiting) > 0 {
		r := lim.waiting[0]
		lim.waiting[0] = nil
		lim.waiting = lim.waiting[1:]
		if r.cas(stWaiting, stQueued) {
			r.woken = true
			return r
		}
		// Cancelled while waiting: it has its outcome already.
	}
	return nil
}

// waitingCount is the number of tasks waiting for a slot.
func (lim *typeLimit) waitingCount() int {
	lim.mu.Lock()
	defer lim.mu.Unlock()
	n := 0
	for _, r := range lim.waiting {
		if r.state.Load() == stWaiting {
			n++
		}
	}
	return n
}

// release gives a slot back and sends the oldest waiting task, if any,
// back to its lane.
func (s *Scheduler) release(lim *typeLimit) {
	lim.mu.Lock()
	lim.running--
	r := lim.wake()
	lim.mu.Unlock()
	if r != nil {
		s.inject(r)
	}
}

// kick wakes a waiting task if a slot is free: a task woken for a slot was
// cancelled on its way back to a worker, and the slot must not stay idle.
func (s *Scheduler) kick(lim *typeLimit) {
	lim.mu.Lock()
	var r *record
	if lim.running < lim.max {
		r = lim.wake()
	}
	lim.mu.Unlock()
	if r != nil {
		s.inject(r)
	}
}

// admitRun applies the type's rate limit and concurrency limit to a job a
// worker is about to run. It returns false when the job must wait, having
// put it where it waits (the timer heap, or the type's waiting list); a
// plain job gets a record then, which *rp returns.
func (s *Scheduler) admitRun(l *local, j *job, rp **record) bool {
	b, r := j.b, *rp
	if b.rate != nil && (r == nil || !r.rated) {
		l.stage = stageRate
		d := s.reserve(b.rate)
		l.stage = stageUser
		if d > 0 {
			if r == nil {
				r = s.recordFor(j, l.id, 1)
			}
			r.rated = true
			if !r.indexed {
				s.index.add(r) // Cancel reaches what Inspect lists
			}
			s.timers.hold(r, s.now().Add(d))
			return false
		}
	}
	if lim := b.limit; lim != nil {
		if r == nil && !lim.tryAcquire() {
			r = s.recordFor(j, l.id, 1)
		}
		if r != nil {
			// The rate limiter, if any, has admitted this start: a
			// task woken for a slot does not take another.
			r.rated = b.rate != nil
			acquired, filed := lim.acquireOrWait(r, &s.gaveUp)
			if !acquired {
				if !filed {
					s.timers.notRun(r)
				}
				*rp = r
				return false
			}
		}
		l.lim = lim
	}
	if r != nil {
		r.rated, r.woken = false, false
	}
	*rp = r
	return true
}

// reserve asks the rate limiter when the next start may be. A limiter that
// panics is logged and does not hold the task back.
func (s *Scheduler) reserve(rl RateLimiter) (d time.Duration) {
	defer func() {
		if v := recover(); v != nil {
			s.logPanic("RateLimiter.Reserve", v)
			d = 0
		}
	}()
	return rl.Reserve(s.now())
}

// inject puts a task that was accepted before back into its lane, past the
// queue bound and a closed admission: a woken waiter, a due delayed task,
// a retry.
func (s *Scheduler) inject(r *record) {
	// A forced Put neither blocks nor fails.
	_ = s.e.Put(context.Background(), r.b.lane, job{params: r.task.Params, b: r.b, rec: r}, false, true)
}

// dropWaiting files every task waiting for a slot to be reported not run
// by the timer goroutine, once Stop's deadline has passed.
func (s *Scheduler) dropWaiting() {
	s.bindsMu.Lock()
	lims := make([]*typeLimit, 0, len(s.limits))
	for _, lim := range s.limits {
		lims = append(lims, lim)
	}
	s.bindsMu.Unlock()
	var drop []*record
	for _, lim := range lims {
		lim.mu.Lock()
		for _, r := range lim.waiting {
			if r.cas(stWaiting, stDone) {
				drop = append(drop, r)
			}
		}
		lim.waiting = nil
		lim.mu.Unlock()
	}
	q := &s.timers
	q.mu.Lock()
	q.work = append(q.work, drop...)
	q.mu.Unlock()
}
