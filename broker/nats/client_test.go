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

// Client's Submit, SubmitAt, SubmitAfter and SubmitWait refuse an ID the
// stream already holds within its duplicate window with an error wrapping
// ErrDuplicateTask, since the server drops such a task: they returned nil
// (taskpool.Client: "A nil error means the task was accepted and will
// run") and SubmitWait waited for an outcome that never came.
func TestClientReusedIDIsDuplicate(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	ctx := ctxT(t)
	reg := taskpool.NewRegistry()
	ran := make(chan string, 4)
	require.NoError(t, reg.HandleFunc("ok", func(ctx context.Context, t taskpool.Task) error {
		ran <- t.ID
		return nil
	}))
	startConsumer(t, js, reg)
	p, err := natsbroker.NewProducer(ctx, js)
	require.NoError(t, err)
	c := natsbroker.NewClient(p)

	require.NoError(t, c.Submit(ctx, taskpool.Task{ID: "once", Type: "ok"}))
	waitFor(t, ran, "once")
	assert.ErrorIs(t, c.Submit(ctx, taskpool.Task{ID: "once", Type: "ok"}), taskpool.ErrDuplicateTask)
	assert.ErrorIs(t, c.SubmitAfter(ctx, taskpool.Task{ID: "once", Type: "ok"}, time.Hour), taskpool.ErrDuplicateTask)
	assert.ErrorIs(t, c.SubmitAt(ctx, taskpool.Task{ID: "once", Type: "ok"}, time.Now().Add(time.Hour)), taskpool.ErrDuplicateTask)
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = c.SubmitWait(short, taskpool.Task{ID: "once", Type: "ok"})
	assert.ErrorIs(t, err, taskpool.ErrDuplicateTask)
	assert.ErrorIs(t, c.Cancel("once"), taskpool.ErrTaskNotFound, "nothing delayed was stored")
}
