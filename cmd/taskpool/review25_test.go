package main

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// README: exit codes 1 error (a failed operation), 2 usage error. An
// address already in use is a failed operation, not a usage error.
func TestReview25DashboardListenInUse(t *testing.T) {
	srv := startServer(t)
	js := connectJS(t, srv)
	_, err := natsbroker.NewProducer(ctxT(t), js)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()

	r := cli(t, srv, "dashboard", "--listen", ln.Addr().String())
	assert.Equal(t, exitError, r.code, r.stderr)
	assert.Contains(t, r.stderr, "--listen")
	assert.Contains(t, r.stderr, ln.Addr().String())
	assert.Empty(t, r.stdout)
}
