package taskpool

import (
	"context"
	"errors"

	"github.com/taskpool/taskpool/internal/engine"
)

// runner is the scheduler's side of the engine: what a worker does with a
// job. The engine calls it on the worker's goroutine, with the worker's
// local state.
type runner struct{ s *Scheduler }

// local is a worker's own state. Only its worker writes it; the counters
// are read by Stats.
type local struct {
	ids   idGen
	slot  resultSlot
	stage uint8           // what the worker is doing with its job, for Exited
	err   error           // under stageBackoff: the failed run's error
	lim   *typeLimit      // the concurrency slot the running task holds
	id    string          // the generated ID of the running plain task
	task  Task            // the running plain task, as its handler gets it
	tag   uint64          // its number, for Begin: Inspect finds it there
	ctx   context.Context // the context its handlers get (handlerCtx)
	c     counters
	_     [64]byte // keep the next worker's state off this cache line
}

// What a worker is doing with its job.
const (
	stageIdle       uint8 = iota
	stageUser             // the job is not settled: its handler runs
	stageDelivering       // the job is settled: hooks and the Future are being told
	stageRate             // the job is not settled: its RateLimiter's Reserve runs, before the handler
	stageBackoff          // the job is not settled: its run failed with err, and a Backoff runs
	stageCrashing         // the handler panicked under WithoutPanicRecovery: the process is on its way down
)

// crashing is deferred around a handler under WithoutPanicRecovery, which
// sets *returned once the handler has returned. A panic goes on to crash
// the process, but its goroutine runs its deferred calls first, and the
// engine's starts the goroutine that replaces the worker, whose Exited
// settled the task as a runtime.Goexit: its Future completed with
// ErrHandlerExited, and the code waiting on it ran, before the crash.
// Marked crashing, the task is left unsettled. recover, which alone tells
// a panic from a Goexit, is followed by a panic with the same value: the
// crash shows it with the handler's frames, "[recovered, repanicked]"
// after it.
//
// Under GODEBUG=panicnil=1 (a main module older than Go 1.21), recover
// stops a panic(nil) and returns nil, as it does for a Goexit, which must
// go on: the handler's call then returns errNilPanic, and ran panics
// again.
func (l *local) crashing(returned *bool, err *error) {
	if v := recover(); v != nil {
		l.stage = stageCrashing
		panic(v)
	}
	if !*returned {
		*err = errNilPanic // seen only if this was not a Goexit
	}
}

// errNilPanic is a handler's panic(nil) that crashing recovered under
// GODEBUG=panicnil=1.
var errNilPanic = errors.New("taskpool: panic(nil) under WithoutPanicRecovery")

// Run runs one job. A plain job of a type without limits, under no
// default timeout, takes the fast path: the handler, a counter. Everything
// else is in functions of their own, so that the fast path's frames stay
// small: they take under half of a new goroutine's first stack, and a
// small handler runs in the rest without the stack being grown (a
// thousand new workers each growing it on their first task spent a
// seventh of the CPU of BenchmarkSleep1ms). TestHandlerStackDepth holds
// the depth at the handler under 1 KiB.
func (r runner) Run(w *engine.Worker[job, local], j *job) {
	s, l := r.s, &w.Local
	if j.rec != nil || j.b.slow || s.opts.timeout > 0 {
		s.runSlow(w, j)
		return
	}
	id := s.plainID(l)
	// The handler's Task is written before Begin, whose atomic store
	// commits it, so that copying it to the handler's argument reads
	// memory at rest (built right before the call, the copy stalled on
	// the stores it read).
	t := &l.task
	t.ID, t.Type, t.Params, t.Priority, t.Attempt, t.result = id, j.b.typ, j.params, j.b.prio, 1, &l.slot
	if !w.Begin(l.tag) {
		t.Params = nil
		s.drop(l, j, id) // held by a Pause that Stop's deadline ended
		return
	}
	l.stage = stageUser
	err := s.callPlain(l, j, t)
	t.Params = nil // let the params be collected
	if err == nil && !s.opts.hooks {
		l.stage = stageIdle
		l.slot.v = nil
		l.c.succeeded.Add(1)
		return
	}
	s.ranPlain(l, j, id, err)
}

// ranPlain settles a plain job's run that failed or has a hook to tell.
//
//go:noinline
func (s *Scheduler) ranPlain(l *local, j *job, id string, err error) {
	t := plainTask(j, id, &l.slot)
	s.ran(l, j, nil, &t, err)
}

// runSlow runs a job that has a record or a type with limits.
func (s *Scheduler) runSlow(w *engine.Worker[job, local], j *job) {
	l := &w.Local
	b, r := j.b, j.rec
	if r != nil && r.state.Load() == stDone {
		s.tombstone(b) // cancelled while queued: not begun at all
		return
	}
	if r == nil {
		s.plainID(l)
	}
	// Begun before the record is claimed: a Pause that came after this
	// worker took the job holds it in Begin, and until Resume the job is
	// as queued as the ones behind it, which Cancel must still reach.
	if !w.Begin(l.tag) {
		s.drop(l, j, l.id) // held by a Pause that Stop's deadline ended (l.id: a plain job's)
		return
	}
	if r != nil && !r.claim(stRunning) {
		s.tombstone(b) // cancelled meanwhile
		return
	}
	// From here the job is the worker's to settle, even if a RateLimiter
	// ends the goroutine: Exited sees stageUser.
	l.stage = stageUser
	if b.slow && !s.admitRun(l, j, &r) {
		l.stage = stageIdle
		return // waits in the timer heap or for a slot
	}
	var t Task
	if r != nil {
		t = r.task
		t.result = &l.slot
	} else {
		t = plainTask(j, l.id, &l.slot)
	}
	err := s.invoke(l, b.h, &t)
	s.ran(l, j, r, &t, err)
}

// tombstone passes over a job whose record was cancelled while queued: it
// has its outcome already.
func (s *Scheduler) tombstone(b *binding) {
	s.tombs[b.lane].Add(-1)
	if b.limit != nil {
		s.kick(b.limit)
	}
}

// invoke runs the handler on t under its timeout (the task's own, else
// the scheduler's default; negative: none). The caller has marked the task
// begun (Worker.Begin), so that a wait in a Pause does not eat the timeout.
func (s *Scheduler) invoke(l *local, h Handler, t *Task) error {
	ctx := s.handlerCtx(l)
	d := t.Timeout
	if d == 0 {
		d = s.opts.timeout
	}
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		// Deferred: a handler that calls runtime.Goexit (or panics
		// under WithoutPanicRecovery) does not return here, and its
		// context, with its timer, lived on until the timeout.
		defer cancel()
	}
	return s.call(ctx, l, h, t)
}

// callPlain is call for a plain job without a timeout, whose Task t is
// the worker's.
func (s *Scheduler) callPlain(l *local, j *job, t *Task) (err error) {
	ctx := s.handlerCtx(l)
	if s.opts.noRecover {
		return s.call(ctx, l, j.b.h, t)
	}
	defer recoverPanic(&err)
	if f := j.b.fn; f != nil {
		return inspectable(f(ctx, *t))
	}
	return inspectable(j.b.h.HandleTask(ctx, *t))
}

// plainTask is the Task of a plain job for its first run, whose result
// goes to res.
func plainTask(j *job, id string, res *resultSlot) Task {
	return Task{ID: id, Type: j.b.typ, Params: j.params, Priority: j.b.prio, Attempt: 1, result: res}
}

// plainID gives the plain job the worker is about to run a new ID, and
// keeps its number for Begin, which publishes it for Inspect.
func (s *Scheduler) plainID(l *local) string {
	l.id = s.workerID(l)
	l.tag = l.ids.seq - 1
	return l.id
}

// call runs the handler on worker l, turning a panic into a *PanicError
// unless WithoutPanicRecovery was given. A runtime.Goexit does not return
// here: the engine calls Exited on the goroutine that replaces the
// worker's.
func (s *Scheduler) call(ctx context.Context, l *local, h Handler, t *Task) (err error) {
	if s.opts.noRecover {
		returned := false
		defer l.crashing(&returned, &err)
		err = h.HandleTask(ctx, *t)
		returned = true
		return err
	}
	defer recoverPanic(&err)
	return inspectable(h.HandleTask(ctx, *t))
}

// inspectable returns err, or a *PanicError when walking its chain panics
// (an Unwrap, Is or As method of a typed nil pointer, say): the worker,
// the retry policy and the hooks inspect a handler's error with errors.Is
// and errors.As outside the handler's recover, where such a panic crashed
// the process. The task fails as if its handler had panicked. (An error
// whose Error alone panics is returned as it is: nothing here calls it.)
func inspectable(err error) error {
	if err == nil {
		return nil // inlined: a task that succeeds pays no call
	}
	return probe(err)
}

// probe is inspectable for a non-nil error.
func probe(err error) error {
	if v, stack := walkPanic(err); v != nil {
		return panicErrorAt(v, stack)
	}
	return err
}

// recoverPanic, deferred by a handler's caller, turns a panic into a
// *PanicError in *err.
func recoverPanic(err *error) {
	if v := recover(); v != nil {
		*err = newPanicError(v)
	}
}

// ran settles one run of the handler: it gives back the concurrency slot,
// then either schedules the next attempt or delivers the final outcome.
func (s *Scheduler) ran(l *local, j *job, r *record, t *Task, err error) {
	if err == errNilPanic {
		l.stage = stageCrashing
		panic(nil) // see crashing
	}
	res := l.slot.v
	l.slot.v = nil
	if l.lim != nil {
		lim := l.lim
		l.lim = nil
		s.release(lim)
	}
	if err != nil {
		var pe *PanicError
		if errors.As(err, &pe) {
			l.c.panicked.Add(1)
		}
		if s.retry(l, j, r, t, err) {
			l.stage = stageIdle
			return
		}
		s.logFailure(t, err, -1)
	}
	s.finalize(l, r, t, res, err, t.Attempt, settledRan)
}

// Drop settles a job that will never run: Stop's deadline passed.
func (r runner) Drop(l *local, j *job) {
	r.s.drop(l, j, "")
}

// drop is Drop for a job whose plain task has the ID id already (Begin
// published it, for Inspect, before it found the hold that Stop's
// deadline ended), or none yet ("").
func (s *Scheduler) drop(l *local, j *job, id string) {
	rec := j.rec
	var t Task
	if rec != nil {
		if !rec.claim(stDone) {
			s.tombs[j.b.lane].Add(-1)
			return // cancelled: settled already
		}
		t = rec.task
	} else {
		// Attempt 1, the run that never came, as a task with a record
		// has it: an ID given or not, the outcome is the same.
		if id == "" {
			id = s.workerID(l)
		}
		t = plainTask(j, id, nil)
	}
	s.finalize(l, rec, &t, nil, notRunErr(rec), max(t.Attempt-1, 0), settledNotRun)
}

// Exited settles the job whose goroutine ended in runtime.Goexit. A task
// whose handler exited is final: it is not retried. One whose handler
// panicked under WithoutPanicRecovery, on its way to crash the process,
// is left as it is (see crashing).
func (r runner) Exited(l *local, j *job, again bool) {
	s := r.s
	switch l.stage {
	case stageUser:
	case stageCrashing:
		return // the process is crashing: see crashing
	case stageRate, stageBackoff:
		s.exitedOutside(l, j)
		return
	default:
		// It died delivering an outcome already settled; the deferred
		// part of deliver has completed the Future.
		l.stage = stageIdle
		return
	}
	l.slot.v = nil
	l.task.Params = nil // a plain job's, which the fast path clears on return
	if l.lim != nil {
		lim := l.lim
		l.lim = nil
		s.release(lim)
	}
	t := exitedTask(l, j)
	s.logFailure(&t, ErrHandlerExited, -1)
	s.finalize(l, j.rec, &t, nil, ErrHandlerExited, t.Attempt, settledRan)
}

// exitedOutside settles a job whose goroutine ended in a call of the
// user's other than the handler: Goexit there ends only that call, as a
// panic there would. A RateLimiter's Reserve that exits lets the task
// start, as one that panics does: it goes back to its lane with its start
// admitted. A Backoff that exits, like one that panics, ends the retries:
// the task's outcome is the error of the run that failed.
func (s *Scheduler) exitedOutside(l *local, j *job) {
	stage, err := l.stage, l.err
	l.stage, l.err = stageIdle, nil
	t := exitedTask(l, j)
	if stage == stageRate {
		s.opts.logger.Error("taskpool: RateLimiter.Reserve called runtime.Goexit", "id", t.ID, "type", t.Type)
		r := s.recordFor(j, l.id, 1)
		r.rated = true
		r.state.Store(stQueued)
		s.inject(r)
		return
	}
	s.opts.logger.Error("taskpool: Backoff called runtime.Goexit", "id", t.ID, "type", t.Type)
	s.logFailure(&t, err, -1)
	s.finalize(l, j.rec, &t, nil, err, t.Attempt, settledRan)
}

// exitedTask is the Task of the job whose goroutine ended in a user's
// call: its record's, or a plain job's under the ID the worker gave it.
func exitedTask(l *local, j *job) Task {
	if rec := j.rec; rec != nil {
		return rec.task
	}
	return plainTask(j, l.id, nil)
}

// Retired folds the counters of a worker that exits into acc.
func (r runner) Retired(acc, l *local) {
	acc.c.fold(&l.c)
}

// workerID returns a new ID from the worker's block of numbers, with the
// scheduler's prefix, as newID makes them off the workers.
func (s *Scheduler) workerID(l *local) string {
	return l.ids.next(s.prefix, &s.ids)
}
