package natsbroker_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// localDeadLetters gathers options as a user's helper may.
func localDeadLetters() []taskpool.Option {
	return []taskpool.Option{taskpool.WithWorkers(2), taskpool.WithDeadLetters(10, func(taskpool.Outcome) {})}
}

// The consumer's local scheduler runs each delivery once, as a copy of
// the task (MaxAttempts 1, no UniqueKey): its dead letters would be every
// failed delivery, retried by the broker or not, and its dead-letter hook
// would see the copy, not the task as it was enqueued. So
// taskpool.WithDeadLetters given through WithSchedulerOptions, with a
// hook or only a capacity, however the options are gathered, is refused
// at construction with ErrInvalidOption (WithDeadLetters(0, nil), which
// keeps none, is not); the broker's dead letters are
// the dead-letter stream (Inspector) and the settle hook's
// ActionDeadLetter. (The hook was called with the local copy for every
// failed run.)
func TestLocalDeadLettersRefused(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := taskpool.NewRegistry()
	for name, opt := range map[string]natsbroker.Option{
		"hook":     natsbroker.WithSchedulerOptions(taskpool.WithDeadLetters(0, func(taskpool.Outcome) {})),
		"capacity": natsbroker.WithSchedulerOptions(taskpool.WithLogger(nil), taskpool.WithDeadLetters(5, nil)),
		"helper":   natsbroker.WithSchedulerOptions(localDeadLetters()...),
		"any":      natsbroker.WithSchedulerOptions(taskpool.WithDeadLetters(1, nil), taskpool.WithDeadLetters(0, nil)),
	} {
		_, err := natsbroker.NewConsumer(ctx, js, reg, opt)
		require.Error(t, err, name)
		assert.ErrorIs(t, err, natsbroker.ErrInvalidOption, name)
		assert.ErrorIs(t, err, taskpool.ErrInvalidOption, name)
		assert.Contains(t, err.Error(), "WithDeadLetters", name)
	}
	// Other scheduler options are taken.
	c, err := natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithSchedulerOptions(localDeadLetters()[0], taskpool.WithDeadLetters(0, nil), taskpool.WithMiddleware(func(h taskpool.Handler) taskpool.Handler { return h })))
	require.NoError(t, err)
	require.NoError(t, c.Stop(ctx))
}
