package natsbroker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// chainPanicsError is an error whose Error is fine and whose Unwrap reads
// through its nil pointer: walking its chain (errors.Is, errors.As)
// panics.
type chainPanicsError struct{ next error }

func (*chainPanicsError) Error() string   { return "chain panics" }
func (e *chainPanicsError) Unwrap() error { return e.next }

// A Decode or Lookup that panics with an error whose chain panics when
// walked is dead-lettered like any other panic, and the error the settle
// hook gets can be inspected with errors.Is and errors.As: its
// *taskpool.PanicError does not unwrap to the value, as in process.
// (The consumer built that PanicError itself, which unwrapped to the
// value: errors.Is on the hook's error crashed.)
func TestReviewS30FetchLoopPanicWithAnErrorWhoseChainPanics(t *testing.T) {
	t.Parallel()
	fetchLoopPanicDeadLetters(t, (*chainPanicsError)(nil), func(t *testing.T, err error) {
		assert.NotPanics(t, func() {
			var pe *taskpool.PanicError
			assert.ErrorAs(t, err, &pe)
			assert.False(t, errors.Is(err, io.EOF))
		})
	})
}

// A settle hook that panics with a value whose String method calls
// runtime.Goexit is logged like any other panic in it, on a worker as on
// the fetch loop, and the consumer goes on. (The guard formatted the
// value itself: the Goexit ended it before it logged.)
func TestReviewS30SettleHookPanicValueWhoseStringCallsGoexitIsLogged(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg, ran := idRegistry(t, "ok", 8)
	logs := newLogSignal("panic in settle hook")
	hooked := make(chan natsbroker.Action, 8)
	cons := startConsumer(t, js, reg, natsbroker.WithLogger(slog.New(logs)),
		natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) {
			hooked <- a
			panic(goexitStringer{})
		}))
	p := newProducer(t, ctx, js)
	mustEnqueue(t, ctx, p, taskpool.Task{ID: "first", Type: "ok"})
	assert.Equal(t, "first", recvT(t, ran, 10*time.Second, "the task"))
	assert.Equal(t, natsbroker.ActionAck, recvT(t, hooked, 10*time.Second, "the settle hook"))
	recvT(t, logs.ch, 10*time.Second, "the log of the panic")
	assert.Contains(t, logs.messages(), "ERROR natsbroker: panic in settle hook")

	mustEnqueue(t, ctx, p, taskpool.Task{ID: "next", Type: "ok"})
	assert.Equal(t, "next", recvT(t, ran, 10*time.Second, "the task"))
	assert.Equal(t, natsbroker.ActionAck, recvT(t, hooked, 10*time.Second, "the settle hook"))
	stopsClean(t, cons)
}

// A consumer's handler that waits for a task it enqueued (Client.SubmitWait
// with its ctx) lends its worker and a message of capacity meanwhile, as
// in process: on a consumer of one worker that holds no message beyond
// it, parents that each wait for a child all finish. (The child could not
// be fetched while the parent held the only message: each wait ended with
// the test's deadline.)
func TestReviewS30ConsumerHandlerWaitingForItsOwnTaskLends(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	p := newProducer(t, ctx, js)
	client := natsbroker.NewClient(p)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("child", func(_ context.Context, t taskpool.Task) error {
		t.SetResult(t.Params)
		return nil
	}))
	require.NoError(t, reg.HandleFunc("parent", func(ctx context.Context, t taskpool.Task) error {
		v, err := client.SubmitWait(ctx, taskpool.Task{Type: "child", Params: t.Params})
		if err != nil {
			return err
		}
		n, err := taskpool.ResultAs[int](v)
		t.SetResult(n * 10)
		return err
	}))
	cons := startConsumer(t, js, reg, natsbroker.WithWorkers(1), natsbroker.WithPrefetch(natsbroker.NoPrefetch))
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	results := make(chan any, 2)
	for i := range 2 {
		go func() {
			v, err := client.SubmitWait(wctx, taskpool.Task{Type: "parent", Params: i + 1})
			if err != nil {
				results <- err
				return
			}
			n, err := taskpool.ResultAs[int](v)
			if err != nil {
				results <- err
				return
			}
			results <- n
		}()
	}
	got := []any{<-results, <-results}
	assert.ElementsMatch(t, []any{10, 20}, got)
	stopsClean(t, cons)
}

// A handler that waits for a task no consumer fetches (here, one enqueued
// on another queue) keeps waiting through the consumer's Stop until
// Stop's ctx ends: that cancels the handler's context, its wait returns
// the context's error, and Stop returns a *taskpool.StopError.
func TestReviewS30StopWithAHandlerWaitingForATaskNotFetched(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	other := natsbroker.NewClient(newProducer(t, ctx, js, natsbroker.WithQueue("nobody")))
	waiting := make(chan struct{})
	waitErr := make(chan error, 1)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("parent", func(ctx context.Context, _ taskpool.Task) error {
		close(waiting)
		_, err := other.SubmitWait(ctx, taskpool.Task{Type: "child"})
		waitErr <- err
		return err
	}))
	cons, err := natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithWorkers(1))
	require.NoError(t, err)
	require.NoError(t, cons.Start())
	mustEnqueue(t, ctx, newProducer(t, ctx, js), taskpool.Task{Type: "parent"})
	recvT(t, waiting, 10*time.Second, "the parent waiting")

	stopCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err = cons.Stop(stopCtx)
	var se *taskpool.StopError
	require.ErrorAs(t, err, &se)
	assert.ErrorIs(t, recvT(t, waitErr, 10*time.Second, "the wait's end"), context.Canceled)
}
