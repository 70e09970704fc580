package taskpoolotel_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
