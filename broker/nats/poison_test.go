package natsbroker_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// A task that fits max_payload but whose dead-letter copy (payload plus
// the dead-letter headers) does not still reaches a terminal state: it is
// dead-lettered without its payload, with a reference to the original,
// and a Warn is logged. It used to be put back and redelivered for ever.
func TestPoisonTooLargeToDeadLetter(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	nc, js := connect(t, srv.URL())
	ctx := ctxT(t)
	var runs atomic.Int32
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("poison", func(context.Context, taskpool.Task) error {
		runs.Add(1)
		return taskpool.SkipRetry(errors.New(strings.Repeat("long reason ", 80)))
	}))
	settled := make(chan natsbroker.Action, 64)
	logs := newLogSignal("too large")
	startConsumer(t, js, reg, natsbroker.WithLogger(slog.New(logs)),
		natsbroker.WithBackoff(taskpool.ConstantBackoff(10*time.Millisecond)),
		natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) { settled <- a }))
	prod := newProducer(t, ctx, js)
	// The task's message is 300 bytes under the limit; its dead-letter
	// headers are longer than that.
	params := strings.Repeat("p", int(nc.MaxPayload())-300-len(`{"v":1,"id":"poison","type":"poison","params":""}`)-40)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "poison", Type: "poison", Params: params})

	require.Equal(t, natsbroker.ActionDeadLetter, recvT(t, settled, 10*time.Second, "the settlement"), "the first outcome is final")
	waitDone(t, logs.ch, 5*time.Second, "a Warn about the dropped payload")
	assert.EqualValues(t, 1, runs.Load())

	insp := newInspector(t, ctx, js)
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	dl := dls[0]
	assert.Empty(t, dl.Data)
	assert.Contains(t, dl.Header.Get(natsbroker.HeaderDropped), "payload")
	assert.Equal(t, "poison", dl.Header.Get(natsbroker.HeaderTaskID))
	assert.Equal(t, "1", dl.Header.Get(natsbroker.HeaderSequence), "reference to the original")
	assert.Contains(t, dl.Error, "long reason")
	_, err = insp.Resubmit(ctx, dl.Sequence)
	assert.ErrorIs(t, err, natsbroker.ErrPayloadDropped)
	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	assert.Zero(t, info.Priorities[1].Pending+uint64(info.Priorities[1].InFlight), "terminated")
	select {
	case a := <-settled:
		t.Fatalf("settled again: %v", a)
	default:
	}
}

// The durable consumers cap deliveries (MaxDeliver), and a task whose
// MaxAttempts is above the cap is dead-lettered at the last allowed
// delivery instead of staying in the stream undelivered.
func TestDeliveriesCapped(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	var runs atomic.Int32
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("fail", func(context.Context, taskpool.Task) error {
		runs.Add(1)
		return errors.New("again")
	}))
	dead := make(chan taskpool.Outcome, 1)
	startConsumer(t, js, reg, natsbroker.WithBackoff(taskpool.ConstantBackoff(time.Millisecond)),
		natsbroker.WithPollWait(50*time.Millisecond),
		sendOnAction(natsbroker.ActionDeadLetter, dead))
	for _, name := range []string{"taskpool_high", "taskpool_default", "taskpool_low"} {
		cons, err := js.Consumer(ctx, "TASKPOOL_default", name)
		require.NoError(t, err)
		assert.Equal(t, natsbroker.MaxDeliveries, cons.CachedInfo().Config.MaxDeliver)
	}
	prod := newProducer(t, ctx, js)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "stubborn", Type: "fail", MaxAttempts: 1000})
	select {
	case out := <-dead:
		assert.Equal(t, natsbroker.MaxDeliveries, out.Attempts)
	case <-time.After(20 * time.Second):
		t.Fatalf("not dead-lettered after %d runs", runs.Load())
	}
	assert.EqualValues(t, natsbroker.MaxDeliveries, runs.Load())
}
