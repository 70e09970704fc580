package natsbroker_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// TestReview25gNegativeAttemptsRefused: a task with a negative MaxAttempts
// or Attempt is refused with ErrInvalidTask by the producer (Enqueue,
// EnqueueBatch, the Client's Submit), as the in-process Submit refuses it
// ("one policy, two transports"), and nothing is stored. Before, Enqueue
// stored it and the consumer ran it with its default attempts (10).
func TestReview25gNegativeAttemptsRefused(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	ctx := ctxT(t)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("x", func(context.Context, taskpool.Task) error { return nil }))
	s, err := taskpool.New(reg)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	defer func() { _ = s.Stop(context.Background()) }()
	p, err := natsbroker.NewProducer(ctx, js, natsbroker.WithKnownTypes(reg))
	require.NoError(t, err)
	c := natsbroker.NewClient(p)
	for _, task := range []taskpool.Task{
		{Type: "x", MaxAttempts: -1},
		{Type: "x", Attempt: -1},
		{Type: "x", UniqueKey: "neg", MaxAttempts: -3},
	} {
		require.ErrorIs(t, s.Submit(ctx, task), taskpool.ErrInvalidTask, "in process %+v", task)
		assert.ErrorIs(t, c.Submit(ctx, task), taskpool.ErrInvalidTask, "Client.Submit %+v", task)
		_, err := p.Enqueue(ctx, task, natsbroker.Delay(time.Hour))
		assert.ErrorIs(t, err, taskpool.ErrInvalidTask, "Enqueue delayed %+v", task)
		_, err = p.EnqueueBatch(ctx, []taskpool.Task{task})
		var be *natsbroker.BatchError
		require.ErrorAs(t, err, &be)
		assert.ErrorIs(t, be.Errs[0], taskpool.ErrInvalidTask, "EnqueueBatch %+v", task)
	}
	in, err := natsbroker.NewInspector(ctx, js)
	require.NoError(t, err)
	info, err := in.Queue(ctx)
	require.NoError(t, err)
	for _, pi := range info.Priorities {
		assert.Zero(t, pi.Pending, "nothing stored (%v)", pi.Priority)
	}
	assert.Zero(t, info.Scheduled, "nothing scheduled")
	// The unique key was not taken.
	_, err = p.Enqueue(ctx, taskpool.Task{Type: "x", UniqueKey: "neg"})
	assert.NoError(t, err)
}
