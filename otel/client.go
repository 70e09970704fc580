package taskpoolotel

import (
	"context"
	"errors"
	"reflect"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskpool/taskpool"
)

// MetricSentMessages is the semantic-convention counter of tasks a
// [Client] submitted, by taskpool.task.type, with error.type for those
// that were refused.
const MetricSentMessages = "messaging.client.sent.messages"

// Client wraps a [taskpool.Client] (a [*taskpool.Scheduler], the NATS
// broker's *natsbroker.Client) so that each task submitted through it
// carries the trace context and the time it started to wait in its
// Metadata (see [Inject]), under a span of its own.
//
// Each Submit, SubmitAt and SubmitAfter makes a span of kind producer
// named "send TYPE", a child of the span in ctx, with messaging.system,
// messaging.operation.name and .type = "send", messaging.message.id (when
// the task has an ID before it is submitted), messaging.destination.name
// (see [WithQueue]), taskpool.task.type and taskpool.task.priority; its
// context is what the task carries, so the spans of the task's runs
// ([Middleware]) are its children. A refused task records the error on
// the span. Each call counts in messaging.client.sent.messages, by type,
// with error.type when refused. A nil ctx is refused with
// [taskpool.ErrNilContext] and nothing else: no span, no count, nothing
// submitted.
//
// SubmitWait sends the same way and then waits (see [Client.SubmitWait]
// for where its span ends); Cancel, SchedulePeriodic and Unschedule are
// passed through. A Client is safe for concurrent use if the client it
// wraps is.
type Client struct {
	next   taskpool.Client
	prop   propagator
	tracer trace.Tracer
	extra  []attribute.KeyValue
	sent   metric.Int64Counter
	common []attribute.KeyValue
}

var _ taskpool.Client = (*Client)(nil)

// spanSend are the options of every producer span: made once.
var spanSend = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}

var (
	attrSendName = semconv.MessagingOperationNameKey.String("send")
	attrSendType = semconv.MessagingOperationTypeSend
)

// NewClient returns c wrapped as described at [Client]. It reads the
// tracer and meter providers, [WithPropagator], [WithQueue] and
// [WithAttributes] from opts. An instrument that cannot be created is
// reported to otel.Handle and replaced by a no-op. A nil c (a nil
// interface, or a nil pointer, func, map, chan or slice) makes every
// method return an error wrapping [ErrNilClient] rather than panic.
func NewClient(c taskpool.Client, opts ...Option) *Client {
	if isNil(c) {
		c = nilClient{}
	}
	cfg := newConfig(opts)
	cl := &Client{
		next:   c,
		prop:   propagator{cfg.prop},
		tracer: cfg.tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version)),
		extra:  cfg.extra(),
		common: append([]attribute.KeyValue{attrSystem, attrSendName}, cfg.extra()...),
	}
	var err error
	cl.sent, err = int64Counter(cfg.meter(), MetricSentMessages, metric.WithUnit("{message}"),
		metric.WithDescription("Number of messages producer attempted to send to the broker."))
	if err != nil {
		otel.Handle(err)
	}
	return cl
}

// Submit submits t through the wrapped client, as described at [Client].
func (c *Client) Submit(ctx context.Context, t taskpool.Task) error {
	return c.send(ctx, t, time.Now(), func(ctx context.Context, t taskpool.Task) error {
		return c.next.Submit(ctx, t)
	})
}

// SubmitAt submits t to run at at through the wrapped client; its queue
// wait counts from at.
func (c *Client) SubmitAt(ctx context.Context, t taskpool.Task, at time.Time) error {
	return c.send(ctx, t, laterOf(time.Now(), at), func(ctx context.Context, t taskpool.Task) error {
		return c.next.SubmitAt(ctx, t, at)
	})
}

// SubmitAfter submits t to run d from now through the wrapped client; its
// queue wait counts from then.
func (c *Client) SubmitAfter(ctx context.Context, t taskpool.Task, d time.Duration) error {
	now := time.Now()
	return c.send(ctx, t, now.Add(max(d, 0)), func(ctx context.Context, t taskpool.Task) error {
		return c.next.SubmitAfter(ctx, t, d)
	})
}

// SubmitWait submits t through the wrapped client, as Submit does, and
// waits for its result and final error there. With a client that submits
// and waits in two steps, as [*taskpool.Scheduler] does (a SubmitFuture
// method), the send span ends when the task is accepted, and only a
// refused submission marks it failed: the runs are its children, the wait
// is not in it. With another client (the NATS broker's), whose SubmitWait
// is one call, the span covers the wait too, and an error that is one of
// the submission sentinels (ErrSchedulerClosed, ErrQueueFull,
// ErrDuplicateTask, ErrNoHandler, ErrInvalidType, ErrInvalidTask) counts
// as a refused send even when the task itself returned it.
func (c *Client) SubmitWait(ctx context.Context, t taskpool.Task) (any, error) {
	if fs, ok := c.next.(futureSubmitter); ok {
		var f *taskpool.Future
		err := c.send(ctx, t, time.Now(), func(sctx context.Context, t taskpool.Task) error {
			var err error
			f, err = fs.SubmitFuture(sctx, t)
			return err
		})
		if err != nil {
			return nil, err
		}
		return f.Wait(ctx)
	}
	var res any
	var runErr error
	err := c.send(ctx, t, time.Now(), func(sctx context.Context, t taskpool.Task) error {
		res, runErr = c.next.SubmitWait(sctx, t)
		if isSubmitError(runErr) {
			return runErr
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, runErr
}

// futureSubmitter is a client that submits and waits in two steps.
type futureSubmitter interface {
	SubmitFuture(ctx context.Context, t taskpool.Task) (*taskpool.Future, error)
}

// isSubmitError reports whether err from SubmitWait is a refused
// submission rather than the task's own error.
func isSubmitError(err error) bool {
	return errors.Is(err, taskpool.ErrSchedulerClosed) || errors.Is(err, taskpool.ErrQueueFull) ||
		errors.Is(err, taskpool.ErrDuplicateTask) || errors.Is(err, taskpool.ErrNoHandler) ||
		errors.Is(err, taskpool.ErrInvalidType) || errors.Is(err, taskpool.ErrInvalidTask)
}

// Cancel cancels through the wrapped client.
func (c *Client) Cancel(id string) error { return c.next.Cancel(id) }

// SchedulePeriodic registers the schedule through the wrapped client. Its
// ticks carry no trace context: each is a trace of its own.
func (c *Client) SchedulePeriodic(id string, sched taskpool.Schedule, t taskpool.Task) error {
	return c.next.SchedulePeriodic(id, sched, t)
}

// Unschedule removes the schedule through the wrapped client.
func (c *Client) Unschedule(id string) error { return c.next.Unschedule(id) }

// send submits t in a send span. A nil ctx is refused before the span,
// as the wrapped client refuses it: with the error, and nothing else.
func (c *Client) send(ctx context.Context, t taskpool.Task, due time.Time, submit func(context.Context, taskpool.Task) error) error {
	if ctx == nil {
		return taskpool.ErrNilContext
	}
	ctx, span := c.tracer.Start(ctx, "send "+t.Type, spanSend...)
	defer span.End()
	if span.IsRecording() {
		kv := make([]attribute.KeyValue, 0, 6+len(c.extra))
		kv = append(kv, attrSystem, attrSendName, attrSendType,
			TaskTypeKey.String(t.Type), TaskPriorityKey.String(t.Priority.String()))
		if t.ID != "" {
			kv = append(kv, semconv.MessagingMessageIDKey.String(t.ID))
		}
		span.SetAttributes(append(kv, c.extra...)...)
	}
	inject(ctx, c.prop, &t, due)
	err := submit(ctx, t)
	kv := append(append(make([]attribute.KeyValue, 0, len(c.common)+2), c.common...), TaskTypeKey.String(t.Type))
	if err != nil {
		et := sendErrorType(err)
		kv = append(kv, semconv.ErrorTypeKey.String(et))
		if span.IsRecording() {
			span.SetAttributes(semconv.ErrorTypeKey.String(et))
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
	}
	c.sent.Add(ctx, 1, metric.WithAttributes(kv...))
	return err
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Values of error.type for a refused submit that are not Go type names.
const (
	ErrorTypeClosed    = "scheduler_closed"
	ErrorTypeQueueFull = "queue_full"
	ErrorTypeDuplicate = "duplicate"
)

// sendErrorType classifies the error of a refused submit.
func sendErrorType(err error) string {
	switch {
	case errors.Is(err, taskpool.ErrSchedulerClosed):
		return ErrorTypeClosed
	case errors.Is(err, taskpool.ErrQueueFull):
		return ErrorTypeQueueFull
	case errors.Is(err, taskpool.ErrDuplicateTask):
		return ErrorTypeDuplicate
	}
	return errorType(err)
}

// ErrNilClient is returned, wrapped, by every method of a [Client] that
// NewClient was given a nil client for.
var ErrNilClient = errors.New("taskpoolotel: NewClient: nil client")

// nilClient stands in for a nil client given to NewClient.
type nilClient struct{}

func (nilClient) Submit(context.Context, taskpool.Task) error { return ErrNilClient }
func (nilClient) SubmitAt(context.Context, taskpool.Task, time.Time) error {
	return ErrNilClient
}
func (nilClient) SubmitAfter(context.Context, taskpool.Task, time.Duration) error {
	return ErrNilClient
}
func (nilClient) Cancel(string) error { return ErrNilClient }
func (nilClient) SubmitWait(context.Context, taskpool.Task) (any, error) {
	return nil, ErrNilClient
}
func (nilClient) SchedulePeriodic(string, taskpool.Schedule, taskpool.Task) error {
	return ErrNilClient
}
func (nilClient) Unschedule(string) error { return ErrNilClient }

// isNil reports whether v is a nil interface or holds a nil pointer,
// func, map, chan or slice: a method called on any of them may panic.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch r := reflect.ValueOf(v); r.Kind() {
	case reflect.Pointer, reflect.Func, reflect.Map, reflect.Chan, reflect.Slice, reflect.UnsafePointer:
		return r.IsNil()
	}
	return false
}
