package taskpoolotel_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/taskpool/taskpool"
	taskpoolotel "github.com/taskpool/taskpool/otel"
)

// Observe refuses a nil StatsReader with an error rather than registering a
// callback that panics at the first collection: a typed nil (the
// *Scheduler or *Consumer of a constructor whose error was not checked)
// included.
func TestReview25ObserveTypedNil(t *testing.T) {
	tel := newTelemetry(t)
	var s *taskpool.Scheduler
	reg, err := taskpoolotel.Observe(s, tel.opts()...)
	require.ErrorIs(t, err, taskpoolotel.ErrNilStatsReader)
	assert.Nil(t, reg)
	_, err = taskpoolotel.Observe(nil, tel.opts()...)
	require.ErrorIs(t, err, taskpoolotel.ErrNilStatsReader)
	assert.NotPanics(t, func() { tel.collect(t) })
}

// A run whose handler calls runtime.Goexit fails (the scheduler reports
// ErrHandlerExited): the middleware cannot tell it from a panic without
// recovering it, so its span has status Error, an exception event and
// error.type "panic", and it counts in taskpool.task.failed with it; the
// completion hook gives the task the same error.type, so that the run and
// the task agree.
func TestReview25GoexitSpan(t *testing.T) {
	tel := newTelemetry(t)
	outs := newOutcomes(1)
	hook := taskpoolotel.CompletionHook(tel.opts()...)
	s := start(t, taskpool.HandlerFunc(func(context.Context, taskpool.Task) error {
		runtime.Goexit()
		return nil
	}), taskpool.WithMiddleware(taskpoolotel.Middleware(tel.opts()...)), taskpool.WithCompletionHook(func(o taskpool.Outcome) { hook(o); outs.hook(o) }))
	require.NoError(t, s.Submit(ctxT(t), taskpool.Task{ID: "g-1", Type: "exits"}))
	got := outs.wait(t, 1)
	require.ErrorIs(t, got["g-1"].Err, taskpool.ErrHandlerExited)

	spans := tel.spans.GetSpans()
	require.Len(t, spans, 1)
	assert.Equal(t, codes.Error, spans[0].Status.Code)
	a := spanAttrs(spans[0])
	et := a["error.type"].AsString()
	assert.Equal(t, taskpoolotel.ErrorTypePanic, et)
	require.NotEmpty(t, spans[0].Events)
	assert.Equal(t, "exception", spans[0].Events[0].Name)

	m := tel.collect(t)
	n, found := sum(t, m[taskpoolotel.MetricFailed], taskpoolotel.TaskTypeKey.String("exits"))
	require.True(t, found)
	assert.Equal(t, int64(1), n)
	n, found = sum(t, m[taskpoolotel.MetricFailed], taskpoolotel.TaskTypeKey.String("exits"), semconv.ErrorTypeKey.String(et))
	require.True(t, found, "failed with error.type %q", et)
	assert.Equal(t, int64(1), n)
	n, found = sum(t, m[taskpoolotel.MetricCompleted], taskpoolotel.TaskTypeKey.String("exits"),
		taskpoolotel.TaskOutcomeKey.String(taskpoolotel.OutcomeFailed), semconv.ErrorTypeKey.String(et))
	assert.True(t, found, "completed with error.type %q", et)
	assert.Equal(t, int64(1), n)
}

// error.type looks through SkipRetry, also when the SkipRetry error is
// itself wrapped.
func TestReview25SkipRetryLookedThrough(t *testing.T) {
	tel := newTelemetry(t)
	outs := newOutcomes(2)
	s := start(t, taskpool.HandlerFunc(func(ctx context.Context, tk taskpool.Task) error {
		if tk.ID == "plain" {
			return taskpool.SkipRetry(context.DeadlineExceeded)
		}
		return errors.Join(taskpool.SkipRetry(context.Canceled))
	}), taskpool.WithMiddleware(taskpoolotel.Middleware(tel.opts()...)), taskpool.WithCompletionHook(outs.hook))
	require.NoError(t, s.Submit(ctxT(t), taskpool.Task{ID: "plain", Type: "x"}))
	require.NoError(t, s.Submit(ctxT(t), taskpool.Task{ID: "joined", Type: "x"}))
	outs.wait(t, 2)
	byID := spansByID(tel.spans.GetSpans())
	assert.Equal(t, "timeout", spanAttrs(byID["plain"][0])["error.type"].AsString())
	assert.Equal(t, "canceled", spanAttrs(byID["joined"][0])["error.type"].AsString())
}

// NewClient given a nil client (a nil interface, or the nil *Scheduler of
// a New whose error was not checked) returns a Client whose every method
// fails with an error wrapping ErrNilClient, not one that panics at the
// first Submit.
func TestReview25NewClientNil(t *testing.T) {
	tel := newTelemetry(t)
	var s *taskpool.Scheduler
	for _, next := range []taskpool.Client{nil, s} {
		c := taskpoolotel.NewClient(next, tel.opts()...)
		ctx := context.Background()
		task := taskpool.Task{Type: "t"}
		assert.ErrorIs(t, c.Submit(ctx, task), taskpoolotel.ErrNilClient)
		assert.ErrorIs(t, c.SubmitAt(ctx, task, time.Now()), taskpoolotel.ErrNilClient)
		assert.ErrorIs(t, c.SubmitAfter(ctx, task, time.Second), taskpoolotel.ErrNilClient)
		_, err := c.SubmitWait(ctx, task)
		assert.ErrorIs(t, err, taskpoolotel.ErrNilClient)
		assert.ErrorIs(t, c.Cancel("x"), taskpoolotel.ErrNilClient)
		assert.ErrorIs(t, c.SchedulePeriodic("p", taskpool.Every(time.Minute), task), taskpoolotel.ErrNilClient)
		assert.ErrorIs(t, c.Unschedule("p"), taskpoolotel.ErrNilClient)
	}
}
