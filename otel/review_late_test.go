package taskpoolotel_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	taskpoolotel "github.com/taskpool/taskpool/otel"
)

// The client's submissions refuse a nil ctx with taskpool.ErrNilContext and
// do nothing else, as the scheduler they wrap does. With the global (no-op)
// tracer they panicked starting the send span on a nil parent; with the
// SDK's, which takes a nil parent for context.Background, they recorded a
// send span and submitted the task: the nil ctx never reached the
// scheduler to be refused.
func TestReviewLateClientRefusesNilContext(t *testing.T) {
	t.Run("SDK", func(t *testing.T) {
		tel := newTelemetry(t)
		testClientRefusesNilContext(t, tel, taskpoolotel.WithTracerProvider(tel.tp), taskpoolotel.WithMeterProvider(tel.mp))
	})
	t.Run("Global", func(t *testing.T) {
		testClientRefusesNilContext(t, newTelemetry(t))
	})
}

func testClientRefusesNilContext(t *testing.T, tel *telemetry, opts ...taskpoolotel.Option) {
	ran := make(chan struct{}, 4)
	s := start(t, taskpool.HandlerFunc(func(context.Context, taskpool.Task) error {
		ran <- struct{}{}
		return nil
	}))
	c := taskpoolotel.NewClient(s, opts...)
	var nilCtx context.Context
	task := taskpool.Task{Type: "t"}
	calls := map[string]func() error{
		"Submit":      func() error { return c.Submit(nilCtx, task) },
		"SubmitAt":    func() error { return c.SubmitAt(nilCtx, task, time.Now()) },
		"SubmitAfter": func() error { return c.SubmitAfter(nilCtx, task, 0) },
		"SubmitWait": func() error {
			res, err := c.SubmitWait(nilCtx, task)
			assert.Nil(t, res)
			return err
		},
	}
	for name, call := range calls {
		var err error
		require.NotPanics(t, func() { err = call() }, name)
		assert.ErrorIs(t, err, taskpool.ErrNilContext, name)
	}
	assert.Empty(t, tel.spans.GetSpans(), "no send span for a refused nil ctx")
	assert.Zero(t, s.Stats().Submitted, "nothing was submitted")
	assert.Empty(t, ran)
}
