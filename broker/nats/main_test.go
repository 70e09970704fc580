package natsbroker_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
	"github.com/taskpool/taskpool/broker/nats/devserver"
)

func TestMain(m *testing.M) {
	// The multi-process test re-executes this binary as a worker process.
	if os.Getenv(workerEnv) != "" {
		os.Exit(runWorker())
	}
	// The cluster failover test re-executes it as a cluster node.
	if spec := os.Getenv(nodeEnv); spec != "" {
		os.Exit(runNode(spec))
	}
	goleak.VerifyTestMain(m)
}

// startServer starts an embedded server on 127.0.0.1 with its store in a
// test temp dir; it is shut down when the test ends.
func startServer(t testing.TB) *devserver.Server {
	t.Helper()
	return startServerAt(t, 0, t.TempDir())
}

// startRestartable starts an embedded server on 127.0.0.1 with its store
// in a test temp dir, and returns it with restart, which starts a server
// again on the same port and store (once the test has shut the first one
// down). Each server is shut down when the test ends.
func startRestartable(t testing.TB) (srv *devserver.Server, restart func()) {
	t.Helper()
	dir := t.TempDir()
	srv = startServerAt(t, 0, dir)
	port := srv.Port()
	return srv, func() {
		t.Helper()
		startServerAt(t, port, dir)
	}
}

// startServerAt starts an embedded server on 127.0.0.1 at port (0: any
// free one) with its store in dir; it is shut down when the test ends.
func startServerAt(t testing.TB, port int, dir string) *devserver.Server {
	t.Helper()
	s, err := devserver.Start(devserver.Options{Port: port, StoreDir: dir})
	require.NoError(t, err)
	t.Cleanup(s.Shutdown)
	return s
}

func connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js, err := natsbroker.Connect(url, nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc, js
}

// startJetStream starts an embedded server on 127.0.0.1 (startServer),
// connects to it (connect) and returns the connection's JetStream and a
// 30-second context (ctxT). When the test ends the context is cancelled,
// the connection closed and the server shut down.
func startJetStream(t testing.TB) (jetstream.JetStream, context.Context) {
	t.Helper()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	return js, ctxT(t)
}

// newProducer makes a producer on js with the options, failing the test
// if NewProducer fails. A producer holds nothing to clean up.
func newProducer(t testing.TB, ctx context.Context, js jetstream.JetStream, opts ...natsbroker.Option) *natsbroker.Producer {
	t.Helper()
	p, err := natsbroker.NewProducer(ctx, js, opts...)
	require.NoError(t, err)
	return p
}

// newInspector makes an inspector on js with the options, failing the
// test if NewInspector fails. An inspector holds nothing to clean up.
func newInspector(t testing.TB, ctx context.Context, js jetstream.JetStream, opts ...natsbroker.Option) *natsbroker.Inspector {
	t.Helper()
	insp, err := natsbroker.NewInspector(ctx, js, opts...)
	require.NoError(t, err)
	return insp
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startConsumer creates and starts a consumer, stopped when the test ends.
func startConsumer(t testing.TB, js jetstream.JetStream, h taskpool.Handler, opts ...natsbroker.Option) *natsbroker.Consumer {
	t.Helper()
	c, err := natsbroker.NewConsumer(ctxT(t), js, h, opts...)
	require.NoError(t, err)
	require.NoError(t, c.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Stop(ctx)
	})
	return c
}

// mustEnqueue enqueues task with p and the options, failing the test if
// Enqueue fails, and returns the receipt.
func mustEnqueue(t testing.TB, ctx context.Context, p *natsbroker.Producer, task taskpool.Task, opts ...natsbroker.EnqueueOption) natsbroker.Receipt {
	t.Helper()
	r, err := p.Enqueue(ctx, task, opts...)
	require.NoError(t, err)
	return r
}

// idRegistry returns a registry with one handler, for tasks of type typ
// (registered with opts), that sends each task's ID on the returned
// channel, buffered for n, and succeeds. It holds nothing to clean up.
func idRegistry(t testing.TB, typ string, n int, opts ...taskpool.HandleOption) (*taskpool.Registry, chan string) {
	t.Helper()
	reg := taskpool.NewRegistry()
	ran := make(chan string, n)
	require.NoError(t, reg.HandleFunc(typ, func(_ context.Context, task taskpool.Task) error {
		ran <- task.ID
		return nil
	}, opts...))
	return reg, ran
}

// nopRegistry returns a registry with one handler, for tasks of type
// typ, that succeeds at once. It holds nothing to clean up.
func nopRegistry(t testing.TB, typ string) *taskpool.Registry {
	t.Helper()
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc(typ, nop))
	return reg
}

// refuseResults makes the default queue's results bucket refuse every
// record, by making its stream's largest message 1 byte. There is
// nothing to clean up: the change lives on the test's own server.
func refuseResults(t testing.TB, ctx context.Context, js jetstream.JetStream) {
	t.Helper()
	s, err := js.Stream(ctx, "KV_taskpool_results_default")
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = 1
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
}

// sendOnAction is a settle hook, as an option, that sends on ch the
// outcome of each settlement by action a.
func sendOnAction(a natsbroker.Action, ch chan<- taskpool.Outcome) natsbroker.Option {
	return natsbroker.WithSettleHook(func(out taskpool.Outcome, got natsbroker.Action) {
		if got == a {
			ch <- out
		}
	})
}

// ledger records completions per task ID.
type ledger struct {
	mu   sync.Mutex
	runs map[string]int
	done chan struct{}
	want int
}

func newLedger(want int) *ledger {
	return &ledger{runs: make(map[string]int), done: make(chan struct{}), want: want}
}

// add records a completion and closes done once want distinct IDs ran.
func (l *ledger) add(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs[id]++
	if l.runs[id] == 1 && len(l.runs) == l.want {
		close(l.done)
	}
}

func (l *ledger) distinct() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.runs)
}

// duplicates is the number of runs beyond the first, over all IDs.
func (l *ledger) duplicates() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.runs {
		n += c - 1
	}
	return n
}

func waitDone(t testing.TB, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// recvT receives from ch or fails the test after d.
func recvT[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting for %s", d, what)
		panic("unreachable")
	}
}

// settledOutcome is what the settle hook was told.
type settledOutcome struct {
	out taskpool.Outcome
	a   natsbroker.Action
}

// tellSettled is a settle hook, as an option, that sends what it is told
// on told.
func tellSettled(told chan<- settledOutcome) natsbroker.Option {
	return natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
		told <- settledOutcome{out, a}
	})
}

// nextSettled receives what the settle hook of tellSettled was told next,
// failing t after 10s (what names the delivery awaited).
func nextSettled(t *testing.T, told <-chan settledOutcome, what string) settledOutcome {
	t.Helper()
	select {
	case s := <-told:
		return s
	case <-time.After(10 * time.Second):
		t.Fatalf("%s not settled: the fetch loop has ended", what)
		return settledOutcome{}
	}
}

// stopsClean stops the consumer and checks that nothing is held.
func stopsClean(t *testing.T, cons *natsbroker.Consumer) {
	t.Helper()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, cons.Stop(sctx))
	assert.Equal(t, 0, cons.Health().Held)
}
