package taskpoolotel_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/taskpool/taskpool"
	taskpoolotel "github.com/taskpool/taskpool/otel"
)

var errNoInstrument = errors.New("test: no instrument")

// failingMeterProvider's meter creates no synchronous instrument: it
// returns a nil one and an error, as a meter that cannot create it may.
type failingMeterProvider struct{ noop.MeterProvider }

func (failingMeterProvider) Meter(string, ...metric.MeterOption) metric.Meter {
	return failingMeter{}
}

type failingMeter struct{ noop.Meter }

func (failingMeter) Int64Counter(string, ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	return nil, errNoInstrument
}

func (failingMeter) Int64Histogram(string, ...metric.Int64HistogramOption) (metric.Int64Histogram, error) {
	return nil, errNoInstrument
}

func (failingMeter) Float64Histogram(string, ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	return nil, errNoInstrument
}

// Middleware, CompletionHook, DeadLetterHook and NewClient promise that
// "an instrument that cannot be created is reported to otel.Handle and
// replaced by a no-op": with a meter that returns no instrument, tasks
// still run, succeed and complete, and the hooks and the client record
// nothing rather than panic on a nil instrument.
func TestReview26bInstrumentsThatCannotBeCreatedAreNoOps(t *testing.T) {
	tel := newTelemetry(t)
	opts := []taskpoolotel.Option{
		taskpoolotel.WithTracerProvider(tel.tp),
		taskpoolotel.WithMeterProvider(failingMeterProvider{}),
	}
	completion := taskpoolotel.CompletionHook(opts...)
	dead := taskpoolotel.DeadLetterHook(opts...)
	outs := newOutcomes(1)
	s := start(t, taskpool.HandlerFunc(func(context.Context, taskpool.Task) error { return nil }),
		taskpool.WithMiddleware(taskpoolotel.Middleware(opts...)),
		taskpool.WithCompletionHook(outs.hook))
	c := taskpoolotel.NewClient(s, opts...)
	require.NoError(t, c.Submit(ctxT(t), taskpool.Task{ID: "m-1", Type: "t", Metadata: map[string]string{
		taskpoolotel.MetadataEnqueuedAt: time.Now().UTC().Format(time.RFC3339Nano),
	}}))
	got := outs.wait(t, 1)
	require.NoError(t, got["m-1"].Err, "the run failed on a nil instrument")
	assert.NotPanics(t, func() { completion(got["m-1"]) })
	assert.NotPanics(t, func() { dead(taskpool.Outcome{Task: taskpool.Task{Type: "t"}, Err: errors.New("x")}) })
	assert.Len(t, tel.spans.GetSpans(), 2, "a send and a process span")
}

// The README: the enqueue time "comes from the producer's clock and is
// read by the consumer's, so across machines it includes their clock skew
// (negative waits are recorded as 0)"; and MetricQueueWait: "tasks without
// it are not measured", which a value that is not Unix nanoseconds is
// not.
func TestReview26bQueueWaitSkewAndMalformed(t *testing.T) {
	tel := newTelemetry(t)
	outs := newOutcomes(2)
	s := start(t, taskpool.HandlerFunc(func(context.Context, taskpool.Task) error { return nil }),
		taskpool.WithMiddleware(taskpoolotel.Middleware(tel.opts()...)),
		taskpool.WithCompletionHook(outs.hook))
	ahead := strconv.FormatInt(time.Now().Add(time.Hour).UnixNano(), 10)
	require.NoError(t, s.Submit(ctxT(t), taskpool.Task{ID: "ahead", Type: "ahead",
		Metadata: map[string]string{taskpoolotel.MetadataEnqueuedAt: ahead}}))
	require.NoError(t, s.Submit(ctxT(t), taskpool.Task{ID: "bad", Type: "bad",
		Metadata: map[string]string{taskpoolotel.MetadataEnqueuedAt: "yesterday"}}))
	outs.wait(t, 2)

	qw := tel.collect(t)[taskpoolotel.MetricQueueWait]
	n, total := histCount(t, qw, taskpoolotel.TaskTypeKey.String("ahead"))
	assert.Equal(t, uint64(1), n, "a wait from a clock ahead is recorded")
	assert.Zero(t, total, "as 0")
	n, _ = histCount(t, qw, taskpoolotel.TaskTypeKey.String("bad"))
	assert.Zero(t, n, "a malformed enqueue time is not measured")

	spans := spansByID(tel.spans.GetSpans())
	require.Len(t, spans["ahead"], 1)
	require.Len(t, spans["bad"], 1)
	wait, ok := spanAttrs(spans["ahead"][0])[taskpoolotel.TaskQueueWaitKey]
	require.True(t, ok)
	assert.Zero(t, wait.AsFloat64())
	assert.NotContains(t, spanAttrs(spans["bad"][0]), taskpoolotel.TaskQueueWaitKey)
}

// Observe returns ErrNilStatsReader for a nil StatsReader "rather than
// registering a callback that panics at the first collection": a nil of a
// func (or map, chan) type is one as much as a nil pointer, and it was
// registered, and the collection panicked.
func TestReview26bObserveNilFunc(t *testing.T) {
	tel := newTelemetry(t)
	reg, err := taskpoolotel.Observe(statsFunc(nil), tel.opts()...)
	require.ErrorIs(t, err, taskpoolotel.ErrNilStatsReader)
	assert.Nil(t, reg)
	assert.NotPanics(t, func() { tel.collect(t) })
}

// Middleware: "A failed run ... adds error.type: "panic", "timeout",
// "canceled", "no_handler" or the error's Go type". A run that Stop's
// deadline cancelled, whose handler returns context.Cause(ctx)
// (ErrSchedulerClosed), was recorded as "not_run", the completion hook's
// error.type of a task that never ran: this one ran, and was canceled.
func TestReview26bRunCanceledByStopIsNotNotRun(t *testing.T) {
	tel := newTelemetry(t)
	outs := newOutcomes(1)
	started := make(chan struct{})
	s, err := taskpool.New(taskpool.HandlerFunc(func(ctx context.Context, _ taskpool.Task) error {
		close(started)
		<-ctx.Done()
		return context.Cause(ctx)
	}), taskpool.WithMiddleware(taskpoolotel.Middleware(tel.opts()...)), taskpool.WithCompletionHook(outs.hook))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	require.NoError(t, s.Submit(ctxT(t), taskpool.Task{ID: "c-1", Type: "cause"}))
	<-started
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	require.Error(t, s.Stop(expired))
	got := outs.wait(t, 1)
	require.ErrorIs(t, got["c-1"].Err, taskpool.ErrSchedulerClosed, "the handler's own error")
	require.Equal(t, 1, got["c-1"].Attempts)

	spans := spansByID(tel.spans.GetSpans())
	require.Len(t, spans["c-1"], 1)
	assert.Equal(t, taskpoolotel.ErrorTypeCanceled, spanAttrs(spans["c-1"][0])["error.type"].AsString())
	n, _ := sum(t, tel.collect(t)[taskpoolotel.MetricFailed],
		taskpoolotel.TaskTypeKey.String("cause"), semconv.ErrorTypeKey.String(taskpoolotel.ErrorTypeCanceled))
	assert.Equal(t, int64(1), n)
}

// CompletionHook's not_run outcome is the task "not run" that Stop
// reported, as Stats.NotRun and Observe's taskpool.scheduler.not_run count
// it. A task whose handler ran and returned the cause of its context
// cancelled by Stop's deadline (ErrSchedulerClosed itself) is a failure
// there, one run; the hook counted it not_run. Tasks Stop left unrun stay
// not_run: one never started, one redelivered (Attempt 3) never started,
// and a retry waiting for its backoff.
func TestReview26bCompletionHookNotRunAgreesWithStats(t *testing.T) {
	tel := newTelemetry(t)
	outs := newOutcomes(4)
	hook := taskpoolotel.CompletionHook(tel.opts()...)
	started := make(chan struct{})
	failed := make(chan struct{})
	s, err := taskpool.New(taskpool.HandlerFunc(func(ctx context.Context, tk taskpool.Task) error {
		if tk.Type == "retry" {
			defer close(failed)
			return errors.New("again")
		}
		close(started)
		<-ctx.Done()
		return context.Cause(ctx)
	}), taskpool.WithWorkers(1), taskpool.WithRetry(1, taskpool.ConstantBackoff(time.Hour)),
		taskpool.WithCompletionHook(func(o taskpool.Outcome) { hook(o); outs.hook(o) }))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	ctx := ctxT(t)
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "retry", Type: "retry", MaxAttempts: 2}))
	<-failed
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "ran", Type: "ran"}))
	<-started
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "never", Type: "never"}))
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "redelivered", Type: "never", Attempt: 3}))
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	require.Error(t, s.Stop(expired))
	got := outs.wait(t, 4)
	require.ErrorIs(t, got["ran"].Err, taskpool.ErrSchedulerClosed)
	st := s.Stats()
	require.Equal(t, uint64(3), st.NotRun)
	require.Equal(t, uint64(1), st.Failed)

	completed := tel.collect(t)[taskpoolotel.MetricCompleted]
	n, _ := sum(t, completed, taskpoolotel.TaskOutcomeKey.String(taskpoolotel.OutcomeNotRun))
	assert.Equal(t, int64(st.NotRun), n, "not_run")
	n, _ = sum(t, completed, taskpoolotel.TaskOutcomeKey.String(taskpoolotel.OutcomeFailed))
	assert.Equal(t, int64(st.Failed), n, "failed")
	n, _ = sum(t, completed, taskpoolotel.TaskTypeKey.String("ran"),
		taskpoolotel.TaskOutcomeKey.String(taskpoolotel.OutcomeFailed),
		semconv.ErrorTypeKey.String(taskpoolotel.ErrorTypeCanceled))
	assert.Equal(t, int64(1), n, "the run was canceled, as Middleware records it")
}
