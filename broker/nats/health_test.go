package natsbroker_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// Health reports liveness and readiness across the consumer's life: not
// live before Start, ready once consuming, live but not ready while the
// server is down, ready again after it is back, neither after Stop.
func TestConsumerHealth(t *testing.T) {
	t.Parallel()
	srv, restart := startRestartable(t)
	_, js := connect(t, srv.URL())
	ctx := ctxT(t)
	c, err := natsbroker.NewConsumer(ctx, js, taskpool.NewRegistry(),
		natsbroker.WithAckWait(time.Second), natsbroker.WithPollWait(50*time.Millisecond))
	require.NoError(t, err)
	h := c.Health()
	assert.False(t, h.Live(), "before Start")
	assert.False(t, h.Ready(), "before Start")
	assert.True(t, h.Connected)
	assert.Equal(t, time.Second, h.AckWait)

	require.NoError(t, c.Start())
	require.Eventually(t, func() bool { return c.Health().Ready() }, 5*time.Second, 5*time.Millisecond, "ready after Start")
	// The lease loop keeps beating: still live after several ack waits'
	// halves.
	beats := time.NewTimer(1500 * time.Millisecond)
	<-beats.C
	require.True(t, c.Health().LeaseLoop, "lease loop alive")

	srv.Shutdown()
	require.Eventually(t, func() bool { h := c.Health(); return !h.Ready() && !h.Connected }, 5*time.Second, 5*time.Millisecond, "not ready while the server is down")
	assert.True(t, c.Health().Live(), "live while the server is down: it will resume")

	restart()
	require.Eventually(t, func() bool { return c.Health().Ready() }, 10*time.Second, 10*time.Millisecond, "ready again after the server is back")

	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, c.Stop(sctx))
	h = c.Health()
	assert.False(t, h.Live(), "after Stop")
	assert.False(t, h.Ready(), "after Stop")
	assert.False(t, h.Consuming)
	assert.False(t, h.LeaseLoop)
}
