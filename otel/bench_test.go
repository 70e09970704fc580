package taskpoolotel_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/taskpool/taskpool"
	taskpoolotel "github.com/taskpool/taskpool/otel"
)

// The overhead of the instrumentation on the core's trivial-task workload
// (BenchmarkTrivial in the root package): one goroutine submits b.N tasks
// to a scheduler with GOMAXPROCS workers, each task adds to a counter, and
// ns/task is the wall time from the first submit to the end of Stop. The
// variants differ only in the middleware:
//
//   - bare: none.
//   - global-noop: Middleware() with the global providers, no SDK installed.
//   - metrics: the SDK meter provider (read by a ManualReader), the no-op
//     tracer.
//   - traces-sampled-out: the SDK tracer with a sampler that drops every
//     span, and the SDK meter provider.
//   - traces+metrics: the SDK tracer sampling every span into a batch
//     span processor with an exporter that discards, and the SDK meter
//     provider.
//   - traces+metrics+hook: as above, plus CompletionHook.
//   - inject-only: no middleware, but each task carries a trace context
//     and its enqueue time (Inject before Submit): the producer's cost,
//     and the core's path for a task with Metadata.
//   - traces+metrics+hook+inject: as traces+metrics+hook, and each task carries the
//     trace context of a sampled request span and its enqueue time
//     (Inject before Submit): the middleware extracts it, parents and
//     links the run's span and records the queue wait.
//   - traces+metrics+hook+client: as above, but submitted through
//     NewClient, which also makes a producer span per task and counts it.

var benchSink atomic.Int64

// discard is a span exporter that drops what it is given.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

func BenchmarkTrivial(b *testing.B) {
	mp := func(b *testing.B) *sdkmetric.MeterProvider {
		p := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
		return p
	}
	tp := func(b *testing.B, opts ...sdktrace.TracerProviderOption) *sdktrace.TracerProvider {
		p := sdktrace.NewTracerProvider(opts...)
		b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
		return p
	}
	b.Run("bare", func(b *testing.B) { runTrivial(b) })
	b.Run("global-noop", func(b *testing.B) {
		runTrivial(b, taskpool.WithMiddleware(taskpoolotel.Middleware()))
	})
	b.Run("metrics", func(b *testing.B) {
		runTrivial(b, taskpool.WithMiddleware(taskpoolotel.Middleware(taskpoolotel.WithMeterProvider(mp(b)))))
	})
	b.Run("traces-sampled-out", func(b *testing.B) {
		runTrivial(b, taskpool.WithMiddleware(taskpoolotel.Middleware(
			taskpoolotel.WithTracerProvider(tp(b, sdktrace.WithSampler(sdktrace.NeverSample()))),
			taskpoolotel.WithMeterProvider(mp(b)))))
	})
	b.Run("traces+metrics", func(b *testing.B) {
		runTrivial(b, taskpool.WithMiddleware(taskpoolotel.Middleware(
			taskpoolotel.WithTracerProvider(tp(b, sdktrace.WithBatcher(discard{}))),
			taskpoolotel.WithMeterProvider(mp(b)))))
	})
	b.Run("traces+metrics+hook", func(b *testing.B) {
		m := mp(b)
		runTrivial(b,
			taskpool.WithMiddleware(taskpoolotel.Middleware(
				taskpoolotel.WithTracerProvider(tp(b, sdktrace.WithBatcher(discard{}))),
				taskpoolotel.WithMeterProvider(m))),
			taskpool.WithCompletionHook(taskpoolotel.CompletionHook(taskpoolotel.WithMeterProvider(m))))
	})
	b.Run("inject-only", func(b *testing.B) {
		p := tp(b, sdktrace.WithBatcher(discard{}))
		ctx, span := p.Tracer("bench").Start(context.Background(), "request")
		defer span.End()
		runTrivialWith(b, func(s *taskpool.Scheduler) submitFunc {
			return func(_ context.Context, t taskpool.Task) error {
				taskpoolotel.Inject(ctx, &t)
				return s.Submit(ctx, t)
			}
		})
	})
	b.Run("traces+metrics+hook+inject", func(b *testing.B) {
		m, p := mp(b), tp(b, sdktrace.WithBatcher(discard{}))
		ctx, span := p.Tracer("bench").Start(context.Background(), "request")
		defer span.End()
		runTrivialWith(b, func(s *taskpool.Scheduler) submitFunc {
			return func(_ context.Context, t taskpool.Task) error {
				taskpoolotel.Inject(ctx, &t)
				return s.Submit(ctx, t)
			}
		},
			taskpool.WithMiddleware(taskpoolotel.Middleware(
				taskpoolotel.WithTracerProvider(p), taskpoolotel.WithMeterProvider(m))),
			taskpool.WithCompletionHook(taskpoolotel.CompletionHook(taskpoolotel.WithMeterProvider(m))))
	})
	b.Run("traces+metrics+hook+client", func(b *testing.B) {
		m, p := mp(b), tp(b, sdktrace.WithBatcher(discard{}))
		ctx, span := p.Tracer("bench").Start(context.Background(), "request")
		defer span.End()
		runTrivialWith(b, func(s *taskpool.Scheduler) submitFunc {
			c := taskpoolotel.NewClient(s, taskpoolotel.WithTracerProvider(p), taskpoolotel.WithMeterProvider(m))
			return func(_ context.Context, t taskpool.Task) error { return c.Submit(ctx, t) }
		},
			taskpool.WithMiddleware(taskpoolotel.Middleware(
				taskpoolotel.WithTracerProvider(p), taskpoolotel.WithMeterProvider(m))),
			taskpool.WithCompletionHook(taskpoolotel.CompletionHook(taskpoolotel.WithMeterProvider(m))))
	})
}

// BenchmarkInject is the producer's side of carrying the trace context:
// Inject on a task, under a sampled span.
func BenchmarkInject(b *testing.B) {
	p := sdktrace.NewTracerProvider()
	b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	ctx, span := p.Tracer("bench").Start(context.Background(), "request")
	defer span.End()
	b.ReportAllocs()
	for range b.N {
		t := taskpool.Task{Type: "t"}
		taskpoolotel.Inject(ctx, &t)
	}
}

// BenchmarkMiddleware calls a handler wrapped by the middleware directly,
// from one goroutine, with the same variants: the cost of the
// instrumentation per run, without the scheduler around it.
func BenchmarkMiddleware(b *testing.B) {
	ctx := context.Background()
	task := taskpool.Task{ID: "id-1", Type: "t", Attempt: 1}
	bare := taskpool.HandlerFunc(func(context.Context, taskpool.Task) error {
		benchSink.Add(1)
		return nil
	})
	call := func(b *testing.B, h taskpool.Handler) {
		b.ReportAllocs()
		for range b.N {
			_ = h.HandleTask(ctx, task)
		}
	}
	mp := func(b *testing.B) *sdkmetric.MeterProvider {
		p := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
		return p
	}
	tp := func(b *testing.B, opts ...sdktrace.TracerProviderOption) *sdktrace.TracerProvider {
		p := sdktrace.NewTracerProvider(opts...)
		b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
		return p
	}
	b.Run("bare", func(b *testing.B) { call(b, bare) })
	b.Run("global-noop", func(b *testing.B) { call(b, taskpoolotel.Middleware()(bare)) })
	b.Run("metrics", func(b *testing.B) {
		call(b, taskpoolotel.Middleware(taskpoolotel.WithMeterProvider(mp(b)))(bare))
	})
	b.Run("traces-sampled-out", func(b *testing.B) {
		call(b, taskpoolotel.Middleware(
			taskpoolotel.WithTracerProvider(tp(b, sdktrace.WithSampler(sdktrace.NeverSample()))),
			taskpoolotel.WithMeterProvider(mp(b)))(bare))
	})
	b.Run("traces+metrics", func(b *testing.B) {
		call(b, taskpoolotel.Middleware(
			taskpoolotel.WithTracerProvider(tp(b, sdktrace.WithBatcher(discard{}))),
			taskpoolotel.WithMeterProvider(mp(b)))(bare))
	})
	b.Run("traces+metrics+propagated", func(b *testing.B) {
		p := tp(b, sdktrace.WithBatcher(discard{}))
		pctx, span := p.Tracer("bench").Start(context.Background(), "request")
		defer span.End()
		h := taskpoolotel.Middleware(taskpoolotel.WithTracerProvider(p), taskpoolotel.WithMeterProvider(mp(b)))(bare)
		t := task
		taskpoolotel.Inject(pctx, &t)
		b.ReportAllocs()
		for range b.N {
			_ = h.HandleTask(ctx, t)
		}
	})
}

type submitFunc func(context.Context, taskpool.Task) error

func runTrivial(b *testing.B, opts ...taskpool.Option) {
	runTrivialWith(b, func(s *taskpool.Scheduler) submitFunc { return s.Submit }, opts...)
}

// runTrivialWith runs the trivial workload, submitting each task with the
// function made from the scheduler.
func runTrivialWith(b *testing.B, submitter func(*taskpool.Scheduler) submitFunc, opts ...taskpool.Option) {
	b.ReportAllocs()
	s, err := taskpool.New(taskpool.HandlerFunc(func(context.Context, taskpool.Task) error {
		benchSink.Add(1)
		return nil
	}), opts...)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	task := taskpool.Task{Type: "t"}
	submit := submitter(s)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := submit(ctx, task); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Stop(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/task")
}
