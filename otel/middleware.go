package taskpoolotel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskpool/taskpool"
)

// Names of the instruments [Middleware] records to.
const (
	// MetricStarted counts handler runs started (one per attempt).
	MetricStarted = "taskpool.task.started"
	// MetricSucceeded counts handler runs that returned nil.
	MetricSucceeded = "taskpool.task.succeeded"
	// MetricFailed counts handler runs that failed, retried or not, with
	// error.type.
	MetricFailed = "taskpool.task.failed"
	// MetricProcessDuration is the semantic-convention histogram of the
	// run time of a handler, in seconds.
	MetricProcessDuration = "messaging.process.duration"
	// MetricQueueWait is the histogram of the time a task waited before
	// its first run started, in seconds: from the time [Inject] (or
	// [Client], [EnqueueMiddleware]) recorded in its Metadata. Tasks
	// without it are not measured.
	MetricQueueWait = "taskpool.task.queue_wait"
)

// TaskQueueWaitKey is the span attribute of the first run of a task that
// carries [MetadataEnqueuedAt]: the seconds it waited.
const TaskQueueWaitKey = attribute.Key("taskpool.task.queue_wait")

// waitBuckets are the boundaries of taskpool.task.queue_wait, in seconds:
// a queue wait spans more orders of magnitude than a run.
var waitBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

// durationBuckets are the boundaries the messaging semantic conventions
// advise for messaging.process.duration, in seconds.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// errPanicked stands for the error of a handler that did not return: it
// panicked (the scheduler turns that into a *taskpool.PanicError beyond
// the middleware) or called runtime.Goexit.
var errPanicked = errors.New("taskpool: handler panicked")

// Middleware returns a [taskpool.Middleware] that traces and measures each
// run of a handler (each attempt of a task).
//
// Each run gets a span of kind consumer named "process TYPE". When the
// task's Metadata carries a trace context ([Inject], [Client],
// [EnqueueMiddleware]; read with the propagator of [WithPropagator]), the
// span is a child of the submitter's span and has a link to it: one trace
// goes from the submit to the handler, across processes through a broker,
// and every attempt of the task is a child of the same span. Otherwise it
// is a child of the span in the handler's context if any. It has the
// attributes
// messaging.system, messaging.operation.name and .type, messaging.message.id
// (the task ID), messaging.destination.name (see [WithQueue]),
// taskpool.task.type, taskpool.task.attempt and taskpool.task.priority. A
// failed run records the error as an event, sets the span's status to
// Error and adds error.type: "panic", "timeout", "canceled", "no_handler"
// or the error's Go type. A run that calls runtime.Goexit is recorded as a
// "panic" too (the middleware cannot tell the two apart without
// recovering the panic), and [CompletionHook] and [DeadLetterHook] give
// its ErrHandlerExited the same error.type. The handler runs with the span in its context,
// so its own spans are children of it.
//
// Each run counts in taskpool.task.started and then in
// taskpool.task.succeeded or taskpool.task.failed (with error.type), and
// its run time is recorded in messaging.process.duration; all by
// taskpool.task.type. The first run of a task that carries
// [MetadataEnqueuedAt] records how long it waited in
// taskpool.task.queue_wait and in the span's taskpool.task.queue_wait.
//
// Instruments that cannot be created are reported to otel.Handle and
// replaced by no-ops.
func Middleware(opts ...Option) taskpool.Middleware {
	c := newConfig(opts)
	m := &instrumented{
		tracer: c.tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version)),
		prop:   propagator{c.prop},
		common: c.common(),
		extra:  c.extra(),
	}
	meter := c.meter()
	var err, e error
	m.started, e = int64Counter(meter, MetricStarted, metric.WithUnit("{attempt}"),
		metric.WithDescription("Handler runs started, one per attempt of a task."))
	err = errors.Join(err, e)
	m.succeeded, e = int64Counter(meter, MetricSucceeded, metric.WithUnit("{attempt}"),
		metric.WithDescription("Handler runs that succeeded."))
	err = errors.Join(err, e)
	m.failed, e = int64Counter(meter, MetricFailed, metric.WithUnit("{attempt}"),
		metric.WithDescription("Handler runs that failed, whether the task is retried or not."))
	err = errors.Join(err, e)
	m.duration, e = float64Histogram(meter, MetricProcessDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of processing operation."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	err = errors.Join(err, e)
	m.wait, e = float64Histogram(meter, MetricQueueWait, metric.WithUnit("s"),
		metric.WithDescription("Time a task waited, from its submit (or due time) to the start of its first run."),
		metric.WithExplicitBucketBoundaries(waitBuckets...))
	err = errors.Join(err, e)
	if err != nil {
		otel.Handle(err)
	}
	return func(next taskpool.Handler) taskpool.Handler {
		return &handler{m: m, next: next}
	}
}

// instrumented is what the handlers of one Middleware share.
type instrumented struct {
	tracer    trace.Tracer
	prop      propagator
	common    []attribute.KeyValue // on every measurement
	extra     []attribute.KeyValue // on every span, beyond its own
	started   metric.Int64Counter
	succeeded metric.Int64Counter
	failed    metric.Int64Counter
	duration  metric.Float64Histogram
	wait      metric.Float64Histogram

	types sync.Map                  // task type -> *typeAttrs
	last  atomic.Pointer[typeAttrs] // the type of the last run: most runs are of few types
}

// typeAttrs holds what is the same for every run of a task type, made
// once so that a run allocates no attribute set of its own.
type typeAttrs struct {
	typ      string
	spanName string
	set      attribute.Set // common attributes and the type
	measure
	errOpts sync.Map // error.type -> *measure
}

// measure holds the options of a measurement in slices made once: a
// variadic call through an interface would allocate a new one per call.
type measure struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

func newMeasure(set attribute.Set) *measure {
	o := metric.WithAttributeSet(set)
	return &measure{add: []metric.AddOption{o}, record: []metric.RecordOption{o}}
}

func (m *instrumented) forType(typ string) *typeAttrs {
	if ta := m.last.Load(); ta != nil && ta.typ == typ {
		return ta
	}
	if ta, ok := m.types.Load(typ); ok {
		m.last.Store(ta.(*typeAttrs))
		return ta.(*typeAttrs)
	}
	kv := append(append([]attribute.KeyValue(nil), m.common...), TaskTypeKey.String(typ))
	set := attribute.NewSet(kv...)
	ta := &typeAttrs{typ: typ, spanName: "process " + typ, set: set, measure: *newMeasure(set)}
	v, _ := m.types.LoadOrStore(typ, ta)
	return v.(*typeAttrs)
}

// errMeasure returns the measurement options of the type's attributes
// with error.type; error types are few, so they are kept.
func (ta *typeAttrs) errMeasure(errType string) *measure {
	if o, ok := ta.errOpts.Load(errType); ok {
		return o.(*measure)
	}
	kv := append(ta.set.ToSlice(), semconv.ErrorTypeKey.String(errType))
	o, _ := ta.errOpts.LoadOrStore(errType, newMeasure(attribute.NewSet(kv...)))
	return o.(*measure)
}

// spanStart are the options of every span: made once.
var spanStart = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}

type handler struct {
	m    *instrumented
	next taskpool.Handler
}

func (h *handler) HandleTask(ctx context.Context, t taskpool.Task) error {
	m := h.m
	ta := m.forType(t.Type)
	// Attributes are set after the start, and only on a span that
	// records: a sampled-out or no-op span costs no attribute slice. A
	// sampler therefore sees none of them.
	var span trace.Span
	var wait float64
	waited := false
	if len(t.Metadata) == 0 {
		ctx, span = m.tracer.Start(ctx, ta.spanName, spanStart...)
	} else {
		// The task carries the submitter's trace context: the run's span
		// is its child, so that one trace goes from the submit to the
		// handler, and links to it as the messaging conventions ask of a
		// process span (a consumer that prefers a trace of its own per run
		// still finds the submitter through the link).
		var sc trace.SpanContext
		ctx, sc = m.prop.extract(ctx, t.Metadata)
		if sc.IsValid() {
			ctx, span = m.tracer.Start(ctx, ta.spanName, spanStart[0], trace.WithLinks(trace.Link{SpanContext: sc}))
		} else {
			ctx, span = m.tracer.Start(ctx, ta.spanName, spanStart...)
		}
		// A retry's wait would include the earlier runs and their backoff:
		// only the first run is measured.
		if at, ok := enqueuedAt(t.Metadata); ok && t.Attempt <= 1 {
			wait, waited = max(time.Since(at).Seconds(), 0), true
			m.wait.Record(ctx, wait, ta.record...)
		}
	}
	if span.IsRecording() {
		kv := make([]attribute.KeyValue, 0, 8+len(m.extra))
		kv = append(kv,
			attrSystem,
			attrOperationName,
			attrOperationType,
			semconv.MessagingMessageIDKey.String(t.ID),
			TaskTypeKey.String(t.Type),
			TaskAttemptKey.Int(max(t.Attempt, 1)),
			TaskPriorityKey.String(t.Priority.String()),
		)
		if waited {
			kv = append(kv, TaskQueueWaitKey.Float64(wait))
		}
		span.SetAttributes(append(kv, m.extra...)...)
	}
	m.started.Add(ctx, 1, ta.add...)
	start := time.Now()
	returned := false
	defer func() {
		if !returned {
			// Panicking or exiting the goroutine: record and let it go on
			// unrecovered, so the scheduler's PanicError keeps the stack.
			h.end(ctx, span, ta, start, errPanicked, ErrorTypePanic)
		}
	}()
	err := h.next.HandleTask(ctx, t)
	returned = true
	if err != nil {
		h.end(ctx, span, ta, start, err, runErrorType(ctx, err))
	} else {
		h.end(ctx, span, ta, start, nil, "")
	}
	return err
}

func (h *handler) end(ctx context.Context, span trace.Span, ta *typeAttrs, start time.Time, err error, errType string) {
	m := h.m
	elapsed := time.Since(start).Seconds()
	if err == nil {
		m.succeeded.Add(ctx, 1, ta.add...)
		m.duration.Record(ctx, elapsed, ta.record...)
		span.End()
		return
	}
	em := ta.errMeasure(errType)
	m.failed.Add(ctx, 1, em.add...)
	m.duration.Record(ctx, elapsed, em.record...)
	if span.IsRecording() {
		span.SetAttributes(semconv.ErrorTypeKey.String(errType))
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// runErrorType is errorType for a run, which is never "not_run": a
// handler that returns the cause of its context cancelled by Stop's
// deadline (ErrSchedulerClosed) was canceled; one that returns that error
// from elsewhere (a submit to a closed scheduler) has its Go type.
func runErrorType(ctx context.Context, err error) string {
	et := errorType(err)
	if et != ErrorTypeNotRun {
		return et
	}
	if ctx.Err() != nil {
		return ErrorTypeCanceled
	}
	return fmt.Sprintf("%T", err)
}
