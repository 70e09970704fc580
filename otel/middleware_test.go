package taskpoolotel_test

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskpool/taskpool"
	taskpoolotel "github.com/taskpool/taskpool/otel"
)

var errBoom = errors.New("boom")

func spanAttrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value, len(s.Attributes))
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// spansByID groups the ended spans by messaging.message.id, in attempt
// order.
func spansByID(spans tracetest.SpanStubs) map[string][]tracetest.SpanStub {
	out := make(map[string][]tracetest.SpanStub)
	for _, s := range spans {
		id := spanAttrs(s)["messaging.message.id"].AsString()
		out[id] = append(out[id], s)
	}
	for _, list := range out {
		sort.Slice(list, func(i, j int) bool {
			return spanAttrs(list[i])[taskpoolotel.TaskAttemptKey].AsInt64() < spanAttrs(list[j])[taskpoolotel.TaskAttemptKey].AsInt64()
		})
	}
	return out
}

// TestMiddlewareSpansAndMetrics runs a task that succeeds, one that fails
// once and then succeeds, one that fails for good with SkipRetry and one
// that panics, and checks a span per attempt with its attributes and
// status, and the run and completion metrics.
func TestMiddlewareSpansAndMetrics(t *testing.T) {
	tel := newTelemetry(t)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("ok", func(context.Context, taskpool.Task) error { return nil }))
	require.NoError(t, reg.HandleFunc("flaky", func(_ context.Context, tk taskpool.Task) error {
		if tk.Attempt == 1 {
			return errBoom
		}
		return nil
	}, taskpool.WithRetry(3, taskpool.ConstantBackoff(time.Millisecond))))
	require.NoError(t, reg.HandleFunc("fatal", func(context.Context, taskpool.Task) error {
		return taskpool.SkipRetry(errBoom)
	}, taskpool.WithRetry(3, taskpool.ConstantBackoff(time.Millisecond))))
	require.NoError(t, reg.HandleFunc("panics", func(context.Context, taskpool.Task) error {
		panic("kaboom")
	}))

	outs := newOutcomes(4)
	hook := taskpoolotel.CompletionHook(tel.opts(taskpoolotel.WithQueue("emails"))...)
	s := start(t, reg,
		taskpool.WithMiddleware(taskpoolotel.Middleware(tel.opts(taskpoolotel.WithQueue("emails"))...)),
		taskpool.WithCompletionHook(func(o taskpool.Outcome) { hook(o); outs.hook(o) }),
	)
	ctx := ctxT(t)
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "ok-1", Type: "ok", Priority: taskpool.PriorityHigh}))
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "flaky-1", Type: "flaky"}))
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "fatal-1", Type: "fatal", Priority: taskpool.PriorityLow}))
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "panics-1", Type: "panics"}))
	got := outs.wait(t, 4)
	require.NoError(t, got["ok-1"].Err)
	require.NoError(t, got["flaky-1"].Err)
	require.ErrorIs(t, got["fatal-1"].Err, taskpool.ErrSkipRetry)
	var pe *taskpool.PanicError
	require.ErrorAs(t, got["panics-1"].Err, &pe)
	assert.Contains(t, string(pe.Stack), "TestMiddlewareSpansAndMetrics", "the panic's stack is the handler's")

	byID := spansByID(tel.spans.GetSpans())
	require.Len(t, byID, 4)

	ok := byID["ok-1"]
	require.Len(t, ok, 1)
	assert.Equal(t, "process ok", ok[0].Name)
	assert.Equal(t, trace.SpanKindConsumer, ok[0].SpanKind)
	assert.Equal(t, codes.Unset, ok[0].Status.Code)
	assert.Equal(t, taskpoolotel.ScopeName, ok[0].InstrumentationScope.Name)
	a := spanAttrs(ok[0])
	assert.Equal(t, "taskpool", a["messaging.system"].AsString())
	assert.Equal(t, "process", a["messaging.operation.name"].AsString())
	assert.Equal(t, "process", a["messaging.operation.type"].AsString())
	assert.Equal(t, "emails", a["messaging.destination.name"].AsString())
	assert.Equal(t, "ok", a[taskpoolotel.TaskTypeKey].AsString())
	assert.Equal(t, int64(1), a[taskpoolotel.TaskAttemptKey].AsInt64())
	assert.Equal(t, "high", a[taskpoolotel.TaskPriorityKey].AsString())
	_, hasErr := a["error.type"]
	assert.False(t, hasErr)

	flaky := byID["flaky-1"]
	require.Len(t, flaky, 2, "one span per attempt")
	assert.Equal(t, codes.Error, flaky[0].Status.Code)
	assert.Equal(t, "boom", flaky[0].Status.Description)
	assert.Equal(t, "*errors.errorString", spanAttrs(flaky[0])["error.type"].AsString())
	require.Len(t, flaky[0].Events, 1)
	assert.Equal(t, "exception", flaky[0].Events[0].Name)
	assert.Equal(t, int64(2), spanAttrs(flaky[1])[taskpoolotel.TaskAttemptKey].AsInt64())
	assert.Equal(t, codes.Unset, flaky[1].Status.Code)
	assert.NotEqual(t, flaky[0].SpanContext.TraceID(), flaky[1].SpanContext.TraceID(),
		"without task metadata each attempt is a trace of its own")

	fatal := byID["fatal-1"]
	require.Len(t, fatal, 1, "SkipRetry: no second attempt")
	assert.Equal(t, codes.Error, fatal[0].Status.Code)
	assert.Equal(t, "*errors.errorString", spanAttrs(fatal[0])["error.type"].AsString(), "SkipRetry is looked through")
	assert.Equal(t, "low", spanAttrs(fatal[0])[taskpoolotel.TaskPriorityKey].AsString())

	panics := byID["panics-1"]
	require.Len(t, panics, 1)
	assert.Equal(t, codes.Error, panics[0].Status.Code)
	assert.Equal(t, "panic", spanAttrs(panics[0])["error.type"].AsString())

	m := tel.collect(t)
	typ := taskpoolotel.TaskTypeKey.String
	queue := attribute.String("messaging.destination.name", "emails")
	system := attribute.String("messaging.system", "taskpool")
	for _, c := range []struct {
		typ                        string
		started, succeeded, failed int64
	}{
		{"ok", 1, 1, 0},
		{"flaky", 2, 1, 1},
		{"fatal", 1, 0, 1},
		{"panics", 1, 0, 1},
	} {
		n, _ := sum(t, m[taskpoolotel.MetricStarted], typ(c.typ), queue, system)
		assert.Equal(t, c.started, n, "started %s", c.typ)
		n, _ = sum(t, m[taskpoolotel.MetricSucceeded], typ(c.typ))
		assert.Equal(t, c.succeeded, n, "succeeded %s", c.typ)
		n, _ = sum(t, m[taskpoolotel.MetricFailed], typ(c.typ))
		assert.Equal(t, c.failed, n, "failed %s", c.typ)
		count, secs := histCount(t, m[taskpoolotel.MetricProcessDuration], typ(c.typ), queue)
		assert.Equal(t, uint64(c.started), count, "runs timed %s", c.typ)
		assert.GreaterOrEqual(t, secs, 0.0)
	}
	n, _ := sum(t, m[taskpoolotel.MetricFailed], typ("panics"), attribute.String("error.type", "panic"))
	assert.Equal(t, int64(1), n)
	n, _ = sum(t, m[taskpoolotel.MetricFailed], typ("flaky"), attribute.String("error.type", "*errors.errorString"))
	assert.Equal(t, int64(1), n)

	// The completion hook counts tasks, not runs.
	outcome := taskpoolotel.TaskOutcomeKey.String
	for _, c := range []struct{ typ, outcome string }{
		{"ok", "succeeded"}, {"flaky", "succeeded"}, {"fatal", "failed"}, {"panics", "failed"},
	} {
		n, _ := sum(t, m[taskpoolotel.MetricCompleted], typ(c.typ), outcome(c.outcome), queue)
		assert.Equal(t, int64(1), n, "completed %s %s", c.typ, c.outcome)
	}
	count, attempts := intHist(t, m[taskpoolotel.MetricAttempts], typ("flaky"))
	assert.Equal(t, uint64(1), count)
	assert.Equal(t, int64(2), attempts)
}

// TestMiddlewareContext checks that a run's span is a child of the span in
// the scheduler's base context, and the parent of the handler's spans.
func TestMiddlewareContext(t *testing.T) {
	tel := newTelemetry(t)
	parentCtx, parent := tel.tp.Tracer("test").Start(context.Background(), "parent")
	done := make(chan struct{})
	s := start(t, taskpool.HandlerFunc(func(ctx context.Context, _ taskpool.Task) error {
		defer close(done)
		_, child := tel.tp.Tracer("test").Start(ctx, "child")
		child.End()
		return nil
	}),
		taskpool.WithBaseContext(parentCtx),
		taskpool.WithMiddleware(taskpoolotel.Middleware(tel.opts()...)),
	)
	require.NoError(t, s.Submit(ctxT(t), taskpool.Task{Type: "t"}))
	<-done
	require.NoError(t, s.Stop(ctxT(t)))
	parent.End()

	byName := make(map[string]tracetest.SpanStub)
	for _, sp := range tel.spans.GetSpans() {
		byName[sp.Name] = sp
	}
	require.Contains(t, byName, "process t")
	require.Contains(t, byName, "child")
	run, child := byName["process t"], byName["child"]
	assert.Equal(t, parent.SpanContext().SpanID(), run.Parent.SpanID())
	assert.Equal(t, parent.SpanContext().TraceID(), run.SpanContext.TraceID())
	assert.Equal(t, run.SpanContext.SpanID(), child.Parent.SpanID())
	assert.NotEmpty(t, spanAttrs(run)["messaging.message.id"].AsString(), "the scheduler's generated ID")
}

// TestMiddlewareTimeout checks that a run cut by its timeout is recorded
// with error.type "timeout".
func TestMiddlewareTimeout(t *testing.T) {
	tel := newTelemetry(t)
	outs := newOutcomes(1)
	s := start(t, taskpool.HandlerFunc(func(ctx context.Context, _ taskpool.Task) error {
		<-ctx.Done()
		return ctx.Err()
	}),
		taskpool.WithMiddleware(taskpoolotel.Middleware(tel.opts()...)),
		taskpool.WithCompletionHook(outs.hook),
	)
	require.NoError(t, s.Submit(ctxT(t), taskpool.Task{ID: "slow", Type: "slow", Timeout: 5 * time.Millisecond}))
	out := outs.wait(t, 1)["slow"]
	require.ErrorIs(t, out.Err, context.DeadlineExceeded)
	spans := tel.spans.GetSpans()
	require.Len(t, spans, 1)
	assert.Equal(t, "timeout", spanAttrs(spans[0])["error.type"].AsString())
	n, _ := sum(t, tel.collect(t)[taskpoolotel.MetricFailed], attribute.String("error.type", "timeout"))
	assert.Equal(t, int64(1), n)
}

// TestMiddlewareSampledOut checks that a run whose span is not sampled
// still counts in the metrics.
func TestMiddlewareSampledOut(t *testing.T) {
	tel := newTelemetry(t)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tel.spans), sdktrace.WithSampler(sdktrace.NeverSample()))
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })
	outs := newOutcomes(2)
	s := start(t, taskpool.HandlerFunc(func(_ context.Context, tk taskpool.Task) error {
		if tk.ID == "bad" {
			return errBoom
		}
		return nil
	}),
		taskpool.WithMiddleware(taskpoolotel.Middleware(
			taskpoolotel.WithTracerProvider(tp), taskpoolotel.WithMeterProvider(tel.mp))),
		taskpool.WithCompletionHook(outs.hook),
	)
	require.NoError(t, s.Submit(ctxT(t), taskpool.Task{ID: "good", Type: "t"}))
	require.NoError(t, s.Submit(ctxT(t), taskpool.Task{ID: "bad", Type: "t"}))
	outs.wait(t, 2)
	assert.Empty(t, tel.spans.GetSpans())
	m := tel.collect(t)
	n, _ := sum(t, m[taskpoolotel.MetricStarted], taskpoolotel.TaskTypeKey.String("t"))
	assert.Equal(t, int64(2), n)
	n, _ = sum(t, m[taskpoolotel.MetricFailed], taskpoolotel.TaskTypeKey.String("t"))
	assert.Equal(t, int64(1), n)
}

// TestMiddlewareGlobalProviders runs tasks with the default (global,
// no-op) providers: the middleware must cost nothing but pass the
// handler's result through.
func TestMiddlewareGlobalProviders(t *testing.T) {
	outs := newOutcomes(2)
	s := start(t, taskpool.HandlerFunc(func(_ context.Context, tk taskpool.Task) error {
		if tk.ID == "bad" {
			return errBoom
		}
		tk.SetResult(tk.ID)
		return nil
	}),
		taskpool.WithMiddleware(taskpoolotel.Middleware()),
		taskpool.WithCompletionHook(outs.hook),
	)
	require.NoError(t, s.Submit(ctxT(t), taskpool.Task{ID: "good", Type: "t"}))
	require.NoError(t, s.Submit(ctxT(t), taskpool.Task{ID: "bad", Type: "t"}))
	got := outs.wait(t, 2)
	assert.NoError(t, got["good"].Err)
	assert.Equal(t, "good", got["good"].Result)
	assert.ErrorIs(t, got["bad"].Err, errBoom)
}

// TestCompletionHookOutcomes checks the not-run and canceled outcomes.
func TestCompletionHookOutcomes(t *testing.T) {
	tel := newTelemetry(t)
	hook := taskpoolotel.CompletionHook(tel.opts()...)
	s, err := taskpool.New(taskpool.HandlerFunc(func(context.Context, taskpool.Task) error { return nil }),
		taskpool.WithCompletionHook(hook))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	ctx := ctxT(t)
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "later", Type: "t"}, time.Hour))
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "gone", Type: "t"}, time.Hour))
	require.NoError(t, s.Cancel("gone"))
	require.NoError(t, s.Stop(ctx)) // reports "later" as not run
	m := tel.collect(t)
	typ := taskpoolotel.TaskTypeKey.String("t")
	n, _ := sum(t, m[taskpoolotel.MetricCompleted], typ, taskpoolotel.TaskOutcomeKey.String("not_run"),
		attribute.String("error.type", "not_run"))
	assert.Equal(t, int64(1), n)
	n, _ = sum(t, m[taskpoolotel.MetricCompleted], typ, taskpoolotel.TaskOutcomeKey.String("canceled"))
	assert.Equal(t, int64(1), n)
	count, attempts := intHist(t, m[taskpoolotel.MetricAttempts], typ)
	assert.Equal(t, uint64(2), count)
	assert.Equal(t, int64(0), attempts, "neither ran")
}
