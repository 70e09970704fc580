package natsbroker_test

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// blockOnLoopLog is a slog handler that, at the log runLoop makes after a
// Goexit on the fetch loop, says so on entered, waits for release, and
// closes left as it returns.
type blockOnLoopLog struct {
	entered chan struct{}
	release chan struct{}
	left    chan struct{}
}

func (blockOnLoopLog) Enabled(context.Context, slog.Level) bool { return true }

func (h blockOnLoopLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "on the fetch loop") {
		close(h.entered)
		<-h.release
		close(h.left)
	}
	return nil
}

func (h blockOnLoopLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h blockOnLoopLog) WithGroup(string) slog.Handler      { return h }

// Stop returns once every goroutine of the consumer has exited: also the
// one whose fetch loop a Goexit ended, while it logs that the loop goes on
// elsewhere. (runLoop started the new loop before it logged: the new loop
// ran to its end and Stop returned with the old goroutine still in the
// Logger, which it called after Stop.) The Logger is held until Stop
// returns, or for a while if Stop waits for it.
func TestReviewS29StopWaitsForTheFetchLoopsGoexitLog(t *testing.T) {
	t.Parallel()
	h := blockOnLoopLog{entered: make(chan struct{}), release: make(chan struct{}), left: make(chan struct{})}
	cons, _, _, told, publish := callbackExitConsumer(t, exitLookup{ran: make(chan string, 1)},
		natsbroker.WithCodec(exitCodec{}), natsbroker.WithLogger(slog.New(h)))
	publish("goexit")
	s := nextSettled(t, told, "the delivery whose Decode called Goexit")
	assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
	select {
	case <-h.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("runLoop did not log the Goexit")
	}

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- cons.Stop(ctx)
	}()
	var err error
	select {
	case err = <-stopped:
		select {
		case <-h.left:
		default:
			t.Error("Stop returned while the fetch loop's goroutine was still in the Logger")
		}
		close(h.release)
	case <-time.After(2 * time.Second):
		// Stop waits for the Logger: let it go.
		close(h.release)
		err = <-stopped
	}
	require.NoError(t, err)
	<-h.left
}

// goexitStringer is a panic value whose String method calls
// runtime.Goexit.
type goexitStringer struct{}

func (goexitStringer) String() string {
	runtime.Goexit()
	return ""
}

// A handler that panics with a value whose String method calls
// runtime.Goexit, on a task whose outcome is kept for a waiter, is
// dead-lettered at its first delivery and the settle hook is told once,
// as one whose error's Error method calls Goexit is. (The stored error's
// record formatted the panic value on the worker, outside errorText's
// goroutine: Goexit ended the worker before it settled the delivery.)
func TestReviewS29PanicValueWhoseStringCallsGoexitIsDeadLettered(t *testing.T) {
	t.Parallel()
	deadLetteredOnce(t, "the task whose panic value's String calls Goexit",
		func(context.Context, taskpool.Task) error { panic(goexitStringer{}) }, nil, natsbroker.KeepResult())
}

// panicGoexitError is an error whose Error method panics with a value
// whose String method calls runtime.Goexit.
type panicGoexitError struct{}

func (panicGoexitError) Error() string { panic(goexitStringer{}) }

// A handler's error whose Error method panics with a value that cannot
// be formatted (its String calls runtime.Goexit) is dead-lettered with a
// text saying that Error panicked. (errorText formatted the panic value
// after it had marked Error as returned: the Goexit left the text empty,
// and the dead letter had no error.)
func TestReviewS29ErrorPanicValueWhoseStringCallsGoexitHasAText(t *testing.T) {
	t.Parallel()
	text := deadLetteredOnce(t, "the task whose error's Error panics",
		func(context.Context, taskpool.Task) error { return panicGoexitError{} }, nil)
	assert.Contains(t, text, "Error panicked")
}

// panicsWith is the JSON codec and a handler with a Lookup, whose Decode
// (for the payload "panic") and Lookup (for the type "panic") panic with
// value.
type panicsWith struct {
	natsbroker.JSONCodec
	value any
	ran   chan string
}

func (c panicsWith) Decode(data []byte) (taskpool.Task, error) {
	if string(data) == "panic" {
		panic(c.value)
	}
	return c.JSONCodec.Decode(data)
}

func (c panicsWith) HandleTask(_ context.Context, t taskpool.Task) error {
	c.ran <- t.ID
	return nil
}

func (c panicsWith) Lookup(typ string) (taskpool.Handler, bool) {
	if typ == "panic" {
		panic(c.value)
	}
	return c, typ == "ok"
}

// fetchLoopPanicDeadLetters checks, for a Decode and then for a Lookup
// that panic with value (panicsWith), that the delivery is dead-lettered
// at once with an error wrapping the *taskpool.PanicError (check looks at
// that error further), and that the next task runs and is acked.
func fetchLoopPanicDeadLetters(t *testing.T, value any, check func(t *testing.T, err error)) {
	tests := []struct {
		name    string
		give    func(p *natsbroker.Producer, publish func(string)) error
		wantErr string
	}{
		{"decode", func(_ *natsbroker.Producer, publish func(string)) error { publish("panic"); return nil }, "codec Decode panicked"},
		{"lookup", func(p *natsbroker.Producer, _ func(string)) error {
			_, err := p.Enqueue(context.Background(), taskpool.Task{ID: "bad", Type: "panic"})
			return err
		}, "Lookup(\"panic\") panicked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := panicsWith{value: value, ran: make(chan string, 8)}
			cons, p, _, told, publish := callbackExitConsumer(t, h, natsbroker.WithCodec(h))
			require.NoError(t, tt.give(p, publish))
			s := nextSettled(t, told, "the delivery whose Decode or Lookup panicked")
			assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
			assert.ErrorContains(t, s.out.Err, tt.wantErr)
			check(t, s.out.Err)

			mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: "next", Type: "ok"})
			s = nextSettled(t, told, "the next task")
			assert.Equal(t, natsbroker.ActionAck, s.a)
			assert.Equal(t, "next", <-h.ran)
			stopsClean(t, cons)
			assert.Empty(t, told, "no delivery settled twice")
		})
	}
}

// A Decode or Lookup that panics with a value whose String method calls
// runtime.Goexit is a panic like any other: the delivery is dead-lettered
// at once, with an error wrapping the *taskpool.PanicError, and the next
// task runs. (The guard formatted the value, for its log and its error,
// on the fetch loop: the Goexit ended the guard before it settled the
// delivery, which came back after each ack wait, until MaxDeliveries.)
func TestReviewS29FetchLoopPanicValueWhoseStringCallsGoexit(t *testing.T) {
	t.Parallel()
	fetchLoopPanicDeadLetters(t, goexitStringer{}, func(t *testing.T, err error) {
		var pe *taskpool.PanicError
		assert.ErrorAs(t, err, &pe)
	})
}

// stringerPanicResult is a result whose MarshalJSON panics with a value
// whose String method calls runtime.Goexit.
type stringerPanicResult struct{}

func (stringerPanicResult) MarshalJSON() ([]byte, error) { panic(goexitStringer{}) }

// A result whose MarshalJSON panics with a value that cannot be formatted
// is a result JSON cannot encode, as for any other panic: the waiter gets
// an error wrapping ErrBadResult. (marshalResult formatted the value after
// it had marked the encoding as returned: the Goexit left it with no
// result and no error, and the waiter got nil, nil.)
func TestReviewS29ResultMarshalPanicValueWhoseStringCallsGoexit(t *testing.T) {
	t.Parallel()
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("panic", func(_ context.Context, t taskpool.Task) error {
		t.SetResult(stringerPanicResult{})
		return nil
	}))
	cons, p, _, told, _ := callbackExitConsumer(t, reg)
	c := natsbroker.NewClient(p)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := c.SubmitWait(ctx, taskpool.Task{ID: "panic", Type: "panic"})
	assert.Nil(t, v)
	require.ErrorIs(t, err, natsbroker.ErrBadResult)
	s := nextSettled(t, told, "the task")
	assert.Equal(t, natsbroker.ActionAck, s.a)
	stopsClean(t, cons)
	assert.Empty(t, told, "settled once")
}

// latePanicLookup is a handler whose Lookup says yes to the type "late"
// at its first call (the consumer's) and panics with a value whose String
// method calls runtime.Goexit at the next (the local scheduler's, in
// TrySubmit).
type latePanicLookup struct {
	ran   chan string
	calls *atomic.Int32
}

func (h latePanicLookup) HandleTask(_ context.Context, t taskpool.Task) error {
	h.ran <- t.ID
	return nil
}

func (h latePanicLookup) Lookup(typ string) (taskpool.Handler, bool) {
	if typ == "late" && h.calls.Add(1) == 2 {
		panic(goexitStringer{})
	}
	return h, typ == "late" || typ == "ok"
}

// A panic in the local scheduler's submit whose value cannot be formatted
// is a refusal with the *taskpool.PanicError, as any other panic there
// (dead-lettered: one attempt), and the consumer stops clean. (The
// submit guard formatted the value on the fetch loop: the Goexit ended it
// before it settled the delivery, which stayed held.)
func TestReviewS29SubmitPanicValueWhoseStringCallsGoexit(t *testing.T) {
	t.Parallel()
	h := latePanicLookup{ran: make(chan string, 8), calls: new(atomic.Int32)}
	cons, p, _, told, _ := callbackExitConsumer(t, h, natsbroker.WithMaxAttempts(1))
	mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: "bad", Type: "late"})
	s := nextSettled(t, told, "the delivery whose submit panicked")
	assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
	var pe *taskpool.PanicError
	assert.ErrorAs(t, s.out.Err, &pe)
	assert.ErrorContains(t, s.out.Err, "panicked")

	mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: "next", Type: "ok"})
	s = nextSettled(t, told, "the next task")
	assert.Equal(t, natsbroker.ActionAck, s.a)
	assert.Equal(t, "next", <-h.ran)
	stopsClean(t, cons)
	assert.Empty(t, told, "no delivery settled twice")
}
