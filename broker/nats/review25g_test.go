package natsbroker_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// TestReview25gNegativeAttemptsRefused: a task with a negative MaxAttempts
// or Attempt is refused with ErrInvalidTask by the producer (Enqueue,
// EnqueueBatch, the Client's Submit), as the in-process Submit refuses it
// ("one policy, two transports"), and nothing is stored. Before, Enqueue
// stored it and the consumer ran it with its default attempts (10).
func TestReview25gNegativeAttemptsRefused(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := nopRegistry(t, "x")
	s, err := taskpool.New(reg)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	defer func() { _ = s.Stop(context.Background()) }()
	p := newProducer(t, ctx, js, natsbroker.WithKnownTypes(reg))
	c := natsbroker.NewClient(p)
	for _, task := range []taskpool.Task{
		{Type: "x", MaxAttempts: -1},
		{Type: "x", Attempt: -1},
		{Type: "x", UniqueKey: "neg", MaxAttempts: -3},
	} {
		require.ErrorIs(t, s.Submit(ctx, task), taskpool.ErrInvalidTask, "in process %+v", task)
		assert.ErrorIs(t, c.Submit(ctx, task), taskpool.ErrInvalidTask, "Client.Submit %+v", task)
		_, err := p.Enqueue(ctx, task, natsbroker.Delay(time.Hour))
		assert.ErrorIs(t, err, taskpool.ErrInvalidTask, "Enqueue delayed %+v", task)
		_, err = p.EnqueueBatch(ctx, []taskpool.Task{task})
		var be *natsbroker.BatchError
		require.ErrorAs(t, err, &be)
		assert.ErrorIs(t, be.Errs[0], taskpool.ErrInvalidTask, "EnqueueBatch %+v", task)
	}
	in := newInspector(t, ctx, js)
	info, err := in.Queue(ctx)
	require.NoError(t, err)
	for _, pi := range info.Priorities {
		assert.Zero(t, pi.Pending, "nothing stored (%v)", pi.Priority)
	}
	assert.Zero(t, info.Scheduled, "nothing scheduled")
	// The unique key was not taken.
	_, err = p.Enqueue(ctx, taskpool.Task{Type: "x", UniqueKey: "neg"})
	assert.NoError(t, err)
}

// TestReview25gIDMustSurviveTheHeader: a task ID travels as the
// Nats-Msg-Id header, whose value the client and server rewrite (a line
// break becomes a space, leading and trailing spaces go). An ID that
// would not come back as sent is refused with ErrInvalidTask; before,
// Enqueue stored " lead", then took "lead", another task, for a duplicate
// of it (Receipt.Duplicate, nothing stored: the task never ran), and the
// same for "a\nb" then "a b".
func TestReview25gIDMustSurviveTheHeader(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	p := newProducer(t, ctx, js)
	for _, pair := range [][2]string{{"a\nb", "a b"}, {" lead", "lead"}, {"trail ", "trail"}, {"x\ty", "x y"}, {"c\r\n", "c"}} {
		_, err := p.Enqueue(ctx, taskpool.Task{ID: pair[0], Type: "x"})
		assert.ErrorIs(t, err, taskpool.ErrInvalidTask, "%q", pair[0])
		_, err = p.EnqueueBatch(ctx, []taskpool.Task{{ID: pair[0], Type: "x"}})
		var be *natsbroker.BatchError
		if assert.ErrorAs(t, err, &be, "%q", pair[0]) {
			assert.ErrorIs(t, be.Errs[0], taskpool.ErrInvalidTask, "%q", pair[0])
		}
		r, err := p.Enqueue(ctx, taskpool.Task{ID: pair[1], Type: "x"})
		require.NoError(t, err, "%q", pair[1])
		assert.False(t, r.Duplicate, "%q is a task of its own", pair[1])
	}
	// IDs with inner spaces and any printable text are fine.
	for _, id := range []string{"user 42/welcome", "héllo ✓", "a:b"} {
		r, err := p.Enqueue(ctx, taskpool.Task{ID: id, Type: "x"})
		require.NoError(t, err, "%q", id)
		assert.Equal(t, id, r.ID)
		assert.False(t, r.Duplicate, "%q", id)
	}
}

// TestReview25gConsumerBoundsAreItsOwnOptionErrors: WithWorkers above the
// core's MaxWorkers and a WithPrefetch too large for the local scheduler's
// queue are refused with natsbroker.ErrInvalidOption naming the option,
// as NewConsumer promises for bad options. Before, the core's
// taskpool.ErrInvalidOption came back from taskpool.New (not errors.Is
// natsbroker.ErrInvalidOption), and WithPrefetch(math.MaxInt) as
// "queue size = -9223372036854775804", an overflow naming another option.
func TestReview25gConsumerBoundsAreItsOwnOptionErrors(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := nopRegistry(t, "x")
	for name, o := range map[string]natsbroker.Option{
		"workers":   natsbroker.WithWorkers(taskpool.MaxWorkers + 1),
		"workers ":  natsbroker.WithWorkers(math.MaxInt),
		"prefetch":  natsbroker.WithPrefetch(math.MaxInt),
		"prefetch ": natsbroker.WithPrefetch(taskpool.MaxQueueSize),
	} {
		_, err := natsbroker.NewConsumer(ctx, js, reg, o)
		require.ErrorIs(t, err, natsbroker.ErrInvalidOption, name)
		assert.ErrorIs(t, err, taskpool.ErrInvalidOption, name)
		assert.ErrorContains(t, err, strings.TrimSpace(name), name)
	}
	// The largest values are accepted.
	_, err := natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithWorkers(taskpool.MaxWorkers))
	assert.NoError(t, err)
	_, err = natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithWorkers(1),
		natsbroker.WithPrefetch(taskpool.MaxQueueSize-taskpool.MaxWorkers-3))
	assert.NoError(t, err)
}

// TestReview25gPriorityWeightsBounded: weights whose sum overflows are
// refused with ErrInvalidOption. Before, WithPriorityWeights(MaxInt,
// MaxInt, 0) was accepted and its sum overflowed to -2 in every draw, so
// high was always polled first instead of one time in two; and
// (MaxInt, MaxInt, 2) was refused as if all were zero.
func TestReview25gPriorityWeightsBounded(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := nopRegistry(t, "x")
	for _, w := range [][3]int{{math.MaxInt, math.MaxInt, 0}, {math.MaxInt, math.MaxInt, 2}, {1_000_001, 1, 1}, {0, 0, 1_000_001}} {
		_, err := natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithPriorityWeights(w[0], w[1], w[2]))
		require.ErrorIs(t, err, natsbroker.ErrInvalidOption, "%v", w)
		assert.ErrorContains(t, err, "priority weights", "%v", w)
	}
	_, err := natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithPriorityWeights(1_000_000, 1_000_000, 1_000_000))
	assert.NoError(t, err)
}

// TestReview25gMetadataEdgeValues: metadata "comes back as it was sent"
// (MetadataHeaderPrefix): an empty value, non-ASCII text, inner runs of
// spaces, a colon, and keys that differ only in case each reach the
// handler unchanged. Held.
func TestReview25gMetadataEdgeValues(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	reg := taskpool.NewRegistry()
	got := make(chan map[string]string, 1)
	require.NoError(t, reg.HandleFunc("x", func(_ context.Context, t taskpool.Task) error { got <- t.Metadata; return nil }))
	startConsumer(t, js, reg)
	p := newProducer(t, ctx, js)
	md := map[string]string{"empty": "", "utf": "héllo wörld ✓", "Mixed-Case": "v", "mixed-case": "w", "in": "a  b", "colon": "a: b"}
	mustEnqueue(t, ctx, p, taskpool.Task{Type: "x", Metadata: md})
	select {
	case g := <-got:
		assert.Equal(t, md, g)
	case <-ctx.Done():
		t.Fatal("the task did not run")
	}
}
