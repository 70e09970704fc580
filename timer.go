package taskpool

import (
	"container/heap"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// timerKind says why an entry waits in the timer heap.
type timerKind uint8

const (
	kindDelayed  timerKind = iota // submitted with SubmitAt or SubmitAfter
	kindRetry                     // a failed run's next attempt
	kindHeld                      // held back by a rate limiter, or handed back after a Goexit
	kindPeriodic                  // a periodic schedule: fires a copy of its task
)

// timerEntry is one entry of the timer heap.
type timerEntry struct {
	at    time.Time
	seq   uint64 // ties broken by arrival, so equal times keep their order
	index int    // position in the heap, for removal
	kind  timerKind
	env   envelope
	sched Schedule // kindPeriodic only
	id    string   // kindPeriodic: the schedule's ID
}

// timerHeap orders entries by time. It implements heap.Interface.
type timerHeap []*timerEntry

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *timerHeap) Push(x any) {
	e := x.(*timerEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}

// timerQueue holds delayed tasks, retries and periodic schedules in one
// heap, driven by one timer in one goroutine: waiting tasks cost memory
// only, never a goroutine or a runtime timer each.
type timerQueue struct {
	mu       sync.Mutex
	h        timerHeap
	byID     map[string]*timerEntry // tasks by ID, for Cancel
	periodic map[string]*timerEntry // schedules by ID
	seq      uint64
	prefix   string // the scheduler's ID prefix
	closed   bool
	wake     chan struct{} // told when the earliest entry changes
}

func (q *timerQueue) init() {
	q.byID = make(map[string]*timerEntry)
	q.periodic = make(map[string]*timerEntry)
	q.wake = make(chan struct{}, 1)
}

// push adds a task due at at. It returns false once the queue is closed.
func (q *timerQueue) push(e envelope, at time.Time, kind timerKind) bool {
	return q.add(&timerEntry{at: at, kind: kind, env: e})
}

func (q *timerQueue) add(te *timerEntry) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	if te.kind == kindPeriodic && q.periodic[te.id] != nil && q.periodic[te.id] != te {
		q.mu.Unlock()
		return false
	}
	q.seq++
	te.seq = q.seq
	if te.kind == kindDelayed && te.env.task.ID == "" {
		// Name the task so that it can be cancelled and inspected.
		var b [32]byte
		id := append(append(b[:0], q.prefix...), "-d"...)
		te.env.task.ID = string(strconv.AppendUint(id, te.seq, 10))
	}
	heap.Push(&q.h, te)
	if te.kind == kindPeriodic {
		q.periodic[te.id] = te
	} else if id := te.env.task.ID; id != "" {
		q.byID[id] = te
	}
	first := te.index == 0
	q.mu.Unlock()
	if first {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// remove takes te out of the heap. The caller holds q.mu.
func (q *timerQueue) remove(te *timerEntry) {
	heap.Remove(&q.h, te.index)
	if te.kind == kindPeriodic {
		delete(q.periodic, te.id)
	} else if q.byID[te.env.task.ID] == te {
		delete(q.byID, te.env.task.ID)
	}
}

// due pops the entries due at now, re-arming periodic schedules, and
// returns when the next one is due (zero if none).
func (q *timerQueue) due(now time.Time, out []*timerEntry) ([]*timerEntry, time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.h) > 0 && !q.h[0].at.After(now) {
		te := q.h[0]
		if te.kind != kindPeriodic {
			q.remove(te)
			out = append(out, te)
			continue
		}
		// Fire a copy and move the schedule on. Ticks missed while the
		// queue was full are not replayed: the next one is after now.
		out = append(out, &timerEntry{at: te.at, kind: kindPeriodic, env: te.env, id: te.id})
		next := te.sched.Next(te.at)
		if !next.After(now) {
			next = te.sched.Next(now)
		}
		if next.IsZero() {
			q.remove(te)
			continue
		}
		te.at = next
		heap.Fix(&q.h, te.index)
	}
	var next time.Time
	if len(q.h) > 0 {
		next = q.h[0].at
	}
	return out, next
}

// close empties the queue and refuses further entries. It returns the
// waiting tasks; periodic schedules are dropped.
func (q *timerQueue) close() []*timerEntry {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	var tasks []*timerEntry
	for _, te := range q.h {
		if te.kind != kindPeriodic {
			tasks = append(tasks, te)
		}
	}
	q.h, q.byID, q.periodic = nil, nil, nil
	// Run early in the order they were due.
	sortEntries(tasks)
	return tasks
}

func sortEntries(es []*timerEntry) {
	h := timerHeap(es)
	heap.Init(&h)
	sorted := make([]*timerEntry, 0, len(es))
	for h.Len() > 0 {
		sorted = append(sorted, heap.Pop(&h).(*timerEntry))
	}
	copy(es, sorted)
}

// pendingTasks counts the tasks waiting in the heap.
func (q *timerQueue) pendingTasks() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.h) - len(q.periodic)
}

// runTimers is the timer goroutine: it moves due entries into the task
// channels, and on Stop flushes the waiting ones as WithDelayedOnStop says.
// It holds an admission of the gate from Start until it exits, so the
// dispatcher's final drain comes after its last send.
func (s *Scheduler) runTimers() {
	defer close(s.timerDone)
	defer s.leave()
	q := &s.timers
	clock := s.opts.clock
	timer := clock.NewTimer(time.Hour)
	defer timer.Stop()
	var due []*timerEntry
	for {
		var next time.Time
		due, next = q.due(clock.Now(), due[:0])
		for i, te := range due {
			if !s.inject(te) {
				// Stop began while the queues were full: put the rest back
				// for the flush below.
				for _, te := range due[i:] {
					if te.kind != kindPeriodic {
						q.add(te)
					}
				}
				break
			}
			due[i] = nil
		}
		if !next.IsZero() {
			timer.Reset(max(next.Sub(clock.Now()), 0))
		}
		select {
		case <-timer.C():
		case <-q.wake:
		case <-s.quit:
			s.flushTimers()
			return
		}
	}
}

// inject sends a due entry's task into its task channel. It returns false
// if Stop began first.
func (s *Scheduler) inject(te *timerEntry) bool {
	e := te.env
	if te.kind == kindPeriodic {
		e.task.ID = te.id + "@" + te.at.UTC().Format(time.RFC3339Nano)
		if e.task.UniqueKey != "" {
			if err := s.uniq.acquire(e.task.UniqueKey, s.opts.clock.Now()); err != nil {
				s.opts.logger.Warn("taskpool: periodic task skipped", "id", e.task.ID, "error", err)
				return true
			}
		}
		s.submitted.Add(1)
	}
	if e.task.ID != "" && !e.tracked {
		s.pending.add(e.task.ID)
		e.tracked = true
	}
	select {
	case s.queue(prioIndex(e.task.Priority)) <- e:
		return true
	case <-s.quit:
		if te.kind == kindPeriodic {
			s.unadmit(e)
			s.submitted.Add(^uint64(0))
		} else {
			te.env = e
		}
		return false
	}
}

// flushTimers empties the heap when Stop begins: waiting tasks run early
// or are reported not run.
func (s *Scheduler) flushTimers() {
	for _, te := range s.timers.close() {
		e := te.env
		if s.opts.delayedOnStop == DelayedRunEarly && !s.abandon.Load() {
			if e.task.ID != "" && !e.tracked {
				s.pending.add(e.task.ID)
				e.tracked = true
			}
			// The dispatcher goes on draining until this goroutine exits.
			s.queue(prioIndex(e.task.Priority)) <- e
			continue
		}
		if e.tracked {
			s.pending.remove(e.task.ID)
		}
		s.dropped(e)
	}
}

// SubmitAt enqueues t to run at time at (by the scheduler's [Clock]): it
// waits in the timer heap until then, holding no worker and no goroutine.
// A time in the past runs it at once. If t.ID is empty one is assigned, so
// name the task to [Scheduler.Cancel] it later. SubmitAt returns the same
// errors as [Scheduler.Submit], but never blocks on a full queue.
func (s *Scheduler) SubmitAt(ctx context.Context, t Task, at time.Time) error {
	return s.submitAt(ctx, envelope{task: t}, at)
}

// SubmitAfter is [Scheduler.SubmitAt] with a delay from now.
func (s *Scheduler) SubmitAfter(ctx context.Context, t Task, d time.Duration) error {
	return s.submitAt(ctx, envelope{task: t}, s.opts.clock.Now().Add(d))
}

func (s *Scheduler) submitAt(ctx context.Context, e envelope, at time.Time) error {
	if err := s.check(&e); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !s.enter() {
		return s.closedErr()
	}
	defer s.leave()
	if e.task.UniqueKey != "" {
		if err := s.uniq.acquire(e.task.UniqueKey, s.opts.clock.Now()); err != nil {
			return err
		}
	}
	if !s.timers.push(e, at, kindDelayed) {
		s.unadmit(e)
		return ErrSchedulerClosed
	}
	s.submitted.Add(1)
	return nil
}

// Cancel removes the pending task with the given ID: a delayed task, a
// retry waiting for its next attempt, or a queued task submitted with that
// ID that no worker has picked up yet. The task is reported to the
// completion hook and its Future with [ErrCanceled]. A task that is
// running cannot be cancelled this way (cancel its context instead).
// Cancel returns an error wrapping [ErrTaskNotFound] when no such task is
// pending.
func (s *Scheduler) Cancel(id string) error {
	q := &s.timers
	q.mu.Lock()
	te := q.byID[id]
	if te != nil {
		q.remove(te)
	}
	q.mu.Unlock()
	if te != nil {
		if te.env.tracked {
			s.pending.remove(id)
		}
		s.canceled.Add(1)
		s.complete(te.env, Outcome{Task: te.env.task, Err: ErrCanceled, Attempts: max(te.env.task.Attempt-1, 0)})
		return nil
	}
	if s.pending.cancel(id) {
		return nil
	}
	return fmt.Errorf("%w: %q", ErrTaskNotFound, id)
}

// SchedulePeriodic submits a copy of t at every activation of sched (see
// [Every] and the cron sub-module) until [Scheduler.Unschedule] or Stop.
// Each copy gets the ID "<id>@<activation time>", the time in UTC as
// RFC 3339 with nanoseconds. An activation
// missed while the queue was full is not replayed. It returns an error
// wrapping [ErrInvalidOption] for an empty id, a nil or empty schedule, or
// [ErrDuplicateTask] for an id already scheduled, and the errors of
// [Scheduler.Submit] for t.
func (s *Scheduler) SchedulePeriodic(id string, sched Schedule, t Task) error {
	if id == "" {
		return invalid("schedule id", `""`)
	}
	if sched == nil {
		return invalid("schedule", "nil")
	}
	e := envelope{task: t}
	if err := s.check(&e); err != nil {
		return err
	}
	if !s.enter() {
		return s.closedErr()
	}
	defer s.leave()
	now := s.opts.clock.Now()
	first := sched.Next(now)
	if first.IsZero() {
		return invalid("schedule", "no activation")
	}
	e.task.ID = ""
	if !s.timers.add(&timerEntry{at: first, kind: kindPeriodic, env: e, sched: sched, id: id}) {
		if state(s.state.Load()) != stateRunning {
			return ErrSchedulerClosed
		}
		return fmt.Errorf("%w: schedule %q", ErrDuplicateTask, id)
	}
	return nil
}

// Unschedule removes the periodic schedule id. Tasks it already submitted
// are not affected. It returns an error wrapping [ErrTaskNotFound] for an
// unknown id.
func (s *Scheduler) Unschedule(id string) error {
	q := &s.timers
	q.mu.Lock()
	defer q.mu.Unlock()
	te := q.periodic[id]
	if te == nil {
		return fmt.Errorf("%w: schedule %q", ErrTaskNotFound, id)
	}
	q.remove(te)
	return nil
}
