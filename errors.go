package taskpool

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// Sentinel errors returned by the package. Compare with [errors.Is]: most of
// them are wrapped with the offending value.
var (
	// ErrInvalidType reports a task type that is empty, at registration or
	// at submission, or not valid UTF-8 at registration, or an [Args]
	// type whose Kind cannot be called on its zero value ([Handle]).
	ErrInvalidType = errors.New("taskpool: invalid task type")

	// ErrNilHandler reports a nil handler given to a registry or to [New].
	ErrNilHandler = errors.New("taskpool: nil handler")

	// ErrNilContext is returned by the methods that take a context when
	// given a nil one (use context.Background or context.TODO): they do
	// nothing else. [Lend] with a nil context lends nothing.
	ErrNilContext = errors.New("taskpool: nil context")

	// ErrDuplicateType reports a second registration of the same task type.
	ErrDuplicateType = errors.New("taskpool: duplicate task type")

	// ErrNoHandler reports a task whose type has no registered handler.
	ErrNoHandler = errors.New("taskpool: no handler for task type")

	// ErrInvalidTask reports a task whose fields are out of range at
	// submission, on either transport: one that [Task.Validate] refuses (a
	// negative Attempt or MaxAttempts; an ID, type or unique key that is
	// not valid UTF-8; an ID or unique key over [MaxIDLength] bytes; an
	// ID with an ASCII control character or a space at an end; metadata a
	// header cannot carry), or a periodic schedule id that it would refuse
	// as a task ID or that is over [MaxScheduleIDLength] bytes.
	ErrInvalidTask = errors.New("taskpool: invalid task")

	// ErrInvalidOption reports an option value that is out of range.
	ErrInvalidOption = errors.New("taskpool: invalid option")

	// ErrNotStarted is returned by Submit and its variants before
	// [Scheduler.Start] has been called.
	ErrNotStarted = errors.New("taskpool: scheduler not started")

	// ErrAlreadyStarted is returned by a second call to [Scheduler.Start].
	ErrAlreadyStarted = errors.New("taskpool: scheduler already started")

	// ErrSchedulerClosed is returned by Submit and its variants once
	// [Scheduler.Stop] has been called, and by Start after Stop. It is also
	// the error reported for an accepted task that never ran because Stop's
	// deadline passed, and the cause of the handler contexts cancelled then:
	// [Outcome.Status] tells the two apart.
	ErrSchedulerClosed = errors.New("taskpool: scheduler closed")

	// ErrQueueFull is returned by [Scheduler.TrySubmit] when the task queue
	// has no room.
	ErrQueueFull = errors.New("taskpool: queue full")

	// ErrDuplicateTask is returned when a task's UniqueKey is taken by a
	// task that is queued, delayed or running, or finished within the
	// unique TTL.
	ErrDuplicateTask = errors.New("taskpool: duplicate task")

	// ErrCanceled is the outcome of a task removed by [Scheduler.Cancel].
	ErrCanceled = errors.New("taskpool: task canceled")

	// ErrTaskNotFound is returned by Cancel, Requeue, DeleteDeadLetter and
	// Unschedule for an ID they do not know.
	ErrTaskNotFound = errors.New("taskpool: task not found")

	// ErrHandlerExited reports a handler that called [runtime.Goexit]
	// instead of returning. The worker that ran it is replaced.
	ErrHandlerExited = errors.New("taskpool: handler called runtime.Goexit")

	// ErrInvalidParams is returned, wrapped, by [ParamsAs] when a task's
	// Params are missing, of another type, or do not decode.
	ErrInvalidParams = errors.New("taskpool: invalid params")

	// ErrInvalidResult is returned, wrapped, by [ResultAs] when a result
	// is missing, of another type, or does not decode.
	ErrInvalidResult = errors.New("taskpool: invalid result")
)

// PanicError is the error of a task whose handler panicked. The worker that
// ran the handler survives and goes on with the next task.
type PanicError struct {
	// Value is the value passed to panic.
	Value any
	// Stack is the goroutine's stack trace at the time of the panic.
	Stack []byte

	// chain is what walking Value's chain does, when the scheduler made
	// the PanicError: chainSafe, or chainPanics (Unwrap does not return
	// Value). Zero for one made elsewhere: Unwrap walks the chain at each
	// call.
	chain uint8
}

// What walking a PanicError's Value's chain does (PanicError.chain).
const (
	chainUnknown uint8 = iota
	chainSafe
	chainPanics
)

func newPanicError(v any) *PanicError { return panicErrorAt(v, debug.Stack()) }

// panicErrorAt is the *PanicError of a panic with value v, recovered where
// stack was taken.
func panicErrorAt(v any, stack []byte) *PanicError {
	pe := &PanicError{Value: v, Stack: stack, chain: chainSafe}
	if err, ok := v.(error); ok {
		if w, _ := walkPanic(err); w != nil {
			pe.chain = chainPanics
		}
	}
	return pe
}

// walkPanic walks err's chain as the worker, the retry policy and the
// hooks walk it (errors.As for a *PanicError, errors.Is for ErrSkipRetry)
// and returns the value of the panic that raised, nil if none (an Unwrap,
// Is or As method of a typed nil pointer panics, say), with the stack at
// the panic.
func walkPanic(err error) (v any, stack []byte) {
	defer func() {
		if v = recover(); v != nil {
			stack = debug.Stack()
		}
	}()
	var pe *PanicError
	errors.As(err, &pe)
	errors.Is(err, ErrSkipRetry)
	return nil, nil
}

// Error returns "taskpool: handler panic: " and the panic value, whatever
// panicked (a handler, or a Backoff, a middleware or a Schedule that gives
// a *PanicError too); the stack is left out to keep log lines short. Read
// Stack for it.
func (e *PanicError) Error() string {
	return fmt.Sprintf("taskpool: handler panic: %v", e.Value)
}

// Unwrap returns Value when it is an error, so that errors.Is sees through
// a panic(err); nil when walking that error's chain panics (a typed nil
// pointer whose Unwrap reads through it, say): errors.Is and errors.As on
// the task's error, in the scheduler as in a hook, stop at the PanicError
// then instead of crashing the process. That holds for a PanicError made
// outside this package too (by a broker, say); Unwrap then walks Value's
// chain, under recover, at each call.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	if err == nil || e.chain == chainPanics {
		return nil
	}
	if e.chain == chainUnknown {
		if v, _ := walkPanic(err); v != nil {
			return nil
		}
	}
	return err
}

// StopError is returned by [Scheduler.Stop] when its context ended before
// every accepted task had run. Each task that did not run was reported to
// the completion hook with [ErrSchedulerClosed].
type StopError struct {
	// NotRun is the number of accepted tasks that Stop reported not run:
	// those that never started, and those whose next attempt never did
	// (a retry, such as that of a run the cancelled context made fail),
	// whose error wraps the last run's as well.
	NotRun int
	// Err is the error of the context given to Stop.
	Err error
}

// Error describes how many tasks did not run.
func (e *StopError) Error() string {
	return fmt.Sprintf("taskpool: stop: %d accepted tasks not run: %v", e.NotRun, e.Err)
}

// Unwrap returns both ErrSchedulerClosed and the context's error.
func (e *StopError) Unwrap() []error {
	return []error{ErrSchedulerClosed, e.Err}
}

// ErrSkipRetry marks a handler error as final: the task is not retried,
// whatever attempts it has left. Wrap an error with [SkipRetry], or return
// ErrSkipRetry itself.
var ErrSkipRetry = errors.New("taskpool: skip retry")

// SkipRetry wraps err so that the task is not retried. errors.Is(result,
// err) and errors.Is(result, ErrSkipRetry) both hold. SkipRetry(nil) is nil.
func SkipRetry(err error) error {
	if err == nil {
		return nil
	}
	return &skipRetryError{err}
}

type skipRetryError struct{ err error }

func (e *skipRetryError) Error() string   { return e.err.Error() }
func (e *skipRetryError) Unwrap() []error { return []error{e.err, ErrSkipRetry} }
