package taskpool

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
)

// worker runs batches of tasks handed to it on its private channel. It
// registers the channel with the scheduler's channel of worker channels
// whenever it has room for work.
type worker struct {
	s  *Scheduler
	ch chan []envelope // private task channel; only the dispatcher sends and closes

	batch []envelope // batch being run; batch[next:] has not started
	next  int
	slot  resultSlot

	// For Inspect: cur is the index in batch of the task being run. The
	// slots of a batch are not written until the batch is done, when mu
	// is held, so a reader holding mu may copy batch[cur]. A task handed
	// over by a concurrency limit, outside the batch, is in other.
	mu       sync.Mutex
	cur      atomic.Int32
	other    envelope
	hasOther bool

	_        [64]byte // keep counters off the cache lines of other fields
	counters counters
	_        [64]byte
}

// counters are a worker's task counts. Only the worker writes them; Stats
// sums them across workers, so the task path touches no shared cache line.
// ticks counts starts and ends: it is odd while a handler runs, and
// ticks/2 runs have finished. The others are written after the end tick,
// so a reader that loads them before ticks never sees a failure that is not
// yet counted as finished.
type counters struct {
	ticks   atomic.Uint64
	fails   atomic.Uint64 // final failures
	panics  atomic.Uint64
	retries atomic.Uint64
}

// counts is a plain copy of counters.
type counts struct{ ticks, fails, panics, retries uint64 }

func (c *counters) snapshot() counts {
	fails, panics, retries := c.fails.Load(), c.panics.Load(), c.retries.Load()
	return counts{ticks: c.ticks.Load(), fails: fails, panics: panics, retries: retries}
}

func (c *counts) add(o counts) {
	c.ticks += o.ticks
	c.fails += o.fails
	c.panics += o.panics
	c.retries += o.retries
}

// startWorker adds a worker. The caller holds s.mu.
func (s *Scheduler) startWorker() {
	w := &worker{
		s:  s,
		ch: make(chan []envelope, 1),
	}
	s.workers[w] = struct{}{}
	s.live.Add(1)
	s.workersWG.Add(1)
	go w.run(make([]envelope, 0, s.opts.batchSize))
}

// run is the worker loop: register, receive a batch, run it, repeat until
// the dispatcher closes the private channel.
func (w *worker) run(spare []envelope) {
	defer w.s.workersWG.Done()
	for {
		for w.next < len(w.batch) {
			i := w.next
			w.next++
			w.cur.Store(int32(i))
			w.exec(w.batch[i])
			if w.hasOther {
				w.mu.Lock()
				w.other, w.hasOther = envelope{}, false
				w.mu.Unlock()
			}
		}
		if w.batch != nil {
			w.mu.Lock()
			clear(w.batch) // let the tasks be collected
			spare, w.batch = w.batch[:0], nil
			w.mu.Unlock()
		}
		if w.s.shouldRetire() {
			w.retire()
			return
		}
		w.s.idle <- registration{ch: w.ch, spare: spare}
		b, ok := w.receive()
		if !ok {
			w.retire()
			return
		}
		w.mu.Lock()
		w.batch, w.next = b, 0
		w.mu.Unlock()
	}
}

// running describes the task the worker is running, if any.
func (w *worker) running() (TaskInfo, bool) {
	if w.counters.ticks.Load()&1 == 0 {
		return TaskInfo{}, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var t Task
	switch i := int(w.cur.Load()); {
	case w.hasOther:
		t = w.other.task
	case i < len(w.batch):
		t = w.batch[i].task
	default:
		return TaskInfo{}, false
	}
	return TaskInfo{ID: t.ID, Type: t.Type, Priority: t.Priority, Attempt: max(t.Attempt, 1), Reason: "running"}, true
}

// receive waits for the next batch. It yields a few times before parking:
// a parked worker must be woken by the dispatcher's send, and the runtime
// then queues it behind the dispatcher on the dispatcher's processor.
// Yielding instead lets the dispatcher run now and leave the batch in the
// buffered channel. With more workers than processors it parks at once:
// there, the yields of hundreds of idle workers take the processors from
// the dispatcher and from the workers that have tasks (1000 workers
// sleeping 1ms per task ran 28% faster without them).
func (w *worker) receive() ([]envelope, bool) {
	spins := spinYields
	if w.s.live.Load() > w.s.procs {
		spins = 0
	}
	for range spins {
		select {
		case b, ok := <-w.ch:
			return b, ok
		default:
			runtime.Gosched()
		}
	}
	b, ok := <-w.ch
	return b, ok
}

// shouldRetire takes one worker off the live count if Resize asked for
// fewer; the worker that gets true exits instead of registering.
func (s *Scheduler) shouldRetire() bool {
	for {
		live := s.live.Load()
		if live <= s.target.Load() {
			return false
		}
		if s.live.CompareAndSwap(live, live-1) {
			return true
		}
	}
}

// retire folds the worker's counters into the scheduler's.
func (w *worker) retire() {
	s := w.s
	s.mu.Lock()
	delete(s.workers, w)
	s.retired.add(w.counters.snapshot())
	s.mu.Unlock()
}

// exec runs one task, then any task of the same type that waited for the
// concurrency slot this one frees.
func (w *worker) exec(e envelope) {
	s := w.s
	for {
		if s.pause.paused() {
			s.pause.wait(s.quit)
		}
		if s.abandon.Load() {
			s.dropped(e)
			if e.slot != nil {
				e.slot.dropAll(s)
			}
			return
		}
		if e.tracked {
			// Out of the queue: from here on Cancel cannot reach the task,
			// unless it waits in the timer heap again.
			e.tracked = false
			if s.pending.take(e.task.ID) {
				s.canceled.Add(1)
				s.complete(e, Outcome{Task: e.task, Err: ErrCanceled, Attempts: max(e.task.Attempt-1, 0)})
				return
			}
		}
		if ent := e.entry; ent != nil && (ent.rate != nil || ent.concurrency > 0) && !w.hold(&e) {
			return // waits in the timer heap or the type's queue
		}
		w.run1(e)
		if e.slot == nil {
			return
		}
		next, ok := e.slot.release()
		w.mu.Lock()
		w.other, w.hasOther = next, ok
		w.mu.Unlock()
		if !ok {
			return
		}
		e = next
	}
}

// hold applies the type's rate and concurrency limits. It returns false
// when the task must wait, having put it where it waits.
func (w *worker) hold(e *envelope) bool {
	s, ent := w.s, e.entry
	if ent.rate != nil && !e.rated {
		e.rated = true
		now := s.opts.clock.Now()
		if d := ent.rate.Reserve(now); d > 0 && s.timers.push(*e, now.Add(d), kindHeld) {
			return false
		}
	}
	if ent.concurrency > 0 && e.slot == nil {
		lim := s.limitFor(ent)
		if !lim.acquire(*e) {
			return false
		}
		e.slot = lim
	}
	return true
}

// run1 runs the handler once and settles the outcome: done, or retried.
func (w *worker) run1(e envelope) {
	s := w.s
	t := e.task
	if t.Attempt == 0 {
		t.Attempt = 1
	}
	t.result = &w.slot
	ctx, cancel := s.baseCtx, context.CancelFunc(nil)
	d := t.Timeout
	if d == 0 {
		d = s.opts.timeout
	}
	if d > 0 {
		ctx, cancel = context.WithTimeout(ctx, d)
	}
	w.counters.ticks.Add(1)
	err := w.call(ctx, t, e, cancel)
	w.finish(t, e, err, cancel)
}

// finish records the end of a run and delivers the outcome, or schedules
// the next attempt.
func (w *worker) finish(t Task, e envelope, err error, cancel context.CancelFunc) {
	s := w.s
	if cancel != nil {
		cancel()
	}
	w.counters.ticks.Add(1)
	res := w.slot.v
	w.slot.v = nil
	if err != nil {
		var pe *PanicError
		if errors.As(err, &pe) {
			w.counters.panics.Add(1)
		}
		if w.retry(t, e, err) {
			return
		}
		w.counters.fails.Add(1)
		s.logFailure(t, err, -1)
	}
	if e.future == nil && s.opts.onComplete == nil && e.task.UniqueKey == "" && err == nil {
		return // nobody to tell: keep the fast path free of the Outcome copy
	}
	s.complete(e, Outcome{Task: t, Result: res, Err: err, Attempts: t.Attempt})
}

// retry schedules the next attempt of a failed run if the task has one
// left and the error allows it.
func (w *worker) retry(t Task, e envelope, err error) bool {
	s := w.s
	maxAttempts, backoff := t.MaxAttempts, s.opts.retry.backoff
	if ent := e.entry; ent != nil {
		if maxAttempts == 0 {
			maxAttempts = ent.maxAttempts
		}
		if ent.backoff != nil {
			backoff = ent.backoff
		}
	}
	if maxAttempts == 0 {
		maxAttempts = s.opts.retry.maxAttempts
	}
	if t.Attempt >= maxAttempts || !retryable(err) || s.abandon.Load() {
		return false
	}
	delay := backoff(t.Attempt)
	e.task.Attempt = t.Attempt + 1
	e.rated, e.slot = false, nil
	if !s.timers.push(e, s.opts.clock.Now().Add(delay), kindRetry) {
		return false // stopping: the last error is final
	}
	w.counters.retries.Add(1)
	s.logFailure(t, err, delay)
	return true
}

// retryable reports whether a failed run may be tried again.
func retryable(err error) bool {
	return !errors.Is(err, ErrSkipRetry) && !errors.Is(err, ErrNoHandler) && !errors.Is(err, ErrCanceled)
}

// call runs the handler, turning a panic into a *PanicError. Recovery is
// per task, not around the worker loop, so the worker survives.
//
// A handler may also end its goroutine with runtime.Goexit (t.FailNow in a
// test helper does). That cannot be stopped, so the deferred function
// reports the task as failed with ErrHandlerExited and starts a goroutine
// that carries on with this worker's batch and loop in its place.
func (w *worker) call(ctx context.Context, t Task, e envelope, cancel context.CancelFunc) (err error) {
	if w.s.opts.noRecover {
		return w.s.handler.HandleTask(ctx, t)
	}
	returned := false
	defer func() {
		if returned {
			return
		}
		if r := recover(); r != nil {
			err = newPanicError(r)
			return
		}
		e.task.MaxAttempts = 1 // a handler that exits its goroutine is not retried
		w.finish(t, e, ErrHandlerExited, cancel)
		if e.slot != nil {
			// Pass the concurrency slot on; the replacement goroutine does
			// not know it holds one.
			if next, ok := e.slot.release(); ok && !w.s.timers.push(next, w.s.opts.clock.Now(), kindHeld) {
				w.s.dropped(next)
			}
		}
		w.s.workersWG.Add(1) // before this goroutine's Done, so Wait cannot slip through
		go w.run(nil)
	}()
	err = w.s.handler.HandleTask(ctx, t)
	returned = true
	return err
}

// typeLimit is a per-type concurrency limit: a count of running tasks and
// the tasks waiting for a slot, which a finishing task hands its slot to.
type typeLimit struct {
	max int

	mu      sync.Mutex
	running int
	waiting []envelope
}

// limitFor returns the scheduler's limit state for a registry entry.
func (s *Scheduler) limitFor(ent *handlerEntry) *typeLimit {
	if l, ok := s.limits.Load(ent); ok {
		return l.(*typeLimit)
	}
	l, _ := s.limits.LoadOrStore(ent, &typeLimit{max: ent.concurrency})
	return l.(*typeLimit)
}

// acquire takes a slot, or queues e to be run by the task that frees one.
func (l *typeLimit) acquire(e envelope) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running < l.max {
		l.running++
		return true
	}
	e.slot = l
	l.waiting = append(l.waiting, e)
	return false
}

// release frees a slot, or hands it to the first waiting task, which the
// caller runs next.
func (l *typeLimit) release() (envelope, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.waiting) == 0 {
		l.running--
		return envelope{}, false
	}
	e := l.waiting[0]
	l.waiting[0] = envelope{}
	l.waiting = l.waiting[1:]
	return e, true
}

// waitingCount is the number of tasks waiting for a slot.
func (l *typeLimit) waitingCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waiting)
}

// dropAll reports every waiting task not run, for a Stop past its deadline.
func (l *typeLimit) dropAll(s *Scheduler) {
	l.mu.Lock()
	waiting := l.waiting
	l.waiting = nil
	l.running = 0
	l.mu.Unlock()
	for _, e := range waiting {
		s.dropped(e)
	}
}
