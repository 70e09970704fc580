package devserver_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskpool/taskpool/broker/nats/devserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStartRestartSameStore(t *testing.T) {
	dir := t.TempDir()
	s, err := devserver.Start(devserver.Options{StoreDir: dir})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(s.URL(), "nats://127.0.0.1:"), s.URL())
	assert.Equal(t, dir, s.StoreDir())
	port := s.Port()
	require.Positive(t, port)

	nc, err := nats.Connect(s.URL())
	require.NoError(t, err)
	require.NoError(t, nc.Publish("x", []byte("y")))
	nc.Close()
	s.Shutdown()

	s2, err := devserver.Start(devserver.Options{Port: port, StoreDir: dir})
	require.NoError(t, err)
	defer s2.Shutdown()
	assert.Equal(t, port, s2.Port())
}

func TestTempStoreRemoved(t *testing.T) {
	s, err := devserver.Start(devserver.Options{})
	require.NoError(t, err)
	dir := s.StoreDir()
	require.DirExists(t, dir)
	s.Shutdown()
	assert.NoDirExists(t, dir)
}
