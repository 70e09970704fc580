package natsbroker_test

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// exitCodec is the JSON codec, except that Decode calls runtime.Goexit
// for the payload "goexit" and panics for "panic".
type exitCodec struct{ natsbroker.JSONCodec }

func (c exitCodec) Decode(data []byte) (taskpool.Task, error) {
	switch string(data) {
	case "goexit":
		runtime.Goexit()
	case "panic":
		panic("decode boom")
	}
	return c.JSONCodec.Decode(data)
}

// exitLookup is a handler with a Lookup (as a Registry has) that calls
// runtime.Goexit for the type "goexit" and panics for "panic".
type exitLookup struct{ ran chan string }

func (h exitLookup) HandleTask(_ context.Context, t taskpool.Task) error {
	h.ran <- t.ID
	return nil
}

func (h exitLookup) Lookup(typ string) (taskpool.Handler, bool) {
	switch typ {
	case "goexit":
		runtime.Goexit()
	case "panic":
		panic("lookup boom")
	}
	return h, typ == "ok"
}

// callbackExitConsumer starts a consumer of h with the options and a
// settle hook that reports on the returned channel.
func callbackExitConsumer(t *testing.T, h taskpool.Handler, opts ...natsbroker.Option) (*natsbroker.Consumer, *natsbroker.Producer, *natsbroker.Inspector, chan settledOutcome, func(payload string)) {
	js, ctx := startJetStream(t)
	told := make(chan settledOutcome, 16)
	opts = append(opts, tellSettled(told), natsbroker.WithPollWait(100*time.Millisecond))
	cons := startConsumer(t, js, h, opts...)
	p := newProducer(t, ctx, js)
	insp := newInspector(t, ctx, js)
	publish := func(payload string) {
		_, err := js.Publish(ctx, "taskpool.default.task.default", []byte(payload))
		require.NoError(t, err)
	}
	return cons, p, insp, told, publish
}

// A codec whose Decode calls runtime.Goexit or panics (on the fetch
// loop) makes the delivery a bad payload, as a Decode error does: it is
// dead-lettered at once with an error wrapping ErrBadPayload (and the
// *taskpool.PanicError for a panic), and the consumer fetches on and runs
// the next task. (Goexit ended the fetch loop: the next task never ran;
// the panic crashed the process.)
func TestDecodeGoexitOrPanicDeadLettersAndTheLoopGoesOn(t *testing.T) {
	t.Parallel()
	reg, ran := idRegistry(t, "ok", 8)
	cons, p, insp, told, publish := callbackExitConsumer(t, reg, natsbroker.WithCodec(exitCodec{}))
	ctx := ctxT(t)

	publish("goexit")
	s := nextSettled(t, told, "the Decode that called Goexit")
	assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
	require.ErrorIs(t, s.out.Err, natsbroker.ErrBadPayload)
	assert.Contains(t, s.out.Err.Error(), "Goexit")
	assert.Equal(t, taskpool.OutcomeFailed, s.out.Status)

	publish("panic")
	s = nextSettled(t, told, "the Decode that panicked")
	assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
	require.ErrorIs(t, s.out.Err, natsbroker.ErrBadPayload)
	var pe *taskpool.PanicError
	require.ErrorAs(t, s.out.Err, &pe)
	assert.Equal(t, "decode boom", pe.Value)

	mustEnqueue(t, ctx, p, taskpool.Task{ID: "next", Type: "ok"})
	assert.Equal(t, "next", recvT(t, ran, 10*time.Second, "the next task to run (else the fetch loop has ended)"))
	s = nextSettled(t, told, "the next task")
	assert.Equal(t, natsbroker.ActionAck, s.a)
	assert.True(t, cons.Health().Consuming)

	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 2, "each bad delivery dead-lettered once")
	assert.Contains(t, dls[0].Error, "Goexit")
	assert.Contains(t, dls[1].Error, "decode boom")
	for _, dl := range dls {
		assert.Equal(t, 1, dl.Attempts, "dead-lettered at its first delivery")
	}
	stopsClean(t, cons)
	assert.Empty(t, told, "no delivery settled twice")
}

// A handler whose Lookup calls runtime.Goexit or panics for a task's type
// (on the fetch loop) has the task dead-lettered at once, as a task the
// local scheduler refuses as invalid: with an error wrapping
// taskpool.ErrHandlerExited for Goexit, the *taskpool.PanicError for a
// panic. The consumer fetches on and runs the next task. (Goexit ended
// the fetch loop; the panic crashed the process.)
func TestLookupGoexitOrPanicDeadLettersAndTheLoopGoesOn(t *testing.T) {
	t.Parallel()
	h := exitLookup{ran: make(chan string, 8)}
	cons, p, insp, told, _ := callbackExitConsumer(t, h)
	ctx := ctxT(t)

	mustEnqueue(t, ctx, p, taskpool.Task{ID: "exits", Type: "goexit", UniqueKey: "k1"})
	s := nextSettled(t, told, "the task whose Lookup called Goexit")
	assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
	assert.Equal(t, "exits", s.out.Task.ID)
	require.ErrorIs(t, s.out.Err, taskpool.ErrHandlerExited)
	assert.Equal(t, taskpool.OutcomeFailed, s.out.Status)

	mustEnqueue(t, ctx, p, taskpool.Task{ID: "panics", Type: "panic"})
	s = nextSettled(t, told, "the task whose Lookup panicked")
	assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
	assert.Equal(t, "panics", s.out.Task.ID)
	var pe *taskpool.PanicError
	require.ErrorAs(t, s.out.Err, &pe)
	assert.Equal(t, "lookup boom", pe.Value)

	mustEnqueue(t, ctx, p, taskpool.Task{ID: "next", Type: "ok"})
	assert.Equal(t, "next", recvT(t, h.ran, 10*time.Second, "the next task to run (else the fetch loop has ended)"))
	s = nextSettled(t, told, "the next task")
	assert.Equal(t, natsbroker.ActionAck, s.a)

	// The dead-lettered task's unique key was released: the same key is
	// taken again.
	mustEnqueue(t, ctx, p, taskpool.Task{ID: "again", Type: "ok", UniqueKey: "k1"})
	s = nextSettled(t, told, "the task that took the key again")
	assert.Equal(t, natsbroker.ActionAck, s.a)

	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 2)
	assert.Equal(t, "exits", dls[0].Task.ID)
	assert.Equal(t, "panics", dls[1].Task.ID)
	assert.Contains(t, dls[1].Error, "lookup boom")
	stopsClean(t, cons)
	assert.Empty(t, told, "no delivery settled twice")
}

// A scheduler-wide middleware whose constructor calls runtime.Goexit
// when the local scheduler builds a type's chain (at the type's first
// submission, on the fetch loop, or on a global limit's goroutine for a
// limited type) refuses that delivery, as a constructor that panics does
// in the core (the chain is built again at the next submission), with an
// error wrapping taskpool.ErrHandlerExited, which is not retried, as a
// handler's Goexit is not: it is dead-lettered, and the consumer fetches
// on and runs the next task. (Goexit ended the goroutine, and the
// delivery stayed held, its lease extended, for as long as the consumer
// ran.)
func TestMiddlewareConstructorGoexitOnSubmit(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string][]natsbroker.Option{
		"fetch loop":   nil,
		"global limit": {natsbroker.WithGlobalLimit("ok", natsbroker.Limit{Concurrency: 2})},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reg, ran := idRegistry(t, "ok", 8, taskpool.WithRetry(3, func(int) time.Duration { return 10 * time.Millisecond }))
			var builds atomic.Int32
			mw := func(next taskpool.Handler) taskpool.Handler {
				if builds.Add(1) == 1 {
					runtime.Goexit()
				}
				return next
			}
			opts := append([]natsbroker.Option{natsbroker.WithSchedulerOptions(taskpool.WithMiddleware(mw))}, opts...)
			cons, p, _, told, _ := callbackExitConsumer(t, reg, opts...)
			ctx := ctxT(t)

			mustEnqueue(t, ctx, p, taskpool.Task{ID: "first", Type: "ok"})
			s := nextSettled(t, told, "the task whose chain's constructor called Goexit")
			assert.Equal(t, natsbroker.ActionDeadLetter, s.a, "not retried, as a handler's Goexit")
			assert.Equal(t, "first", s.out.Task.ID)
			require.ErrorIs(t, s.out.Err, taskpool.ErrHandlerExited)
			assert.Empty(t, ran)

			mustEnqueue(t, ctx, p, taskpool.Task{ID: "next", Type: "ok"})
			s = nextSettled(t, told, "the next task")
			assert.Equal(t, natsbroker.ActionAck, s.a)
			assert.Equal(t, "next", <-ran)
			stopsClean(t, cons)
			assert.Empty(t, told, "no delivery settled twice")
		})
	}
}

// panicResult is a result whose MarshalJSON panics, goexitResult one
// whose MarshalJSON calls runtime.Goexit.
type (
	panicResult  struct{}
	goexitResult struct{}
)

func (panicResult) MarshalJSON() ([]byte, error) { panic("marshal boom") }

func (goexitResult) MarshalJSON() ([]byte, error) {
	runtime.Goexit()
	return nil, nil
}

// A result whose MarshalJSON panics or calls runtime.Goexit is a result
// JSON cannot encode, as a channel is: the waiter gets an error wrapping
// ErrBadResult, and the task, which succeeded, is acked once and not run
// again. (The panic, or Goexit, cut the settlement short on the worker:
// the delivery was neither acked nor extended, and ran again after the
// ack wait.)
func TestResultMarshalPanicOrGoexitIsABadResult(t *testing.T) {
	t.Parallel()
	reg := taskpool.NewRegistry()
	ran := make(chan string, 8)
	require.NoError(t, reg.HandleFunc("panic", func(_ context.Context, t taskpool.Task) error {
		ran <- t.ID
		t.SetResult(panicResult{})
		return nil
	}))
	require.NoError(t, reg.HandleFunc("goexit", func(_ context.Context, t taskpool.Task) error {
		ran <- t.ID
		t.SetResult(goexitResult{})
		return nil
	}))
	cons, p, _, told, _ := callbackExitConsumer(t, reg)
	c := natsbroker.NewClient(p)
	for _, typ := range []string{"panic", "goexit"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err := c.SubmitWait(ctx, taskpool.Task{ID: typ, Type: typ})
		cancel()
		assert.Nil(t, v, typ)
		require.ErrorIs(t, err, natsbroker.ErrBadResult, typ)
		assert.NotErrorIs(t, err, context.DeadlineExceeded, typ)
		s := nextSettled(t, told, typ)
		assert.Equal(t, natsbroker.ActionAck, s.a, typ)
		assert.NoError(t, s.out.Err, "the task succeeded: its hooks see no error")
		assert.Equal(t, typ, <-ran)
	}
	stopsClean(t, cons)
	assert.Empty(t, ran, "no task ran twice")
	assert.Empty(t, told, "no delivery settled twice")
}

// A Backoff (WithBackoff) that panics or calls runtime.Goexit where the
// consumer puts a delivery back because its outcome could not be stored
// (here the results bucket refuses every record) does not cut the
// settlement short: the delivery is put back with the built-in backoff
// and the settle hook is told ActionRetry. (The panic left the delivery
// unsettled on the worker, run again after the ack wait, and crashed the
// process on the fetch loop; Goexit ended the fetch loop.)
func TestBackoffPanicOrGoexitWhereAStoreFails(t *testing.T) {
	t.Parallel()
	for name, bo := range map[string]taskpool.Backoff{
		"panic":  func(int) time.Duration { panic("backoff boom") },
		"goexit": func(int) time.Duration { runtime.Goexit(); return 0 },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reg := nopRegistry(t, "ok")
			js, ctx := startJetStream(t)
			told := make(chan settledOutcome, 16)
			cons := startConsumer(t, js, reg, natsbroker.WithBackoff(bo), tellSettled(told))
			p := newProducer(t, ctx, js)
			refuseResults(t, ctx, js) // every result record is larger than the bucket allows

			mustEnqueue(t, ctx, p, taskpool.Task{ID: "kept", Type: "ok"}, natsbroker.KeepResult())
			got := nextSettled(t, told, "the task whose result was not stored")
			assert.Equal(t, natsbroker.ActionRetry, got.a)
			assert.Equal(t, "kept", got.out.Task.ID)
			got = nextSettled(t, told, "its redelivery")
			assert.Equal(t, natsbroker.ActionRetry, got.a)
			assert.Equal(t, "kept", got.out.Task.ID)
			assert.Equal(t, 2, got.out.Task.Attempt, "redelivered at once, not after the ack wait")
			assert.True(t, cons.Health().Live())
		})
	}
}

// payloadCodec is the JSON codec, except that it decodes a delivery
// whose payload is payload to task (one without an ID, say).
type payloadCodec struct {
	natsbroker.JSONCodec
	payload string
	task    taskpool.Task
}

func (c payloadCodec) Decode(data []byte) (taskpool.Task, error) {
	if string(data) == c.payload {
		return c.task, nil
	}
	return c.JSONCodec.Decode(data)
}

// A custom codec that decodes a task without an ID makes a bad payload,
// as JSONCodec says of an envelope without one: the consumer settles a
// delivery by its task's ID, and the local scheduler gives a task without
// one an ID of its own. It is dead-lettered at once with ErrBadPayload.
// (It ran, and its delivery was never settled: held, its lease extended,
// for as long as the consumer ran.)
func TestCodecTaskWithoutIDIsABadPayload(t *testing.T) {
	t.Parallel()
	reg, ran := idRegistry(t, "ok", 8)
	cons, p, _, told, publish := callbackExitConsumer(t, reg, natsbroker.WithCodec(payloadCodec{payload: "no id", task: taskpool.Task{Type: "ok"}}))
	publish("no id")
	s := nextSettled(t, told, "the task without an ID")
	assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
	require.ErrorIs(t, s.out.Err, natsbroker.ErrBadPayload)
	assert.Empty(t, ran, "not run")

	mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: "next", Type: "ok"})
	s = nextSettled(t, told, "the next task")
	assert.Equal(t, natsbroker.ActionAck, s.a)
	assert.Equal(t, "next", <-ran)
	stopsClean(t, cons)
	assert.Empty(t, told, "no delivery settled twice")
}
