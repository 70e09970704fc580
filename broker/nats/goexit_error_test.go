package natsbroker_test

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
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
			text := deadLetteredOnce(t, "the task whose error calls Goexit",
				func(context.Context, taskpool.Task) error { return tt.give },
				[]natsbroker.Option{natsbroker.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))},
				tt.giveOpts...)
			assert.Contains(t, text, "Goexit")
		})
	}
}

// deadLetteredOnce runs one task of type "exit", enqueued with eopts, on a
// consumer (one attempt, and opts) whose handler for it is h, checks that
// it is dead-lettered at its first delivery, the settle hook told once,
// and that Stop leaves nothing held, and returns the dead letter's error
// text. what names the task in a failure.
func deadLetteredOnce(t *testing.T, what string, h taskpool.HandlerFunc, opts []natsbroker.Option, eopts ...natsbroker.EnqueueOption) string {
	t.Helper()
	js, ctx := startJetStream(t)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("exit", h))
	told := make(chan settledOutcome, 8)
	cons := startConsumer(t, js, reg, append(opts, natsbroker.WithMaxAttempts(1), tellSettled(told))...)
	p := newProducer(t, ctx, js)
	insp := newInspector(t, ctx, js)

	mustEnqueue(t, ctx, p, taskpool.Task{ID: "exit", Type: "exit"}, eopts...)
	s := nextSettled(t, told, what)
	assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
	assert.Equal(t, 1, s.out.Task.Attempt, "at its first delivery")
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	stopsClean(t, cons)
	assert.Empty(t, told, "settled once")
	return dls[0].Error
}

// goexitOnError is a slog handler that calls runtime.Goexit for every
// record at Error, as a test's logger that fails the test on one
// (t.FailNow) does.
type goexitOnError struct{}

func (goexitOnError) Enabled(context.Context, slog.Level) bool { return true }

func (goexitOnError) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		runtime.Goexit()
	}
	return nil
}

func (h goexitOnError) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h goexitOnError) WithGroup(string) slog.Handler      { return h }

// A Logger that calls runtime.Goexit at Error, where the fetch loop's
// guards log the user's code that panicked or called Goexit (a codec's
// Decode, the handler's Lookup, a middleware's constructor) and where
// runLoop goes on after a Goexit, ends neither the settlement nor the
// fetch loop: the delivery is dead-lettered and the next task runs. (The
// guard ended before it settled the delivery, and runLoop's restart
// before it started the new goroutine: the consumer fetched no more.)
func TestLoggerGoexitOnTheFetchLoopsGuards(t *testing.T) {
	t.Parallel()
	exitOnce := func() taskpool.Middleware {
		var builds atomic.Int32
		return func(next taskpool.Handler) taskpool.Handler {
			if builds.Add(1) == 1 {
				runtime.Goexit()
			}
			return next
		}
	}
	tests := []struct {
		name     string
		give     func(p *natsbroker.Producer, publish func(string)) error // sends the delivery the guard settles
		giveOpts []natsbroker.Option
		wantErr  string
	}{
		{"decode goexit", func(_ *natsbroker.Producer, publish func(string)) error { publish("goexit"); return nil }, nil, "codec Decode called runtime.Goexit"},
		{"decode panic", func(_ *natsbroker.Producer, publish func(string)) error { publish("panic"); return nil }, nil, "codec Decode panicked"},
		{"lookup goexit", func(p *natsbroker.Producer, _ func(string)) error {
			_, err := p.Enqueue(context.Background(), taskpool.Task{ID: "bad", Type: "goexit"})
			return err
		}, nil, "Lookup(\"goexit\") called runtime.Goexit"},
		{"lookup panic", func(p *natsbroker.Producer, _ func(string)) error {
			_, err := p.Enqueue(context.Background(), taskpool.Task{ID: "bad", Type: "panic"})
			return err
		}, nil, "Lookup(\"panic\") panicked"},
		{"constructor goexit", func(p *natsbroker.Producer, _ func(string)) error {
			_, err := p.Enqueue(context.Background(), taskpool.Task{ID: "bad", Type: "ok"})
			return err
		}, []natsbroker.Option{natsbroker.WithSchedulerOptions(taskpool.WithMiddleware(exitOnce()))}, "called runtime.Goexit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := exitLookup{ran: make(chan string, 8)}
			opts := append([]natsbroker.Option{natsbroker.WithCodec(exitCodec{}),
				natsbroker.WithLogger(slog.New(goexitOnError{}))}, tt.giveOpts...)
			cons, p, _, told, publish := callbackExitConsumer(t, h, opts...)
			require.NoError(t, tt.give(p, publish))
			s := nextSettled(t, told, "the delivery the guard settles")
			assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
			assert.ErrorContains(t, s.out.Err, tt.wantErr)

			mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: "next", Type: "ok"})
			s = nextSettled(t, told, "the next task")
			assert.Equal(t, natsbroker.ActionAck, s.a)
			assert.Equal(t, "next", <-h.ran)
			stopsClean(t, cons)
			assert.Empty(t, told, "no delivery settled twice")
		})
	}
}
