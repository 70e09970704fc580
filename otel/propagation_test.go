package taskpoolotel_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskpool/taskpool"
	taskpoolotel "github.com/taskpool/taskpool/otel"
)

func byName(spans tracetest.SpanStubs) map[string][]tracetest.SpanStub {
	out := make(map[string][]tracetest.SpanStub)
	for _, s := range spans {
		out[s.Name] = append(out[s.Name], s)
	}
	return out
}

// TestClientTrace: a task submitted through the wrapping Client under a
// request span makes one trace: request -> "send flaky" (producer) ->
// "process flaky" for each attempt (consumer, remote parent, linked to the
// send span) -> the handler's own span. The global propagator is the
// default no-op, so this also checks the W3C Trace Context fallback.
func TestClientTrace(t *testing.T) {
	tel := newTelemetry(t)
	tracer := tel.tp.Tracer("test")
	outs := newOutcomes(1)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("flaky", func(ctx context.Context, tk taskpool.Task) error {
		_, sp := tracer.Start(ctx, "inside")
		sp.End()
		if tk.Attempt == 1 {
			return errBoom
		}
		return nil
	}, taskpool.WithRetry(2, taskpool.ConstantBackoff(time.Millisecond))))
	s := start(t, reg,
		taskpool.WithMiddleware(taskpoolotel.Middleware(tel.opts()...)),
		taskpool.WithCompletionHook(outs.hook))
	client := taskpoolotel.NewClient(s, tel.opts(taskpoolotel.WithQueue("q"))...)

	ctx, req := tracer.Start(ctxT(t), "request")
	mine := map[string]string{"tenant": "acme"}
	require.NoError(t, client.Submit(ctx, taskpool.Task{ID: "f1", Type: "flaky", Metadata: mine}))
	req.End()
	got := outs.wait(t, 1)["f1"]
	require.NoError(t, got.Err)
	assert.Equal(t, map[string]string{"tenant": "acme"}, mine, "the caller's map is not written")
	md := got.Task.Metadata
	assert.Equal(t, "acme", md["tenant"])
	assert.Contains(t, md, "traceparent")
	assert.Contains(t, md, taskpoolotel.MetadataEnqueuedAt)

	spans := byName(tel.spans.GetSpans())
	require.Len(t, spans["request"], 1)
	require.Len(t, spans["send flaky"], 1)
	require.Len(t, spans["process flaky"], 2, "a span per attempt")
	require.Len(t, spans["inside"], 2)
	request, send := spans["request"][0], spans["send flaky"][0]
	traceID := request.SpanContext.TraceID()

	assert.Equal(t, trace.SpanKindProducer, send.SpanKind)
	assert.Equal(t, request.SpanContext.SpanID(), send.Parent.SpanID())
	sa := spanAttrs(send)
	assert.Equal(t, "send", sa["messaging.operation.type"].AsString())
	assert.Equal(t, "f1", sa["messaging.message.id"].AsString())
	assert.Equal(t, "q", sa["messaging.destination.name"].AsString())

	runs := spansByID(spans["process flaky"])["f1"]
	require.Len(t, runs, 2)
	for i, run := range runs {
		assert.Equal(t, traceID, run.SpanContext.TraceID(), "attempt %d: one trace", i+1)
		assert.Equal(t, send.SpanContext.SpanID(), run.Parent.SpanID(), "attempt %d: child of the send span", i+1)
		assert.True(t, run.Parent.IsRemote(), "attempt %d: the parent came through the metadata", i+1)
		require.Len(t, run.Links, 1, "attempt %d", i+1)
		assert.Equal(t, send.SpanContext.SpanID(), run.Links[0].SpanContext.SpanID(), "attempt %d: linked to the send span", i+1)
	}
	assert.Equal(t, codes.Error, runs[0].Status.Code)
	assert.Contains(t, spanAttrs(runs[0]), taskpoolotel.TaskQueueWaitKey, "the first run has its wait")
	assert.NotContains(t, spanAttrs(runs[1]), taskpoolotel.TaskQueueWaitKey, "a retry's is not measured")
	runIDs := map[trace.SpanID]bool{runs[0].SpanContext.SpanID(): true, runs[1].SpanContext.SpanID(): true}
	for _, in := range spans["inside"] {
		assert.Equal(t, traceID, in.SpanContext.TraceID())
		assert.True(t, runIDs[in.Parent.SpanID()], "the handler's span is a child of its run's span")
	}

	m := tel.collect(t)
	n, found := sum(t, m[taskpoolotel.MetricSentMessages], taskpoolotel.TaskTypeKey.String("flaky"))
	assert.True(t, found)
	assert.Equal(t, int64(1), n)
	count, _ := histCount(t, m[taskpoolotel.MetricQueueWait], taskpoolotel.TaskTypeKey.String("flaky"))
	assert.Equal(t, uint64(1), count, "the queue wait of the first run only")
}

// TestInject: the plain helper on Scheduler.Submit; the run's span is a
// child of the submitting span. A task submitted without it is a root span
// with no link.
func TestInject(t *testing.T) {
	tel := newTelemetry(t)
	outs := newOutcomes(2)
	s := start(t, taskpool.HandlerFunc(func(context.Context, taskpool.Task) error { return nil }),
		taskpool.WithMiddleware(taskpoolotel.Middleware(tel.opts()...)),
		taskpool.WithCompletionHook(outs.hook))

	ctx, req := tel.tp.Tracer("test").Start(ctxT(t), "request")
	task := taskpool.Task{ID: "with", Type: "t"}
	taskpoolotel.Inject(ctx, &task)
	require.NoError(t, s.Submit(ctx, task))
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "without", Type: "t"}))
	req.End()
	outs.wait(t, 2)

	runs := spansByID(tel.spans.GetSpans())
	require.Len(t, runs["with"], 1)
	require.Len(t, runs["without"], 1)
	with, without := runs["with"][0], runs["without"][0]
	assert.Equal(t, req.SpanContext().TraceID(), with.SpanContext.TraceID())
	assert.Equal(t, req.SpanContext().SpanID(), with.Parent.SpanID())
	require.Len(t, with.Links, 1)
	assert.Equal(t, req.SpanContext().SpanID(), with.Links[0].SpanContext.SpanID())
	assert.False(t, without.Parent.IsValid(), "no metadata: a root span")
	assert.Empty(t, without.Links)
	assert.NotEqual(t, req.SpanContext().TraceID(), without.SpanContext.TraceID())
}

// TestPropagator: WithPropagator carries what the given propagator
// writes (here baggage too) to the handler's context; a task whose
// metadata holds no trace context is a root span.
func TestPropagator(t *testing.T) {
	tel := newTelemetry(t)
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	seen := make(chan string, 2)
	outs := newOutcomes(2)
	s := start(t, taskpool.HandlerFunc(func(ctx context.Context, _ taskpool.Task) error {
		seen <- baggage.FromContext(ctx).Member("tenant").Value()
		return nil
	}),
		taskpool.WithMiddleware(taskpoolotel.Middleware(tel.opts(taskpoolotel.WithPropagator(prop))...)),
		taskpool.WithCompletionHook(outs.hook))
	client := taskpoolotel.NewClient(s, tel.opts(taskpoolotel.WithPropagator(prop))...)

	member, err := baggage.NewMember("tenant", "acme")
	require.NoError(t, err)
	bag, err := baggage.New(member)
	require.NoError(t, err)
	ctx := baggage.ContextWithBaggage(ctxT(t), bag)
	require.NoError(t, client.Submit(ctx, taskpool.Task{ID: "b", Type: "t"}))
	assert.Equal(t, "acme", <-seen)
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "junk", Type: "t", Metadata: map[string]string{"traceparent": "not one"}}))
	assert.Equal(t, "", <-seen)
	outs.wait(t, 2)

	runs := spansByID(byName(tel.spans.GetSpans())["process t"])
	require.Len(t, runs["junk"], 1)
	assert.False(t, runs["junk"][0].Parent.IsValid())
	assert.Empty(t, runs["junk"][0].Links)
	require.Len(t, runs["b"], 1)
	assert.True(t, runs["b"][0].Parent.IsRemote())
}

// TestQueueWait checks the recorded wait against a known enqueue time, a
// delayed task's wait counted from its due time, and that tasks without
// the time are not measured.
func TestQueueWait(t *testing.T) {
	tel := newTelemetry(t)
	outs := newOutcomes(3)
	s := start(t, taskpool.HandlerFunc(func(context.Context, taskpool.Task) error { return nil }),
		taskpool.WithMiddleware(taskpoolotel.Middleware(tel.opts()...)),
		taskpool.WithCompletionHook(outs.hook))
	ctx := ctxT(t)

	// Enqueued two seconds ago, by the metadata.
	before := time.Now()
	enq := before.Add(-2 * time.Second)
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "old", Type: "old",
		Metadata: map[string]string{taskpoolotel.MetadataEnqueuedAt: strconv.FormatInt(enq.UnixNano(), 10)}}))
	// Delayed: the wait counts from the due time, not from the call.
	client := taskpoolotel.NewClient(s, tel.opts()...)
	const delay = 50 * time.Millisecond
	require.NoError(t, client.SubmitAfter(ctx, taskpool.Task{ID: "late", Type: "late"}, delay))
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "plain", Type: "plain"}))
	got := outs.wait(t, 3)
	elapsed := time.Since(before).Seconds()
	due, err := strconv.ParseInt(got["late"].Task.Metadata[taskpoolotel.MetadataEnqueuedAt], 10, 64)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, due, before.Add(delay).UnixNano(), "the delayed task's wait starts at its due time")
	sinceDue := time.Since(time.Unix(0, due)).Seconds()

	m := tel.collect(t)
	require.Contains(t, m, taskpoolotel.MetricQueueWait)
	qw := m[taskpoolotel.MetricQueueWait]
	n, total := histCount(t, qw, taskpoolotel.TaskTypeKey.String("old"))
	assert.Equal(t, uint64(1), n)
	assert.GreaterOrEqual(t, total, 2.0)
	assert.LessOrEqual(t, total, 2+elapsed)
	n, total = histCount(t, qw, taskpoolotel.TaskTypeKey.String("late"))
	assert.Equal(t, uint64(1), n)
	assert.LessOrEqual(t, total, sinceDue, "counted from the due time")
	n, _ = histCount(t, qw, taskpoolotel.TaskTypeKey.String("plain"))
	assert.Zero(t, n, "no enqueue time, no measurement")
	assert.Equal(t, "s", qw.Unit)

	// Run time is the existing histogram, for every run.
	n, _ = histCount(t, m[taskpoolotel.MetricProcessDuration], taskpoolotel.TaskTypeKey.String("plain"))
	assert.Equal(t, uint64(1), n)
}

// TestClientRefused: a refused submit records the error on the send span
// and counts with error.type.
func TestClientRefused(t *testing.T) {
	tel := newTelemetry(t)
	s := start(t, taskpool.HandlerFunc(func(context.Context, taskpool.Task) error { return nil }))
	require.NoError(t, s.Stop(ctxT(t)))
	client := taskpoolotel.NewClient(s, tel.opts()...)
	err := client.Submit(ctxT(t), taskpool.Task{Type: "t"})
	require.ErrorIs(t, err, taskpool.ErrSchedulerClosed)

	spans := byName(tel.spans.GetSpans())
	require.Len(t, spans["send t"], 1)
	assert.Equal(t, codes.Error, spans["send t"][0].Status.Code)
	m := tel.collect(t)
	n, found := sum(t, m[taskpoolotel.MetricSentMessages],
		taskpoolotel.TaskTypeKey.String("t"), attribute.String("error.type", taskpoolotel.ErrorTypeClosed))
	assert.True(t, found)
	assert.Equal(t, int64(1), n)
}

// TestDeadLetterHook counts a task dead-lettered in process, by type and
// error.type, and none for one that succeeds.
func TestDeadLetterHook(t *testing.T) {
	tel := newTelemetry(t)
	outs := newOutcomes(2)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("poison", func(context.Context, taskpool.Task) error {
		return taskpool.SkipRetry(errBoom)
	}))
	require.NoError(t, reg.HandleFunc("ok", func(context.Context, taskpool.Task) error { return nil }))
	s := start(t, reg,
		taskpool.WithDeadLetters(10, taskpoolotel.DeadLetterHook(tel.opts()...)),
		taskpool.WithCompletionHook(outs.hook))
	require.NoError(t, s.Submit(ctxT(t), taskpool.Task{ID: "p", Type: "poison"}))
	require.NoError(t, s.Submit(ctxT(t), taskpool.Task{ID: "o", Type: "ok"}))
	outs.wait(t, 2)

	m := tel.collect(t)
	require.Contains(t, m, taskpoolotel.MetricDeadLettered)
	n, _ := sum(t, m[taskpoolotel.MetricDeadLettered],
		taskpoolotel.TaskTypeKey.String("poison"), attribute.String("error.type", "*errors.errorString"))
	assert.Equal(t, int64(1), n)
	_, found := sum(t, m[taskpoolotel.MetricDeadLettered], taskpoolotel.TaskTypeKey.String("ok"))
	assert.False(t, found)
}

// SubmitWait through the Client traces the submission, returns the
// handler's result and error, and does not count a task's own failure as
// a refused send; SchedulePeriodic and Unschedule pass through.
func TestClientSubmitWait(t *testing.T) {
	tel := newTelemetry(t)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("sq", func(_ context.Context, tk taskpool.Task) error {
		n := tk.Params.(int)
		if n < 0 {
			return taskpool.SkipRetry(errBoom)
		}
		tk.SetResult(n * n)
		return nil
	}))
	s := start(t, reg, taskpool.WithMiddleware(taskpoolotel.Middleware(tel.opts()...)))
	client := taskpoolotel.NewClient(s, tel.opts()...)

	v, err := client.SubmitWait(ctxT(t), taskpool.Task{Type: "sq", Params: 7})
	require.NoError(t, err)
	assert.Equal(t, 49, v)
	_, err = client.SubmitWait(ctxT(t), taskpool.Task{Type: "sq", Params: -1})
	require.ErrorIs(t, err, errBoom)
	_, err = client.SubmitWait(ctxT(t), taskpool.Task{Type: "nope"})
	require.ErrorIs(t, err, taskpool.ErrNoHandler)

	spans := byName(tel.spans.GetSpans())
	require.Len(t, spans["send sq"], 2)
	require.Len(t, spans["process sq"], 2)
	for _, sp := range spans["send sq"] {
		assert.NotEqual(t, codes.Error, sp.Status.Code, "the task's own failure is not a failed send")
	}
	require.Len(t, spans["send nope"], 1)
	assert.Equal(t, codes.Error, spans["send nope"][0].Status.Code)
	for _, p := range spans["process sq"] {
		assert.Equal(t, p.SpanContext.TraceID(), p.Parent.TraceID())
	}

	require.NoError(t, client.SchedulePeriodic("tick", taskpool.Every(time.Hour), taskpool.Task{Type: "sq", Params: 1}))
	require.ErrorIs(t, client.SchedulePeriodic("tick", taskpool.Every(time.Hour), taskpool.Task{Type: "sq", Params: 1}), taskpool.ErrDuplicateTask)
	require.NoError(t, client.Unschedule("tick"))
	require.ErrorIs(t, client.Unschedule("tick"), taskpool.ErrTaskNotFound)
}

// Through a client that submits and waits in two steps (the Scheduler),
// SubmitWait's send span ends when the task is accepted, while its
// handler still runs, and a task's own error that wraps a submission
// sentinel does not mark the send failed.
func TestClientSubmitWaitSpanEndsAtAcceptance(t *testing.T) {
	tel := newTelemetry(t)
	reg := taskpool.NewRegistry()
	release := make(chan struct{})
	require.NoError(t, reg.HandleFunc("fanout", func(context.Context, taskpool.Task) error {
		<-release
		return taskpool.SkipRetry(fmt.Errorf("sub-task refused: %w", taskpool.ErrQueueFull))
	}))
	s := start(t, reg)
	client := taskpoolotel.NewClient(s, tel.opts()...)
	errc := make(chan error, 1)
	go func() {
		_, err := client.SubmitWait(ctxT(t), taskpool.Task{Type: "fanout"})
		errc <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(byName(tel.spans.GetSpans())["send fanout"]) == 0 {
		if time.Now().After(deadline) {
			close(release)
			t.Fatal("the send span did not end while the task ran")
		}
		runtime.Gosched()
	}
	close(release)
	require.ErrorIs(t, <-errc, taskpool.ErrQueueFull, "the task's own error")
	sp := byName(tel.spans.GetSpans())["send fanout"]
	require.Len(t, sp, 1)
	assert.NotEqual(t, codes.Error, sp[0].Status.Code, "the task's own failure is not a failed send")
}
