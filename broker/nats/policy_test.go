package natsbroker_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// settleLog records what a consumer did with each delivery, by task ID.
type settleLog struct {
	mu   sync.Mutex
	acts map[string][]natsbroker.Action
	errs map[string]error
	fin  chan string // task IDs settled for good (ack or dead letter)
}

func newSettleLog() *settleLog {
	return &settleLog{acts: map[string][]natsbroker.Action{}, errs: map[string]error{}, fin: make(chan string, 64)}
}

func (l *settleLog) hook(out taskpool.Outcome, a natsbroker.Action) {
	l.mu.Lock()
	l.acts[out.Task.ID] = append(l.acts[out.Task.ID], a)
	l.errs[out.Task.ID] = out.Err
	l.mu.Unlock()
	if a == natsbroker.ActionAck || a == natsbroker.ActionDeadLetter {
		l.fin <- out.Task.ID
	}
}

func (l *settleLog) get(id string) ([]natsbroker.Action, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]natsbroker.Action(nil), l.acts[id]...), l.errs[id]
}

// TestConsumerFollowsRegistryRetry: the consumer gives a type the attempts
// and backoff of its WithRetry in the registry, and a task its own
// MaxAttempts, through taskpool.RetryPolicy, not the consumer's defaults
// (here one attempt and a backoff of an hour, which would stall the test).
func TestConsumerFollowsRegistryRetry(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	fail := func(context.Context, taskpool.Task) error { return errors.New("boom") }
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("typed", fail, taskpool.WithRetry(3, taskpool.ConstantBackoff(10*time.Millisecond))))
	require.NoError(t, reg.HandleFunc("plain", fail))
	require.NoError(t, reg.HandleFunc("skip", func(context.Context, taskpool.Task) error {
		return taskpool.SkipRetry(errors.New("final"))
	}, taskpool.WithRetry(5, nil)))
	require.NoError(t, reg.HandleFunc("badbackoff", fail, taskpool.WithRetry(3, func(int) time.Duration { panic("bo") })))
	require.NoError(t, reg.HandleFunc("exitbackoff", fail, taskpool.WithRetry(3, func(int) time.Duration {
		runtime.Goexit()
		return 0
	})))
	log := newSettleLog()
	startConsumer(t, js, reg, natsbroker.WithSettleHook(log.hook),
		natsbroker.WithMaxAttempts(1), natsbroker.WithBackoff(taskpool.ConstantBackoff(time.Hour)))
	prod := newProducer(t, ctx, js)
	for _, task := range []taskpool.Task{
		{ID: "typed", Type: "typed"},
		{ID: "own", Type: "typed", MaxAttempts: 2},
		{ID: "plain", Type: "plain"},
		{ID: "skip", Type: "skip"},
		{ID: "badbackoff", Type: "badbackoff"},
		{ID: "exitbackoff", Type: "exitbackoff"},
	} {
		mustEnqueue(t, ctx, prod, task)
	}
	for range 6 {
		select {
		case <-log.fin:
		case <-ctx.Done():
			t.Fatal("tasks not settled")
		}
	}
	R, D := natsbroker.ActionRetry, natsbroker.ActionDeadLetter
	for id, want := range map[string][]natsbroker.Action{
		"typed": {R, R, D},
		"own":   {R, D},
		"plain": {D},
		"skip":  {D},
		// A Backoff that panics: not retried, as in process.
		"badbackoff": {D},
		// Nor one that calls runtime.Goexit: the delivery is settled all
		// the same, with the run's error.
		"exitbackoff": {D},
	} {
		got, _ := log.get(id)
		assert.Equal(t, want, got, id)
	}
	_, err := log.get("exitbackoff")
	assert.EqualError(t, err, "boom")
}

// TestUnknownTypes: a producer given the registry rejects an unknown type
// with ErrNoHandler; a consumer dead-letters one with ErrNoHandler once
// the grace has passed, not after its backoff ladder (an hour here).
func TestUnknownTypes(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := nopRegistry(t, "known")

	strict := newProducer(t, ctx, js, natsbroker.WithKnownTypes(reg))
	_, err := strict.Enqueue(ctx, taskpool.Task{Type: "nope"})
	assert.ErrorIs(t, err, taskpool.ErrNoHandler)
	_, err = strict.Enqueue(ctx, taskpool.Task{Type: "known"})
	assert.NoError(t, err)
	_, err = natsbroker.NewProducer(ctx, js, natsbroker.WithKnownTypes(nil))
	assert.ErrorIs(t, err, taskpool.ErrInvalidOption)
	_, err = natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithUnknownTypeGrace(time.Millisecond))
	assert.ErrorIs(t, err, taskpool.ErrInvalidOption)

	log := newSettleLog()
	const grace = 300 * time.Millisecond
	startConsumer(t, js, reg, natsbroker.WithSettleHook(log.hook), natsbroker.WithUnknownTypeGrace(grace),
		natsbroker.WithBackoff(taskpool.ConstantBackoff(time.Hour)))
	lax := newProducer(t, ctx, js)
	start := time.Now()
	mustEnqueue(t, ctx, lax, taskpool.Task{ID: "u1", Type: "nope"})
	for id := range log.fin {
		if id == "u1" {
			break
		}
	}
	elapsed := time.Since(start)
	acts, lastErr := log.get("u1")
	assert.ErrorIs(t, lastErr, taskpool.ErrNoHandler)
	assert.GreaterOrEqual(t, elapsed, grace)
	assert.Less(t, elapsed, 10*grace)
	require.GreaterOrEqual(t, len(acts), 2)
	assert.Equal(t, natsbroker.ActionDeadLetter, acts[len(acts)-1])

	insp := newInspector(t, ctx, js)
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	assert.Contains(t, dls[0].Error, "no handler")
}

func nop(context.Context, taskpool.Task) error { return nil }

// WithMaxAttempts and WithBackoff override the scheduler-wide
// taskpool.WithRetry given through WithSchedulerOptions, which is
// otherwise the consumer's default (the conformance suite checks that).
func TestConsumerRetryOverridesScheduler(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	reg := taskpool.NewRegistry()
	var runs atomic.Int32
	require.NoError(t, reg.HandleFunc("fail", func(ctx context.Context, t taskpool.Task) error {
		runs.Add(1)
		return errors.New("no")
	}))
	dead := make(chan taskpool.Outcome, 1)
	startConsumer(t, js, reg,
		natsbroker.WithSchedulerOptions(taskpool.WithRetry(5, taskpool.ConstantBackoff(time.Hour))),
		natsbroker.WithMaxAttempts(2), natsbroker.WithBackoff(taskpool.ConstantBackoff(10*time.Millisecond)),
		sendOnAction(natsbroker.ActionDeadLetter, dead))
	p := newProducer(t, ctxT(t), js)
	mustEnqueue(t, ctxT(t), p, taskpool.Task{Type: "fail"})
	assert.Equal(t, 2, recvT(t, dead, 20*time.Second, "the dead letter (else the scheduler's backoff of an hour was used)").Attempts)
	assert.EqualValues(t, 2, runs.Load())
}

// A delivery whose outcome could not be stored (here the results bucket
// refuses every record) is put back after the wait the normal retry would
// give it: its type's Backoff in the registry (taskpool.WithRetry), not
// the consumer-wide WithBackoff, whether the task succeeded or is
// dead-lettered. (The consumer-wide one was used.)
func TestOutcomeNotStoredWaitsTheTypesBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give error // the handler's
	}{
		{"succeeded", nil},
		{"dead-lettered", taskpool.SkipRetry(errors.New("final"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			js, ctx := startJetStream(t)
			typeWaits, consumerWaits := make(chan int, 8), make(chan int, 8)
			reg := taskpool.NewRegistry()
			require.NoError(t, reg.HandleFunc("typed", func(context.Context, taskpool.Task) error { return tt.give },
				taskpool.WithRetry(3, func(attempt int) time.Duration {
					typeWaits <- attempt
					return time.Hour
				})))
			told := make(chan natsbroker.Action, 8)
			startConsumer(t, js, reg, natsbroker.WithBackoff(func(attempt int) time.Duration {
				consumerWaits <- attempt
				return time.Hour
			}), natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) { told <- a }))
			p := newProducer(t, ctx, js)
			refuseResults(t, ctx, js)

			mustEnqueue(t, ctx, p, taskpool.Task{ID: "kept", Type: "typed"}, natsbroker.KeepResult())
			assert.Equal(t, natsbroker.ActionRetry, recvT(t, told, 10*time.Second, "the settlement"))
			assert.Equal(t, []int{1}, drainInts(typeWaits), "the type's backoff, for attempt 1")
			assert.Empty(t, drainInts(consumerWaits), "not the consumer-wide backoff")
		})
	}
}

// drainInts returns what ch holds now.
func drainInts(ch chan int) []int {
	var out []int
	for {
		select {
		case v := <-ch:
			out = append(out, v)
		default:
			return out
		}
	}
}
