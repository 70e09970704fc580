package natsbroker_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// waitUntil polls cond every few milliseconds until it holds or d passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		runtime.Gosched()
		<-time.After(5 * time.Millisecond)
	}
}

// TestReview25GoexitBackoffFreesCapacity: a Backoff that calls
// runtime.Goexit ends the retries and the delivery is dead-lettered (as in
// process), and the consumer's capacity is given back: a consumer of one
// worker and no prefetch runs the next task, and Health().Held returns to 0.
func TestReview25GoexitBackoffFreesCapacity(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("exit", func(context.Context, taskpool.Task) error {
		return errors.New("boom")
	}, taskpool.WithRetry(3, func(int) time.Duration { runtime.Goexit(); return 0 })))
	ran := make(chan string, 4)
	require.NoError(t, reg.HandleFunc("ok", func(_ context.Context, t taskpool.Task) error {
		ran <- t.ID
		return nil
	}))
	log := newSettleLog()
	cons := startConsumer(t, js, reg, natsbroker.WithSettleHook(log.hook),
		natsbroker.WithWorkers(1), natsbroker.WithPrefetch(natsbroker.NoPrefetch))
	p := newProducer(t, ctxT(t), js)
	ctx := ctxT(t)
	for i, id := range []string{"exit1", "exit2"} {
		mustEnqueue(t, ctx, p, taskpool.Task{ID: id, Type: "exit"})
		select {
		case got := <-log.fin:
			require.Equal(t, id, got, i)
		case <-ctx.Done():
			t.Fatal("exit task not settled")
		}
	}
	mustEnqueue(t, ctx, p, taskpool.Task{ID: "after", Type: "ok"})
	select {
	case got := <-ran:
		assert.Equal(t, "after", got)
	case <-time.After(10 * time.Second):
		t.Fatalf("the next task did not run: the consumer holds %d tasks", cons.Health().Held)
	}
	waitUntil(t, 10*time.Second, "Held 0", func() bool { return cons.Health().Held == 0 })
}

// TestReview25FailingSettleHookFreesCapacity: a settle hook that panics is
// logged, and one that calls runtime.Goexit ends only that call on a
// worker, as a completion hook's in process; either way the delivery is
// settled and the consumer's capacity given back, so that a consumer of
// one worker and no prefetch goes on running tasks.
func TestReview25FailingSettleHookFreesCapacity(t *testing.T) {
	t.Parallel()
	for name, bad := range map[string]func(){
		"panic":  func() { panic("settle hook bug") },
		"goexit": runtime.Goexit,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t)
			_, js := connect(t, srv.URL())
			reg, ran := idRegistry(t, "ok", 8)
			acked := make(chan string, 8)
			cons := startConsumer(t, js, reg, natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
				if a == natsbroker.ActionAck {
					acked <- out.Task.ID
				}
				bad()
			}), natsbroker.WithWorkers(1), natsbroker.WithPrefetch(natsbroker.NoPrefetch))
			p := newProducer(t, ctxT(t), js)
			ctx := ctxT(t)
			for _, id := range []string{"a", "b", "c"} {
				mustEnqueue(t, ctx, p, taskpool.Task{ID: id, Type: "ok"})
				for _, ch := range []chan string{ran, acked} {
					select {
					case got := <-ch:
						assert.Equal(t, id, got)
					case <-time.After(10 * time.Second):
						t.Fatalf("task %s not run and acked: the consumer holds %d tasks", id, cons.Health().Held)
					}
				}
			}
			waitUntil(t, 10*time.Second, "Held 0", func() bool { return cons.Health().Held == 0 })
		})
	}
}

// TestReview25PanickingSettleHookOnTheFetchLoop: the settle hook is also
// told of deliveries that never reach a worker (here a payload the codec
// cannot read, dead-lettered by the fetch loop). A panic in it is logged,
// as in a completion hook in process, and does not crash the process or
// stop the consumer: the next task runs.
func TestReview25PanickingSettleHookOnTheFetchLoop(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	nc, js := connect(t, srv.URL())
	reg, ran := idRegistry(t, "ok", 8)
	told := make(chan natsbroker.Action, 8)
	cons := startConsumer(t, js, reg, natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) {
		told <- a
		panic("settle hook bug")
	}))
	_, err := js.Publish(ctxT(t), "taskpool.default.task.default", []byte("not a task"))
	require.NoError(t, err)
	assert.Equal(t, natsbroker.ActionDeadLetter, recvT(t, told, 10*time.Second, "the bad payload's settlement"))
	p := newProducer(t, ctxT(t), js)
	mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: "next", Type: "ok"})
	assert.Equal(t, "next", recvT(t, ran, 10*time.Second, "the next task to run"))
	assert.True(t, cons.Health().Live())
	_ = nc
}

// TestReview25CancelCompletesTheResult: a delayed task enqueued with
// KeepResult and cancelled has an outcome, ErrCanceled with no attempt,
// as its Future has in process: WaitResult returns it rather than
// waiting until its context ends.
func TestReview25CancelCompletesTheResult(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	p := newProducer(t, ctxT(t), js)
	ctx := ctxT(t)
	mustEnqueue(t, ctx, p, taskpool.Task{ID: "later", Type: "x", UniqueKey: "k"}, natsbroker.Delay(time.Hour), natsbroker.KeepResult())
	require.NoError(t, p.Cancel(ctx, "later"))
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := p.WaitResult(wctx, "later")
	require.NoError(t, err)
	assert.ErrorIs(t, res.Err, taskpool.ErrCanceled)
	assert.Zero(t, res.Attempts)
	assert.ErrorIs(t, p.Cancel(ctx, "later"), natsbroker.ErrNotFound)
	// The key is free: another task takes it.
	mustEnqueue(t, ctx, p, taskpool.Task{ID: "other", Type: "x", UniqueKey: "k"}, natsbroker.Delay(time.Hour))
}

// TestReview25GracefulStopKeepsTheHandlersError: during a Stop whose
// context has not ended, handlers run to completion and their outcome is
// settled as any other: a handler that returns its own error wrapping
// context.Canceled (here with SkipRetry: do not retry) is dead-lettered,
// as in process, not released to run again elsewhere as a task that Stop's
// deadline interrupted is.
func TestReview25GracefulStopKeepsTheHandlersError(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	reg := taskpool.NewRegistry()
	started, release := make(chan struct{}), make(chan struct{})
	require.NoError(t, reg.HandleFunc("own", func(context.Context, taskpool.Task) error {
		close(started)
		<-release
		return taskpool.SkipRetry(fmt.Errorf("my request: %w", context.Canceled))
	}, taskpool.WithRetry(3, nil)))
	log := newSettleLog()
	cons, err := natsbroker.NewConsumer(ctxT(t), js, reg, natsbroker.WithSettleHook(log.hook))
	require.NoError(t, err)
	require.NoError(t, cons.Start())
	p := newProducer(t, ctxT(t), js)
	mustEnqueue(t, ctxT(t), p, taskpool.Task{ID: "own", Type: "own"})
	waitDone(t, started, 10*time.Second, "handler start")
	stopped := make(chan error, 1)
	go func() { stopped <- cons.Stop(context.Background()) }()
	waitUntil(t, 10*time.Second, "Stop to begin", func() bool { return !cons.Health().Consuming })
	close(release)
	require.NoError(t, recvT(t, stopped, 10*time.Second, "Stop to return"))
	acts, err := log.get("own")
	assert.Equal(t, []natsbroker.Action{natsbroker.ActionDeadLetter}, acts)
	assert.ErrorIs(t, err, context.Canceled)
}
