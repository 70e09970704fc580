package natsbroker_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// Opening a queue with default options (an inspector, a producer, a
// consumer) never rewrites the settings it was created with.
func TestOpenKeepsQueueSettings(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("keep")
	_, err := natsbroker.NewConsumer(ctx, js, taskpool.NewRegistry(), q,
		natsbroker.WithDuplicateWindow(5*time.Minute), natsbroker.WithUniqueTTL(time.Hour),
		natsbroker.WithAckWait(7*time.Second))
	require.NoError(t, err)

	_, err = natsbroker.NewInspector(ctx, js, q)
	require.NoError(t, err)
	_, err = natsbroker.NewProducer(ctx, js, q)
	require.NoError(t, err)
	c, err := natsbroker.NewConsumer(ctx, js, taskpool.NewRegistry(), q)
	require.NoError(t, err)
	assert.Equal(t, 7*time.Second, c.Health().AckWait, "leases kept within the consumers' ack wait")

	for _, name := range []string{"TASKPOOL_keep", "TASKPOOLDEAD_keep"} {
		st, err := js.Stream(ctx, name)
		require.NoError(t, err)
		assert.Equal(t, 5*time.Minute, st.CachedInfo().Config.Duplicates, name)
	}
	kv, err := js.KeyValue(ctx, "taskpool_unique_keep")
	require.NoError(t, err)
	kst, err := kv.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, time.Hour, kst.TTL())
	cons, err := js.Consumer(ctx, "TASKPOOL_keep", "taskpool_default")
	require.NoError(t, err)
	assert.Equal(t, 7*time.Second, cons.CachedInfo().Config.AckWait)
}

// Asking for settings that differ from the queue's is an error wrapping
// ErrQueueMismatch, and changes nothing; WithReconfigure applies them.
func TestOpenMismatchIsReported(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("mismatch")
	newProducer(t, ctx, js, q)
	_, err := natsbroker.NewConsumer(ctx, js, taskpool.NewRegistry(), q)
	require.NoError(t, err)

	_, err = natsbroker.NewProducer(ctx, js, q, natsbroker.WithDuplicateWindow(5*time.Minute))
	require.ErrorIs(t, err, natsbroker.ErrQueueMismatch)
	assert.Contains(t, err.Error(), "duplicate window")
	_, err = natsbroker.NewConsumer(ctx, js, taskpool.NewRegistry(), q, natsbroker.WithAckWait(3*time.Second))
	require.ErrorIs(t, err, natsbroker.ErrQueueMismatch)
	assert.Contains(t, err.Error(), "ack wait")
	st, err := js.Stream(ctx, "TASKPOOL_mismatch")
	require.NoError(t, err)
	assert.Equal(t, natsbroker.DefaultDuplicateWindow, st.CachedInfo().Config.Duplicates, "unchanged")

	_, err = natsbroker.NewConsumer(ctx, js, taskpool.NewRegistry(), q, natsbroker.WithReconfigure(),
		natsbroker.WithDuplicateWindow(5*time.Minute), natsbroker.WithAckWait(3*time.Second))
	require.NoError(t, err)
	st, err = js.Stream(ctx, "TASKPOOL_mismatch")
	require.NoError(t, err)
	assert.Equal(t, 5*time.Minute, st.CachedInfo().Config.Duplicates)
	cons, err := js.Consumer(ctx, "TASKPOOL_mismatch", "taskpool_high")
	require.NoError(t, err)
	assert.Equal(t, 3*time.Second, cons.CachedInfo().Config.AckWait)
	// Now the same settings open without error.
	_, err = natsbroker.NewProducer(ctx, js, q, natsbroker.WithDuplicateWindow(5*time.Minute))
	require.NoError(t, err)
}

// The incident of issue 12: a queue created with three replicas went back
// to one as soon as a process opened it with default options.
func TestClusterReplicasKept(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	t.Parallel()
	cl := startCluster(t)
	_, js1 := connect(t, cl.url(0))
	_, js2 := connect(t, cl.url(1))
	_, js3 := connect(t, cl.url(2))
	ctx := ctxT(t)
	q := natsbroker.WithQueue("r3")
	newProducer(t, ctx, js1, q, natsbroker.WithReplicas(3))

	_, err := natsbroker.NewInspector(ctx, js2, q)
	require.NoError(t, err)
	_, err = natsbroker.NewConsumer(ctx, js3, taskpool.NewRegistry(), q)
	require.NoError(t, err)
	_, err = natsbroker.NewProducer(ctx, js2, q)
	require.NoError(t, err)

	for _, name := range []string{"TASKPOOL_r3", "TASKPOOLDEAD_r3", "KV_taskpool_unique_r3"} {
		st, err := js1.Stream(ctx, name)
		require.NoError(t, err)
		assert.Equal(t, 3, st.CachedInfo().Config.Replicas, name)
	}
	// Asking for one replica explicitly is reported, not applied.
	_, err = natsbroker.NewProducer(ctx, js2, q, natsbroker.WithReplicas(1))
	require.ErrorIs(t, err, natsbroker.ErrQueueMismatch)
	assert.Contains(t, err.Error(), "replicas 3, requested 1")
}

// Several processes starting consumers at once on a new replicated queue:
// every NewConsumer returns, none waits until its context ends.
func TestClusterConcurrentConsumerStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	t.Parallel()
	cl := startCluster(t)
	var jss []jetstream.JetStream
	for i := range 6 {
		_, js := connect(t, cl.url(i%3))
		jss = append(jss, js)
	}
	reg := taskpool.NewRegistry()
	const rounds = 8
	for r := range rounds {
		// Each round on a cluster with every peer online, as at the
		// start: on a loaded machine a peer can miss its heartbeats
		// between rounds, and an R3 stream then has no placement.
		cl.waitHealthy()
		queue := natsbroker.WithQueue(fmt.Sprint("start", r))
		errs := make(chan error, len(jss))
		start := time.Now()
		for _, js := range jss {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				_, err := natsbroker.NewConsumer(ctx, js, reg, queue, natsbroker.WithReplicas(3))
				errs <- err
			}()
		}
		for range jss {
			require.NoError(t, <-errs, "round %d", r)
		}
		t.Logf("round %d: %d consumers started in %v", r, len(jss), time.Since(start))
	}
}

// Durable consumers created by an earlier version (no delivery cap) are
// not changed by opening them: a Warn says so, and WithReconfigure
// updates them.
func TestOldConsumerKeptUntilReconfigured(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("old")
	newProducer(t, ctx, js, q)
	for _, p := range []string{"high", "default", "low"} {
		_, err := js.CreateConsumer(ctx, "TASKPOOL_old", jetstream.ConsumerConfig{
			Durable: "taskpool_" + p, Description: "taskpool workers, " + p + " priority",
			FilterSubject: "taskpool.old.task." + p, AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: natsbroker.DefaultAckWait, MaxDeliver: -1, MaxAckPending: -1,
		})
		require.NoError(t, err)
	}
	logs := newLogSignal("other settings than this version")
	_, err := natsbroker.NewConsumer(ctx, js, taskpool.NewRegistry(), q, natsbroker.WithLogger(slog.New(logs)))
	require.NoError(t, err)
	waitDone(t, logs.ch, time.Second, "a Warn about the old consumer")
	cons, err := js.Consumer(ctx, "TASKPOOL_old", "taskpool_low")
	require.NoError(t, err)
	assert.Equal(t, -1, cons.CachedInfo().Config.MaxDeliver, "not changed by opening")

	_, err = natsbroker.NewConsumer(ctx, js, taskpool.NewRegistry(), q, natsbroker.WithReconfigure())
	require.NoError(t, err)
	cons, err = js.Consumer(ctx, "TASKPOOL_old", "taskpool_low")
	require.NoError(t, err)
	assert.Equal(t, natsbroker.MaxDeliveries, cons.CachedInfo().Config.MaxDeliver)
}
