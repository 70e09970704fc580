package natsbroker_test

// Tests of the parity review: the broker agrees with the in-process
// scheduler where the conformance suite cannot show it.

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// The settle hook's Outcome.Attempts is what the core's Outcome doc says:
// the number of times the handler ran, 0 for a task that never ran, the
// runs of earlier deliveries counted. A bad payload never reaches a
// handler: 0, where it was the delivery count, 1. A task that ran at its
// first delivery: 1. (TestAttemptsExhaustedByInterruptions: a task run
// once, interrupted, then dead-lettered unrun, 1, where it was 2.)
func TestParitySettleHookAttemptsCountRuns(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	ctx := ctxT(t)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("ok", func(context.Context, taskpool.Task) error { return nil }))
	type settle struct {
		out taskpool.Outcome
		a   natsbroker.Action
	}
	settled := make(chan settle, 4)
	startConsumer(t, js, reg, natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
		settled <- settle{out, a}
	}))
	next := func(what string) settle {
		t.Helper()
		select {
		case s := <-settled:
			return s
		case <-ctx.Done():
			t.Fatalf("%s not settled", what)
			return settle{}
		}
	}

	_, err := js.Publish(ctx, "taskpool.default.task.default", []byte("\x00garbage{"))
	require.NoError(t, err)
	s := next("the bad payload")
	require.Equal(t, natsbroker.ActionDeadLetter, s.a)
	assert.ErrorIs(t, s.out.Err, natsbroker.ErrBadPayload)
	assert.Equal(t, 0, s.out.Attempts, "never ran")

	prod, err := natsbroker.NewProducer(ctx, js)
	require.NoError(t, err)
	_, err = prod.Enqueue(ctx, taskpool.Task{ID: "good", Type: "ok"})
	require.NoError(t, err)
	s = next("the good task")
	require.Equal(t, natsbroker.ActionAck, s.a)
	assert.Equal(t, 1, s.out.Attempts, "ran once")
}
