package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
	"github.com/taskpool/taskpool/broker/nats/devserver"
	taskpoolotel "github.com/taskpool/taskpool/otel"
)

// TestTraceAcrossNATS: a producer and a consumer as separate objects, on
// connections of their own, each with its own tracer provider and span
// recorder, as two processes would be. A task enqueued under a request
// span, through the producer's enqueue middleware, and one submitted
// through the wrapping Client, each make one trace from the submit to the
// handler: the consumer's run span is the child of, and linked to, the
// producer's span, and the handler's span is the child of the run's. The
// first run records its queue wait, and a dead-lettered task is counted
// from the settle hook.
func TestTraceAcrossNATS(t *testing.T) {
	srv, err := devserver.Start(devserver.Options{StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The consumer's process.
	consumerSpans := tracetest.NewSpanRecorder()
	consumerTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(consumerSpans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		require.NoError(t, consumerTP.Shutdown(context.Background()))
		require.NoError(t, mp.Shutdown(context.Background()))
	})
	copts := []taskpoolotel.Option{
		taskpoolotel.WithTracerProvider(consumerTP), taskpoolotel.WithMeterProvider(mp), taskpoolotel.WithQueue("traced"),
	}
	cnc, cjs, err := natsbroker.Connect(srv.URL())
	require.NoError(t, err)
	t.Cleanup(cnc.Close)
	tracer := consumerTP.Tracer("handler")
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("work", func(ctx context.Context, _ taskpool.Task) error {
		_, sp := tracer.Start(ctx, "handler work")
		sp.End()
		return nil
	}))
	require.NoError(t, reg.HandleFunc("poison", func(context.Context, taskpool.Task) error {
		return taskpool.SkipRetry(assert.AnError)
	}))
	settled := make(chan taskpool.Outcome, 8)
	dead := taskpoolotel.DeadLetterHook(copts...)
	c, err := natsbroker.NewConsumer(ctx, cjs, reg,
		natsbroker.WithQueue("traced"),
		natsbroker.WithWorkers(2),
		natsbroker.WithPollWait(200*time.Millisecond),
		natsbroker.WithSchedulerOptions(taskpool.WithMiddleware(taskpoolotel.Middleware(copts...))),
		natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
			if a == natsbroker.ActionDeadLetter {
				dead(out)
			}
			settled <- out
		}),
	)
	require.NoError(t, err)
	require.NoError(t, c.Start())
	t.Cleanup(func() {
		stopCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
		defer done()
		assert.NoError(t, c.Stop(stopCtx))
	})

	// The producer's process: no meter provider of its own is needed.
	producerSpans := tracetest.NewSpanRecorder()
	producerTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(producerSpans))
	t.Cleanup(func() { require.NoError(t, producerTP.Shutdown(context.Background())) })
	popts := []taskpoolotel.Option{taskpoolotel.WithTracerProvider(producerTP), taskpoolotel.WithQueue("traced")}
	pnc, pjs, err := natsbroker.Connect(srv.URL())
	require.NoError(t, err)
	t.Cleanup(pnc.Close)
	prod, err := natsbroker.NewProducer(ctx, pjs, natsbroker.WithQueue("traced"),
		natsbroker.WithEnqueueMiddleware(taskpoolotel.EnqueueMiddleware(popts...)))
	require.NoError(t, err)
	client := taskpoolotel.NewClient(natsbroker.NewClient(prod), popts...)

	reqCtx, req := producerTP.Tracer("app").Start(ctx, "request")
	_, err = prod.Enqueue(reqCtx, taskpool.Task{ID: "mw-1", Type: "work"})
	require.NoError(t, err)
	require.NoError(t, client.Submit(reqCtx, taskpool.Task{ID: "cl-1", Type: "work"}))
	require.NoError(t, client.Submit(reqCtx, taskpool.Task{ID: "dl-1", Type: "poison"}))
	req.End()

	done := map[string]bool{}
	for len(done) < 3 {
		select {
		case out := <-settled:
			done[out.Task.ID] = true
		case <-ctx.Done():
			t.Fatalf("timed out; settled: %v", done)
		}
	}

	// The producer's spans: the request and a send span per Client submit.
	sent := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range producerSpans.Ended() {
		if s.SpanKind() == trace.SpanKindProducer {
			for _, kv := range s.Attributes() {
				if kv.Key == "messaging.message.id" {
					sent[kv.Value.AsString()] = s
				}
			}
		}
	}
	require.Contains(t, sent, "cl-1")
	assert.Equal(t, req.SpanContext().SpanID(), sent["cl-1"].Parent().SpanID())

	// The consumer's spans: a run per task, and the handler's spans.
	runs := map[string]sdktrace.ReadOnlySpan{}
	var handlerSpans []sdktrace.ReadOnlySpan
	for _, s := range consumerSpans.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindConsumer:
			for _, kv := range s.Attributes() {
				if kv.Key == "messaging.message.id" {
					runs[kv.Value.AsString()] = s
				}
			}
		case trace.SpanKindInternal:
			handlerSpans = append(handlerSpans, s)
		}
	}
	traceID := req.SpanContext().TraceID()
	wantParent := map[string]trace.SpanID{
		"mw-1": req.SpanContext().SpanID(),          // the enqueue middleware carries the request span
		"cl-1": sent["cl-1"].SpanContext().SpanID(), // the Client carries its send span
	}
	for id, parent := range wantParent {
		require.Contains(t, runs, id)
		run := runs[id]
		assert.Equal(t, traceID, run.SpanContext().TraceID(), "%s: one trace from submit to handler", id)
		assert.Equal(t, parent, run.Parent().SpanID(), id)
		assert.True(t, run.Parent().IsRemote(), id)
		require.Len(t, run.Links(), 1, id)
		assert.Equal(t, parent, run.Links()[0].SpanContext.SpanID(), id)
	}
	require.Len(t, handlerSpans, 2)
	for _, h := range handlerSpans {
		assert.Equal(t, traceID, h.SpanContext().TraceID())
		assert.Contains(t, []trace.SpanID{runs["mw-1"].SpanContext().SpanID(), runs["cl-1"].SpanContext().SpanID()},
			h.Parent().SpanID(), "the handler's span is the run's child")
	}

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	find := func(name string) metricdata.Metrics {
		t.Helper()
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name == name {
					return m
				}
			}
		}
		t.Fatalf("no metric %s", name)
		return metricdata.Metrics{}
	}
	var waits uint64
	for _, dp := range find(taskpoolotel.MetricQueueWait).Data.(metricdata.Histogram[float64]).DataPoints {
		waits += dp.Count
		q, _ := dp.Attributes.Value("messaging.destination.name")
		assert.Equal(t, "traced", q.AsString())
	}
	assert.Equal(t, uint64(3), waits, "a queue wait per task, from the producer's time in the headers")
	var deadN int64
	for _, dp := range find(taskpoolotel.MetricDeadLettered).Data.(metricdata.Sum[int64]).DataPoints {
		typ, _ := dp.Attributes.Value(taskpoolotel.TaskTypeKey)
		assert.Equal(t, attribute.StringValue("poison"), typ)
		deadN += dp.Value
	}
	assert.Equal(t, int64(1), deadN)
}
