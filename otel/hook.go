package taskpoolotel

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/taskpool/taskpool"
)

// Names of the instruments [CompletionHook] records to.
const (
	// MetricCompleted counts tasks by their final outcome, with
	// taskpool.task.type, taskpool.task.outcome and, for a failure,
	// error.type.
	MetricCompleted = "taskpool.task.completed"
	// MetricAttempts is the histogram of the number of runs a task took
	// to reach its final outcome (0 for a task that never ran).
	MetricAttempts = "taskpool.task.attempts"
)

// Outcomes, the values of taskpool.task.outcome: the names of the
// [taskpool.OutcomeStatus] values (their String).
const (
	OutcomeSucceeded = "succeeded" // taskpool.OutcomeSucceeded
	OutcomeFailed    = "failed"    // taskpool.OutcomeFailed
	OutcomeNotRun    = "not_run"   // taskpool.OutcomeNotRun
	OutcomeCanceled  = "canceled"  // taskpool.OutcomeCanceled
)

// CompletionHook returns a function to pass to [taskpool.WithCompletionHook]
// that counts each task's final outcome by type in taskpool.task.completed
// and records the runs it took in taskpool.task.attempts. Where the
// middleware counts runs, this counts tasks: a task retried twice before
// it succeeded is three runs and one completion.
//
// taskpool.task.outcome is the Outcome's Status ([taskpool.Outcome]), the
// scheduler's decision, so the hook's counts by outcome are the
// scheduler's Stats (and [Observe]'s counters): a handler that returns an
// error wrapping ErrCanceled or ErrSchedulerClosed failed, whatever its
// error says. An Outcome with no Status (one built by hand) counts as
// succeeded when its Err is nil, failed otherwise. error.type, on every
// outcome with an error, names its kind as [Middleware] does ("panic",
// "timeout", "canceled", "no_handler" or the error's Go type), and is
// "not_run" for the not_run outcome only: a failure whose error wraps
// ErrSchedulerClosed is "canceled" for ErrSchedulerClosed itself (the
// cause of its context once Stop's deadline has passed) and the error's
// Go type otherwise.
//
// The NATS consumer keeps the completion hook of its local scheduler for
// itself; call the returned function from its settle hook instead, for the
// deliveries that end a task (acknowledged or dead-lettered).
func CompletionHook(opts ...Option) func(taskpool.Outcome) {
	c := newConfig(opts)
	meter := c.meter()
	completed, err1 := int64Counter(meter, MetricCompleted, metric.WithUnit("{task}"),
		metric.WithDescription("Tasks by final outcome."))
	attempts, err2 := int64Histogram(meter, MetricAttempts, metric.WithUnit("{attempt}"),
		metric.WithDescription("Runs a task took to reach its final outcome."),
		metric.WithExplicitBucketBoundaries(0, 1, 2, 3, 5, 10, 25))
	if err := errors.Join(err1, err2); err != nil {
		otel.Handle(err)
	}
	common := append([]attribute.KeyValue{attrSystem}, c.extra()...)
	var sets sync.Map // outcomeKey -> metric.MeasurementOption
	return func(out taskpool.Outcome) {
		k := outcomeKey{typ: out.Task.Type, outcome: outcomeOf(out)}
		if out.Err != nil {
			k.errType = errorType(out.Err)
			if k.outcome == OutcomeFailed && errors.Is(out.Err, taskpool.ErrSchedulerClosed) {
				// A run that failed with the cause of its context
				// cancelled by Stop's deadline: error.type canceled for
				// ErrSchedulerClosed itself (as Middleware records that
				// run), else the error's Go type; not not_run, which is a
				// task that never ran.
				k.errType = ErrorTypeCanceled
				if out.Err != taskpool.ErrSchedulerClosed {
					k.errType = fmt.Sprintf("%T", out.Err)
				}
			}
		}
		v, ok := sets.Load(k)
		if !ok {
			kv := append(append([]attribute.KeyValue(nil), common...),
				TaskTypeKey.String(k.typ), TaskOutcomeKey.String(k.outcome))
			if k.errType != "" {
				kv = append(kv, semconv.ErrorTypeKey.String(k.errType))
			}
			v, _ = sets.LoadOrStore(k, metric.WithAttributeSet(attribute.NewSet(kv...)))
		}
		opt := v.(metric.MeasurementOption)
		ctx := context.Background()
		completed.Add(ctx, 1, opt)
		attempts.Record(ctx, int64(out.Attempts), opt)
	}
}

// outcomeOf is the value of taskpool.task.outcome for out: its Status,
// the scheduler's decision. An Outcome with no Status (built by hand) is
// succeeded when its Err is nil and failed otherwise.
func outcomeOf(out taskpool.Outcome) string {
	switch out.Status {
	case taskpool.OutcomeSucceeded, taskpool.OutcomeFailed, taskpool.OutcomeCanceled, taskpool.OutcomeNotRun:
		return out.Status.String()
	}
	if out.Err == nil {
		return OutcomeSucceeded
	}
	return OutcomeFailed
}

type outcomeKey struct {
	typ, outcome, errType string
}

// MetricDeadLettered counts tasks filed as dead letters, with
// taskpool.task.type and error.type. It is recorded by [DeadLetterHook].
const MetricDeadLettered = "taskpool.task.dead_lettered"

// DeadLetterHook returns a function that counts each dead-lettered task
// in taskpool.task.dead_lettered, by taskpool.task.type and error.type.
// Pass it as the function of [taskpool.WithDeadLetters] for an in-process
// scheduler; for a NATS consumer, call it from the settle hook when the
// action is natsbroker.ActionDeadLetter. The function is safe for
// concurrent use. An instrument that cannot be created is reported to
// otel.Handle and replaced by a no-op.
func DeadLetterHook(opts ...Option) func(taskpool.Outcome) {
	c := newConfig(opts)
	dead, err := int64Counter(c.meter(), MetricDeadLettered, metric.WithUnit("{task}"),
		metric.WithDescription("Tasks filed as dead letters."))
	if err != nil {
		otel.Handle(err)
	}
	common := append([]attribute.KeyValue{attrSystem}, c.extra()...)
	var sets sync.Map // outcomeKey -> metric.MeasurementOption
	return func(out taskpool.Outcome) {
		k := outcomeKey{typ: out.Task.Type}
		if out.Err != nil {
			k.errType = errorType(out.Err)
		}
		v, ok := sets.Load(k)
		if !ok {
			kv := append(append([]attribute.KeyValue(nil), common...), TaskTypeKey.String(k.typ))
			if k.errType != "" {
				kv = append(kv, semconv.ErrorTypeKey.String(k.errType))
			}
			v, _ = sets.LoadOrStore(k, metric.WithAttributeSet(attribute.NewSet(kv...)))
		}
		dead.Add(context.Background(), 1, v.(metric.AddOption))
	}
}
