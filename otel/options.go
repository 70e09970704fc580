package taskpoolotel

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer and meter this
// package creates.
const ScopeName = "github.com/taskpool/taskpool/otel"

// System is the value of the messaging.system attribute.
const System = "taskpool"

// Option configures [Middleware], [Observe], [CompletionHook],
// [DeadLetterHook], [NewClient], [EnqueueMiddleware] and [Inject]; each
// reads the options that concern it.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	tp    trace.TracerProvider
	mp    metric.MeterProvider
	prop  propagation.TextMapPropagator // nil: the global one, falling back to W3C Trace Context
	queue string
	attrs []attribute.KeyValue
}

func newConfig(opts []Option) config {
	var c config
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	return c
}

// WithTracerProvider sets the tracer provider. The default, and the
// meaning of nil, is the global one.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) { c.tp = tp })
}

// WithMeterProvider sets the meter provider. The default, and the meaning
// of nil, is the global one.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) { c.mp = mp })
}

// WithPropagator sets the propagator that carries the trace context in
// [taskpool.Task.Metadata]: [Inject], [EnqueueMiddleware] and [Client]
// write with it, [Middleware] reads with it. Give the producer and the
// consumer the same one. The default, and the meaning of nil, is the
// global one (otel.SetTextMapPropagator), looked up at each use; while
// that one writes nothing (until it is set it is a no-op), W3C Trace
// Context (traceparent, tracestate) is used instead, so that traces are
// linked without any set-up.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return optionFunc(func(c *config) { c.prop = p })
}

// WithQueue names the queue the tasks come from, such as the NATS queue
// of a consumer: it becomes the messaging.destination.name attribute of
// spans and measurements. The default is none.
func WithQueue(name string) Option {
	return optionFunc(func(c *config) { c.queue = name })
}

// WithAttributes adds attributes to every span and measurement, such as
// one naming the scheduler when a process runs several. Keep their values
// few: each combination is a time series.
func WithAttributes(kv ...attribute.KeyValue) Option {
	return optionFunc(func(c *config) { c.attrs = append(c.attrs, kv...) })
}

// meter returns the package's meter from the configured provider.
func (c *config) meter() metric.Meter {
	return c.mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version))
}

// common returns the attributes every measurement carries: the messaging
// system and operation, then extra's.
func (c *config) common() []attribute.KeyValue {
	return append([]attribute.KeyValue{attrSystem, attrOperationName}, c.extra()...)
}

// extra returns the queue, when set, and WithAttributes' attributes.
func (c *config) extra() []attribute.KeyValue {
	var kv []attribute.KeyValue
	if c.queue != "" {
		kv = append(kv, destinationName(c.queue))
	}
	return append(kv, c.attrs...)
}

// Version is the version of this instrumentation, reported as the scope's
// version.
const Version = "0.1.0"

// A meter may return no instrument with the error of one it cannot
// create: these replace it by a no-op, so that a measurement does not
// panic on a nil instrument. An instrument returned with an error (the
// SDK's for an invalid name) is kept: it was created.

func int64Counter(m metric.Meter, name string, opts ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	i, err := m.Int64Counter(name, opts...)
	if i == nil {
		return noop.Int64Counter{}, err
	}
	return i, err
}

func int64Histogram(m metric.Meter, name string, opts ...metric.Int64HistogramOption) (metric.Int64Histogram, error) {
	i, err := m.Int64Histogram(name, opts...)
	if i == nil {
		return noop.Int64Histogram{}, err
	}
	return i, err
}

func float64Histogram(m metric.Meter, name string, opts ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	i, err := m.Float64Histogram(name, opts...)
	if i == nil {
		return noop.Float64Histogram{}, err
	}
	return i, err
}
