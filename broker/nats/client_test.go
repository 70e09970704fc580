package natsbroker_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// Client's Submit, SubmitAt, SubmitAfter and SubmitWait refuse an ID the
// stream already holds within its duplicate window with an error wrapping
// ErrDuplicateTask, since the server drops such a task: they returned nil
// (taskpool.Client: "A nil error means the task was accepted and will
// run") and SubmitWait waited for an outcome that never came.
func TestClientReusedIDIsDuplicate(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg, ran := idRegistry(t, "ok", 4)
	startConsumer(t, js, reg)
	p := newProducer(t, ctx, js)
	c := natsbroker.NewClient(p)

	require.NoError(t, c.Submit(ctx, taskpool.Task{ID: "once", Type: "ok"}))
	waitFor(t, ran, "once")
	assert.ErrorIs(t, c.Submit(ctx, taskpool.Task{ID: "once", Type: "ok"}), taskpool.ErrDuplicateTask)
	assert.ErrorIs(t, c.SubmitAfter(ctx, taskpool.Task{ID: "once", Type: "ok"}, time.Hour), taskpool.ErrDuplicateTask)
	assert.ErrorIs(t, c.SubmitAt(ctx, taskpool.Task{ID: "once", Type: "ok"}, time.Now().Add(time.Hour)), taskpool.ErrDuplicateTask)
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.SubmitWait(short, taskpool.Task{ID: "once", Type: "ok"})
	assert.ErrorIs(t, err, taskpool.ErrDuplicateTask)
	assert.ErrorIs(t, c.Cancel("once"), taskpool.ErrTaskNotFound, "nothing delayed was stored")
}

// A task dropped as a duplicate of a stored ID does not keep the unique
// key it took: Enqueue (and EnqueueBatch) took the key for the ID, the
// server dropped the message, and no run was left to release the key, so
// every task with that key was refused with ErrDuplicateTask until the
// key's TTL (in process the refused task never held it).
func TestDuplicateIDLeavesItsUniqueKeyFree(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	p := newProducer(t, ctx, js)
	c := natsbroker.NewClient(p)

	require.NoError(t, c.Submit(ctx, taskpool.Task{ID: "stored", Type: "ok"}))
	assert.ErrorIs(t, c.Submit(ctx, taskpool.Task{ID: "stored", Type: "ok", UniqueKey: "k"}), taskpool.ErrDuplicateTask)
	r := mustEnqueue(t, ctx, p, taskpool.Task{ID: "stored", Type: "ok", UniqueKey: "k2"})
	assert.True(t, r.Duplicate)

	rs, err := p.EnqueueBatch(ctx, []taskpool.Task{{ID: "stored", Type: "ok", UniqueKey: "k4"}})
	require.NoError(t, err)
	assert.True(t, rs[0].Duplicate)

	assert.NoError(t, c.Submit(ctx, taskpool.Task{ID: "other", Type: "ok", UniqueKey: "k"}), "the key k is free")
	assert.NoError(t, c.Submit(ctx, taskpool.Task{ID: "other4", Type: "ok", UniqueKey: "k4"}), "the key k4 is free")
	assert.NoError(t, c.Submit(ctx, taskpool.Task{ID: "other2", Type: "ok", UniqueKey: "k2"}), "the key k2 is free")
	// A key the stored task holds itself stays taken.
	require.NoError(t, c.Submit(ctx, taskpool.Task{ID: "holder", Type: "ok", UniqueKey: "k3"}))
	assert.ErrorIs(t, c.Submit(ctx, taskpool.Task{ID: "holder", Type: "ok", UniqueKey: "k3"}), taskpool.ErrDuplicateTask)
	assert.ErrorIs(t, c.Submit(ctx, taskpool.Task{ID: "third", Type: "ok", UniqueKey: "k3"}), taskpool.ErrDuplicateTask, "holder still holds k3")
}

// A periodic schedule's ticks run on both transports for the longest
// schedule id SchedulePeriodic accepts: a tick's ID is the id with "@" and
// the activation time added, which for an id of up to MaxIDLength bytes
// (accepted before) passed MaxIDLength, and the NATS consumer's local
// scheduler refused every tick as an invalid task and dead-lettered it,
// where in process it ran. A longer id is refused on both.
func TestScheduleIDAtItsBound(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	ticks := make(chan string, 8)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("tick", func(_ context.Context, task taskpool.Task) error {
		select {
		case ticks <- task.ID:
		default:
		}
		return nil
	}))
	startConsumer(t, js, reg, natsbroker.WithPollWait(100*time.Millisecond))
	p := newProducer(t, ctx, js)
	s, err := taskpool.New(reg)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	defer func() { require.NoError(t, s.Stop(context.Background())) }()

	id := strings.Repeat("s", taskpool.MaxScheduleIDLength)
	for _, cl := range []taskpool.Client{natsbroker.NewClient(p), s} {
		assert.ErrorIs(t, cl.SchedulePeriodic(id+"s", taskpool.Every(time.Second), taskpool.Task{Type: "tick"}), taskpool.ErrInvalidTask)
		require.NoError(t, cl.SchedulePeriodic(id, taskpool.Every(time.Second), taskpool.Task{Type: "tick"}))
		select {
		case got := <-ticks:
			assert.True(t, strings.HasPrefix(got, id+"@"), "a tick of the schedule")
			assert.LessOrEqual(t, len(got), taskpool.MaxIDLength)
		case <-ctx.Done():
			t.Fatalf("%T: no tick ran", cl)
		}
		require.NoError(t, cl.Unschedule(id))
	}
}

// firstReplyLost is a JetStream whose first publish is stored and then
// reported as timed out (its reply lost); the others go through.
type firstReplyLost struct {
	jetstream.JetStream
	lost atomic.Bool
}

func (j *firstReplyLost) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ack, err := j.JetStream.PublishMsg(ctx, msg, opts...)
	if err == nil && j.lost.CompareAndSwap(false, true) {
		return nil, nats.ErrTimeout
	}
	return ack, err
}

// A Submit whose first publish was stored but not confirmed, which
// Enqueue re-sends with the same ID, is not refused as a duplicate by the
// Client: the server's duplicate is this call's own task, which will run,
// and it keeps its unique key.
func TestClientSubmitRetriedIsNotADuplicate(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	p := newProducer(t, ctx, &firstReplyLost{JetStream: js})
	c := natsbroker.NewClient(p)

	require.NoError(t, c.Submit(ctx, taskpool.Task{ID: "retried", Type: "ok", UniqueKey: "rk"}))
	assert.ErrorIs(t, c.Submit(ctx, taskpool.Task{ID: "other", Type: "ok", UniqueKey: "rk"}), taskpool.ErrDuplicateTask, "retried holds rk")
	assert.ErrorIs(t, c.Submit(ctx, taskpool.Task{ID: "retried", Type: "ok"}), taskpool.ErrDuplicateTask, "a later call is a duplicate")
}
