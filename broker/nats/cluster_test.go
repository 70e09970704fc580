package natsbroker_test

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"
)

// testCluster is a 3-node JetStream cluster in the test process, on
// 127.0.0.1, each node with its own store in a test temp dir.
type testCluster struct {
	t     testing.TB
	mu    sync.Mutex
	nodes []*server.Server
	opts  []*server.Options
}

// freePorts returns n ports that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	ls := make([]net.Listener, n)
	for i := range ls {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ls[i] = l
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// startCluster starts a 3-node cluster and waits until it has a JetStream
// meta leader. It is shut down when the test ends.
func startCluster(t testing.TB) *testCluster {
	t.Helper()
	const size = 3
	ports := freePorts(t, size)
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	c := &testCluster{t: t}
	for i := range size {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster: server.ClusterOpts{
				Name: "taskpool-test",
				Host: "127.0.0.1",
				Port: ports[i],
			},
			Routes: routes,
		}
		s, err := server.NewServer(o)
		require.NoError(t, err)
		s.Start()
		c.nodes = append(c.nodes, s)
		c.opts = append(c.opts, o)
	}
	t.Cleanup(c.shutdown)
	for _, s := range c.nodes {
		require.True(t, s.ReadyForConnections(10*time.Second), "node not ready")
	}
	require.Eventually(t, func() bool {
		for _, s := range c.nodes {
			if s.JetStreamIsLeader() {
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "no JetStream meta leader")
	// Every node knows the leader before clients use them.
	require.Eventually(t, func() bool {
		for _, s := range c.nodes {
			if !s.JetStreamIsCurrent() {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "JetStream not current on every node")
	return c
}

// url returns the client URL of node i.
func (c *testCluster) url(i int) string { return c.nodes[i].ClientURL() }

// urls returns every node's client URL, comma-separated.
func (c *testCluster) urls() string {
	var u []string
	for _, s := range c.nodes {
		u = append(u, s.ClientURL())
	}
	return strings.Join(u, ",")
}

// streamLeader returns the index of the node leading stream, or -1.
func (c *testCluster) streamLeader(stream string) int {
	for i, s := range c.nodes {
		if s.Running() && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// kill shuts node i down.
func (c *testCluster) kill(i int) {
	c.nodes[i].Shutdown()
	c.nodes[i].WaitForShutdown()
}

func (c *testCluster) shutdown() {
	for _, s := range c.nodes {
		s.Shutdown()
	}
	for _, s := range c.nodes {
		s.WaitForShutdown()
	}
}
