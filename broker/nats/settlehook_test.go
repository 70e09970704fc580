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
	goexitOnTheFetchLoop(t, []byte("not a task"), nil)
}

// badIDCodec is the JSON codec, except that it decodes the payload
// "bad id" to a task whose ID is not valid UTF-8, which the local
// scheduler refuses (taskpool.ErrInvalidTask).
type badIDCodec struct{ natsbroker.JSONCodec }

func (c badIDCodec) Decode(data []byte) (taskpool.Task, error) {
	if string(data) == "bad id" {
		return taskpool.Task{ID: "bad\xff", Type: "ok"}, nil
	}
	return c.JSONCodec.Decode(data)
}

// A task the local scheduler refuses as invalid is dead-lettered at once
// on the fetch loop (every delivery would be refused, as Submit refuses
// it in process: its Backoff is not consulted), and a settle hook that
// calls runtime.Goexit there ends only that call, as on a worker: the
// consumer fetches on, runs the next task, and Stop returns.
func TestSettleHookAndBackoffGoexitOnTheFetchLoopForARefusedTask(t *testing.T) {
	t.Parallel()
	backoff := make(chan int, 8)
	goexitOnTheFetchLoop(t, []byte("bad id"), natsbroker.WithCodec(badIDCodec{}),
		taskpool.WithRetry(3, func(n int) time.Duration { backoff <- n; runtime.Goexit(); return 0 }))
	assert.Empty(t, backoff, "an invalid task is not retried")
}

// goexitOnTheFetchLoop publishes payload twice to a consumer whose settle
// hook calls runtime.Goexit, and checks that each delivery is
// dead-lettered once, that the next task runs and is acked, and that Stop
// returns with nothing held. codec, if not nil, is the consumer's codec
// option, and retry the "ok" type's.
func goexitOnTheFetchLoop(t *testing.T, payload []byte, codec natsbroker.Option, retry ...taskpool.HandleOption) {
	js, ctx := startJetStream(t)
	reg, ran := idRegistry(t, "ok", 8, retry...)
	told := make(chan natsbroker.Action, 8)
	opts := []natsbroker.Option{natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) {
		told <- a
		runtime.Goexit()
	}), natsbroker.WithPollWait(100 * time.Millisecond)}
	if codec != nil {
		opts = append(opts, codec)
	}
	cons := startConsumer(t, js, reg, opts...)
	for range 2 {
		_, err := js.Publish(ctx, "taskpool.default.task.default", payload)
		require.NoError(t, err)
		assert.Equal(t, natsbroker.ActionDeadLetter, recvT(t, told, 10*time.Second, "the delivery's settlement (else the fetch loop has ended)"))
	}
	p := newProducer(t, ctx, js)
	mustEnqueue(t, ctx, p, taskpool.Task{ID: "next", Type: "ok"})
	assert.Equal(t, "next", recvT(t, ran, 10*time.Second, "the next task to run (else the fetch loop has ended)"))
	assert.Equal(t, natsbroker.ActionAck, recvT(t, told, 10*time.Second, "the next task's settlement"))
	assert.True(t, cons.Health().Consuming, "the fetch loop runs")

	insp := newInspector(t, ctx, js)
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	assert.Len(t, dls, 2, "each delivery dead-lettered once")
	for _, dl := range dls {
		assert.Equal(t, 1, dl.Attempts, "dead-lettered at its first delivery")
	}

	stopped := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- cons.Stop(sctx)
	}()
	require.NoError(t, recvT(t, stopped, 20*time.Second, "Stop to return"))
	assert.Len(t, told, 0, "no delivery settled twice")
	assert.Equal(t, 0, cons.Health().Held)
}
