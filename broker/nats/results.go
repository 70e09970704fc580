package natsbroker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/taskpool/taskpool"
)

// Results across the wire. A task enqueued with [KeepResult] carries the
// header Taskpool-Result; the consumer that settles it for good (success,
// or dead letter) first writes its outcome to the queue's results bucket,
// taskpool_results_<queue>, under the task ID, and only then acks or
// dead-letters the message. So a consumer killed before the write leaves
// the task to be redelivered and run again, and one killed after it leaves
// the outcome stored: the result survives the crash either way. A waiter
// ([Producer.WaitResult]) watches the key. Entries expire after the
// bucket's TTL ([WithResultTTL]).

// HeaderResult asks the consumer to store the task's outcome in the
// results bucket; see [KeepResult].
const HeaderResult = "Taskpool-Result"

// DefaultResultTTL is how long a stored result is kept.
const DefaultResultTTL = 24 * time.Hour

// resultVersion is the version of the stored result record.
const resultVersion = 1

// Result is a task's outcome as a consumer stored it in the results
// bucket; see [Producer.WaitResult].
type Result struct {
	// ID is the task ID.
	ID string
	// Value is the handler's result ([taskpool.Task.SetResult]) encoded
	// as JSON, or nil when it set none. [taskpool.ResultAs] decodes it.
	// A task that failed for good keeps its last run's result, as an
	// in-process Future does (without it when JSON cannot encode it: Err
	// is then the task's own error).
	Value json.RawMessage
	// Err is the task's final error, nil on success. It is rebuilt from
	// what crossed the wire: see [RemoteError].
	Err error
	// Attempts is the attempt number of the last delivery, as
	// Task.Attempt counts them: the delivery count, counted from the
	// Attempt the task was enqueued with.
	Attempts int
	// DeadLettered is true when the task ended in the dead-letter stream.
	DeadLettered bool
}

// RemoteError is a task's error as it crossed the wire in a result: its
// message, and the sentinels it wrapped that errors.Is can still find:
// every sentinel of package taskpool ([taskpool.ErrSkipRetry],
// [taskpool.ErrNoHandler], [taskpool.ErrHandlerExited],
// [taskpool.ErrSchedulerClosed], [taskpool.ErrCanceled],
// [taskpool.ErrInvalidParams] and the others), context.DeadlineExceeded
// (a task timeout), context.Canceled, [ErrAttemptsExhausted],
// [ErrBadPayload] and [ErrBadResult]. Other wrapped errors and types are
// not carried. A
// handler panic comes back as a [*taskpool.PanicError] whose Value is the
// panic value's text (a *RemoteError when the value was an error) and
// whose Stack is the stack from the worker.
type RemoteError struct {
	// Message is the original error's Error(), or a text saying that
	// Error panicked (a typed nil pointer's, say): the task failed all
	// the same, as in process.
	Message string
	// Wrapped are the sentinels the original error wrapped.
	Wrapped []error
}

// Error returns the original error's message.
func (e *RemoteError) Error() string { return e.Message }

// Unwrap returns the sentinels the original error wrapped.
func (e *RemoteError) Unwrap() []error { return e.Wrapped }

// ErrBadResult is the error a waiter sees for a task that succeeded but
// whose result could not be encoded as JSON (json.Marshal returned an
// error, or a MarshalJSON panicked or called runtime.Goexit).
var ErrBadResult = errors.New("natsbroker: result cannot be encoded")

// resultSentinels are the sentinels a stored error carries by name.
var resultSentinels = []struct {
	name string
	err  error
}{
	{"skip_retry", taskpool.ErrSkipRetry},
	{"no_handler", taskpool.ErrNoHandler},
	{"handler_exited", taskpool.ErrHandlerExited},
	{"scheduler_closed", taskpool.ErrSchedulerClosed},
	{"task_canceled", taskpool.ErrCanceled},
	{"deadline_exceeded", context.DeadlineExceeded},
	{"canceled", context.Canceled},
	{"attempts_exhausted", ErrAttemptsExhausted},
	{"bad_payload", ErrBadPayload},
	{"bad_result", ErrBadResult},
	// The core's other sentinels, which a handler's error may wrap
	// (ErrInvalidParams from ParamsAs, say): a reader that does not know
	// a name skips it.
	{"invalid_type", taskpool.ErrInvalidType},
	{"nil_handler", taskpool.ErrNilHandler},
	{"duplicate_type", taskpool.ErrDuplicateType},
	{"invalid_task", taskpool.ErrInvalidTask},
	{"invalid_option", taskpool.ErrInvalidOption},
	{"not_started", taskpool.ErrNotStarted},
	{"already_started", taskpool.ErrAlreadyStarted},
	{"queue_full", taskpool.ErrQueueFull},
	{"duplicate_task", taskpool.ErrDuplicateTask},
	{"task_not_found", taskpool.ErrTaskNotFound},
	{"invalid_params", taskpool.ErrInvalidParams},
	{"invalid_result", taskpool.ErrInvalidResult},
}

// resultRecord is the JSON stored per task in the results bucket.
type resultRecord struct {
	V        int             `json:"v"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    *errorRecord    `json:"error,omitempty"`
	Attempts int             `json:"attempts"`
	Dead     bool            `json:"dead,omitempty"`
	// Seq is the stream sequence of the task message whose outcome this
	// is (0 from an earlier version, or for a cancelled task): Resubmit
	// clears only an outcome of a message older than the one it
	// published.
	Seq uint64 `json:"seq,omitempty"`
}

type errorRecord struct {
	Message string   `json:"message"`
	Is      []string `json:"is,omitempty"` // names from resultSentinels
	// Panic is set for a handler panic.
	Panic *panicRecord `json:"panic,omitempty"`
}

type panicRecord struct {
	Value string       `json:"value,omitempty"` // the value's text, when it is not an error
	Err   *errorRecord `json:"err,omitempty"`   // the value, when it is an error
	Stack string       `json:"stack,omitempty"`
}

func encodeError(err error) *errorRecord {
	if err == nil {
		return nil
	}
	r := &errorRecord{Message: errorText(err)}
	var pe *taskpool.PanicError
	if errors.As(err, &pe) {
		r.Panic = &panicRecord{Stack: string(pe.Stack)}
		if ve, ok := pe.Value.(error); ok {
			r.Panic.Err = encodeError(ve)
		} else {
			r.Panic.Value = valueText(pe.Value)
		}
	}
	for _, s := range resultSentinels {
		if errors.Is(err, s.err) {
			r.Is = append(r.Is, s.name)
		}
	}
	return r
}

func (r *errorRecord) decode() error {
	if r == nil {
		return nil
	}
	if p := r.Panic; p != nil {
		pe := &taskpool.PanicError{Value: p.Value, Stack: []byte(p.Stack)}
		if p.Err != nil {
			pe.Value = p.Err.decode()
		}
		return pe
	}
	e := &RemoteError{Message: r.Message}
	for _, name := range r.Is {
		for _, s := range resultSentinels {
			if s.name == name {
				e.Wrapped = append(e.Wrapped, s.err)
			}
		}
	}
	return e
}

// KeepResult makes the consumer store the task's outcome (the handler's
// result and the final error) in the results bucket for
// [Producer.WaitResult]. Without it nothing is stored, which saves a write
// per task.
func KeepResult() EnqueueOption {
	return enqueueFunc(func(o *enqueueOptions) { o.keepResult = true })
}

// WithResultTTL sets how long a stored result is kept (the results
// bucket's TTL). The default is [DefaultResultTTL]. It applies when the
// bucket is created (see [WithReplicas] for an existing queue).
func WithResultTTL(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d < 0 {
			return invalid("result TTL", d)
		}
		if d > 0 {
			c.resultTTL = d
			c.explicit |= setResultTTL
		}
		return nil
	})
}

// resultKey is the results bucket's key for a task ID: KV keys allow only
// some characters.
func resultKey(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(id))
}

// WaitResult waits until the task id has a final outcome stored in the
// results bucket, and returns it; the task must have been enqueued with
// [KeepResult]. It returns at once when the outcome is already stored (for
// as long as [WithResultTTL] keeps it), so it can be called from any
// process, before or after the task ran. The task's own error is in
// Result.Err; WaitResult's error is ctx's when it ends first (a ctx that
// has ended before the call gets its error even for a stored outcome,
// which it cannot read without one), or the server's; an error wrapping
// [taskpool.ErrInvalidTask] for an ID over [taskpool.MaxIDLength] bytes,
// which no task has; and one wrapping [taskpool.ErrNilContext] for a nil
// ctx. A task ID names one task: waiting on an ID reused
// after its result was stored returns that stored result.
//
// Called from a handler with the handler's ctx (or one derived from it),
// WaitResult lends the handler's worker while it waits, as [taskpool.Lend]
// says; on a [Consumer]'s worker, the consumer holds one message more
// meanwhile: handlers that wait for tasks they enqueued never leave it
// with no room to fetch and run those.
func (p *Producer) WaitResult(ctx context.Context, id string) (Result, error) {
	if err := checkCtx(ctx, "Producer.WaitResult"); err != nil {
		return Result{}, err
	}
	if id == "" {
		return Result{}, invalid("task ID", `""`)
	}
	if len(id) > taskpool.MaxIDLength {
		// No task has it (Enqueue refuses it), and its key could be too
		// long a subject for the server.
		return Result{}, fmt.Errorf("%w: %d-byte task ID, at most %d", taskpool.ErrInvalidTask, len(id), taskpool.MaxIDLength)
	}
	w, err := p.q.results.Watch(ctx, resultKey(id))
	if err != nil {
		return Result{}, fmt.Errorf("natsbroker: wait result %s: %w", id, err)
	}
	defer func() { _ = w.Stop() }()
	release, lent := func() {}, false
	defer func() { release() }()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return Result{}, ctx.Err()
				}
				return Result{}, fmt.Errorf("natsbroker: wait result %s: watch ended", id)
			}
			if e == nil {
				// The end of the initial values, and no result: a
				// handler lends its worker while it waits (and, on a
				// consumer's worker, a message of capacity).
				if !lent {
					release, lent = taskpool.Lend(ctx), true
				}
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				continue // a delete
			}
			var rec resultRecord
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				return Result{}, fmt.Errorf("natsbroker: result %s: %w: %w", id, ErrBadPayload, err)
			}
			if rec.V != resultVersion {
				return Result{}, fmt.Errorf("natsbroker: result %s: %w: %d", id, ErrUnsupportedVersion, rec.V)
			}
			return Result{ID: id, Value: rec.Result, Err: rec.Error.decode(), Attempts: rec.Attempts, DeadLettered: rec.Dead}, nil
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
}

// putResult stores rec as the outcome of the task id in the results
// bucket.
func (q *queue) putResult(ctx context.Context, log *slog.Logger, id string, rec resultRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = request(ctx, log, "result put", func(ctx context.Context) (uint64, error) {
		return q.results.Put(ctx, resultKey(id), data)
	})
	return err
}

// storedResult returns the stored outcome of the task id, nil when there
// is none.
func (q *queue) storedResult(ctx context.Context, log *slog.Logger, id string) (jetstream.KeyValueEntry, error) {
	e, err := request(ctx, log, "result get", func(ctx context.Context) (jetstream.KeyValueEntry, error) {
		return q.results.Get(ctx, resultKey(id))
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	return e, err
}

// clearResult deletes e, the stored outcome of a task read before the
// task message of stream sequence seq was published, when it is the
// outcome of a message older than that one, so that a waiter waits for
// the outcome of that message's run (see [Inspector.Resubmit]). An
// outcome of seq or a later message was stored by that run or a later
// one, and one rewritten since e was read (by that run, whichever version
// of the consumer ran it) is not e: both are kept. An outcome stored by
// an earlier version, without its message's sequence, is deleted only
// when it is a dead letter's, the outcome a Resubmit replaces.
func (q *queue) clearResult(ctx context.Context, log *slog.Logger, e jetstream.KeyValueEntry, seq uint64) error {
	var rec resultRecord
	if json.Unmarshal(e.Value(), &rec) == nil && (rec.Seq >= seq || rec.Seq == 0 && !rec.Dead) {
		return nil
	}
	_, err := request(ctx, log, "result delete", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, q.results.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision()))
	})
	if isWrongLastSeq(err) {
		return nil
	}
	return err
}

// storeResult writes the final outcome of the task delivered as m, the
// message of stream sequence seq, to the results bucket when it was
// enqueued with KeepResult. A nil error means stored, or not asked for.
// An ID over taskpool.MaxIDLength (a task an earlier version's producer
// enqueued, which this version refuses and dead-letters) stores nothing:
// its key, in a subject, could make the server close the consumer's
// connection on every delivery, and WaitResult refuses such an ID.
func (c *Consumer) storeResult(m jetstream.Msg, seq uint64, id string, result any, taskErr error, attempts int, dead bool) error {
	if id == "" || len(id) > taskpool.MaxIDLength || m.Headers().Get(HeaderResult) == "" {
		return nil
	}
	rec := resultRecord{V: resultVersion, Attempts: attempts, Dead: dead, Seq: seq}
	if result != nil {
		// A failed task keeps its last run's result, as an in-process
		// Future does; one JSON cannot encode is dropped there, the
		// task's own error kept.
		b, err := c.marshalResult(id, result)
		switch {
		case err == nil:
			rec.Result = b
		case taskErr == nil:
			taskErr = fmt.Errorf("%w: %w", ErrBadResult, err)
		}
	}
	rec.Error = encodeError(taskErr)
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ackWait)
	defer cancel()
	err := c.q.putResult(ctx, c.cfg.logger, id, rec)
	if err != nil {
		c.cfg.logger.Warn("natsbroker: result not stored; task put back",
			"queue", c.cfg.queue, "id", id, "error", err)
	}
	return err
}

// marshalResult encodes a task's result. A MarshalJSON that panics, or
// that calls runtime.Goexit, is a result JSON cannot encode (an error,
// which storeResult wraps in ErrBadResult): encoding/json does not
// recover the panic, and either would cut the delivery's settlement
// short (on the worker: the task neither acked nor extended, run again
// after the ack wait). It runs on a goroutine of its own, which Goexit
// ends; only tasks with a waiter and a result pay for it, beside the
// result's store.
func (c *Consumer) marshalResult(id string, result any) (b []byte, err error) {
	exited := true
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if v := recover(); v != nil {
				// The value's text aside: formatting it may call Goexit,
				// which would end this call with neither b nor err.
				text := valueText(v)
				exited = false
				c.logError("natsbroker: panic encoding a result", "queue", c.cfg.queue, "id", id,
					"panic", text, "stack", string(debug.Stack()))
				b, err = nil, fmt.Errorf("encoding the result panicked: %s", text)
			}
		}()
		b, err = json.Marshal(result)
		exited = false
	}()
	<-done
	if exited {
		c.logError("natsbroker: runtime.Goexit called encoding a result", "queue", c.cfg.queue, "id", id)
		return nil, errors.New("encoding the result called runtime.Goexit")
	}
	return b, err
}
