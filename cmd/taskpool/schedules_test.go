package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

func TestSchedules(t *testing.T) {
	srv := startServer(t)
	js := connectJS(t, srv)
	ctx := ctxT(t)

	assert.Equal(t, "no schedules\n", cli(t, srv, "schedules").stdout)

	prod, err := natsbroker.NewProducer(ctx, js)
	require.NoError(t, err)
	require.NoError(t, prod.Schedule(ctx, "nightly", "@daily", taskpool.Task{Type: "report"}))
	require.NoError(t, prod.Schedule(ctx, "tick", "@every 1h", taskpool.Task{Type: "ping", Priority: taskpool.PriorityHigh}))
	_, err = prod.Enqueue(ctx, taskpool.Task{Type: "mail", ID: "later"}, natsbroker.Delay(time.Hour))
	require.NoError(t, err)

	var got []scheduleJSON
	cliJSON(t, srv, &got, "schedules")
	require.Len(t, got, 2, "delayed tasks only with --delayed")
	assert.Equal(t, "tick", got[0].ID, "soonest first")
	assert.Equal(t, "ping", got[0].Type)
	assert.Equal(t, "high", got[0].Priority)
	assert.Equal(t, "@every 1h", got[0].Spec)
	assert.True(t, got[0].Periodic)
	assert.Equal(t, "default", got[0].Queue)
	next, err := time.Parse(time.RFC3339Nano, got[0].NextRun)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(time.Hour), next, time.Minute)
	assert.Equal(t, "nightly", got[1].ID)
	assert.Equal(t, "@daily", got[1].Spec)

	cliJSON(t, srv, &got, "schedules", "--delayed")
	require.Len(t, got, 3)
	var delayed []string
	for _, s := range got {
		if !s.Periodic {
			delayed = append(delayed, s.ID)
		}
	}
	assert.Equal(t, []string{"later"}, delayed)

	r := cli(t, srv, "schedules")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^QUEUE\s+ID\s+TYPE\s+PRIORITY\s+SPEC\s+NEXT RUN$`, r.stdout)
	assert.Regexp(t, `(?m)^default\s+nightly\s+report\s+default\s+@daily\s+\S+T00:00:00Z$`, r.stdout)

	r = cli(t, srv, "schedules", "--queue", "nope")
	assert.Equal(t, exitNotFound, r.code, r.stderr)
	assert.Equal(t, exitUsage, cli(t, srv, "schedules", "extra").code)
}

// TestDashboardCommand serves the dashboard of a queue, reads its state and
// stops it as SIGINT would.
func TestDashboardCommand(t *testing.T) {
	srv := startServer(t)
	js := connectJS(t, srv)
	ctx := ctxT(t)
	prod, err := natsbroker.NewProducer(ctx, js)
	require.NoError(t, err)
	_, err = prod.Enqueue(ctx, taskpool.Task{Type: "mail", Priority: taskpool.PriorityLow})
	require.NoError(t, err)

	stop, cancel := context.WithCancel(context.Background())
	defer cancel()
	urls := make(chan string, 1)
	var out, errOut bytes.Buffer
	e := &env{stdout: &out, stderr: &errOut, serveUntil: stop, listening: func(u string) { urls <- u }}
	code := make(chan int, 1)
	go func() {
		code <- e.run([]string{"--server", srv.URL(), "dashboard", "--listen", "127.0.0.1:0", "--read-only"})
	}()
	var url string
	select {
	case url = <-urls:
	case c := <-code:
		t.Fatalf("exited %d: %s", c, errOut.String())
	case <-ctx.Done():
		t.Fatal("not listening")
	}

	resp, err := http.Get(url + "api/state")
	require.NoError(t, err)
	var st struct {
		Source   string `json:"source"`
		ReadOnly bool   `json:"read_only"`
		Queues   []struct {
			Priority string `json:"priority"`
			Depth    int    `json:"depth"`
		} `json:"queues"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	resp.Body.Close()
	assert.Equal(t, "NATS queue default", st.Source)
	assert.True(t, st.ReadOnly)
	require.Len(t, st.Queues, 3)
	assert.Equal(t, "low", st.Queues[2].Priority)
	assert.Equal(t, 1, st.Queues[2].Depth)

	resp, err = http.Post(url+"api/dead/purge", "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "read-only")

	cancel()
	select {
	case c := <-code:
		assert.Equal(t, exitOK, c, errOut.String())
	case <-ctx.Done():
		t.Fatal("did not stop")
	}
	assert.Contains(t, out.String(), "serving the dashboard of queue default on "+url)

	r := cli(t, srv, "dashboard", "--queue", "nope", "--listen", "127.0.0.1:0")
	assert.Equal(t, exitNotFound, r.code, r.stderr)
	r = cli(t, srv, "dashboard", "--listen", "not an address")
	assert.Equal(t, exitUsage, r.code, r.stderr)
}

// TestSlots lists the global concurrency slots a running task holds.
func TestSlots(t *testing.T) {
	srv := startServer(t)
	js := connectJS(t, srv)
	ctx := ctxT(t)
	assert.Equal(t, "no global slots held\n", cli(t, srv, "slots").stdout)

	running, release := make(chan struct{}), make(chan struct{})
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("api", func(context.Context, taskpool.Task) error {
		close(running)
		<-release
		return nil
	}))
	c, err := natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithGlobalLimit("api", natsbroker.Limit{Concurrency: 3}))
	require.NoError(t, err)
	require.NoError(t, c.Start())
	prod, err := natsbroker.NewProducer(ctx, js)
	require.NoError(t, err)
	_, err = prod.Enqueue(ctx, taskpool.Task{Type: "api", ID: "call-1"})
	require.NoError(t, err)
	<-running

	var got []slotJSON
	cliJSON(t, srv, &got, "slots")
	require.Len(t, got, 1)
	assert.Equal(t, "default", got[0].Queue)
	assert.Equal(t, "api", got[0].Type)
	assert.Equal(t, "call-1", got[0].TaskID)
	assert.Equal(t, natsbroker.ConnectionName(), got[0].Holder)
	r := cli(t, srv, "slots")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^QUEUE\s+TYPE\s+SLOT\s+TASK\s+HOLDER\s+RENEWED$`, r.stdout)
	assert.Regexp(t, `(?m)^default\s+api\s+[012]\s+call-1\s+`, r.stdout)

	close(release)
	require.NoError(t, c.Stop(ctx))
	assert.Equal(t, "no global slots held\n", cli(t, srv, "slots").stdout)
}
