package taskpool

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
)

// Outcome is the final result of one accepted task, as the completion hook
// ([WithCompletionHook]) and a [Future] see it.
type Outcome struct {
	// Task is the task as submitted, with its ID filled in and its
	// Priority one of the three (see [Task.Priority]). Its Attempt is the
	// number of its last run, or, for a task cancelled or left unrun
	// (a retry among them), of the run that never came: 1 for a task
	// cancelled before its first run.
	Task Task
	// Result is the value the handler passed to [Task.SetResult], if any.
	Result any
	// Err is nil on success; the error of the last run: the handler's
	// error, a [*PanicError] or [ErrHandlerExited]; [ErrCanceled] for a
	// task removed by [Scheduler.Cancel]; or an error wrapping
	// [ErrSchedulerClosed] for a task that Stop left unrun (wrapping the
	// last run's error as well, for a retry that never ran).
	Err error
	// Attempts is the number of times the handler ran: 0 for a task that
	// never ran. A task submitted with an Attempt n above 1 (as a broker
	// submits a redelivered one) counts the n-1 runs before it as well:
	// its Attempts is the number of its last run, or n-1 when it never
	// ran.
	Attempts int
	// Status is how the task ended, as the scheduler counts it in
	// [Stats]: read it rather than inferring it from Err, which cannot
	// tell a task that Stop left unrun from one whose handler returned
	// its context's cause, ErrSchedulerClosed. Every Outcome a scheduler
	// gives has one of the four statuses; the zero value, which an
	// Outcome built by hand has, is none of them.
	Status OutcomeStatus
}

// OutcomeStatus is how a task ended: [OutcomeSucceeded], [OutcomeFailed],
// [OutcomeCanceled] or [OutcomeNotRun], each counted in the [Stats] field
// of that name. The zero value is not a status: it marks an [Outcome] that
// no scheduler built (a literal in a test), whose String is "status(0)".
type OutcomeStatus uint8

// Statuses of an [Outcome].
const (
	// OutcomeSucceeded is a task whose last run returned nil; Err is nil.
	// Counted in Stats.Succeeded.
	OutcomeSucceeded OutcomeStatus = iota + 1
	// OutcomeFailed is a task whose last run failed and is not retried:
	// its handler returned an error (one wrapping ErrSchedulerClosed, the
	// cause of its context once Stop's deadline has passed, included),
	// panicked (a [*PanicError]) or called runtime.Goexit
	// ([ErrHandlerExited]). It is the one status that [WithDeadLetters]
	// keeps and tells its hook. Counted in Stats.Failed.
	OutcomeFailed
	// OutcomeCanceled is a task removed by [Scheduler.Cancel] before it
	// ran (again); Err is [ErrCanceled]. Counted in Stats.Canceled.
	OutcomeCanceled
	// OutcomeNotRun is a task that Stop reported without running it
	// (again); Err wraps [ErrSchedulerClosed], and the last run's error
	// for a retry that never ran. Counted in Stats.NotRun.
	OutcomeNotRun
)

// String returns the status's name: "succeeded", "failed", "canceled" or
// "not_run" (the values of the OpenTelemetry integration's
// taskpool.task.outcome attribute), or "status(N)" for any other value.
func (s OutcomeStatus) String() string {
	switch s {
	case OutcomeSucceeded:
		return "succeeded"
	case OutcomeFailed:
		return "failed"
	case OutcomeCanceled:
		return "canceled"
	case OutcomeNotRun:
		return "not_run"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Future is the pending outcome of a task submitted with
// [Scheduler.SubmitFuture]. Its methods are safe for concurrent use, and
// any number of goroutines may wait on one Future.
type Future struct {
	wg sync.WaitGroup // done once the outcome is set

	mu   sync.Mutex
	ch   chan struct{} // made on demand by Done, closed by complete
	done bool

	// Written once, before wg.Done and under mu; read after either. The
	// task is the record's own, which does not change once settled: the
	// Future keeps no copy of it.
	task     *Task
	result   any
	err      error
	attempts int
	status   OutcomeStatus
}

func (f *Future) init(t *Task) {
	f.task = t
	f.wg.Add(1)
}

// Wait blocks until the task has finished or ctx is done, and returns the
// handler's result and error. When ctx ends first it returns ctx's error;
// the task itself goes on. A task that has finished gives its outcome
// even to a ctx that has ended since.
//
// A handler that waits with its ctx (or one derived from it) lends its
// worker meanwhile, as [Lend] says: its scheduler runs one worker more
// until Wait returns (Stats.Workers counts it), so handlers that wait for
// the tasks they submitted never leave the pool with no worker to run
// them. Waiting with another ctx, or on Done, lends nothing.
func (f *Future) Wait(ctx context.Context) (any, error) {
	if ctx == nil {
		return nil, ErrNilContext
	}
	if l := handlerLender(ctx); l != nil && !f.finished() {
		l.lend()
		defer l.unlend()
	}
	if ctx.Done() == nil {
		// No cancellation possible: wait without making a channel.
		f.wg.Wait()
		return f.result, f.err
	}
	done := f.Done()
	select {
	case <-done:
		return f.result, f.err
	default:
	}
	select {
	case <-done:
		return f.result, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// finished reports whether the outcome is set.
func (f *Future) finished() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done
}

// Done returns a channel that is closed when the task has finished.
func (f *Future) Done() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ch == nil {
		f.ch = make(chan struct{})
		if f.done {
			close(f.ch)
		}
	}
	return f.ch
}

// Outcome returns the task's outcome and true once it has finished, or a
// zero Outcome and false before.
func (f *Future) Outcome() (Outcome, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.done {
		return Outcome{}, false
	}
	return Outcome{Task: *f.task, Result: f.result, Err: f.err, Attempts: f.attempts, Status: f.status}, true
}

func (f *Future) complete(out Outcome) {
	f.mu.Lock()
	f.result, f.err, f.attempts, f.status = out.Result, out.Err, out.Attempts, out.Status
	f.done = true
	if f.ch != nil {
		close(f.ch)
	}
	f.mu.Unlock()
	f.wg.Done()
}

// ResultAs returns a task's result v (from [Future.Wait] or
// [Client.SubmitWait]) as a T. When v already holds a T (in process), it is
// returned as is; when it holds JSON ([json.RawMessage] or []byte, as a
// broker returns results), it is decoded into a T. As an A and a *A encode
// alike, they are taken alike, as the wire takes them: a *A for an A gives
// a copy of what it points to (the zero A for a nil one, which travels as
// JSON null), and an A for a *A a pointer to a copy. A nil v, any other
// mismatch, or JSON that does not decode is an error wrapping
// [ErrInvalidResult], never a panic.
func ResultAs[T any](v any) (T, error) {
	var out T
	switch r := v.(type) {
	case T:
		return r, nil
	case json.RawMessage:
		return out, decodeResult(r, &out)
	case []byte:
		return out, decodeResult(r, &out)
	case nil:
		return out, fmt.Errorf("%w: no result", ErrInvalidResult)
	}
	if r, ok := alike[T](v); ok {
		return r, nil
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() && rv.Type().Elem() == reflect.TypeFor[T]() {
		return out, nil // a nil *A is JSON null: the zero A
	}
	return out, fmt.Errorf("%w: result is %T, want %T", ErrInvalidResult, v, out)
}

func decodeResult(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: decode: %w", ErrInvalidResult, err)
	}
	return nil
}
