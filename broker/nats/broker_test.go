package natsbroker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

type emailParams struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

func TestEveryTaskCompletes(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)

	const n = 600
	led := newLedger(n)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("email.send", func(ctx context.Context, task taskpool.Task) error {
		p, err := taskpool.ParamsAs[emailParams](task)
		if err != nil {
			return taskpool.SkipRetry(err)
		}
		if p.To == "" {
			return taskpool.SkipRetry(errors.New("no recipient"))
		}
		led.add(task.ID)
		return nil
	}))

	prod := newProducer(t, ctx, js)
	startConsumer(t, js, reg, natsbroker.WithWorkers(4))
	startConsumer(t, js, reg, natsbroker.WithWorkers(4), natsbroker.WithPrefetch(8))

	tasks := make([]taskpool.Task, n-100)
	for i := range tasks {
		tasks[i] = taskpool.Task{Type: "email.send", Params: emailParams{To: fmt.Sprint("u", i), Subject: "hi"}}
	}
	receipts, err := prod.EnqueueBatch(ctx, tasks)
	require.NoError(t, err)
	for _, r := range receipts {
		require.NotEmpty(t, r.ID)
		require.False(t, r.Duplicate)
	}
	for i := range 100 {
		r := mustEnqueue(t, ctx, prod, taskpool.Task{ID: fmt.Sprint("single-", i), Type: "email.send", Params: emailParams{To: "x"}})
		require.Equal(t, fmt.Sprint("single-", i), r.ID)
	}
	// A re-sent enqueue of the same ID is dropped by the server.
	r := mustEnqueue(t, ctx, prod, taskpool.Task{ID: "single-7", Type: "email.send", Params: emailParams{To: "x"}})
	assert.True(t, r.Duplicate)

	waitDone(t, led.done, 30*time.Second, "every task to complete")
	assert.Equal(t, n, led.distinct())
	dups := led.duplicates()
	t.Logf("%d tasks completed, %d duplicate runs", led.distinct(), dups)
	// No crash, no restart: nothing should run twice here.
	assert.Zero(t, dups)
}

func TestEnqueueErrors(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	prod := newProducer(t, ctx, js)

	_, err := prod.Enqueue(ctx, taskpool.Task{})
	assert.ErrorIs(t, err, taskpool.ErrInvalidType)
	_, err = prod.Enqueue(ctx, taskpool.Task{Type: "x", Params: make(chan int)})
	assert.ErrorIs(t, err, natsbroker.ErrBadParams)
	_, err = prod.Enqueue(ctx, taskpool.Task{Type: "x", Params: []byte("not json")})
	assert.ErrorIs(t, err, natsbroker.ErrBadParams)
	// Params whose MarshalJSON panics: an error, as in process with
	// WithStrictCodec (TestStrictCodec), not a panic in Enqueue.
	require.NotPanics(t, func() { _, err = prod.Enqueue(ctx, taskpool.Task{Type: "x", Params: panicMarshal{}}) })
	assert.ErrorIs(t, err, natsbroker.ErrBadParams)
	assert.ErrorIs(t, err, taskpool.ErrInvalidTask)
	var pe *taskpool.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "marshal boom", pe.Value)

	_, err = natsbroker.NewProducer(ctx, js, natsbroker.WithQueue("a.b"))
	assert.ErrorIs(t, err, natsbroker.ErrInvalidQueue)
	_, err = natsbroker.NewConsumer(ctx, js, nil)
	assert.ErrorIs(t, err, taskpool.ErrNilHandler)
	_, err = natsbroker.NewConsumer(ctx, js, taskpool.NewRegistry(), natsbroker.WithAckWait(time.Millisecond))
	assert.ErrorIs(t, err, natsbroker.ErrInvalidOption)
}

func TestRetryBackoffDeadLetter(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)

	var (
		mu       sync.Mutex
		attempts = map[string][]int{}
		failOn   atomic.Bool
	)
	failOn.Store(true)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("flaky", func(_ context.Context, task taskpool.Task) error {
		mu.Lock()
		attempts[task.ID] = append(attempts[task.ID], task.Attempt)
		mu.Unlock()
		if task.Attempt < 3 {
			return errors.New("transient")
		}
		return nil
	}))
	require.NoError(t, reg.HandleFunc("broken", func(context.Context, taskpool.Task) error {
		return errors.New("always fails")
	}))
	require.NoError(t, reg.HandleFunc("fatal", func(context.Context, taskpool.Task) error {
		if failOn.Load() {
			return taskpool.SkipRetry(errors.New("bad input"))
		}
		return nil
	}))
	require.NoError(t, reg.HandleFunc("panics", func(context.Context, taskpool.Task) error {
		panic("boom")
	}))

	type settle struct {
		id string
		a  natsbroker.Action
		n  int
	}
	settled := make(chan settle, 64)
	startConsumer(t, js, reg,
		natsbroker.WithBackoff(taskpool.ConstantBackoff(20*time.Millisecond)),
		natsbroker.WithUnknownTypeGrace(50*time.Millisecond),
		natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
			settled <- settle{out.Task.ID, a, out.Attempts}
		}))
	prod := newProducer(t, ctx, js)
	for _, task := range []taskpool.Task{
		{ID: "flaky", Type: "flaky", MaxAttempts: 5},
		{ID: "broken", Type: "broken", MaxAttempts: 3},
		{ID: "fatal", Type: "fatal", MaxAttempts: 5},
		{ID: "panics", Type: "panics", MaxAttempts: 2},
		{ID: "unknown", Type: "no.such.type", MaxAttempts: 2},
	} {
		mustEnqueue(t, ctx, prod, task)
	}
	final := map[string]settle{}
	for len(final) < 5 {
		select {
		case s := <-settled:
			if s.a != natsbroker.ActionRetry {
				final[s.id] = s
			}
		case <-ctx.Done():
			t.Fatalf("timed out; final so far: %v", final)
		}
	}
	assert.Equal(t, settle{"flaky", natsbroker.ActionAck, 3}, final["flaky"])
	assert.Equal(t, settle{"broken", natsbroker.ActionDeadLetter, 3}, final["broken"])
	assert.Equal(t, settle{"fatal", natsbroker.ActionDeadLetter, 1}, final["fatal"])
	assert.Equal(t, settle{"panics", natsbroker.ActionDeadLetter, 2}, final["panics"])
	// An unknown type is dead-lettered after the grace, at its second
	// delivery or later, whatever its MaxAttempts; Attempts counts the
	// earlier deliveries as runs, not the last, which did not run.
	assert.Equal(t, natsbroker.ActionDeadLetter, final["unknown"].a)
	assert.GreaterOrEqual(t, final["unknown"].n, 1)
	mu.Lock()
	assert.Equal(t, []int{1, 2, 3}, attempts["flaky"])
	mu.Unlock()

	insp := newInspector(t, ctx, js)
	dls, err := insp.DeadLetters(ctx, 0, 100)
	require.NoError(t, err)
	require.Len(t, dls, 4)
	byID := map[string]natsbroker.DeadLetter{}
	for _, dl := range dls {
		require.NoError(t, dl.DecodeErr)
		byID[dl.Task.ID] = dl
	}
	assert.Equal(t, "always fails", byID["broken"].Error)
	assert.Equal(t, 3, byID["broken"].Attempts)
	assert.Equal(t, "bad input", byID["fatal"].Error)
	assert.Contains(t, byID["panics"].Error, "boom")
	assert.Contains(t, byID["unknown"].Error, "no handler")
	assert.Equal(t, "fatal", byID["fatal"].Header.Get(natsbroker.HeaderTaskID))
	assert.False(t, byID["fatal"].FailedAt.IsZero())

	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 4, info.DeadLetters)

	// Resubmit the fatal task once its cause is fixed: it runs again and
	// succeeds, and its dead letter is gone.
	failOn.Store(false)
	_, err = insp.Resubmit(ctx, byID["fatal"].Sequence)
	require.NoError(t, err)
	for s := range settled {
		if s.id == "fatal" {
			assert.Equal(t, natsbroker.ActionAck, s.a)
			assert.Equal(t, 1, s.n)
			break
		}
	}
	_, err = insp.Resubmit(ctx, byID["fatal"].Sequence)
	assert.ErrorIs(t, err, natsbroker.ErrNotFound)
	require.NoError(t, insp.DeleteDeadLetter(ctx, byID["panics"].Sequence))
	assert.ErrorIs(t, insp.DeleteDeadLetter(ctx, byID["panics"].Sequence), natsbroker.ErrNotFound)
	n, err := insp.PurgeDeadLetters(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 2, n)
	dls, err = insp.DeadLetters(ctx, 0, 100)
	require.NoError(t, err)
	assert.Empty(t, dls)
}
