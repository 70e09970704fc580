package taskpoolotel

import (
	"context"
	"maps"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskpool/taskpool"
)

// MetadataEnqueuedAt is the [taskpool.Task.Metadata] key under which
// [Inject], [EnqueueMiddleware] and [Client] record when the task started
// to wait: the time of the submit, or for a task submitted through
// [Client.SubmitAt] or [Client.SubmitAfter] the time it is due. The value
// is Unix time in nanoseconds, in decimal. [Middleware] reads it for the
// queue wait (taskpool.task.queue_wait). Through the NATS broker it
// travels as the header "Taskpool-Meta-taskpool-enqueued-at".
const MetadataEnqueuedAt = "taskpool-enqueued-at"

// propagator injects with the configured propagator; without one, with
// the global one, falling back to W3C Trace Context when the global one
// writes nothing (it is a no-op until otel.SetTextMapPropagator is
// called). The global propagator is looked up at each call, so one set
// after the middleware was built is used.
type propagator struct {
	p propagation.TextMapPropagator // nil: the global one, with the fallback
}

var traceContext = propagation.TraceContext{}

func (p propagator) inject(ctx context.Context, md map[string]string) {
	c := propagation.MapCarrier(md)
	if p.p != nil {
		p.p.Inject(ctx, c)
		return
	}
	n := len(md)
	otel.GetTextMapPropagator().Inject(ctx, c)
	if len(md) == n {
		traceContext.Inject(ctx, c)
	}
}

// extract returns ctx with the remote span context and baggage carried by
// md, and the span context (invalid when md carries none).
func (p propagator) extract(ctx context.Context, md map[string]string) (context.Context, trace.SpanContext) {
	c := propagation.MapCarrier(md)
	if p.p != nil {
		ctx = p.p.Extract(ctx, c)
		return ctx, remoteSpanContext(ctx)
	}
	ctx = otel.GetTextMapPropagator().Extract(ctx, c)
	if sc := remoteSpanContext(ctx); sc.IsValid() {
		return ctx, sc
	}
	ctx = traceContext.Extract(ctx, c)
	return ctx, remoteSpanContext(ctx)
}

// remoteSpanContext returns the span context that a propagator put into
// ctx, which is remote; a span of this process in ctx does not count.
func remoteSpanContext(ctx context.Context) trace.SpanContext {
	if sc := trace.SpanContextFromContext(ctx); sc.IsRemote() {
		return sc
	}
	return trace.SpanContext{}
}

// Inject writes the trace context of ctx's span (W3C traceparent and
// tracestate, through the global propagator; see [WithPropagator] for
// another) and the current time ([MetadataEnqueuedAt]) into t.Metadata,
// so that [Middleware] makes the span of each run of t a child of ctx's
// span, linked to it, and measures how long t waited. Call it just before
// submitting t. It makes a new map rather than writing the one t has,
// which may be shared. Only [WithPropagator] is read from opts.
//
// Inject is safe for concurrent use. For a NATS producer, use
// [EnqueueMiddleware]; to also get a producer span and a count of tasks
// submitted, wrap the client with [NewClient].
func Inject(ctx context.Context, t *taskpool.Task, opts ...Option) {
	c := newConfig(opts)
	inject(ctx, propagator{c.prop}, t, time.Now())
}

// EnqueueMiddleware returns [Inject] as a function to pass to the NATS
// producer's natsbroker.WithEnqueueMiddleware, built once with opts (only
// [WithPropagator] is read). It never returns an error.
//
// The producer runs it once when a periodic schedule is registered, so
// every tick of that schedule carries the trace context and the time of
// the registration. For a task enqueued to run later, the queue wait it
// enables counts from the enqueue, delay included; [Client.SubmitAt]
// counts from the due time instead.
func EnqueueMiddleware(opts ...Option) func(ctx context.Context, t *taskpool.Task) error {
	p := propagator{newConfig(opts).prop}
	return func(ctx context.Context, t *taskpool.Task) error {
		inject(ctx, p, t, time.Now())
		return nil
	}
}

func inject(ctx context.Context, p propagator, t *taskpool.Task, at time.Time) {
	md := make(map[string]string, len(t.Metadata)+3)
	maps.Copy(md, t.Metadata)
	p.inject(ctx, md)
	md[MetadataEnqueuedAt] = strconv.FormatInt(at.UnixNano(), 10)
	t.Metadata = md
}

// enqueuedAt returns the time recorded under MetadataEnqueuedAt, if any.
func enqueuedAt(md map[string]string) (time.Time, bool) {
	v, ok := md[MetadataEnqueuedAt]
	if !ok {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
}
