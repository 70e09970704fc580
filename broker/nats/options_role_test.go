package natsbroker_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// An option that means nothing to a constructor is refused, not ignored;
// the queue's own options go to all three.
func TestOptionsForSomeoneElseAreRefused(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := nopRegistry(t, "t")
	consumerOnly := []natsbroker.Option{
		natsbroker.WithWorkers(2), natsbroker.WithPrefetch(4), natsbroker.WithMaxBatch(8),
		natsbroker.WithPollWait(0), natsbroker.WithAckWait(0), natsbroker.WithMaxAttempts(3), natsbroker.WithBackoff(taskpool.ConstantBackoff(0)),
		natsbroker.WithPriorityWeights(1, 1, 1), natsbroker.WithSchedulerOptions(),
		natsbroker.WithSettleHook(func(taskpool.Outcome, natsbroker.Action) {}), natsbroker.WithUnknownTypeGrace(0),
		natsbroker.WithGlobalLimit("t", natsbroker.Limit{Concurrency: 1}),
	}
	producerOnly := []natsbroker.Option{
		natsbroker.WithPublishWindow(16), natsbroker.WithKnownTypes(reg),
		natsbroker.WithEnqueueMiddleware(func(context.Context, *taskpool.Task) error { return nil }),
	}
	queue := natsbroker.WithQueue("roles")
	for _, o := range consumerOnly {
		_, err := natsbroker.NewProducer(ctx, js, queue, o)
		assert.ErrorIs(t, err, natsbroker.ErrInvalidOption)
		assert.ErrorIs(t, err, taskpool.ErrInvalidOption)
		assert.ErrorContains(t, err, "consumer option, given to a producer")
		_, err = natsbroker.NewInspector(ctx, js, queue, o)
		assert.ErrorIs(t, err, natsbroker.ErrInvalidOption)
	}
	for _, o := range producerOnly {
		_, err := natsbroker.NewConsumer(ctx, js, reg, queue, o)
		assert.ErrorIs(t, err, natsbroker.ErrInvalidOption)
		assert.ErrorContains(t, err, "producer option, given to a consumer")
		_, err = natsbroker.NewInspector(ctx, js, queue, o)
		assert.ErrorIs(t, err, natsbroker.ErrInvalidOption)
	}
	// Each accepts its own, and the queue's.
	newProducer(t, ctx, js, append([]natsbroker.Option{queue, natsbroker.WithMemoryStorage()}, producerOnly...)...)
	c, err := natsbroker.NewConsumer(ctx, js, reg, append([]natsbroker.Option{queue, natsbroker.WithMemoryStorage()}, consumerOnly...)...)
	require.NoError(t, err)
	require.NoError(t, c.Start())
	require.NoError(t, c.Stop(ctx))
	_, err = natsbroker.NewInspector(ctx, js, queue, natsbroker.WithMemoryStorage())
	require.NoError(t, err)
}
