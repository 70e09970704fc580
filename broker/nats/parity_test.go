package natsbroker_test

// Tests of the parity review: the broker agrees with the in-process
// scheduler where the conformance suite cannot show it.

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// The settle hook's Outcome.Attempts is what the core's Outcome doc says:
// the number of times the handler ran, 0 for a task that never ran, the
// runs of earlier deliveries counted. A bad payload never reaches a
// handler: 0, where it was the delivery count, 1. A task that ran at its
// first delivery: 1. (TestAttemptsExhaustedByInterruptions: a task run
// once, interrupted, then dead-lettered unrun, 1, where it was 2.)
func TestParitySettleHookAttemptsCountRuns(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := nopRegistry(t, "ok")
	settled := make(chan settledOutcome, 4)
	startConsumer(t, js, reg, tellSettled(settled))
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

	_, err := js.Publish(ctx, "taskpool.default.task.default", []byte("\x00garbage{"))
	require.NoError(t, err)
	s := next("the bad payload")
	require.Equal(t, natsbroker.ActionDeadLetter, s.a)
	assert.ErrorIs(t, s.out.Err, natsbroker.ErrBadPayload)
	assert.Equal(t, 0, s.out.Attempts, "never ran")

	prod := newProducer(t, ctx, js)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "good", Type: "ok"})
	s = next("the good task")
	require.Equal(t, natsbroker.ActionAck, s.a)
	assert.Equal(t, 1, s.out.Attempts, "ran once")
}

// A task enqueued with an Attempt counts from it on its first delivery
// only: Inspector.Resubmit counts from 1 again (as Requeue does in
// process), and so does every tick of a periodic schedule (as every
// activation does in process).
func TestParityEnqueuedAttemptResubmitAndTicksCountFromOne(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	ran := make(chan taskpool.Task, 16)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("fail", func(_ context.Context, tk taskpool.Task) error {
		ran <- tk
		return taskpool.SkipRetry(errors.New("boom"))
	}))
	dead := make(chan taskpool.Outcome, 4)
	startConsumer(t, js, reg, sendOnAction(natsbroker.ActionDeadLetter, dead))
	next := func(what string) taskpool.Task {
		t.Helper()
		select {
		case tk := <-ran:
			return tk
		case <-ctx.Done():
			t.Fatalf("%s did not run", what)
			return taskpool.Task{}
		}
	}
	prod := newProducer(t, ctx, js)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "from4", Type: "fail", Attempt: 4})
	assert.Equal(t, 4, next("the enqueued task").Attempt)
	select {
	case out := <-dead:
		assert.Equal(t, 4, out.Attempts)
	case <-ctx.Done():
		t.Fatal("not dead-lettered")
	}

	insp := newInspector(t, ctx, js)
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	assert.Equal(t, 4, dls[0].Attempts)
	_, err = insp.Resubmit(ctx, dls[0].Sequence)
	require.NoError(t, err)
	assert.Equal(t, 1, next("the resubmitted task").Attempt, "a fresh count")

	require.NoError(t, prod.Schedule(ctx, "tick", "@every 1s", taskpool.Task{Type: "fail", Attempt: 3}))
	tick := next("a tick")
	assert.Equal(t, 1, tick.Attempt, "tick %s", tick.ID)
	require.NoError(t, prod.Cancel(ctx, "tick"))
}

// A task's Priority outside -1..1 is seen as one of the three, as in
// process (Task.Priority's doc: handlers, hooks and outcomes see -1, 0 or
// 1): the producer sends the priority of the subject it picks, so that a
// delayed task listed by Inspector.Schedules and a dead letter show it as
// the handler saw it, not the value submitted.
func TestParityPriorityIsOneOfTheThree(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("prio3")
	prod := newProducer(t, ctx, js, q)
	in := newInspector(t, ctx, js, q)

	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "later", Type: "fail", Priority: 5}, natsbroker.Delay(time.Hour))
	scheds, err := in.Schedules(ctx, true)
	require.NoError(t, err)
	require.Len(t, scheds, 1)
	assert.Equal(t, taskpool.PriorityHigh, scheds[0].Task.Priority, "the delayed task")

	seen := make(chan taskpool.Priority, 1)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("fail", func(_ context.Context, t taskpool.Task) error {
		seen <- t.Priority
		return taskpool.ErrSkipRetry
	}))
	startConsumer(t, js, reg, q)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "dead", Type: "fail", Priority: -7})
	select {
	case p := <-seen:
		assert.Equal(t, taskpool.PriorityLow, p, "the handler")
	case <-ctx.Done():
		t.Fatal("the task did not run")
	}
	var dead []natsbroker.DeadLetter
	require.Eventually(t, func() bool {
		dead, err = in.DeadLetters(ctx, 0, 10)
		return err == nil && len(dead) == 1
	}, 10*time.Second, 10*time.Millisecond, "the dead letter")
	assert.Equal(t, taskpool.PriorityLow, dead[0].Task.Priority, "the dead letter")
}

// A task enqueued with the largest Attempt counts its deliveries from it
// without overflowing: interrupted on its first delivery (as
// TestAttemptsExhaustedByInterruptions), its redelivery is past
// MaxAttempts and is dead-lettered as exhausted, as one enqueued with
// Attempt 5 of 3 is, with the attempt number math.MaxInt. (The attempt
// wrapped to a negative number: the local scheduler refused the task with
// ErrInvalidTask, which was retried until MaxDeliveries, never run.)
func TestParityFirstAttemptDoesNotOverflow(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("bigattempt")
	started := make(chan int, 2)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("hang", func(ctx context.Context, t taskpool.Task) error {
		started <- t.Attempt
		<-ctx.Done()
		return ctx.Err()
	}))
	c, err := natsbroker.NewConsumer(ctx, js, reg, q)
	require.NoError(t, err)
	require.NoError(t, c.Start())
	prod := newProducer(t, ctx, js, q)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "late", Type: "hang", Attempt: math.MaxInt})
	assert.Equal(t, math.MaxInt, <-started, "the first delivery runs as the attempt enqueued")
	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	require.Error(t, c.Stop(sctx))

	dead := make(chan taskpool.Outcome, 1)
	startConsumer(t, js, reg, q, sendOnAction(natsbroker.ActionDeadLetter, dead))
	select {
	case out := <-dead:
		assert.ErrorIs(t, out.Err, natsbroker.ErrAttemptsExhausted)
		assert.Equal(t, math.MaxInt-1, out.Attempts, "the runs before the redelivery, which did not run")
	case <-time.After(10 * time.Second):
		t.Fatal("the redelivery was not dead-lettered")
	}
	assert.Len(t, started, 0, "not run again")
	in := newInspector(t, ctx, js, q)
	dl, err := in.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dl, 1)
	assert.Equal(t, math.MaxInt, dl[0].Attempts)
}
