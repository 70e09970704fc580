package natsbroker_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// A settle hook that calls runtime.Goexit (t.FailNow in a test) on the
// fetch loop, for deliveries that never reach a worker (here payloads the
// codec cannot read, dead-lettered), ends only that call, as a completion
// hook's does in process: each delivery is settled once, the consumer
// fetches on and runs the next task, and Stop returns. (Goexit ended the
// fetch loop: the next task never ran.)
func TestSettleHookGoexitOnTheFetchLoop(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	ctx := ctxT(t)
	reg := taskpool.NewRegistry()
	ran := make(chan string, 8)
	require.NoError(t, reg.HandleFunc("ok", func(_ context.Context, t taskpool.Task) error {
		ran <- t.ID
		return nil
	}))
	told := make(chan natsbroker.Action, 8)
	cons := startConsumer(t, js, reg, natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) {
		told <- a
		runtime.Goexit()
	}), natsbroker.WithPollWait(100*time.Millisecond))
	for range 2 {
		_, err := js.Publish(ctx, "taskpool.default.task.default", []byte("not a task"))
		require.NoError(t, err)
		select {
		case a := <-told:
			assert.Equal(t, natsbroker.ActionDeadLetter, a)
		case <-time.After(10 * time.Second):
			t.Fatal("bad payload not settled: the fetch loop has ended")
		}
	}
	p, err := natsbroker.NewProducer(ctx, js)
	require.NoError(t, err)
	_, err = p.Enqueue(ctx, taskpool.Task{ID: "next", Type: "ok"})
	require.NoError(t, err)
	select {
	case got := <-ran:
		assert.Equal(t, "next", got)
	case <-time.After(10 * time.Second):
		t.Fatal("the next task did not run: the fetch loop has ended")
	}
	select {
	case a := <-told:
		assert.Equal(t, natsbroker.ActionAck, a)
	case <-time.After(10 * time.Second):
		t.Fatal("the next task not settled")
	}
	assert.True(t, cons.Health().Consuming, "the fetch loop runs")

	insp, err := natsbroker.NewInspector(ctx, js)
	require.NoError(t, err)
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	assert.Len(t, dls, 2, "each bad payload dead-lettered once")

	stopped := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- cons.Stop(sctx)
	}()
	select {
	case err := <-stopped:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Stop hangs")
	}
	assert.Len(t, told, 0, "no delivery settled twice")
}
