package natsbroker_test

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// goexitError is an error whose Error method calls runtime.Goexit.
type goexitError struct{}

func (goexitError) Error() string {
	runtime.Goexit()
	return ""
}

// A handler's error whose Error method calls runtime.Goexit, on a path
// that dead-letters the task (an error wrapping ErrSkipRetry, or the last
// attempt failed; with a logger that writes the error, and with the
// outcome kept for a waiter), is dead-lettered at its first delivery
// with a text saying so, and the settle hook is told once. (Its text was
// read on the worker, which Goexit ended before the message was settled:
// it was delivered again after each ack wait, until MaxDeliveries.)
func TestHandlerErrorWhoseErrorCallsGoexitIsDeadLettered(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		give     error
		giveOpts []natsbroker.EnqueueOption
	}{
		{"skip retry", taskpool.SkipRetry(goexitError{}), nil},
		{"last attempt", goexitError{}, nil},
		{"kept result", goexitError{}, []natsbroker.EnqueueOption{natsbroker.KeepResult()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t)
			_, js := connect(t, srv.URL())
			ctx := ctxT(t)
			reg := taskpool.NewRegistry()
			require.NoError(t, reg.HandleFunc("exit", func(context.Context, taskpool.Task) error { return tt.give }))
			told := make(chan settledOutcome, 8)
			cons := startConsumer(t, js, reg, natsbroker.WithMaxAttempts(1),
				natsbroker.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
				natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) { told <- settledOutcome{out, a} }))
			p, err := natsbroker.NewProducer(ctx, js)
			require.NoError(t, err)
			insp, err := natsbroker.NewInspector(ctx, js)
			require.NoError(t, err)

			_, err = p.Enqueue(ctx, taskpool.Task{ID: "exit", Type: "exit"}, tt.giveOpts...)
			require.NoError(t, err)
			s := nextSettled(t, told, "the task whose error calls Goexit")
			assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
			assert.Equal(t, 1, s.out.Task.Attempt, "at its first delivery")
			dls, err := insp.DeadLetters(ctx, 0, 10)
			require.NoError(t, err)
			require.Len(t, dls, 1)
			assert.Contains(t, dls[0].Error, "Goexit")
			stopsClean(t, cons)
			assert.Empty(t, told, "settled once")
		})
	}
}
