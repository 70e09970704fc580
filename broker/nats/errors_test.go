package natsbroker_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// TestSentinelsWrapCore: a broker sentinel that means what a core one
// means is errors.Is the core one, keeps its own message, and the errors
// the broker returns in those cases match both.
func TestSentinelsWrapCore(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		broker, core error
	}{
		{natsbroker.ErrDuplicateTask, taskpool.ErrDuplicateTask},
		{natsbroker.ErrInvalidOption, taskpool.ErrInvalidOption},
		{natsbroker.ErrInvalidQueue, taskpool.ErrInvalidOption},
		{natsbroker.ErrInvalidQueue, natsbroker.ErrInvalidOption},
		{natsbroker.ErrNotFound, taskpool.ErrTaskNotFound},
		{natsbroker.ErrBadParams, taskpool.ErrInvalidTask},
	} {
		assert.ErrorIs(t, c.broker, c.core)
		assert.NotErrorIs(t, c.core, c.broker)
		assert.Contains(t, c.broker.Error(), "natsbroker:")
	}
	assert.False(t, errors.Is(natsbroker.ErrDuplicateTask, taskpool.ErrInvalidOption))

	js, ctx := startJetStream(t)
	_, err := natsbroker.NewProducer(ctx, js, natsbroker.WithWorkers(-1))
	assert.ErrorIs(t, err, taskpool.ErrInvalidOption)
	_, err = natsbroker.NewProducer(ctx, js, natsbroker.WithQueue("no spaces"))
	assert.ErrorIs(t, err, taskpool.ErrInvalidOption)

	prod := newProducer(t, ctx, js)
	_, err = prod.Enqueue(ctx, taskpool.Task{})
	assert.ErrorIs(t, err, taskpool.ErrInvalidType)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "a", Type: "x", UniqueKey: "k"})
	_, err = prod.Enqueue(ctx, taskpool.Task{ID: "b", Type: "x", UniqueKey: "k"})
	assert.ErrorIs(t, err, taskpool.ErrDuplicateTask)
	assert.ErrorIs(t, err, natsbroker.ErrDuplicateTask)
	err = prod.Cancel(ctx, "nothing")
	assert.ErrorIs(t, err, taskpool.ErrTaskNotFound)
}
