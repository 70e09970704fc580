package taskpool

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// timerKind says why a record waits in the timer heap.
type timerKind uint8

const (
	kindDelayed  timerKind = iota // submitted with SubmitAt or SubmitAfter
	kindRetry                     // a failed run's next attempt
	kindHeld                      // held back by a rate limiter
	kindPeriodic                  // a periodic schedule: fires a copy of its task
)

// timerHeap orders records by due time, then by arrival.
type timerHeap []*record

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex, h[j].heapIndex = i, j
}
func (h *timerHeap) Push(x any) {
	r := x.(*record)
	r.heapIndex = len(*h)
	*h = append(*h, r)
}
func (h *timerHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	r.heapIndex = -1
	return r
}

// timerQueue holds delayed tasks, retries, rate-held tasks and periodic
// schedules in one heap, driven by one timer in one goroutine: waiting
// tasks cost memory only, never a goroutine or a runtime timer each. A
// record leaves the heap only under the queue's lock, moving from
// stDelayed to stQueued as it is handed to its lane, so that Cancel finds
// it in one place or the other, never in between.
type timerQueue struct {
	mu       sync.Mutex
	h        timerHeap
	periodic map[string]*record // schedules by ID
	seq      uint64
	tasks    int       // task records in the heap (not schedules)
	closed   bool      // admission closed: SubmitAt and SchedulePeriodic refused
	flushed  bool      // Stop's flush is done: retries follow WithDelayedOnStop
	dropping bool      // Stop's deadline passed: nothing waits any more
	stopped  bool      // the timer goroutine exits
	work     []*record // settled not run, to be reported by the timer goroutine
	firing   []*record // schedules due, out of the heap, not yet moved on
	current  *record   // the schedule whose Next runs
	wake     chan struct{}
	accepted atomic.Uint64 // tasks accepted by SubmitAt
}

func (q *timerQueue) init() {
	q.periodic = make(map[string]*record)
	q.wake = make(chan struct{}, 1)
}

func (q *timerQueue) wakeUp() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pushLocked adds r due at at. The caller holds q.mu.
func (q *timerQueue) pushLocked(r *record, at time.Time, kind timerKind) {
	q.seq++
	r.at, r.seq, r.reason = at, q.seq, kind
	heap.Push(&q.h, r)
	if kind != kindPeriodic {
		q.tasks++
	}
	if r.heapIndex == 0 {
		q.wakeUp()
	}
}

// removeLocked takes r out of the heap. The caller holds q.mu.
func (q *timerQueue) removeLocked(r *record) {
	heap.Remove(&q.h, r.heapIndex)
	if r.reason == kindPeriodic {
		delete(q.periodic, r.task.ID)
	} else {
		q.tasks--
	}
}

func (q *timerQueue) closeAdmission() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

func (q *timerQueue) stop() {
	q.mu.Lock()
	q.stopped = true
	q.mu.Unlock()
	q.wakeUp()
}

// pendingTasks counts the tasks waiting in the heap.
func (q *timerQueue) pendingTasks() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.tasks
}

// SubmitAt enqueues t to run at time at (by the scheduler's [Clock]): it
// waits in the timer heap until then, holding no worker and no goroutine.
// A time in the past runs it at once. If t.ID is empty one is assigned, so
// name the task to [Scheduler.Cancel] it later. SubmitAt returns the same
// errors as [Scheduler.Submit], but never blocks on a full queue: a due
// task goes to its queue past the bound.
func (s *Scheduler) SubmitAt(ctx context.Context, t Task, at time.Time) error {
	return s.submitAt(ctx, &t, at)
}

// SubmitAfter is [Scheduler.SubmitAt] with a delay from now.
func (s *Scheduler) SubmitAfter(ctx context.Context, t Task, d time.Duration) error {
	return s.submitAt(ctx, &t, s.now().Add(d))
}

func (s *Scheduler) submitAt(ctx context.Context, t *Task, at time.Time) error {
	if ctx == nil {
		return ErrNilContext
	}
	b, err := s.check(t)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !s.running() {
		return s.closedErr()
	}
	r := new(record)
	if err := s.admit(r, t, b); err != nil {
		return err
	}
	if !r.indexed {
		// Named or not, a delayed task can be cancelled by the ID that
		// Inspect shows.
		s.index.add(r)
	}
	q := &s.timers
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		s.unadmit(r)
		return ErrSchedulerClosed
	}
	r.state.Store(stDelayed)
	q.pushLocked(r, at, kindDelayed)
	q.accepted.Add(1)
	q.mu.Unlock()
	return nil
}

// hold files r, which the caller owns and which is running, to wait in the
// heap until at: a task held back by its rate limiter. A graceful Stop
// lets it wait for its turn; a Stop past its deadline reports it not run.
func (q *timerQueue) hold(r *record, at time.Time) { q.file(r, at, kindHeld) }

// notRun hands r, which is done, to the timer goroutine to be reported
// not run.
func (q *timerQueue) notRun(r *record) {
	q.mu.Lock()
	q.work = append(q.work, r)
	q.mu.Unlock()
	q.wakeUp()
}

// file moves a running record into the heap.
func (q *timerQueue) file(r *record, at time.Time, kind timerKind) {
	q.mu.Lock()
	if q.dropping {
		r.state.Store(stDone)
		q.mu.Unlock()
		q.notRun(r)
		return
	}
	r.state.Store(stDelayed)
	q.pushLocked(r, at, kind)
	q.mu.Unlock()
}

// retryAt files the next attempt of r, which the caller owns and which is
// running, due at at, or decides what a Stop in progress does with it:
// with DelayedRunEarly it runs at once; otherwise, like any delayed task
// that is not due, it is reported not run. It returns false in the
// latter case, for the caller to settle r.
func (s *Scheduler) retryAt(r *record, attempt int, at time.Time) bool {
	q := &s.timers
	q.mu.Lock()
	r.task.Attempt = attempt
	if !q.flushed && !q.dropping {
		r.state.Store(stDelayed)
		q.pushLocked(r, at, kindRetry)
		q.mu.Unlock()
		return true
	}
	runEarly := s.opts.delayedOnStop == DelayedRunEarly && !q.dropping
	q.mu.Unlock()
	if !runEarly {
		return false
	}
	r.state.Store(stQueued)
	s.inject(r)
	return true
}

// runTimers is the timer goroutine: it hands due records to their lanes,
// fires periodic schedules, and carries out Stop: when Stop begins it
// flushes the heap as WithDelayedOnStop says; when Stop's deadline passes
// it reports everything waiting not run. It exits after the last task has
// its outcome. A hook that calls runtime.Goexit on this goroutine (while a
// task is reported not run) cannot stop it: a new one carries on.
func (s *Scheduler) runTimers(restarted bool) {
	returned := false
	defer func() {
		if !returned {
			go s.runTimers(true)
			return
		}
		close(s.timerDone)
	}()
	q := &s.timers
	clock := s.opts.clock
	timer := clock.NewTimer(time.Hour)
	defer timer.Stop()
	quit := s.quit
	for {
		select {
		case <-quit:
			quit = nil
		default:
		}
		if quit == nil {
			s.flushTimers()
		}
		if s.gaveUp.Load() {
			s.dropTimers()
		}
		s.settleWork()
		next := s.fireDue(clock.Now())
		q.mu.Lock()
		stopped := q.stopped
		q.mu.Unlock()
		if stopped {
			returned = true
			return
		}
		if !next.IsZero() {
			timer.Reset(max(next.Sub(clock.Now()), 0))
			if !clock.Now().Before(next) {
				// The clock passed next between the reading the delay was
				// computed from and the Reset (a fake clock's Advance, the
				// one WaitArmed let through for an earlier arming of the
				// same deadline): the timer is set past it, so fire now.
				continue
			}
		}
		select {
		case <-timer.C():
		case <-q.wake:
		case <-quit:
		}
	}
}

// fireDue hands the records due at now to their lanes and fires the
// periodic schedules due, and returns when the next entry is due (zero if
// none). Schedule.Next is called without the lock held.
func (s *Scheduler) fireDue(now time.Time) time.Time {
	q := &s.timers
	var due []*record
	q.mu.Lock()
	if p := q.current; p != nil {
		// The goroutine before this one ended in p's Schedule.Next
		// (runtime.Goexit): p is removed, like a schedule that panics.
		q.current = nil
		if q.periodic[p.task.ID] == p {
			delete(q.periodic, p.task.ID)
		}
		// Logged without the lock: the logger is the user's, and may
		// call the scheduler (Inspect takes this lock).
		q.mu.Unlock()
		s.opts.logger.Error("taskpool: periodic schedule removed: Next called runtime.Goexit", "id", p.task.ID)
		q.mu.Lock()
	}
	for len(q.h) > 0 && !q.h[0].at.After(now) {
		r := q.h[0]
		if r.reason == kindPeriodic {
			// Out of the heap while it fires; still in periodic, so that
			// Unschedule meanwhile is seen below.
			heap.Remove(&q.h, r.heapIndex)
			q.firing = append(q.firing, r)
			continue
		}
		q.removeLocked(r)
		if r.cas(stDelayed, stQueued) {
			due = append(due, r)
		}
	}
	q.mu.Unlock()
	for _, r := range due {
		s.inject(r)
	}
	for {
		// One schedule at a time off a list kept in the queue, so that a
		// goroutine replacing this one finds the rest.
		q.mu.Lock()
		p := popLocked(&q.firing)
		for p != nil && q.periodic[p.task.ID] != p {
			// Unscheduled, or the queue flushed, while it waited its
			// turn: it does not fire.
			p = popLocked(&q.firing)
		}
		q.current = p
		q.mu.Unlock()
		if p == nil {
			break
		}
		s.fire(s.activation(p))
		next, ok := s.nextRun(p.sched, p.at, now)
		q.mu.Lock()
		q.current = nil
		switch {
		case q.periodic[p.task.ID] != p:
			// Unscheduled, or the queue flushed, meanwhile.
		case ok:
			q.pushLocked(p, next, kindPeriodic)
		default:
			delete(q.periodic, p.task.ID)
		}
		q.mu.Unlock()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.h) > 0 {
		return q.h[0].at
	}
	return time.Time{}
}

// nextRun asks a schedule for its activation after the one at at, on the
// timer goroutine. Missed activations are not replayed: the next one is
// after now. A schedule that does not move forward, or that panics, is
// removed, with an error logged.
func (s *Scheduler) nextRun(sched Schedule, at, now time.Time) (time.Time, bool) {
	next, err := nextActivation(sched, at, now)
	var pe *PanicError
	switch {
	case err == nil:
		return next, true
	case errors.As(err, &pe):
		s.opts.logger.Error("taskpool: panic in Schedule.Next", "panic", fmt.Sprint(pe.Value), "stack", string(pe.Stack))
	case !next.IsZero():
		s.opts.logger.Error("taskpool: periodic schedule removed: Next does not move forward", "at", now, "next", next)
	}
	return next, false
}

// nextActivation is sched's activation after the one at at, and after
// now. It returns an error when there is none: the zero time, a time not
// after now (Next does not move forward), or a *PanicError.
func nextActivation(sched Schedule, at, now time.Time) (next time.Time, err error) {
	defer func() {
		if v := recover(); v != nil {
			next, err = time.Time{}, newPanicError(v)
		}
	}()
	next = sched.Next(at)
	if !next.IsZero() && !next.After(now) {
		next = sched.Next(now)
	}
	switch {
	case next.IsZero():
		return next, errors.New("no activation after now")
	case !next.After(now):
		return next, fmt.Errorf("Next(%v) = %v does not move forward", now, next)
	}
	return next, nil
}

// activation makes the record of one activation of schedule p.
func (s *Scheduler) activation(p *record) *record {
	r := &record{b: p.b, heapIndex: -1}
	r.task = p.task
	r.task.ID = p.task.ID + "@" + p.at.UTC().Format(time.RFC3339Nano)
	r.task.Attempt = 1
	return r
}

// fire submits one activation of a periodic schedule, which Cancel
// reaches by its ID, as a task submitted with one. An activation that
// finds its queue full, or its unique key taken, is skipped and logged.
func (s *Scheduler) fire(r *record) {
	if k := r.task.UniqueKey; k != "" {
		if err := s.uniq.acquire(k, s.now()); err != nil {
			s.opts.logger.Warn("taskpool: periodic task skipped", "id", r.task.ID, "error", err)
			return
		}
	}
	// In the Cancel index, as a task submitted with its ID; admitting
	// (out of Cancel's reach) until the engine has accepted it, as in
	// submit.
	s.index.add(r)
	if err := s.e.Put(context.Background(), r.b.lane, job{params: r.task.Params, b: r.b, rec: r}, false, false); err != nil {
		s.unadmit(r)
		s.opts.logger.Warn("taskpool: periodic task skipped", "id", r.task.ID, "error", err)
		return
	}
	r.cas(stAdmitting, stQueued) // unless a worker has it already
}

// flushTimers carries out a Stop that has begun, once: the schedules are
// removed; tasks that are due go to their lanes (they are accepted work
// that is due); tasks held by a rate limiter wait for their turn; delayed
// tasks and retries that are not due run early or are reported not run,
// as WithDelayedOnStop says.
func (s *Scheduler) flushTimers() {
	q := &s.timers
	// Read before the lock: the Clock is the user's, and may call the
	// scheduler (Inspect takes this lock).
	now := s.now()
	q.mu.Lock()
	if q.flushed {
		q.mu.Unlock()
		return
	}
	q.flushed = true
	runEarly := s.opts.delayedOnStop == DelayedRunEarly
	var run, keep []*record
	for _, r := range q.h {
		r.heapIndex = -1
		switch {
		case r.reason == kindPeriodic:
		case r.reason == kindHeld && r.at.After(now):
			keep = append(keep, r)
		case !r.at.After(now) || runEarly:
			if r.cas(stDelayed, stQueued) {
				run = append(run, r)
			}
		default:
			if r.cas(stDelayed, stDone) {
				q.work = append(q.work, r)
			}
		}
	}
	q.h, q.tasks = nil, 0
	clear(q.periodic)
	for _, r := range keep {
		q.pushLocked(r, r.at, kindHeld)
	}
	q.mu.Unlock()
	sortByDue(run)
	for _, r := range run {
		s.inject(r)
	}
}

// dropTimers reports every task waiting in the heap or for a concurrency
// slot not run: Stop's deadline has passed.
func (s *Scheduler) dropTimers() {
	q := &s.timers
	q.mu.Lock()
	if q.dropping {
		q.mu.Unlock()
		return
	}
	q.dropping = true
	for _, r := range q.h {
		r.heapIndex = -1
		if r.reason != kindPeriodic && r.cas(stDelayed, stDone) {
			q.work = append(q.work, r)
		}
	}
	q.h, q.tasks = nil, 0
	clear(q.periodic)
	q.mu.Unlock()
	s.dropWaiting()
}

// settleWork reports the records in the work list not run, one at a
// time: a hook that ends this goroutine leaves the rest to the goroutine
// that replaces it.
func (s *Scheduler) settleWork() {
	q := &s.timers
	for {
		q.mu.Lock()
		r := popLocked(&q.work)
		q.mu.Unlock()
		if r == nil {
			return
		}
		t := r.task
		s.finalize(nil, r, &t, nil, notRunErr(r), max(t.Attempt-1, 0), settledNotRun)
	}
}

// popLocked takes the first record off list, or returns nil when it is
// empty. The caller holds the timer queue's lock.
func popLocked(list *[]*record) *record {
	if len(*list) == 0 {
		return nil
	}
	r := (*list)[0]
	(*list)[0] = nil
	*list = (*list)[1:]
	return r
}

// sortByDue sorts records by due time, then arrival.
func sortByDue(rs []*record) {
	h := timerHeap(rs)
	heap.Init(&h)
	sorted := make([]*record, 0, len(rs))
	for h.Len() > 0 {
		sorted = append(sorted, heap.Pop(&h).(*record))
	}
	copy(rs, sorted)
}

// SchedulePeriodic submits a copy of t at every activation of sched (see
// [Every] and the cron sub-module) until [Scheduler.Unschedule] or Stop.
// Each copy gets the ID "<id>@<activation time>", the time in UTC as RFC
// 3339 with nanoseconds (t.ID is not used). An activation missed while the queue was full, or
// while t's UniqueKey was taken (by the last activation, still queued or
// running, say), is skipped, with a warning logged, and not replayed.
// sched.Next is called on the timer goroutine and must return quickly; a
// schedule whose Next does not move forward, or panics, is removed and an
// error logged. It returns an error wrapping [ErrInvalidTask] for an id
// that Submit would refuse as a task ID (see [Task.Validate]) or one over
// [MaxScheduleIDLength] bytes (its activations' IDs would pass
// [MaxIDLength]),
// [ErrInvalidOption] for an empty id, a nil schedule or one with no
// activation after now (its first Next returns the zero time or a time
// not after now, or panics: the error wraps the [*PanicError] then, and
// nothing is logged), or
// [ErrDuplicateTask] for an id already scheduled, and the errors of
// [Scheduler.Submit] for t.
func (s *Scheduler) SchedulePeriodic(id string, sched Schedule, t Task) error {
	if id == "" {
		return invalid("schedule id", `""`)
	}
	if sched == nil {
		return invalid("schedule", "nil")
	}
	if len(id) > MaxScheduleIDLength {
		// Each copy's ID adds the activation time to it.
		return fmt.Errorf("%w: schedule id of %d bytes, at most %d", ErrInvalidTask, len(id), MaxScheduleIDLength)
	}
	// id is the ID of every copy (t.ID is not used): checked as Submit
	// checks an ID (Task.Validate).
	t.ID = id
	b, err := s.check(&t)
	if err != nil {
		return err
	}
	if !s.running() {
		return s.closedErr()
	}
	// Refused, not logged: the error is the caller's to handle.
	now := s.now()
	first, err := nextActivation(sched, now, now)
	if err != nil {
		return fmt.Errorf("%w: schedule: %w", ErrInvalidOption, err)
	}
	p := &record{b: b, heapIndex: -1, sched: sched}
	p.task = t
	p.task.ID = id
	p.task.Priority = b.prio
	q := &s.timers
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrSchedulerClosed
	}
	if q.periodic[id] != nil {
		return fmt.Errorf("%w: schedule %q", ErrDuplicateTask, id)
	}
	q.periodic[id] = p
	q.pushLocked(p, first, kindPeriodic)
	return nil
}

// Unschedule removes the periodic schedule id. Tasks it already submitted
// are not affected. It returns an error wrapping [ErrTaskNotFound] for an
// unknown id; like SchedulePeriodic, it returns [ErrNotStarted] before
// Start, when there can be no schedule yet, and [ErrSchedulerClosed] once
// Stop has begun, which removes every schedule itself.
func (s *Scheduler) Unschedule(id string) error {
	if !s.running() {
		return s.closedErr()
	}
	q := &s.timers
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrSchedulerClosed
	}
	p := q.periodic[id]
	if p == nil {
		return fmt.Errorf("%w: schedule %q", ErrTaskNotFound, id)
	}
	delete(q.periodic, id)
	if p.heapIndex >= 0 {
		heap.Remove(&q.h, p.heapIndex)
	}
	return nil
}
