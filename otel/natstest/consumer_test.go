package natstest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
	"github.com/taskpool/taskpool/broker/nats/devserver"
	taskpoolotel "github.com/taskpool/taskpool/otel"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type settlement struct {
	out    taskpool.Outcome
	action natsbroker.Action
}

// TestConsumer instruments a NATS consumer the way the otel README shows:
// the middleware through the consumer's scheduler options, the completion
// hook from the settle hook, and Observe over the consumer. A task that
// fails on its first delivery and succeeds on the second gets a span per
// delivery with the delivery count as its attempt; a task that fails with
// SkipRetry is dead-lettered and counted as failed.
func TestConsumer(t *testing.T) {
	srv, err := devserver.Start(devserver.Options{StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, js, err := natsbroker.Connect(srv.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		require.NoError(t, tp.Shutdown(context.Background()))
		require.NoError(t, mp.Shutdown(context.Background()))
	})
	opts := []taskpoolotel.Option{
		taskpoolotel.WithTracerProvider(tp), taskpoolotel.WithMeterProvider(mp), taskpoolotel.WithQueue("jobs"),
	}

	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("flaky", func(_ context.Context, tk taskpool.Task) error {
		if tk.Attempt == 1 {
			return errors.New("try again")
		}
		return nil
	}))
	require.NoError(t, reg.HandleFunc("poison", func(context.Context, taskpool.Task) error {
		return taskpool.SkipRetry(errors.New("bad payload"))
	}))

	settled := make(chan settlement, 16)
	hook := taskpoolotel.CompletionHook(opts...)
	c, err := natsbroker.NewConsumer(ctx, js, reg,
		natsbroker.WithQueue("jobs"),
		natsbroker.WithWorkers(2),
		natsbroker.WithPollWait(200*time.Millisecond),
		natsbroker.WithBackoff(taskpool.ConstantBackoff(10*time.Millisecond)),
		natsbroker.WithSchedulerOptions(taskpool.WithMiddleware(taskpoolotel.Middleware(opts...))),
		natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
			if a == natsbroker.ActionAck || a == natsbroker.ActionDeadLetter {
				hook(out)
			}
			settled <- settlement{out, a}
		}),
	)
	require.NoError(t, err)
	observed, err := taskpoolotel.Observe(c, opts...)
	require.NoError(t, err)
	require.NoError(t, c.Start())
	t.Cleanup(func() {
		stopCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
		defer done()
		assert.NoError(t, c.Stop(stopCtx))
	})

	prod, err := natsbroker.NewProducer(ctx, js, natsbroker.WithQueue("jobs"))
	require.NoError(t, err)
	_, err = prod.Enqueue(ctx, taskpool.Task{ID: "flaky-1", Type: "flaky", Priority: taskpool.PriorityHigh})
	require.NoError(t, err)
	_, err = prod.Enqueue(ctx, taskpool.Task{ID: "poison-1", Type: "poison"})
	require.NoError(t, err)

	final := map[string]natsbroker.Action{}
	for len(final) < 2 {
		select {
		case s := <-settled:
			if s.action != natsbroker.ActionRetry {
				final[s.out.Task.ID] = s.action
			}
		case <-ctx.Done():
			t.Fatalf("timed out; settled so far: %v", final)
		}
	}
	assert.Equal(t, natsbroker.ActionAck, final["flaky-1"])
	assert.Equal(t, natsbroker.ActionDeadLetter, final["poison-1"])

	byID := map[string][]tracetest.SpanStub{}
	for _, s := range spans.GetSpans() {
		attrs := attribute.NewSet(s.Attributes...)
		id, _ := attrs.Value("messaging.message.id")
		byID[id.AsString()] = append(byID[id.AsString()], s)
	}
	require.Len(t, byID["flaky-1"], 2, "a span per delivery")
	attempts := map[int64]codes.Code{}
	for _, s := range byID["flaky-1"] {
		attrs := attribute.NewSet(s.Attributes...)
		a, _ := attrs.Value(taskpoolotel.TaskAttemptKey)
		attempts[a.AsInt64()] = s.Status.Code
		q, _ := attrs.Value("messaging.destination.name")
		assert.Equal(t, "jobs", q.AsString())
		p, _ := attrs.Value(taskpoolotel.TaskPriorityKey)
		assert.Equal(t, "high", p.AsString())
	}
	assert.Equal(t, map[int64]codes.Code{1: codes.Error, 2: codes.Unset}, attempts, "the attempt is the delivery count")
	require.Len(t, byID["poison-1"], 1)
	assert.Equal(t, codes.Error, byID["poison-1"][0].Status.Code)

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	value := func(name string, want ...attribute.KeyValue) int64 {
		t.Helper()
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name != name {
					continue
				}
				var total int64
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					ok := true
					for _, kv := range want {
						if v, found := dp.Attributes.Value(kv.Key); !found || v != kv.Value {
							ok = false
						}
					}
					if ok {
						total += dp.Value
					}
				}
				return total
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	}
	typ := taskpoolotel.TaskTypeKey.String
	assert.Equal(t, int64(2), value(taskpoolotel.MetricStarted, typ("flaky")))
	assert.Equal(t, int64(1), value(taskpoolotel.MetricFailed, typ("flaky")))
	assert.Equal(t, int64(1), value(taskpoolotel.MetricSucceeded, typ("flaky")))
	outcome := taskpoolotel.TaskOutcomeKey.String
	assert.Equal(t, int64(1), value(taskpoolotel.MetricCompleted, typ("flaky"), outcome("succeeded")))
	assert.Equal(t, int64(1), value(taskpoolotel.MetricCompleted, typ("poison"), outcome("failed")))
	// The consumer's local scheduler: each delivery is one local task.
	queue := attribute.String("messaging.destination.name", "jobs")
	assert.Equal(t, int64(3), value(taskpoolotel.MetricSubmitted, queue))
	assert.Equal(t, int64(1), value(taskpoolotel.MetricTotalSucceeded, queue))
	assert.Equal(t, int64(2), value(taskpoolotel.MetricTotalFailed, queue))
	assert.Equal(t, int64(2), value(taskpoolotel.MetricWorkers, queue))
	require.NoError(t, observed.Unregister())
}
