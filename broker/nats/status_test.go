package natsbroker_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// WithSettleHook: for a delivery that never reached the local scheduler,
// Outcome.Status is "taskpool.OutcomeFailed when the consumer failed it
// (a bad payload, ..., an unknown type past its grace, ...) and
// taskpool.OutcomeNotRun when it put it back unrun (a deferral, an
// unknown type within its grace, ...)"; so "ActionAck always comes with
// OutcomeSucceeded and ActionDeadLetter with OutcomeFailed". The consumer
// built these outcomes with no status.
func TestSettleHookStatusOfDeliveriesThatNeverRan(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := nopRegistry(t, "ok")
	settled := make(chan settledOutcome, 16)
	startConsumer(t, js, reg, natsbroker.WithUnknownTypeGrace(50*time.Millisecond), tellSettled(settled))
	next := func(what string) settledOutcome {
		t.Helper()
		select {
		case s := <-settled:
			return s
		case <-ctx.Done():
			t.Fatalf("%s not settled", what)
			return settledOutcome{}
		}
	}
	const subject = "taskpool.default.task.default"

	_, err := js.Publish(ctx, subject, []byte("\x00garbage{"))
	require.NoError(t, err)
	s := next("the bad payload")
	assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
	assert.Equal(t, taskpool.OutcomeFailed, s.out.Status, "bad payload")

	body, err := natsbroker.JSONCodec{}.Encode(taskpool.Task{ID: "later", Type: "ok"})
	require.NoError(t, err)
	msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
	msg.Header.Set(natsbroker.HeaderNotBefore, time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano))
	_, err = js.PublishMsg(ctx, msg)
	require.NoError(t, err)
	s = next("the deferral")
	assert.Equal(t, natsbroker.ActionDefer, s.a)
	assert.Equal(t, taskpool.OutcomeNotRun, s.out.Status, "deferral")

	prod := newProducer(t, ctx, js)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "nope", Type: "nope"})
	s = next("the unknown type, within its grace")
	assert.Equal(t, natsbroker.ActionRetry, s.a)
	assert.ErrorIs(t, s.out.Err, taskpool.ErrNoHandler)
	assert.Equal(t, taskpool.OutcomeNotRun, s.out.Status, "unknown type within its grace")
	for s.a == natsbroker.ActionRetry {
		s = next("the unknown type, past its grace")
	}
	assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
	assert.Equal(t, taskpool.OutcomeFailed, s.out.Status, "unknown type past its grace")

	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "good", Type: "ok"})
	s = next("the good task")
	assert.Equal(t, natsbroker.ActionAck, s.a)
	assert.Equal(t, taskpool.OutcomeSucceeded, s.out.Status, "ran")
}
