package taskpool

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
)

// counters are outcome counts. A worker's are written by that worker only;
// the scheduler's shared ones by the paths that settle tasks off the
// workers.
type counters struct {
	succeeded atomic.Uint64
	failed    atomic.Uint64
	notRun    atomic.Uint64
	canceled  atomic.Uint64
	retried   atomic.Uint64
	panicked  atomic.Uint64
}

// counts is a plain copy of counters.
type counts struct{ succeeded, failed, notRun, canceled, retried, panicked uint64 }

func (c *counters) snapshot() counts {
	return counts{
		succeeded: c.succeeded.Load(), failed: c.failed.Load(),
		notRun: c.notRun.Load(), canceled: c.canceled.Load(),
		retried: c.retried.Load(), panicked: c.panicked.Load(),
	}
}

// fold adds o's counts to c and clears o.
func (c *counters) fold(o *counters) {
	c.succeeded.Add(o.succeeded.Swap(0))
	c.failed.Add(o.failed.Swap(0))
	c.notRun.Add(o.notRun.Swap(0))
	c.canceled.Add(o.canceled.Swap(0))
	c.retried.Add(o.retried.Swap(0))
	c.panicked.Add(o.panicked.Swap(0))
}

func (c *counts) add(o counts) {
	c.succeeded += o.succeeded
	c.failed += o.failed
	c.notRun += o.notRun
	c.canceled += o.canceled
	c.retried += o.retried
	c.panicked += o.panicked
}

// outcomes is the number of tasks settled.
func (c counts) outcomes() uint64 { return c.succeeded + c.failed + c.notRun + c.canceled }

// settleKind says how a task ends: by its last run, by Cancel, or unrun
// by Stop.
type settleKind uint8

const (
	settledRan settleKind = iota
	settledCanceled
	settledNotRun
)

// finalize settles a task: the one path every accepted task leaves by,
// exactly once. It decides the outcome's status and counts it, releases the unique key and the
// Cancel index entry, keeps a dead letter of a failure, and only then tells
// the dead-letter hook, the completion hook and the Future, in that order.
// l is the worker settling it, or nil off the workers. The caller owns the
// outcome: it settled r (or owns the plain job) and released any
// concurrency slot.
func (s *Scheduler) finalize(l *local, r *record, t *Task, res any, err error, attempts int, how settleKind) {
	c := &s.shared
	if l != nil {
		c = &l.c
		// Settled from here on: if a hook ends the goroutine, Exited must
		// not settle the task again.
		l.stage = stageDelivering
		defer func() { l.stage = stageIdle }()
	}
	// The status is decided here, once, and counted as it is given to
	// the hooks and the Future: they and Stats cannot disagree.
	var status OutcomeStatus
	switch {
	case how == settledCanceled:
		status = OutcomeCanceled
		c.canceled.Add(1)
	case how == settledNotRun:
		status = OutcomeNotRun
		c.notRun.Add(1)
	case err == nil:
		status = OutcomeSucceeded
		c.succeeded.Add(1)
	default:
		status = OutcomeFailed
		c.failed.Add(1)
	}
	failure := status == OutcomeFailed
	if r != nil {
		r.state.Store(stDone)
		if r.indexed {
			s.index.remove(r)
		}
	}
	if k := t.UniqueKey; k != "" {
		var until time.Time
		// The TTL keeps the key of a task that ran: a cancelled task did
		// no work that a duplicate would repeat, and Cancel promises its
		// key free when it returns.
		if s.opts.uniqueTTL > 0 && how != settledCanceled {
			until = s.now().Add(s.opts.uniqueTTL)
		}
		s.uniq.release(k, until)
	}
	if l == nil {
		defer s.e.Notify()
	}
	future := r != nil && r.hasFuture
	if !future && s.opts.onComplete == nil && !(failure && (s.opts.onDead != nil || s.dead.capacity > 0)) {
		return
	}
	t.result = nil
	out := Outcome{Task: *t, Result: res, Err: err, Attempts: attempts, Status: status}
	if failure && s.dead.capacity > 0 {
		kept := out
		kept.Task.ID = strings.Clone(out.Task.ID) // do not pin an ID slab
		s.dead.add(kept)
	}
	s.deliver(l, &out, r, failure)
}

// deliver tells the hooks and the Future. A hook that panics is logged and
// does not stop the others; a hook that calls runtime.Goexit ends the
// goroutine, but the deferred part still completes the Future.
func (s *Scheduler) deliver(l *local, out *Outcome, r *record, failure bool) {
	const (
		inDeadHook = iota + 1
		inCompletionHook
		told
	)
	step := 0
	defer func() {
		if step == told {
			return
		}
		// A hook ended the goroutine (runtime.Goexit): the rest is still
		// told, as a panic would have left it. The Future is completed
		// in a defer of its own: the completion hook called here may
		// call Goexit as well, which ends this function too.
		if r != nil && r.hasFuture {
			defer r.future.complete(*out)
		}
		if step == inDeadHook && s.opts.onComplete != nil {
			step = inCompletionHook
			s.hook("completion hook", s.opts.onComplete, *out)
		}
	}()
	if failure && s.opts.onDead != nil {
		step = inDeadHook
		s.hook("dead-letter hook", s.opts.onDead, *out)
	}
	if s.opts.onComplete != nil {
		step = inCompletionHook
		s.hook("completion hook", s.opts.onComplete, *out)
	}
	step = told
	if r != nil && r.hasFuture {
		r.future.complete(*out)
	}
}

// hook calls fn, logging a panic instead of crashing the process.
func (s *Scheduler) hook(name string, fn func(Outcome), out Outcome) {
	defer func() {
		if v := recover(); v != nil {
			s.logPanic(name, v)
		}
	}()
	fn(out)
}

// logPanic logs a panic in user code other than a handler.
func (s *Scheduler) logPanic(where string, v any) {
	pe := newPanicError(v)
	s.opts.logger.Error("taskpool: panic in "+where, "panic", fmt.Sprint(v), "stack", string(pe.Stack))
}

// notRunErr is the outcome of a task that Stop leaves unrun: the error of
// its last run as well, if it ran before.
func notRunErr(r *record) error {
	if r != nil && r.lastErr != nil {
		return errors.Join(ErrSchedulerClosed, r.lastErr)
	}
	return ErrSchedulerClosed
}

func (s *Scheduler) logFailure(t *Task, err error, retry time.Duration) {
	l := s.opts.logger
	if !l.Enabled(s.baseCtx, slog.LevelWarn) {
		return
	}
	attrs := []slog.Attr{
		slog.String("id", t.ID),
		slog.String("type", t.Type),
		slog.Int("attempt", t.Attempt),
		slog.Any("error", err),
	}
	if retry >= 0 {
		attrs = append(attrs, slog.Duration("retry_in", retry))
	}
	var pe *PanicError
	if errors.As(err, &pe) {
		attrs = append(attrs, slog.String("stack", string(pe.Stack)))
		l.LogAttrs(s.baseCtx, slog.LevelError, "taskpool: handler panic", attrs...)
		return
	}
	l.LogAttrs(s.baseCtx, slog.LevelWarn, "taskpool: task failed", attrs...)
}
