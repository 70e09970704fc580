package taskpool

import (
	"context"
	"errors"
	"runtime"
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

	_        [64]byte // keep counters off the cache lines of other fields
	counters counters
	_        [64]byte
}

// counters are a worker's task counts. Only the worker writes them; Stats
// sums them across workers, so the task path touches no shared cache line.
// ticks counts starts and ends: it is odd while a handler runs, and
// ticks/2 tasks have finished. failed and panicked are written after the
// end tick, so a reader that loads them before ticks never sees a failure
// that is not yet counted as finished.
type counters struct {
	ticks    atomic.Uint64
	failed   atomic.Uint64
	panicked atomic.Uint64
}

// counts is a plain copy of counters.
type counts struct{ ticks, failed, panicked uint64 }

func (c *counters) snapshot() counts {
	failed, panicked := c.failed.Load(), c.panicked.Load()
	return counts{ticks: c.ticks.Load(), failed: failed, panicked: panicked}
}

func (c *counts) add(o counts) {
	c.ticks += o.ticks
	c.failed += o.failed
	c.panicked += o.panicked
}

// startWorker adds a worker. The caller holds s.mu.
func (s *Scheduler) startWorker() {
	w := &worker{
		s:  s,
		ch: make(chan []envelope, 1),
	}
	s.workers[w] = struct{}{}
	s.workersWG.Add(1)
	go w.run(make([]envelope, 0, s.opts.batchSize))
}

// run is the worker loop: register, receive a batch, run it, repeat until
// the dispatcher closes the private channel.
func (w *worker) run(spare []envelope) {
	defer w.s.workersWG.Done()
	for {
		for w.next < len(w.batch) {
			e := w.batch[w.next]
			w.batch[w.next] = envelope{} // let the task be collected
			w.next++
			w.exec(e)
		}
		if w.batch != nil {
			spare, w.batch = w.batch[:0], nil
		}
		w.s.idle <- registration{ch: w.ch, spare: spare}
		b, ok := w.receive()
		if !ok {
			w.retire()
			return
		}
		w.batch, w.next = b, 0
	}
}

// receive waits for the next batch. It yields a few times before parking:
// a parked worker must be woken by the dispatcher's send, and the runtime
// then queues it behind the dispatcher on the dispatcher's processor, where
// it waits until the dispatcher blocks. Yielding instead lets the
// dispatcher run now and leave the batch in the buffered channel.
func (w *worker) receive() ([]envelope, bool) {
	for range spinYields {
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

var spinYields = 4

// retire folds the worker's counters into the scheduler's.
func (w *worker) retire() {
	s := w.s
	s.mu.Lock()
	delete(s.workers, w)
	s.retired.add(w.counters.snapshot())
	s.mu.Unlock()
}

// exec runs one task and reports its outcome.
func (w *worker) exec(e envelope) {
	s := w.s
	if s.abandon.Load() {
		s.dropped(e)
		return
	}
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
	w.finish(t, e.future, err, cancel)
}

// finish records the end of a run and delivers the outcome.
func (w *worker) finish(t Task, f *Future, err error, cancel context.CancelFunc) {
	s := w.s
	if cancel != nil {
		cancel()
	}
	w.counters.ticks.Add(1)
	res := w.slot.v
	w.slot.v = nil
	if err != nil {
		w.fail(t, err)
	}
	if f == nil && s.opts.onComplete == nil {
		return // nobody to tell: keep the fast path free of the Outcome copy
	}
	t.result = nil
	s.complete(f, Outcome{Task: t, Result: res, Err: err, Attempts: t.Attempt})
}

// fail counts and logs a failed run.
func (w *worker) fail(t Task, err error) {
	var pe *PanicError
	if errors.As(err, &pe) {
		w.counters.panicked.Add(1)
	} else {
		w.counters.failed.Add(1)
	}
	w.s.logFailure(t, err)
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
		w.finish(t, e.future, ErrHandlerExited, cancel)
		w.s.workersWG.Add(1) // before this goroutine's Done, so Wait cannot slip through
		go w.run(nil)
	}()
	err = w.s.handler.HandleTask(ctx, t)
	returned = true
	return err
}
