package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
	"github.com/taskpool/taskpool/broker/nats/devserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startServer starts an embedded server, shut down when the test ends.
func startServer(t *testing.T) *devserver.Server {
	t.Helper()
	s, err := devserver.Start(devserver.Options{StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(s.Shutdown)
	return s
}

type result struct {
	code           int
	stdout, stderr string
}

// cli runs the command in process against srv.
func cli(t *testing.T, srv *devserver.Server, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	if srv != nil {
		args = append([]string{"--server", srv.URL(), "--timeout", "20s"}, args...)
	}
	code := run(args, &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// cliJSON runs the command with --json, requires exit code 0 and decodes
// its output into v.
func cliJSON(t *testing.T, srv *devserver.Server, v any, args ...string) {
	t.Helper()
	r := cli(t, srv, append([]string{"--json"}, args...)...)
	require.Equalf(t, exitOK, r.code, "stderr: %s", r.stderr)
	require.NoErrorf(t, json.Unmarshal([]byte(r.stdout), v), "output: %s", r.stdout)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func connectJS(t *testing.T, srv *devserver.Server) jetstream.JetStream {
	t.Helper()
	nc, js, err := natsbroker.Connect(srv.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return js
}

func TestUsageAndExitCodes(t *testing.T) {
	r := cli(t, nil, "--help")
	assert.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stdout, "Commands:")
	assert.Contains(t, r.stdout, "dead purge --yes")
	assert.Contains(t, r.stdout, "-tls-cert")

	assert.Equal(t, exitOK, cli(t, nil, "help").code)

	r = cli(t, nil, "enqueue", "--help")
	assert.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stdout, "-priority")

	for _, c := range []struct {
		name string
		args []string
		msg  string
	}{
		{"no command", nil, "Usage:"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"queues", "--frob"}, "flag provided but not defined"},
		{"stray argument", []string{"queues", "extra"}, `unexpected argument "extra"`},
		{"dead without subcommand", []string{"dead"}, "want list, show"},
		{"unknown dead subcommand", []string{"dead", "bury"}, "unknown dead-letter command"},
		{"purge unconfirmed", []string{"dead", "purge"}, "--yes"},
		{"show without ID", []string{"dead", "show"}, "want one dead letter ID"},
		{"enqueue one argument", []string{"enqueue", "email"}, "want TYPE and JSON"},
		{"enqueue bad JSON", []string{"enqueue", "email", "{nope"}, "not valid JSON"},
		{"enqueue bad priority", []string{"enqueue", "email", "{}", "--priority", "urgent"}, "want high, default or low"},
		{"TLS cert without key", []string{"queues", "--tls-cert", "c.pem"}, "go together"},
		{"zero timeout", []string{"queues", "--timeout", "0s"}, "--timeout must be positive"},
		{"bad queue name", []string{"queues", "--queue", "a b"}, "invalid queue name"},
		{"bad queue name after the command", []string{"dead", "list", "--queue", "a.b"}, "invalid queue name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// No server: usage errors are found before connecting.
			r := cli(t, nil, append([]string{"--server", "nats://127.0.0.1:1"}, c.args...)...)
			assert.Equal(t, exitUsage, r.code, r.stderr)
			assert.Contains(t, r.stderr, c.msg)
			assert.Empty(t, r.stdout)
		})
	}

	r = cli(t, nil, "--server", "nats://127.0.0.1:1", "queues")
	assert.Equal(t, exitError, r.code, "no server")
	assert.Contains(t, r.stderr, "connect")
}

// A value the broker refuses once connected (a task ID) is a usage error,
// exit 2, as one the command refuses before connecting.
func TestValuesRefusedByTheBrokerAreUsageErrors(t *testing.T) {
	srv := startServer(t)
	for _, args := range [][]string{
		{"enqueue", "--create", "email", "{}", "--id", " x"},
		{"enqueue", "--create", "email", "{}", "--id", "x\x9a"},
	} {
		r := cli(t, srv, args...)
		assert.Equal(t, exitUsage, r.code, "%q: %s", args, r.stderr)
		assert.NotEmpty(t, r.stderr)
		assert.Empty(t, r.stdout)
	}
}

// TestQueueNotFound checks that commands on a queue that does not exist
// exit 3 and do not create it.
func TestQueueNotFound(t *testing.T) {
	srv := startServer(t)
	for _, args := range [][]string{
		{"queues", "--queue", "nope"},
		{"stats", "--queue", "nope"},
		{"dead", "list", "--queue", "nope"},
		{"dead", "--queue", "nope", "list"},
		{"dead", "purge", "--yes", "--queue", "nope"},
		{"enqueue", "email", "{}", "--queue", "nope"},
	} {
		r := cli(t, srv, args...)
		assert.Equal(t, exitNotFound, r.code, "%v: %s", args, r.stderr)
		assert.Contains(t, r.stderr, `queue "nope"`)
	}
	var qs []queueJSON
	cliJSON(t, srv, &qs, "queues")
	assert.Empty(t, qs, "no queue was created")

	// --timeout after the command bounds it too.
	r := cli(t, srv, "enqueue", "--create", "email", "{}", "--timeout", "1ns")
	assert.Equal(t, exitError, r.code, r.stderr)
	assert.Contains(t, r.stderr, "deadline exceeded")
	assert.Equal(t, "no queues\n", cli(t, srv, "queues").stdout)
}

func TestEnqueueAndQueues(t *testing.T) {
	srv := startServer(t)

	var rc receiptJSON
	cliJSON(t, srv, &rc, "enqueue", "--create", "email", `{"to":"a@example.com"}`)
	assert.Equal(t, "default", rc.Queue)
	assert.Equal(t, "email", rc.Type)
	assert.NotEmpty(t, rc.ID)
	assert.False(t, rc.Duplicate)

	// Flags after the arguments, a chosen ID, then the same ID again.
	r := cli(t, srv, "enqueue", "email", `{"to":"b@example.com"}`, "--priority", "high", "--id", "mail-2")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "enqueued email task mail-2 on queue default (high priority")
	cliJSON(t, srv, &rc, "enqueue", "email", `{"to":"b@example.com"}`, "--priority", "high", "--id", "mail-2")
	assert.True(t, rc.Duplicate)
	assert.Equal(t, "mail-2", rc.ID)

	cliJSON(t, srv, &rc, "enqueue", "report", `[1,2]`, "--priority", "low")
	assert.Equal(t, "low", rc.Priority)
	cliJSON(t, srv, &rc, "enqueue", "report", `{}`, "--delay", "1h")
	assert.NotEmpty(t, rc.RunAt)
	// "--" ends the flags: a JSON value that starts with '-'.
	cliJSON(t, srv, &rc, "enqueue", "--priority", "low", "--", "count", "-1")
	assert.Equal(t, "count", rc.Type)

	// A second queue, to list both.
	cliJSON(t, srv, &rc, "--queue", "other", "enqueue", "--create", "email", `{}`)
	assert.Equal(t, "other", rc.Queue)

	var qs []queueJSON
	cliJSON(t, srv, &qs, "queues")
	require.Len(t, qs, 2)
	assert.Equal(t, "default", qs[0].Queue)
	assert.Equal(t, "other", qs[1].Queue)
	pending := map[string]uint64{}
	for _, p := range qs[0].Priorities {
		pending[p.Priority] = p.Pending
		assert.Zero(t, p.InFlight)
	}
	assert.Equal(t, map[string]uint64{"high": 1, "default": 1, "low": 2}, pending)
	assert.Equal(t, uint64(1), qs[0].Scheduled, "the delayed task")
	assert.Zero(t, qs[0].DeadLetters)

	cliJSON(t, srv, &qs, "queues", "--queue", "other")
	require.Len(t, qs, 1)
	assert.Equal(t, uint64(1), qs[0].Priorities[1].Pending)

	r = cli(t, srv, "queues")
	require.Equal(t, exitOK, r.code, r.stderr)
	lines := strings.Split(r.stdout, "\n")
	assert.Regexp(t, `^QUEUE\s+PRIORITY\s+PENDING\s+IN FLIGHT\s+REDELIVERED\s+WAITING FETCHES$`, lines[0])
	assert.Regexp(t, `^default\s+high\s+1\s+0\s+0\s+0$`, lines[1])
	assert.Regexp(t, `^default\s+low\s+2\s+0\s+0\s+0$`, lines[3])
	assert.Contains(t, r.stdout, "DEAD LETTERS")
}

// TestQueueSettingsKept checks that inspecting a queue made with settings
// other than the defaults does not change them: the broker's inspector
// provisions the queue it opens with the options it is given.
func TestQueueSettingsKept(t *testing.T) {
	srv := startServer(t)
	js := connectJS(t, srv)
	ctx := ctxT(t)
	_, err := natsbroker.NewProducer(ctx, js, natsbroker.WithQueue("mem"), natsbroker.WithMemoryStorage(),
		natsbroker.WithDuplicateWindow(5*time.Minute), natsbroker.WithUniqueTTL(time.Hour))
	require.NoError(t, err)
	before, err := js.Stream(ctx, "TASKPOOL_mem")
	require.NoError(t, err)

	var qs []queueJSON
	cliJSON(t, srv, &qs, "queues", "--queue", "mem")
	var rc receiptJSON
	cliJSON(t, srv, &rc, "enqueue", "--queue", "mem", "email", "{}")
	var st statsJSON
	cliJSON(t, srv, &st, "stats", "--queue", "mem")

	after, err := js.Stream(ctx, "TASKPOOL_mem")
	require.NoError(t, err)
	assert.Equal(t, jetstream.MemoryStorage, after.CachedInfo().Config.Storage)
	assert.Equal(t, 5*time.Minute, after.CachedInfo().Config.Duplicates)
	assert.Equal(t, before.CachedInfo().Created, after.CachedInfo().Created)
	kv, err := js.KeyValue(ctx, "taskpool_unique_mem")
	require.NoError(t, err)
	status, err := kv.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, time.Hour, status.TTL())
}

// settled collects the consumer's settle hook calls.
type settled struct {
	ch chan settlement
}

type settlement struct {
	id     string
	action natsbroker.Action
}

func (s *settled) hook(out taskpool.Outcome, a natsbroker.Action) {
	s.ch <- settlement{out.Task.ID, a}
}

// wait returns the action of the next n settlements, by task ID.
func (s *settled) wait(t *testing.T, n int) map[string]natsbroker.Action {
	t.Helper()
	got := make(map[string]natsbroker.Action)
	timeout := time.After(20 * time.Second)
	for len(got) < n {
		select {
		case st := <-s.ch:
			got[st.id] = st.action
		case <-timeout:
			t.Fatalf("timed out with %d of %d settlements", len(got), n)
		}
	}
	return got
}

// startConsumer runs a consumer of the default queue with h, stopped when
// the test ends.
func startConsumer(t *testing.T, js jetstream.JetStream, h taskpool.Handler, st *settled) {
	t.Helper()
	c, err := natsbroker.NewConsumer(ctxT(t), js, h, natsbroker.WithWorkers(2),
		natsbroker.WithSettleHook(st.hook), natsbroker.WithPollWait(200*time.Millisecond))
	require.NoError(t, err)
	require.NoError(t, c.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, c.Stop(ctx))
	})
}

// TestDeadLetterFlow enqueues tasks that fail with SkipRetry, so that a
// consumer dead-letters them, then lists, shows, requeues (the task then
// succeeds), deletes and purges them with the CLI.
func TestDeadLetterFlow(t *testing.T) {
	srv := startServer(t)
	js := connectJS(t, srv)
	var fixed atomic.Bool
	st := &settled{ch: make(chan settlement, 16)}
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("poison", func(_ context.Context, tk taskpool.Task) error {
		if fixed.Load() {
			return nil
		}
		return taskpool.SkipRetry(errors.New("bad input: no recipient"))
	}))
	startConsumer(t, js, reg, st)

	var rc receiptJSON
	ids := []string{"p-1", "p-2", "p-3"}
	for i, id := range ids {
		cliJSON(t, srv, &rc, "enqueue", "poison", `{"n":`+strconv.Itoa(i)+`}`, "--id", id)
	}
	for id, a := range st.wait(t, 3) {
		assert.Equal(t, natsbroker.ActionDeadLetter, a, id)
	}

	var dead []deadJSON
	cliJSON(t, srv, &dead, "dead", "list")
	require.Len(t, dead, 3)
	bySeq := map[string]uint64{}
	for _, d := range dead {
		bySeq[d.ID] = d.Sequence
		assert.Equal(t, "poison", d.Type)
		assert.Equal(t, 1, d.Attempts)
		assert.Contains(t, d.Error, "bad input: no recipient")
		assert.NotEmpty(t, d.FailedAt)
		assert.Equal(t, "default", d.Priority)
	}
	require.Len(t, bySeq, 3)

	r := cli(t, srv, "dead", "list")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^SEQ\s+TASK ID\s+TYPE\s+PRIORITY\s+ATTEMPTS\s+FAILED AT\s+ERROR$`, r.stdout)
	assert.Regexp(t, `(?m)^\d+\s+p-2\s+poison\s+default\s+1\s+\S+\s+bad input: no recipient$`, r.stdout)

	// Paging: the one after the oldest. Several workers run the tasks, so
	// the dead letters' order need not be the enqueue order.
	bySeqOrder := slices.SortedFunc(maps.Keys(bySeq), func(a, b string) int { return cmp.Compare(bySeq[a], bySeq[b]) })
	cliJSON(t, srv, &dead, "dead", "list", "--limit", "1", "--after", strconv.FormatUint(bySeq[bySeqOrder[0]], 10))
	require.Len(t, dead, 1)
	assert.Equal(t, bySeqOrder[1], dead[0].ID)

	// Show, by sequence and by task ID.
	r = cli(t, srv, "dead", "show", strconv.FormatUint(bySeq["p-2"], 10))
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Task ID:")
	assert.Contains(t, r.stdout, "p-2")
	assert.Contains(t, r.stdout, "Taskpool-Error: ")
	assert.Contains(t, r.stdout, `"n": 1`)
	var d deadJSON
	cliJSON(t, srv, &d, "dead", "show", "p-3")
	assert.Equal(t, bySeq["p-3"], d.Sequence)
	assert.JSONEq(t, `{"n":2}`, string(d.Params))
	assert.NotEmpty(t, d.Headers["Taskpool-Error"])

	assert.Equal(t, exitNotFound, cli(t, srv, "dead", "show", "999").code)
	assert.Equal(t, exitNotFound, cli(t, srv, "dead", "show", "no-such-task").code)

	// Requeue p-1, now that the handler is fixed: it runs and succeeds.
	fixed.Store(true)
	r = cli(t, srv, "dead", "requeue", "p-1")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "requeued dead letter "+strconv.FormatUint(bySeq["p-1"], 10)+" as task p-1")
	assert.Equal(t, map[string]natsbroker.Action{"p-1": natsbroker.ActionAck}, st.wait(t, 1))

	// Delete p-2 by sequence, with one ID that does not exist: p-2 is
	// deleted, the exit code says something was not found.
	var results []map[string]any
	r = cli(t, srv, "dead", "delete", strconv.FormatUint(bySeq["p-2"], 10), "12345", "--json")
	assert.Equal(t, exitNotFound, r.code, r.stderr)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &results))
	require.Len(t, results, 2)
	assert.Equal(t, true, results[0]["done"])
	assert.Equal(t, false, results[1]["done"])

	cliJSON(t, srv, &dead, "dead", "list")
	require.Len(t, dead, 1)
	assert.Equal(t, "p-3", dead[0].ID)

	var qs []queueJSON
	cliJSON(t, srv, &qs, "queues")
	require.Len(t, qs, 1)
	assert.Equal(t, uint64(1), qs[0].DeadLetters)

	var purged struct {
		Queue  string `json:"queue"`
		Purged uint64 `json:"purged"`
	}
	cliJSON(t, srv, &purged, "dead", "purge", "--yes")
	assert.Equal(t, uint64(1), purged.Purged)
	r = cli(t, srv, "dead", "list")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "no dead letters in queue default\n", r.stdout)

	var stats statsJSON
	cliJSON(t, srv, &stats, "stats")
	require.Len(t, stats.Queues, 1)
	s := stats.Queues[0]
	assert.Equal(t, "default", s.Queue)
	assert.GreaterOrEqual(t, s.Published, uint64(4), "3 tasks and 1 requeue")
	assert.Equal(t, uint64(4), s.Delivered)
	assert.Zero(t, s.Pending)
	assert.Zero(t, s.InFlight)
	assert.Zero(t, s.DeadLetters)
	assert.Positive(t, stats.Account.Streams)
	assert.Positive(t, stats.Account.Consumers)

	r = cli(t, srv, "stats")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^QUEUE\s+PUBLISHED\s+DELIVERED`, r.stdout)
	assert.Contains(t, r.stdout, "JetStream account:")
}

// TestDeadRequeueAll requeues every dead letter at once with a progress
// bar, while the handler still fails for one of them: that one is
// dead-lettered again, after the list the command took, and is not
// requeued a second time.
func TestDeadRequeueAll(t *testing.T) {
	srv := startServer(t)
	js := connectJS(t, srv)
	var fixed atomic.Bool
	st := &settled{ch: make(chan settlement, 16)}
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("poison", func(_ context.Context, tk taskpool.Task) error {
		if fixed.Load() && tk.ID != "still-bad" {
			return nil
		}
		return taskpool.SkipRetry(errors.New("bad input"))
	}))
	startConsumer(t, js, reg, st)
	ids := []string{"a", "b", "c", "still-bad"}
	var rc receiptJSON
	for _, id := range ids {
		cliJSON(t, srv, &rc, "enqueue", "poison", `{}`, "--id", id)
	}
	st.wait(t, len(ids))

	assert.Equal(t, exitUsage, cli(t, srv, "dead", "requeue", "a", "--all").code, "IDs and --all")
	assert.Equal(t, exitUsage, cli(t, srv, "dead", "delete").code, "neither")
	assert.Equal(t, exitUsage, cli(t, srv, "dead", "requeue", "--all", "--progress", "sometimes").code)

	fixed.Store(true)
	r := cli(t, srv, "dead", "requeue", "--all", "--progress", "always")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, len(ids), strings.Count(r.stdout, "requeued dead letter"))
	assert.True(t, strings.HasSuffix(r.stderr, "requeue 4/4 [====================]\n"), "progress: %q", r.stderr)
	got := st.wait(t, len(ids))
	for _, id := range ids[:3] {
		assert.Equal(t, natsbroker.ActionAck, got[id], id)
	}
	assert.Equal(t, natsbroker.ActionDeadLetter, got["still-bad"])

	// Without a terminal, auto draws nothing.
	r = cli(t, srv, "dead", "delete", "--all")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Empty(t, r.stderr)
	assert.Equal(t, 1, strings.Count(r.stdout, "deleted dead letter"))
	var dead []deadJSON
	cliJSON(t, srv, &dead, "dead", "list")
	assert.Empty(t, dead)
}
