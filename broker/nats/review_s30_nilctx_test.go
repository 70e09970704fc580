package natsbroker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// Every exported function and method of the package that takes a context
// refuses a nil one with an error wrapping taskpool.ErrNilContext and
// does nothing else, as the core does: nothing is stored in the queue's
// stream, no enqueue middleware runs, no schedule, delayed task or dead
// letter is removed, no queue is created, and a Consumer told to Stop
// runs on. (Each panicked with a nil dereference, or in
// context.WithCancelCause; Consumer.Stop with the consumer's stop lock
// held.)
func TestReviewS30NilContextIsRefused(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	var intercepted atomic.Int32
	p := newProducer(t, ctx, js, natsbroker.WithEnqueueMiddleware(func(context.Context, *taskpool.Task) error {
		intercepted.Add(1)
		return nil
	}))
	insp := newInspector(t, ctx, js)
	client := natsbroker.NewClient(p)

	reg, ran := idRegistry(t, "ok", 4)
	require.NoError(t, reg.HandleFunc("fail", func(context.Context, taskpool.Task) error {
		return taskpool.SkipRetry(errors.New("for good"))
	}))
	told := make(chan settledOutcome, 4)
	cons := startConsumer(t, js, reg, tellSettled(told))

	// What there is to leave alone: a dead letter, a delayed task, a
	// periodic schedule.
	mustEnqueue(t, ctx, p, taskpool.Task{ID: "dead", Type: "fail"})
	s := nextSettled(t, told, "the failing task")
	require.Equal(t, natsbroker.ActionDeadLetter, s.a)
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	dlSeq := dls[0].Sequence
	mustEnqueue(t, ctx, p, taskpool.Task{ID: "later", Type: "ok"}, natsbroker.Delay(time.Hour))
	require.NoError(t, p.Schedule(ctx, "tick", "@every 24h", taskpool.Task{Type: "ok"}))

	tasks, err := js.Stream(ctx, "TASKPOOL_default")
	require.NoError(t, err)
	before, err := tasks.Info(ctx)
	require.NoError(t, err)
	schedsBefore, err := insp.Schedules(ctx, true)
	require.NoError(t, err)
	require.Len(t, schedsBefore, 2)
	interceptedBefore := intercepted.Load()

	var nilCtx context.Context
	task := taskpool.Task{ID: "nil-ctx", Type: "ok"}
	calls := []struct {
		name string
		call func() error
	}{
		{"NewProducer", func() error {
			p, err := natsbroker.NewProducer(nilCtx, js, natsbroker.WithQueue("nilctx"))
			assert.Nil(t, p)
			return err
		}},
		{"NewConsumer", func() error {
			c, err := natsbroker.NewConsumer(nilCtx, js, reg, natsbroker.WithQueue("nilctx"))
			assert.Nil(t, c)
			return err
		}},
		{"NewInspector", func() error {
			i, err := natsbroker.NewInspector(nilCtx, js, natsbroker.WithQueue("nilctx"))
			assert.Nil(t, i)
			return err
		}},
		{"Producer.Enqueue", func() error {
			_, err := p.Enqueue(nilCtx, task)
			return err
		}},
		{"Producer.Enqueue delayed", func() error {
			_, err := p.Enqueue(nilCtx, task, natsbroker.Delay(time.Hour))
			return err
		}},
		{"Producer.EnqueueBatch", func() error {
			rs, err := p.EnqueueBatch(nilCtx, []taskpool.Task{task, {Type: "ok"}})
			assert.Nil(t, rs)
			var be *natsbroker.BatchError
			assert.False(t, errors.As(err, &be), "not a BatchError")
			return err
		}},
		{"Producer.Schedule", func() error {
			return p.Schedule(nilCtx, "tick2", "@every 24h", taskpool.Task{Type: "ok"})
		}},
		{"Producer.Cancel delayed", func() error { return p.Cancel(nilCtx, "later") }},
		{"Producer.Cancel periodic", func() error { return p.Cancel(nilCtx, "tick") }},
		{"Producer.WaitResult", func() error {
			_, err := p.WaitResult(nilCtx, "dead")
			return err
		}},
		{"Client.Submit", func() error { return client.Submit(nilCtx, task) }},
		{"Client.SubmitAt", func() error { return client.SubmitAt(nilCtx, task, time.Now().Add(time.Hour)) }},
		{"Client.SubmitAfter", func() error { return client.SubmitAfter(nilCtx, task, time.Hour) }},
		{"Client.SubmitWait", func() error {
			_, err := client.SubmitWait(nilCtx, task)
			return err
		}},
		{"Inspector.Queue", func() error {
			_, err := insp.Queue(nilCtx)
			return err
		}},
		{"Inspector.DeadLetters", func() error {
			_, err := insp.DeadLetters(nilCtx, 0, 10)
			return err
		}},
		{"Inspector.Resubmit", func() error {
			_, err := insp.Resubmit(nilCtx, dlSeq)
			return err
		}},
		{"Inspector.DeleteDeadLetter", func() error { return insp.DeleteDeadLetter(nilCtx, dlSeq) }},
		{"Inspector.PurgeDeadLetters", func() error {
			_, err := insp.PurgeDeadLetters(nilCtx)
			return err
		}},
		{"Inspector.GlobalSlots", func() error {
			_, err := insp.GlobalSlots(nilCtx)
			return err
		}},
		{"Inspector.Schedules", func() error {
			_, err := insp.Schedules(nilCtx, true)
			return err
		}},
		// Last: before the fix it panicked holding the stop lock, which
		// the test's cleanup Stop then waited for.
		{"Consumer.Stop", func() error { return cons.Stop(nilCtx) }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			assert.NotPanics(t, func() {
				assert.ErrorIs(t, c.call(), taskpool.ErrNilContext)
			})
		})
	}

	// Nothing happened.
	after, err := tasks.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, before.State.LastSeq, after.State.LastSeq, "nothing was stored in the queue's stream")
	assert.Equal(t, before.State.Msgs, after.State.Msgs, "nothing was removed from it")
	assert.Equal(t, interceptedBefore, intercepted.Load(), "no enqueue middleware ran")
	schedsAfter, err := insp.Schedules(ctx, true)
	require.NoError(t, err)
	assert.Equal(t, schedsBefore, schedsAfter, "no schedule or delayed task added or removed")
	dls, err = insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1, "the dead letter was kept")
	assert.Equal(t, dlSeq, dls[0].Sequence)
	_, err = js.Stream(ctx, "TASKPOOL_nilctx")
	assert.ErrorIs(t, err, jetstream.ErrStreamNotFound, "no queue was created")

	// The consumer runs on after Stop(nil), and stops cleanly.
	assert.True(t, cons.Health().Live(), "Stop(nil) stopped nothing")
	mustEnqueue(t, ctx, p, taskpool.Task{ID: "after", Type: "ok"})
	assert.Equal(t, "after", recvT(t, ran, 10*time.Second, "a task after Stop(nil)"))
	nextSettled(t, told, "the task after Stop(nil)")
	stopsClean(t, cons)
}
