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

// Outcomes, the values of taskpool.task.outcome.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
	OutcomeNotRun    = "not_run"
	OutcomeCanceled  = "canceled"
)

// CompletionHook returns a function to pass to [taskpool.WithCompletionHook]
// that counts each task's final outcome by type in taskpool.task.completed
// and records the runs it took in taskpool.task.attempts. Where the
// middleware counts runs, this counts tasks: a task retried twice before
// it succeeded is three runs and one completion.
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
		k := outcomeKey{typ: out.Task.Type, outcome: OutcomeSucceeded}
		if out.Err != nil {
			k.errType = errorType(out.Err)
			switch {
			case ranIntoStop(out):
				// Failed, as Stats counts it; error.type canceled for
				// ErrSchedulerClosed itself, the context's cause (as
				// Middleware records that run), else the error's Go type.
				k.outcome, k.errType = OutcomeFailed, ErrorTypeCanceled
				if out.Err != taskpool.ErrSchedulerClosed {
					k.errType = fmt.Sprintf("%T", out.Err)
				}
			case errors.Is(out.Err, taskpool.ErrSchedulerClosed):
				k.outcome = OutcomeNotRun
			case errors.Is(out.Err, taskpool.ErrCanceled):
				k.outcome = OutcomeCanceled
			default:
				k.outcome = OutcomeFailed
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

// ranIntoStop reports whether out is a run that failed with an error
// wrapping ErrSchedulerClosed (the cause of its context cancelled by
// Stop's deadline, returned by its handler) rather than a task Stop left
// unrun. The scheduler gives one of those ErrSchedulerClosed itself with
// fewer Attempts than the attempt it would have run as (0 for a task that
// never ran), or joined before the last run's error for a retry that never
// ran.
func ranIntoStop(out taskpool.Outcome) bool {
	if !errors.Is(out.Err, taskpool.ErrSchedulerClosed) {
		return false
	}
	if j, ok := out.Err.(interface{ Unwrap() []error }); ok {
		if es := j.Unwrap(); len(es) > 0 && es[0] == taskpool.ErrSchedulerClosed {
			return false
		}
	}
	return out.Err != taskpool.ErrSchedulerClosed || (out.Attempts > 0 && out.Attempts >= out.Task.Attempt)
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
