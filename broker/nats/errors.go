package natsbroker

import (
	"context"
	"errors"
	"fmt"

	"github.com/taskpool/taskpool"
)

// coreError is a sentinel of this package that means what a sentinel of
// the core package means: errors.Is matches both.
type coreError struct {
	msg  string
	core error
}

func (e *coreError) Error() string { return e.msg }
func (e *coreError) Unwrap() error { return e.core }

func wrapsCore(msg string, core error) error { return &coreError{msg: msg, core: core} }

// Sentinel errors returned by the package. Compare with [errors.Is]: they
// are wrapped with the offending value.
var (
	// ErrBadPayload reports a message that is not a valid task: it could not
	// be decoded by the codec. A consumer dead-letters such a message with
	// this error and terminates it; it never reaches a handler.
	ErrBadPayload = errors.New("natsbroker: bad task payload")

	// ErrUnsupportedVersion reports an envelope whose version this codec
	// does not know. It is always wrapped together with [ErrBadPayload].
	ErrUnsupportedVersion = errors.New("natsbroker: unsupported envelope version")

	// ErrBadParams reports task params that cannot be encoded: a value
	// json.Marshal rejects, or []byte / json.RawMessage that is not JSON.
	// It is also [taskpool.ErrInvalidTask] for errors.Is, which the
	// in-process scheduler returns for the same params with
	// [taskpool.WithStrictCodec].
	ErrBadParams = wrapsCore("natsbroker: params cannot be encoded", taskpool.ErrInvalidTask)

	// ErrDuplicateTask is returned by [Producer.Enqueue] for a task whose
	// UniqueKey is held by another task that is queued, delayed or running.
	// It is also [taskpool.ErrDuplicateTask] for errors.Is.
	ErrDuplicateTask = wrapsCore("natsbroker: unique key already held", taskpool.ErrDuplicateTask)

	// ErrAttemptsExhausted is the dead-letter error of a task delivered more
	// times than its MaxAttempts without a final outcome, as happens when
	// each attempt crashed its worker process or lost its lease.
	ErrAttemptsExhausted = errors.New("natsbroker: attempts exhausted")

	// ErrSchedulesUnsupported is returned by [Producer.Schedule] and
	// [Producer.Cancel] when the server does not support per-message
	// schedules (nats-server < 2.12) or the producer was given
	// [WithClientSideDelays].
	ErrSchedulesUnsupported = errors.New("natsbroker: server does not support message schedules")

	// ErrInvalidQueue reports a queue name that is empty, longer than 64
	// characters, or holds characters other than letters, digits, '-' and
	// '_'. It is also
	// [ErrInvalidOption] and [taskpool.ErrInvalidOption] for errors.Is.
	ErrInvalidQueue = wrapsCore("natsbroker: invalid queue name", ErrInvalidOption)

	// ErrInvalidOption reports an option value that is out of range. It is
	// also [taskpool.ErrInvalidOption] for errors.Is.
	ErrInvalidOption = wrapsCore("natsbroker: invalid option", taskpool.ErrInvalidOption)

	// ErrNotFound is returned by the [Inspector] for a dead letter that does
	// not exist, and by [Producer.Cancel] for an ID with nothing scheduled.
	// It is also [taskpool.ErrTaskNotFound] for errors.Is.
	ErrNotFound = wrapsCore("natsbroker: not found", taskpool.ErrTaskNotFound)

	// ErrNotConfirmed reports a task the server did not confirm before the
	// caller's context ended, although [Producer.Enqueue] retried: the
	// connection was down, no stream leader answered (an election), or
	// the answers were late. The task may have been stored. The error is
	// retryable: enqueue the task again with the same ID (within the
	// duplicate window the server stores it once), with a context that
	// bounds how long to keep trying. It is always wrapped in an
	// [*EnqueueError].
	ErrNotConfirmed = errors.New("natsbroker: task not confirmed")

	// ErrMaxPayload reports a task whose message is larger than the
	// server's max_payload (or the stream's maximum message size). It is
	// permanent: the task was not stored and sending it again fails the
	// same way. Enqueue returns it at once, wrapped in an [*EnqueueError].
	ErrMaxPayload = errors.New("natsbroker: task larger than the server's max payload")

	// ErrRejected reports a task the server refused for another reason
	// than its size (an API error that is not transient). The task was not
	// stored; sending it again fails the same way until the queue's
	// configuration changes. It is wrapped in an [*EnqueueError] together
	// with the server's error.
	ErrRejected = errors.New("natsbroker: task rejected by the server")

	// ErrPayloadDropped is returned by [Inspector.Resubmit] for a dead
	// letter stored without its payload (see [HeaderDropped]).
	ErrPayloadDropped = errors.New("natsbroker: dead letter stored without its payload")

	// ErrQueueMismatch is returned by NewProducer, NewConsumer and
	// NewInspector when the queue exists with settings other than those
	// given as options (replicas, storage, duplicate window, async persist,
	// unique TTL, ack wait). Opening a queue never changes it; see
	// [WithReconfigure].
	ErrQueueMismatch = errors.New("natsbroker: queue exists with other settings")

	// ErrConsumerClosed is returned by [Consumer.Start] after Stop, and by a
	// second Start.
	ErrConsumerClosed = errors.New("natsbroker: consumer closed or already started")
)

// checkCtx refuses a nil ctx, which every exported function that takes a
// context checks first: the error wraps [taskpool.ErrNilContext], and the
// function does nothing else (where it would otherwise dereference ctx,
// in a request to the server or a wait). op names the function.
func checkCtx(ctx context.Context, op string) error {
	if ctx == nil {
		return fmt.Errorf("natsbroker: %s: %w", op, taskpool.ErrNilContext)
	}
	return nil
}

// EnqueueError is returned by [Producer.Enqueue] when the server did not
// store the task, or did not confirm it. Err tells which, with
// [errors.Is]:
//
//   - [ErrNotConfirmed] (retryable): Enqueue retried with the same message
//     ID until its context ended, and the server never confirmed. The task
//     may have been stored; enqueueing it again with the same ID is safe
//     (deduplicated within the duplicate window).
//   - [ErrMaxPayload] or [ErrRejected] (permanent): the task was not stored
//     and sending it again fails the same way. Enqueue returns these at
//     once, without retrying.
type EnqueueError struct {
	// ID is the task's ID, generated by Enqueue when the task had none.
	ID string
	// Err is the cause.
	Err error
}

// Error describes the task and the cause.
func (e *EnqueueError) Error() string {
	return fmt.Sprintf("natsbroker: enqueue task %s: %v", e.ID, e.Err)
}

// Retryable reports whether enqueueing the task again with the same ID may
// succeed: the error wraps [ErrNotConfirmed].
func (e *EnqueueError) Retryable() bool { return errors.Is(e.Err, ErrNotConfirmed) }

// Unwrap returns the cause.
func (e *EnqueueError) Unwrap() error { return e.Err }

// BatchError is returned by [Producer.EnqueueBatch] when some tasks were not
// stored (refused before publishing, like an invalid task or a held unique
// key, or by the server) or not confirmed. Errs is index-aligned with the
// tasks given: nil for a task that was stored.
type BatchError struct {
	Errs []error
}

// Error counts the failed tasks and shows the first error.
func (e *BatchError) Error() string {
	n, first := 0, error(nil)
	for _, err := range e.Errs {
		if err != nil {
			if first == nil {
				first = err
			}
			n++
		}
	}
	return fmt.Sprintf("natsbroker: enqueue batch: %d of %d tasks not stored or not confirmed; first: %v", n, len(e.Errs), first)
}

// Unwrap returns the individual errors.
func (e *BatchError) Unwrap() []error {
	var errs []error
	for _, err := range e.Errs {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// errorText is err's message. A handler's error whose Error method panics
// (a typed nil pointer, say) or calls runtime.Goexit fails its task as in
// process, where the Future gets the error as it is; the consumer, which
// must write a message, writes one saying that Error panicked or called
// Goexit rather than panic itself or end its goroutine, either of which
// left the delivery unsettled (run again after each ack wait, until
// MaxDeliveries). Error runs on a goroutine of its own, which Goexit
// ends: only dead letters and stored errors pay for it.
func errorText(err error) string {
	s, ok := textAside(func() (s string) {
		defer func() {
			if v := recover(); v != nil {
				// The value with textAside too: formatting it may call Goexit,
				// which would leave s empty here.
				s = fmt.Sprintf("%T: Error panicked: %s", err, valueText(v))
			}
		}()
		return err.Error()
	})
	if !ok {
		return fmt.Sprintf("%T: Error called runtime.Goexit", err)
	}
	return s
}

// valueText is fmt.Sprint(v), for a handler's panic value kept in a
// stored error. fmt recovers a panic in v's String or Error method but
// not a runtime.Goexit, which on a worker ended the settlement of the
// delivery (run again after each ack wait, until MaxDeliveries): it runs
// with textAside, as errorText does, and says so instead.
func valueText(v any) string {
	s, ok := textAside(func() string { return fmt.Sprint(v) })
	if !ok {
		return fmt.Sprintf("%T: formatting it called runtime.Goexit", v)
	}
	return s
}

// textAside returns f's text, made aside, or reports that f called
// runtime.Goexit, which ends only aside's goroutine.
func textAside(f func() string) (s string, ok bool) {
	aside(func() {
		s = f()
		ok = true
	})
	return s, ok
}

// textError is an error whose text was made beforehand, wrapping errs.
type textError struct {
	text string
	errs []error
}

func (e *textError) Error() string   { return e.text }
func (e *textError) Unwrap() []error { return e.errs }
