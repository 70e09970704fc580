package natsbroker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// WithDeadLetterLimits bounds the dead-letter stream: its limits are set
// at creation, the oldest dead letters go when it is full, another
// process's other limits are a mismatch, and WithReconfigure applies them.
func TestDeadLetterLimits(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("dlqlim")
	newInspector(t, ctx, js, q, natsbroker.WithDeadLetterLimits(time.Hour, 4096))
	st, err := js.Stream(ctx, "TASKPOOLDEAD_dlqlim")
	require.NoError(t, err)
	cfg := st.CachedInfo().Config
	assert.Equal(t, time.Hour, cfg.MaxAge)
	assert.Equal(t, int64(4096), cfg.MaxBytes)

	// Over the byte limit, the oldest dead letters are removed.
	body := []byte(strings.Repeat("x", 512))
	for i := range 40 {
		_, err := js.Publish(ctx, "taskpool.dlqlim.dead", body)
		require.NoError(t, err, "dead letter %d", i)
	}
	info, err := st.Info(ctx)
	require.NoError(t, err)
	assert.LessOrEqual(t, info.State.Bytes, uint64(4096))
	assert.Greater(t, info.State.FirstSeq, uint64(1), "the oldest were removed")
	assert.Equal(t, uint64(40), info.State.LastSeq)

	// The task stream has no such limits.
	ts, err := js.Stream(ctx, "TASKPOOL_dlqlim")
	require.NoError(t, err)
	assert.Zero(t, ts.CachedInfo().Config.MaxAge)

	// Opening with other limits is a mismatch; without the option, no check.
	_, err = natsbroker.NewProducer(ctx, js, q, natsbroker.WithDeadLetterLimits(24*time.Hour, 0))
	require.ErrorIs(t, err, natsbroker.ErrQueueMismatch)
	assert.ErrorContains(t, err, "dead-letter max age")
	_, err = natsbroker.NewProducer(ctx, js, q)
	require.NoError(t, err)

	// WithReconfigure applies them.
	_, err = natsbroker.NewInspector(ctx, js, q, natsbroker.WithDeadLetterLimits(24*time.Hour, 0), natsbroker.WithReconfigure())
	require.NoError(t, err)
	info, err = st.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, 24*time.Hour, info.Config.MaxAge)
	assert.Equal(t, int64(-1), info.Config.MaxBytes, "0: no byte limit")

	for _, bad := range []natsbroker.Option{
		natsbroker.WithDeadLetterLimits(-time.Second, 0),
		natsbroker.WithDeadLetterLimits(time.Millisecond, 0),
		natsbroker.WithDeadLetterLimits(0, -1),
	} {
		_, err := natsbroker.NewInspector(ctx, js, q, bad)
		assert.ErrorIs(t, err, natsbroker.ErrInvalidOption, fmt.Sprint(bad))
	}
}

// WithPlacement puts every stream and bucket of the queue on the servers
// with the tags; another placement on an existing queue is a mismatch; a
// placement no server can satisfy fails at creation.
func TestPlacementTags(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	_, js := connect(t, c.url(0))
	ctx := ctxT(t)
	q := natsbroker.WithQueue("placed")
	newProducer(t, ctx, js, q, natsbroker.WithPlacement("", "az:b"))
	for _, name := range []string{"TASKPOOL_placed", "TASKPOOLDEAD_placed", "KV_taskpool_unique_placed", "KV_taskpool_results_placed"} {
		st, err := js.Stream(ctx, name)
		require.NoError(t, err, name)
		info := st.CachedInfo()
		require.NotNil(t, info.Config.Placement, name)
		assert.Equal(t, []string{"az:b"}, info.Config.Placement.Tags, name)
		require.NotNil(t, info.Cluster, name)
		assert.Equal(t, "n2", info.Cluster.Leader, "%s is on the server tagged az:b", name)
	}
	_, err := natsbroker.NewInspector(ctx, js, q, natsbroker.WithPlacement("", "az:c"))
	require.ErrorIs(t, err, natsbroker.ErrQueueMismatch)
	assert.ErrorContains(t, err, "placement")
	_, err = natsbroker.NewInspector(ctx, js, q)
	require.NoError(t, err, "without the option, no check")

	_, err = natsbroker.NewProducer(ctx, js, natsbroker.WithQueue("nowhere"), natsbroker.WithPlacement("", "az:mars"))
	assert.Error(t, err, "no server has the tag")
	_, err = natsbroker.NewProducer(ctx, js, q, natsbroker.WithPlacement(""))
	assert.ErrorIs(t, err, natsbroker.ErrInvalidOption)
}
