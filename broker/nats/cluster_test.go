package natsbroker_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	natsbroker "github.com/taskpool/taskpool/broker/nats"
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
			Tags:       []string{fmt.Sprintf("az:%c", 'a'+i)}, // for placement tests
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
	c.waitHealthy()
	return c
}

// waitHealthy waits until a meta leader sees every peer online with its
// stats, so that R3 streams can be placed at once, and every node knows
// the leader.
func (c *testCluster) waitHealthy() {
	t, size := c.t, len(c.nodes)
	t.Helper()
	require.Eventually(t, func() bool {
		for _, s := range c.nodes {
			if s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == size {
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "no JetStream meta leader with every peer")
	// Every node knows the leader before clients use them.
	require.Eventually(t, func() bool {
		for _, s := range c.nodes {
			if !s.JetStreamIsCurrent() {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "JetStream not current on every node")
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

// Node mode: TestMain runs runNode instead of the tests when nodeEnv is
// set, so that the test binary doubles as a cluster node that a test can
// SIGKILL, as a demanding operator would.
const nodeEnv = "TASKPOOL_NATS_TEST_NODE"

// nodeSpec is a node's configuration, passed in nodeEnv.
type nodeSpec struct {
	Name        string   `json:"name"`
	Port        int      `json:"port"`
	ClusterPort int      `json:"cluster_port"`
	Routes      []string `json:"routes"`
	StoreDir    string   `json:"store_dir"`
}

func runNode(spec string) int {
	var ns nodeSpec
	if err := json.Unmarshal([]byte(spec), &ns); err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		return 2
	}
	var routes []*url.URL
	for _, r := range ns.Routes {
		u, err := url.Parse(r)
		if err != nil {
			fmt.Fprintln(os.Stderr, "node:", err)
			return 2
		}
		routes = append(routes, u)
	}
	s, err := server.NewServer(&server.Options{
		ServerName: ns.Name,
		Host:       "127.0.0.1",
		Port:       ns.Port,
		JetStream:  true,
		StoreDir:   ns.StoreDir,
		NoLog:      true,
		NoSigs:     true,
		Cluster:    server.ClusterOpts{Name: "taskpool-test", Host: "127.0.0.1", Port: ns.ClusterPort},
		Routes:     routes,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		return 2
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		fmt.Fprintln(os.Stderr, "node: not ready")
		return 2
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	s.Shutdown()
	s.WaitForShutdown()
	return 0
}

// procCluster is a 3-node cluster of child processes.
type procCluster struct {
	names []string
	urls  []string
	procs []*exec.Cmd
	done  []chan struct{}
}

// startProcCluster starts a 3-node cluster, each node a child process with
// its store in a test temp dir; the nodes are killed when the test ends.
func startProcCluster(t testing.TB) *procCluster {
	t.Helper()
	const size = 3
	ports := freePorts(t, 2*size)
	var routes []string
	for i := range size {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[size+i]))
	}
	c := &procCluster{}
	for i := range size {
		spec, err := json.Marshal(nodeSpec{
			Name: fmt.Sprintf("p%d", i+1), Port: ports[i], ClusterPort: ports[size+i],
			Routes: routes, StoreDir: t.TempDir(),
		})
		require.NoError(t, err)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), nodeEnv+"="+string(spec))
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		done := make(chan struct{})
		ready := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if sc.Text() == "ready" {
					close(ready)
				}
			}
			_ = cmd.Wait()
			close(done)
		}()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-done
		})
		select {
		case <-ready:
		case <-done:
			t.Fatal("node exited before it was ready")
		case <-time.After(20 * time.Second):
			t.Fatal("node not ready")
		}
		c.names = append(c.names, fmt.Sprintf("p%d", i+1))
		c.urls = append(c.urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
		c.procs = append(c.procs, cmd)
		c.done = append(c.done, done)
	}
	return c
}

// dial connects to every node, trying node first first.
func (c *procCluster) dial(t testing.TB, first int) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	urls := []string{c.urls[first]}
	for i, u := range c.urls {
		if i != first {
			urls = append(urls, u)
		}
	}
	nc, js, err := natsbroker.Connect(strings.Join(urls, ","), nats.DontRandomize(), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc, js
}

// sigkill kills node i with SIGKILL and waits until it has exited.
func (c *procCluster) sigkill(t testing.TB, i int) {
	t.Helper()
	require.NoError(t, c.procs[i].Process.Signal(syscall.SIGKILL))
	<-c.done[i]
}

// index returns the index of the node named name, or -1.
func (c *procCluster) index(name string) int {
	for i, n := range c.names {
		if n == name {
			return i
		}
	}
	return -1
}
