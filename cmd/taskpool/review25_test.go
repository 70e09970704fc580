package main

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
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

// A --listen value that is not an address is a usage error (exit 2),
// found before connecting like every other usage error: with no server
// reachable it is still reported as such.
func TestReview25DashboardBadListenNoServer(t *testing.T) {
	for _, addr := range []string{"not an address", "127.0.0.1", "127.0.0.1:notaport", "127.0.0.1:99999"} {
		r := cli(t, nil, "--server", "nats://127.0.0.1:1", "dashboard", "--listen", addr)
		assert.Equal(t, exitUsage, r.code, "%q: %s", addr, r.stderr)
		assert.Contains(t, r.stderr, "--listen", addr)
		assert.NotContains(t, r.stderr, "connect", addr)
		assert.Empty(t, r.stdout)
	}
}

// README: "`--` ends them" (the flags). A "--" given as a flag's value is
// that value, not the end of the flags: the flags after it are still
// flags.
func TestReview25FlagValueDoubleDash(t *testing.T) {
	srv := startServer(t)
	var rc receiptJSON
	cliJSON(t, srv, &rc, "enqueue", "--create", "--id", "--", "email", "{}", "--priority", "high")
	assert.Equal(t, "--", rc.ID)
	assert.Equal(t, "high", rc.Priority)
	cliJSON(t, srv, &rc, "enqueue", "email", "--unique", "--", "{}", "--priority", "low", "--id", "u-1")
	assert.Equal(t, "u-1", rc.ID)
	assert.Equal(t, "low", rc.Priority)
	// A "--" after a flag's value, or after a bool flag, still ends the
	// flags.
	cliJSON(t, srv, &rc, "enqueue", "--id", "x", "--", "count", "-1")
	assert.Equal(t, "x", rc.ID)
	assert.Equal(t, "count", rc.Type)
	cliJSON(t, srv, &rc, "enqueue", "--id", "--queue", "--", "count", "-2")
	assert.Equal(t, "--queue", rc.ID)
	assert.Equal(t, "count", rc.Type)
	r := cli(t, srv, "enqueue", "--create", "--", "email", "{}", "--priority", "high")
	assert.Equal(t, exitUsage, r.code, r.stderr)
	assert.Contains(t, r.stderr, "got 4 arguments")
}

// --queue's help and the README: "queues, stats, schedules and slots:
// default every queue; the others: default \"default\"". On a server whose
// only queue is "other", those four report it without --queue, and the
// others, which use "default", find no queue (exit 3).
func TestReview25QueueDefaultPerCommand(t *testing.T) {
	srv := startServer(t)
	js := connectJS(t, srv)
	ctx := ctxT(t)
	prod, err := natsbroker.NewProducer(ctx, js, natsbroker.WithQueue("other"))
	require.NoError(t, err)
	require.NoError(t, prod.Schedule(ctx, "s-1", "@every 1h", taskpool.Task{Type: "ping"}))

	var sch []scheduleJSON
	cliJSON(t, srv, &sch, "schedules")
	require.Len(t, sch, 1)
	assert.Equal(t, "other", sch[0].Queue)
	var qs []queueJSON
	cliJSON(t, srv, &qs, "queues")
	require.Len(t, qs, 1)
	assert.Equal(t, "other", qs[0].Queue)
	var st statsJSON
	cliJSON(t, srv, &st, "stats")
	require.Len(t, st.Queues, 1)
	assert.Equal(t, "other", st.Queues[0].Queue)
	r := cli(t, srv, "slots")
	assert.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "no global slots held\n", r.stdout)
	assert.Equal(t, exitNotFound, cli(t, srv, "slots", "--queue", "default").code)

	for _, args := range [][]string{
		{"dead", "list"}, {"dead", "purge", "--yes"}, {"enqueue", "email", "{}"},
		{"dashboard", "--listen", "127.0.0.1:0"},
	} {
		r := cli(t, srv, args...)
		assert.Equal(t, exitNotFound, r.code, "%v: %s", args, r.stderr)
		assert.Contains(t, r.stderr, `queue "default"`, args)
	}
	r = cli(t, nil, "--help")
	assert.Contains(t, r.stdout, "queues, stats, schedules and slots: default every queue")
}
