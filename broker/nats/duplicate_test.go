package natsbroker_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// deliverySpy watches, on a connection of its own, the deliveries the
// server sends to the consumers' fetch requests (their reply subject is
// the delivery's ack subject) and what is published on ack subjects (the
// consumers' acks, naks and terms).
type deliverySpy struct {
	deliveries chan *nats.Msg
	answers    chan *nats.Msg
}

func spyDeliveries(t *testing.T, url string) *deliverySpy {
	t.Helper()
	nc, _ := connect(t, url)
	s := &deliverySpy{deliveries: make(chan *nats.Msg, 64), answers: make(chan *nats.Msg, 1024)}
	_, err := nc.Subscribe("_INBOX.>", func(m *nats.Msg) {
		if strings.HasPrefix(m.Reply, "$JS.ACK.") {
			s.deliveries <- m
		}
	})
	require.NoError(t, err)
	_, err = nc.Subscribe("$JS.ACK.>", func(m *nats.Msg) { s.answers <- m })
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	return s
}

// delivery waits for the next delivery and checks its delivery count.
func (s *deliverySpy) delivery(t *testing.T, numDelivered uint64) *nats.Msg {
	t.Helper()
	select {
	case m := <-s.deliveries:
		md, err := m.Metadata()
		require.NoError(t, err)
		require.Equal(t, numDelivered, md.NumDelivered, "delivery count")
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("no delivery %d", numDelivered)
		return nil
	}
}

// answer waits for what is published on the ack subject of m (skipping
// the answers to other deliveries) and returns its body.
func (s *deliverySpy) answer(t *testing.T, m *nats.Msg) string {
	t.Helper()
	for {
		select {
		case a := <-s.answers:
			if a.Subject == m.Reply {
				return string(a.Data)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no answer to delivery %s", m.Reply)
			return ""
		}
	}
}

// flipLookup is a registry's handler whose Lookup, once flipped, says
// that no type has a handler (mode 1) or panics (mode 2).
type flipLookup struct {
	reg  *taskpool.Registry
	mode *atomic.Int32
}

func (h flipLookup) HandleTask(ctx context.Context, t taskpool.Task) error {
	return h.reg.HandleTask(ctx, t)
}

func (h flipLookup) Lookup(typ string) (taskpool.Handler, bool) {
	switch h.mode.Load() {
	case 1:
		return nil, false
	case 2:
		panic("lookup boom")
	}
	return h.reg.Lookup(typ)
}

// A redelivery of a task that is still running in this consumer (its
// lease lapsed: here the server is told the running delivery was
// refused, as it redelivers one whose lease lapsed) is put back, with
// nothing settled: the running copy decides. The attempts-exhausted,
// unknown-type and Lookup paths do not see it first. (They dead-lettered
// the redelivery, or put it back as an unknown type, while its first
// delivery ran: the unique key was released under the running task, and
// the settle hook was told twice for the one message, a dead letter or a
// retry and then the running copy's ack.)
func TestRedeliveryOfARunningTaskIsPutBackUnsettled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		give     taskpool.Task
		giveMode int32 // the Lookup's, once the task runs
	}{
		{"attempts exhausted", taskpool.Task{ID: "run", Type: "block", MaxAttempts: 1, UniqueKey: "k"}, 0},
		{"unknown type", taskpool.Task{ID: "run", Type: "block", MaxAttempts: 5, UniqueKey: "k"}, 1},
		{"lookup panics", taskpool.Task{ID: "run", Type: "block", MaxAttempts: 5, UniqueKey: "k"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t)
			_, js := connect(t, srv.URL())
			ctx := ctxT(t)
			spy := spyDeliveries(t, srv.URL())
			started, release := make(chan struct{}), make(chan struct{})
			reg := taskpool.NewRegistry()
			var once atomic.Bool
			require.NoError(t, reg.HandleFunc("block", func(ctx context.Context, _ taskpool.Task) error {
				if once.CompareAndSwap(false, true) {
					close(started)
				}
				select {
				case <-release:
				case <-ctx.Done(): // Stop's deadline, after a failed check
				}
				return nil
			}))
			mode := new(atomic.Int32)
			log := newSettleLog()
			cons := startConsumer(t, js, flipLookup{reg: reg, mode: mode}, natsbroker.WithWorkers(2),
				natsbroker.WithUnknownTypeGrace(10*time.Millisecond), natsbroker.WithSettleHook(log.hook))
			p := newProducer(t, ctx, js)
			insp := newInspector(t, ctx, js)

			mustEnqueue(t, ctx, p, tt.give)
			first := spy.delivery(t, 1)
			waitDone(t, started, 10*time.Second, "the task's start")
			mode.Store(tt.giveMode)
			require.NoError(t, first.Respond([]byte("-NAK"))) // the lease is gone: redeliver now
			second := spy.delivery(t, 2)
			ans := spy.answer(t, second)
			assert.True(t, strings.HasPrefix(ans, "-NAK"), "the redelivery is put back, not %q", ans)
			_, err := p.Enqueue(ctx, taskpool.Task{ID: "other", Type: "block", UniqueKey: "k"})
			require.ErrorIs(t, err, natsbroker.ErrDuplicateTask, "the running task keeps its unique key")
			info, err := insp.Queue(ctx)
			require.NoError(t, err)
			assert.Zero(t, info.DeadLetters)
			acts, _ := log.get("run")
			assert.Empty(t, acts, "nothing settled while the task runs")

			mode.Store(0)
			close(release)
			require.Equal(t, "run", recvT(t, log.fin, 10*time.Second, "the running task's settlement"))
			stopsClean(t, cons)
			acts, _ = log.get("run")
			assert.Equal(t, []natsbroker.Action{natsbroker.ActionAck}, acts, "one settlement")
			s, err := js.Stream(ctx, "TASKPOOL_default")
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				si, err := s.Info(ctx)
				return err == nil && si.State.Msgs == 0
			}, 10*time.Second, 10*time.Millisecond, "the running copy's ack removes the message")
			_, err = p.Enqueue(ctx, taskpool.Task{ID: "other", Type: "block", UniqueKey: "k"})
			assert.NoError(t, err, "the key is free once the task is done")
		})
	}
}

// A delivery of a task whose ID the consumer holds (here the ID stored
// again, as after the duplicate window, while its first message runs) is
// put back for the ack wait, and the settle hook is not told: a put-back
// of a task held here is not a settlement. The hook sees the held copy's
// settlement, and then the one of the message put back when it comes back
// and runs: one per run.
func TestDuplicateIDPutBackIsNotTold(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	ctx := ctxT(t)
	spy := spyDeliveries(t, srv.URL())
	started, release := make(chan struct{}), make(chan struct{})
	var runs atomic.Int32
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("block", func(ctx context.Context, _ taskpool.Task) error {
		if runs.Add(1) == 1 {
			close(started)
		}
		select {
		case <-release:
		case <-ctx.Done(): // Stop's deadline, after a failed check
		}
		return nil
	}))
	log := newSettleLog()
	cons := startConsumer(t, js, reg, natsbroker.WithWorkers(2), natsbroker.WithAckWait(time.Second),
		natsbroker.WithSettleHook(log.hook))
	p := newProducer(t, ctx, js)
	task := taskpool.Task{ID: "dup", Type: "block"}
	mustEnqueue(t, ctx, p, task)
	spy.delivery(t, 1)
	waitDone(t, started, 10*time.Second, "the first message's run")

	// The same task in a second message: another message ID, as the ID
	// enqueued again once the stream has forgotten it.
	op, err := natsbroker.NewOfflineProducer(true)
	require.NoError(t, err)
	msg, err := op.Message(task, time.Time{})
	require.NoError(t, err)
	msg.Header.Set(nats.MsgIdHdr, "dup-again")
	_, err = js.PublishMsg(ctx, msg)
	require.NoError(t, err)
	second := spy.delivery(t, 1)
	ans := spy.answer(t, second)
	assert.True(t, strings.HasPrefix(ans, "-NAK"), "put back, not %q", ans)
	acts, _ := log.get("dup")
	assert.Empty(t, acts, "the put-back is not told")
	assert.Equal(t, int32(1), runs.Load(), "not run beside the held copy")

	close(release)
	for range 2 {
		require.Equal(t, "dup", recvT(t, log.fin, 10*time.Second, "the two messages' settlements"))
	}
	stopsClean(t, cons)
	acts, _ = log.get("dup")
	assert.Equal(t, []natsbroker.Action{natsbroker.ActionAck, natsbroker.ActionAck}, acts, "one settlement per run")
	assert.Equal(t, int32(2), runs.Load())
}
