package natsbroker_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

var errQuota = errors.New("quota exceeded")

// The outcomes a waiter can get, beyond the conformance scenario: the
// sentinels a RemoteError keeps, a panic with an error value, a result
// that is not JSON, a task without KeepResult, and a result stored before
// anyone waits.
func TestResults(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("slow", func(ctx context.Context, t taskpool.Task) error {
		<-ctx.Done()
		return ctx.Err()
	}))
	require.NoError(t, reg.HandleFunc("panic.err", func(ctx context.Context, t taskpool.Task) error {
		panic(taskpool.SkipRetry(errQuota))
	}))
	require.NoError(t, reg.HandleFunc("chan", func(ctx context.Context, t taskpool.Task) error {
		t.SetResult(make(chan int))
		return nil
	}))
	require.NoError(t, reg.HandleFunc("ok", func(ctx context.Context, t taskpool.Task) error {
		t.SetResult("done")
		return nil
	}))
	settled := make(chan string, 16)
	startConsumer(t, js, reg, natsbroker.WithMaxAttempts(1), natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
		if a == natsbroker.ActionAck || a == natsbroker.ActionDeadLetter {
			settled <- out.Task.ID
		}
	}))
	p := newProducer(t, ctx, js)
	c := natsbroker.NewClient(p)

	_, err := c.SubmitWait(ctx, taskpool.Task{Type: "slow", Timeout: 50 * time.Millisecond})
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a task timeout")
	var re *natsbroker.RemoteError
	require.ErrorAs(t, err, &re)
	assert.NotErrorIs(t, err, taskpool.ErrSkipRetry)

	_, err = c.SubmitWait(ctx, taskpool.Task{Type: "panic.err"})
	var pe *taskpool.PanicError
	require.ErrorAs(t, err, &pe)
	assert.ErrorIs(t, err, taskpool.ErrSkipRetry, "the panic's error value keeps its sentinels")
	assert.ErrorAs(t, pe.Value.(error), &re)
	assert.Equal(t, "quota exceeded", re.Message)

	v, err := c.SubmitWait(ctx, taskpool.Task{Type: "chan"})
	assert.Nil(t, v)
	assert.ErrorIs(t, err, natsbroker.ErrBadResult)

	// Stored before anyone waits: the waiter gets it at once.
	r := mustEnqueue(t, ctx, p, taskpool.Task{ID: "early", Type: "ok"}, natsbroker.KeepResult())
	waitFor(t, settled, "early")
	res, err := p.WaitResult(ctx, r.ID)
	require.NoError(t, err)
	s, err := taskpool.ResultAs[string](res.Value)
	require.NoError(t, err)
	assert.Equal(t, "done", s)
	assert.Equal(t, natsbroker.Result{ID: "early", Value: res.Value, Attempts: 1}, res)
	// A ctx that has ended gets its error, stored outcome or not: the
	// bucket cannot be read without one (an in-process Future, which has
	// the outcome at hand, gives it).
	ended, end := context.WithCancel(ctx)
	end()
	_, err = p.WaitResult(ended, r.ID)
	assert.ErrorIs(t, err, context.Canceled)

	// Without KeepResult nothing is stored: the wait ends with ctx.
	mustEnqueue(t, ctx, p, taskpool.Task{ID: "unkept", Type: "ok"})
	waitFor(t, settled, "unkept")
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = p.WaitResult(short, "unkept")
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	_, err = p.WaitResult(ctx, "")
	assert.ErrorIs(t, err, taskpool.ErrInvalidOption)
}

// A task dead-lettered because every delivery lost its worker carries
// ErrAttemptsExhausted to its waiter.
func TestResultAttemptsExhausted(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	p := newProducer(t, ctx, js)
	// Delivered twice to a consumer that never settles it: a fetch that
	// is neither acked nor nacked, as a killed worker leaves it.
	r := mustEnqueue(t, ctx, p, taskpool.Task{Type: "ok", MaxAttempts: 1}, natsbroker.KeepResult())
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("ok", func(ctx context.Context, t taskpool.Task) error { return nil }))
	c, err := natsbroker.NewConsumer(ctx, js, reg) // creates the durables, not started
	require.NoError(t, err)
	cons, err := js.Consumer(ctx, "TASKPOOL_default", "taskpool_default")
	require.NoError(t, err)
	b, err := cons.Fetch(1)
	require.NoError(t, err)
	for m := range b.Messages() {
		require.NoError(t, m.Nak()) // the first delivery ends without an outcome
	}
	require.NoError(t, c.Start())
	defer func() { assert.NoError(t, c.Stop(context.Background())) }()
	res, err := p.WaitResult(ctx, r.ID)
	require.NoError(t, err)
	assert.ErrorIs(t, res.Err, natsbroker.ErrAttemptsExhausted)
	assert.True(t, res.DeadLettered)
	assert.Equal(t, 2, res.Attempts)
}

func TestWithResultTTL(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	_, err := natsbroker.NewProducer(ctx, js, natsbroker.WithResultTTL(-time.Second))
	assert.ErrorIs(t, err, natsbroker.ErrInvalidOption)

	_, err = natsbroker.NewProducer(ctx, js, natsbroker.WithQueue("ttl"), natsbroker.WithResultTTL(time.Hour))
	require.NoError(t, err)
	kv, err := js.KeyValue(ctx, "taskpool_results_ttl")
	require.NoError(t, err)
	st, err := kv.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, time.Hour, st.TTL())

	_, err = natsbroker.NewProducer(ctx, js, natsbroker.WithQueue("ttl"), natsbroker.WithResultTTL(2*time.Hour))
	assert.ErrorIs(t, err, natsbroker.ErrQueueMismatch, "an existing bucket is not changed")

	_, err = natsbroker.NewProducer(ctx, js, natsbroker.WithQueue("fresh"))
	require.NoError(t, err)
	kv, err = js.KeyValue(ctx, "taskpool_results_fresh")
	require.NoError(t, err)
	st, err = kv.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, natsbroker.DefaultResultTTL, st.TTL())
}

func waitFor(t *testing.T, ch <-chan string, id string) {
	t.Helper()
	for {
		select {
		case got := <-ch:
			if got == id {
				return
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("task %s never settled", id)
		}
	}
}

// Every core sentinel a handler's error wraps crosses the wire: errors.Is
// finds it in the waiter's RemoteError as in an in-process Future's error
// (ErrInvalidParams from a ParamsAs that failed, among them; only a few
// crossed before).
func TestResultErrorKeepsEveryCoreSentinel(t *testing.T) {
	t.Parallel()
	sentinels := []error{
		taskpool.ErrInvalidType, taskpool.ErrNilHandler, taskpool.ErrDuplicateType, taskpool.ErrNoHandler,
		taskpool.ErrInvalidTask, taskpool.ErrInvalidOption, taskpool.ErrNotStarted, taskpool.ErrAlreadyStarted,
		taskpool.ErrSchedulerClosed, taskpool.ErrQueueFull, taskpool.ErrDuplicateTask, taskpool.ErrCanceled,
		taskpool.ErrTaskNotFound, taskpool.ErrHandlerExited, taskpool.ErrInvalidParams, taskpool.ErrInvalidResult,
		taskpool.ErrSkipRetry,
	}
	js, ctx := startJetStream(t)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("sentinel", func(ctx context.Context, t taskpool.Task) error {
		i, err := taskpool.ParamsAs[int](t)
		if err != nil {
			return err
		}
		return fmt.Errorf("handler: %w", sentinels[i])
	}))
	startConsumer(t, js, reg, natsbroker.WithMaxAttempts(1))
	p := newProducer(t, ctx, js)
	c := natsbroker.NewClient(p)
	for i, want := range sentinels {
		_, err := c.SubmitWait(ctx, taskpool.Task{Type: "sentinel", Params: i})
		assert.ErrorIs(t, err, want)
		assert.EqualError(t, err, "handler: "+want.Error())
	}
}

// A task that failed for good keeps the result its last run set, as an
// in-process Future does (Client.SubmitWait: "the handler's result (nil
// if it set none) and the task's final error"): it was dropped from a
// dead-lettered outcome. A result JSON cannot encode is dropped there,
// the task's own error kept.
func TestResultOfAFailedTask(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("partial", func(ctx context.Context, t taskpool.Task) error {
		t.SetResult(map[string]int{"done": t.Attempt})
		return errQuota
	}))
	require.NoError(t, reg.HandleFunc("partial.chan", func(ctx context.Context, t taskpool.Task) error {
		t.SetResult(make(chan int))
		return errQuota
	}))
	startConsumer(t, js, reg, natsbroker.WithMaxAttempts(2), natsbroker.WithBackoff(taskpool.ConstantBackoff(time.Millisecond)))
	p := newProducer(t, ctx, js)
	c := natsbroker.NewClient(p)

	v, err := c.SubmitWait(ctx, taskpool.Task{Type: "partial"})
	assert.EqualError(t, err, "quota exceeded")
	got, rerr := taskpool.ResultAs[map[string]int](v)
	require.NoError(t, rerr)
	assert.Equal(t, map[string]int{"done": 2}, got, "the last run's")

	v, err = c.SubmitWait(ctx, taskpool.Task{Type: "partial.chan"})
	assert.EqualError(t, err, "quota exceeded")
	assert.Nil(t, v)
}

// nilPtrError is an error type whose Error reads through its pointer: a
// handler that returns a typed nil one returns an error whose Error
// panics.
type nilPtrError struct{ msg string }

func (e *nilPtrError) Error() string { return e.msg }

// A handler's error whose Error method panics fails the task, as in
// process (where the Future gets that error as it is): the consumer
// settles it, the waiter's RemoteError saying that Error panicked. Before,
// the consumer panicked settling it (in the local scheduler's hook, which
// contained it), left the delivery unsettled, and the waiter waited.
func TestResultErrorWhoseErrorPanics(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("nilerr", func(ctx context.Context, t taskpool.Task) error {
		var e *nilPtrError
		return e
	}))
	settled := make(chan natsbroker.Action, 2)
	startConsumer(t, js, reg, natsbroker.WithMaxAttempts(1), natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
		settled <- a
	}))
	p := newProducer(t, ctx, js)
	c := natsbroker.NewClient(p)

	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.SubmitWait(short, taskpool.Task{Type: "nilerr"})
	var re *natsbroker.RemoteError
	require.ErrorAs(t, err, &re)
	assert.Contains(t, re.Message, "Error panicked")
	assert.Equal(t, natsbroker.ActionDeadLetter, <-settled)

	require.NoError(t, c.Submit(ctx, taskpool.Task{Type: "nilerr"}))
	select {
	case a := <-settled:
		assert.Equal(t, natsbroker.ActionDeadLetter, a)
	case <-short.Done():
		t.Fatal("not settled")
	}
}

// A task an earlier version's producer enqueued with KeepResult and an ID
// over taskpool.MaxIDLength (accepted before a36c9dc; a message's ID is
// a header, which carries it) is dead-lettered as invalid without its
// outcome stored: the results bucket's key made of it, in a subject, made
// the server close the consumer's connection, the delivery was never
// settled, and every redelivery did it again, stopping every other task.
// A unique key over it (which the consumer does not check: uniqueness is
// the producer's) is not released after the run, and Inspector.Resubmit of
// the dead letter reads no stored outcome, for the same reason.
func TestConsumerOlderTaskWithALongID(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg, ran := idRegistry(t, "ok", 4)
	dead := make(chan error, 4)
	startConsumer(t, js, reg, natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
		if a == natsbroker.ActionDeadLetter {
			dead <- out.Err
		}
	}))
	p := newProducer(t, ctx, js)
	long := strings.Repeat("x", 3500)
	_, err := js.PublishMsg(ctx, &nats.Msg{Subject: "taskpool.default.task.default",
		Data:   []byte(`{"v":1,"id":"` + long + `","type":"ok"}`),
		Header: nats.Header{"Nats-Msg-Id": []string{long}, natsbroker.HeaderResult: []string{"1"}}})
	require.NoError(t, err)
	_, err = js.PublishMsg(ctx, &nats.Msg{Subject: "taskpool.default.task.default",
		Data:   []byte(`{"v":1,"id":"keyed","type":"ok","unique_key":"` + long + `"}`),
		Header: nats.Header{"Nats-Msg-Id": []string{"keyed"}}})
	require.NoError(t, err)
	select {
	case err := <-dead:
		assert.ErrorIs(t, err, taskpool.ErrInvalidTask)
	case <-ctx.Done():
		t.Fatal("not dead-lettered")
	}
	for _, want := range []string{"keyed", "good"} {
		if want == "good" {
			mustEnqueue(t, ctx, p, taskpool.Task{ID: "good", Type: "ok"})
		}
		select {
		case id := <-ran:
			assert.Equal(t, want, id)
		case <-ctx.Done():
			t.Fatal(want, " did not run")
		}
	}
	// Resubmitting its dead letter reads no outcome under that ID.
	insp := newInspector(t, ctx, js)
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	_, err = insp.Resubmit(ctx, dls[0].Sequence)
	assert.NoError(t, err)
	select {
	case err := <-dead:
		assert.ErrorIs(t, err, taskpool.ErrInvalidTask)
	case <-ctx.Done():
		t.Fatal("the resubmitted task was not dead-lettered")
	}
	_, err = p.Enqueue(ctx, taskpool.Task{ID: "last", Type: "ok"})
	assert.NoError(t, err, "the connection is up")
}

// A stored error naming a sentinel this version does not know (a newer
// writer's) is read with the names it knows, as results.go says, and a
// dead-lettered outcome keeps its result for a reader too.
func TestResultErrorUnknownSentinelName(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	p := newProducer(t, ctx, js)
	kv, err := js.KeyValue(ctx, "taskpool_results_default")
	require.NoError(t, err)
	_, err = kv.Put(ctx, base64.RawURLEncoding.EncodeToString([]byte("newer")),
		[]byte(`{"v":1,"result":{"n":2},"error":{"message":"boom","is":["from_the_future","invalid_params","skip_retry"]},"attempts":3,"dead":true,"seq":7}`))
	require.NoError(t, err)
	res, err := p.WaitResult(ctx, "newer")
	require.NoError(t, err)
	var re *natsbroker.RemoteError
	require.ErrorAs(t, res.Err, &re)
	assert.Equal(t, "boom", re.Message)
	assert.Equal(t, []error{taskpool.ErrInvalidParams, taskpool.ErrSkipRetry}, re.Wrapped)
	assert.JSONEq(t, `{"n":2}`, string(res.Value))
	assert.Equal(t, 3, res.Attempts)
	assert.True(t, res.DeadLettered)
}

// nilUnwrapError is an error type whose Unwrap reads through its pointer.
type nilUnwrapError struct{ err error }

func (e *nilUnwrapError) Error() string { return e.err.Error() }
func (e *nilUnwrapError) Unwrap() error { return e.err }

// A handler's error whose Unwrap panics fails the task with a
// *taskpool.PanicError on NATS as in process: the consumer's scheduler
// walked its chain outside any recover, and the process crashed.
func TestResultErrorWhoseUnwrapPanics(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("nilunwrap", func(ctx context.Context, t taskpool.Task) error {
		var e *nilUnwrapError
		return e
	}))
	startConsumer(t, js, reg, natsbroker.WithMaxAttempts(1))
	p := newProducer(t, ctx, js)
	_, err := natsbroker.NewClient(p).SubmitWait(ctx, taskpool.Task{Type: "nilunwrap"})
	var pe *taskpool.PanicError
	assert.ErrorAs(t, err, &pe)
}
