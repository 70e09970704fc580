package natsbroker_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// TestMetadataAcrossTheWire: Task.Metadata and what an enqueue middleware
// adds travel as headers to the consumer's middleware, handler and settle
// hook, and stay with a dead letter; the caller's map is not written.
func TestMetadataAcrossTheWire(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)

	type seen struct {
		where string
		md    map[string]string
	}
	got := make(chan seen, 16)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("ok", func(_ context.Context, task taskpool.Task) error {
		got <- seen{"handler", task.Metadata}
		return nil
	}))
	require.NoError(t, reg.HandleFunc("bad", func(_ context.Context, task taskpool.Task) error {
		return taskpool.SkipRetry(errors.New("no"))
	}))
	mw := func(next taskpool.Handler) taskpool.Handler {
		return taskpool.HandlerFunc(func(ctx context.Context, task taskpool.Task) error {
			got <- seen{"middleware", task.Metadata}
			return next.HandleTask(ctx, task)
		})
	}
	settled := make(chan taskpool.Outcome, 4)
	startConsumer(t, js, reg,
		natsbroker.WithSchedulerOptions(taskpool.WithMiddleware(mw)),
		natsbroker.WithSettleHook(func(out taskpool.Outcome, _ natsbroker.Action) { settled <- out }))

	prod, err := natsbroker.NewProducer(ctx, js, natsbroker.WithEnqueueMiddleware(
		func(ctx context.Context, task *taskpool.Task) error {
			if task.Metadata == nil {
				task.Metadata = map[string]string{}
			}
			task.Metadata["traceparent"] = "00-abc-def-01"
			return nil
		}))
	require.NoError(t, err)
	mine := map[string]string{"tenant": "acme", "Mixed-Case": "Value with spaces", "empty": ""}
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "m1", Type: "ok", Metadata: mine})
	assert.Equal(t, map[string]string{"tenant": "acme", "Mixed-Case": "Value with spaces", "empty": ""}, mine, "caller's map written")

	want := map[string]string{"tenant": "acme", "Mixed-Case": "Value with spaces", "empty": "", "traceparent": "00-abc-def-01"}
	for range 2 {
		s := <-got
		assert.Equal(t, want, s.md, s.where)
	}
	out := <-settled
	assert.Equal(t, want, out.Task.Metadata)

	// A dead letter keeps the metadata.
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "m2", Type: "bad", Metadata: map[string]string{"tenant": "globex"}})
	<-got // middleware
	out = <-settled
	require.Equal(t, "m2", out.Task.ID)
	insp := newInspector(t, ctx, js)
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	assert.Equal(t, map[string]string{"tenant": "globex", "traceparent": "00-abc-def-01"}, dls[0].Task.Metadata)
}

// TestMetadataRejected: metadata that cannot travel as a header, and a
// task an enqueue middleware refuses, are errors and nothing is stored.
func TestMetadataRejected(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	refused := errors.New("no tenant")
	prod, err := natsbroker.NewProducer(ctx, js, natsbroker.WithEnqueueMiddleware(
		func(ctx context.Context, task *taskpool.Task) error {
			if task.Metadata["tenant"] == "" {
				return refused
			}
			return nil
		}))
	require.NoError(t, err)
	for _, md := range []map[string]string{
		{"tenant": "a", "bad key": "v"},
		{"tenant": "a", "colon:": "v"},
		{"tenant": "a", "": "v"},
		{"tenant": "a", "k": "line\nbreak"},
		{"tenant": "a", "k": " leading space"},
		{"tenant": "a", "k": "trailing space "},
		{"tenant": "a", "k": "tab\there"},
	} {
		_, err := prod.Enqueue(ctx, taskpool.Task{Type: "x", Metadata: md})
		assert.ErrorIs(t, err, taskpool.ErrInvalidTask, "%v", md)
	}
	_, err = prod.Enqueue(ctx, taskpool.Task{Type: "x"})
	assert.ErrorIs(t, err, refused)
	_, err = natsbroker.NewProducer(ctx, js, natsbroker.WithEnqueueMiddleware(nil))
	assert.ErrorIs(t, err, natsbroker.ErrInvalidOption)

	insp := newInspector(t, ctx, js)
	q, err := insp.Queue(ctx)
	require.NoError(t, err)
	for _, p := range q.Priorities {
		assert.Zero(t, p.Pending, "%+v", q)
	}
}
