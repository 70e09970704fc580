package natssource_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
	"github.com/taskpool/taskpool/broker/nats/devserver"
	"github.com/taskpool/taskpool/dashboard"
	"github.com/taskpool/taskpool/dashboard/natssource"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The dashboard over a NATS queue shows its depths, schedules and dead
// letters, and requeues a dead letter so that it runs.
func TestDashboardOverNATS(t *testing.T) {
	srv, err := devserver.Start(devserver.Options{StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, js, err := natsbroker.Connect(srv.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	dead := make(chan string, 4)
	ran := make(chan string, 4)
	failing := make(chan struct{})
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("poison", func(_ context.Context, tk taskpool.Task) error {
		select {
		case <-failing:
			ran <- tk.ID
			return nil
		default:
			return taskpool.SkipRetry(errors.New("bad input"))
		}
	}))
	c, err := natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithWorkers(2), natsbroker.WithPollWait(200*time.Millisecond),
		natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
			if a == natsbroker.ActionDeadLetter {
				dead <- out.Task.ID
			}
		}))
	require.NoError(t, err)
	require.NoError(t, c.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, c.Stop(ctx))
	})

	prod, err := natsbroker.NewProducer(ctx, js)
	require.NoError(t, err)
	_, err = prod.Enqueue(ctx, taskpool.Task{Type: "poison", ID: "p-1", Params: map[string]any{"n": 1}})
	require.NoError(t, err)
	select {
	case id := <-dead:
		require.Equal(t, "p-1", id)
	case <-ctx.Done():
		t.Fatal("not dead-lettered")
	}
	require.NoError(t, prod.Schedule(ctx, "nightly", "@daily", taskpool.Task{Type: "poison"}))
	_, err = prod.Enqueue(ctx, taskpool.Task{Type: "poison", ID: "later"}, natsbroker.Delay(time.Hour))
	require.NoError(t, err)

	in, err := natsbroker.NewInspector(ctx, js)
	require.NoError(t, err)
	h, err := dashboard.New(natssource.New(in, natsbroker.DefaultQueue))
	require.NoError(t, err)
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)

	resp, err := http.Get(hs.URL + "/api/state")
	require.NoError(t, err)
	var st struct {
		Source   string                 `json:"source"`
		Queues   []dashboard.Queue      `json:"queues"`
		Delayed  []dashboard.Task       `json:"delayed"`
		Periodic []dashboard.Periodic   `json:"periodic"`
		Dead     []dashboard.DeadLetter `json:"dead"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	resp.Body.Close()
	assert.Equal(t, "NATS queue default", st.Source)
	require.Len(t, st.Queues, 3)
	require.Len(t, st.Periodic, 1)
	assert.Equal(t, "nightly", st.Periodic[0].ID)
	assert.Equal(t, "@daily", st.Periodic[0].Spec)
	assert.False(t, st.Periodic[0].NextRun.IsZero())
	require.Len(t, st.Delayed, 1)
	assert.Equal(t, "later", st.Delayed[0].ID)
	require.Len(t, st.Dead, 1)
	d := st.Dead[0]
	assert.Equal(t, "p-1", d.TaskID)
	assert.Equal(t, "poison", d.Type)
	assert.Contains(t, d.Error, "bad input")
	assert.Equal(t, 1, d.Attempts)
	assert.Contains(t, d.Payload, `"n":1`)

	page, err := http.Get(hs.URL + "/")
	require.NoError(t, err)
	b, err := io.ReadAll(page.Body)
	page.Body.Close()
	require.NoError(t, err)
	_, rest, _ := strings.Cut(string(b), `<meta name="csrf-token" content="`)
	token, _, _ := strings.Cut(rest, `"`)

	post := func(action, body string) int {
		req, err := http.NewRequest(http.MethodPost, hs.URL+"/api/dead/"+action, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set(dashboard.CSRFHeader, token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusNotFound, post("requeue", `{"id":"999"}`))
	assert.Equal(t, http.StatusNotFound, post("delete", `{"id":"p-1"}`), "IDs are sequences")
	close(failing)
	require.Equal(t, http.StatusOK, post("requeue", `{"id":"`+d.ID+`"}`))
	select {
	case id := <-ran:
		assert.Equal(t, "p-1", id, "the requeued task ran")
	case <-ctx.Done():
		t.Fatal("the requeued task did not run")
	}
	qi, err := in.Queue(ctx)
	require.NoError(t, err)
	assert.Zero(t, qi.DeadLetters)
	assert.Equal(t, http.StatusOK, post("purge", ``))
	require.NoError(t, prod.Cancel(ctx, "nightly"))
}

// A dead letter's payload longer than the page shows (16 KiB) is cut at a
// character boundary: a multi-byte character across the limit is left
// out whole, not split into bytes that the JSON state shows as U+FFFD.
func TestPayloadClippedAtRuneBoundary(t *testing.T) {
	srv, err := devserver.Start(devserver.Options{StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, js, err := natsbroker.Connect(srv.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	in, err := natsbroker.NewInspector(ctx, js)
	require.NoError(t, err)
	// A dead letter as the inspector reads it, whatever its payload.
	const limit = 16 << 10
	head := strings.Repeat("a", limit-1)
	_, err = js.Publish(ctx, "taskpool.default.dead", []byte(head+"é tail"))
	require.NoError(t, err)

	snap, err := natssource.New(in, natsbroker.DefaultQueue).Snapshot(ctx)
	require.NoError(t, err)
	require.Len(t, snap.Dead, 1)
	got := snap.Dead[0].Payload
	assert.True(t, utf8.ValidString(got), "not valid UTF-8")
	assert.Equal(t, len(head+"…"), len(got))
	assert.True(t, got == head+"…", "ends with %q", got[len(got)-12:])
}

// A delayed task enqueued with an Attempt above 1 shows it, as the
// in-process source shows a delayed task's Attempt.
func TestDelayedTaskShowsItsAttempt(t *testing.T) {
	srv, err := devserver.Start(devserver.Options{StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, js, err := natsbroker.Connect(srv.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	prod, err := natsbroker.NewProducer(ctx, js)
	require.NoError(t, err)
	_, err = prod.Enqueue(ctx, taskpool.Task{Type: "mail", ID: "again", Attempt: 3}, natsbroker.Delay(time.Hour))
	require.NoError(t, err)
	in, err := natsbroker.NewInspector(ctx, js)
	require.NoError(t, err)

	snap, err := natssource.New(in, natsbroker.DefaultQueue).Snapshot(ctx)
	require.NoError(t, err)
	require.Len(t, snap.Delayed, 1)
	assert.Equal(t, "again", snap.Delayed[0].ID)
	assert.Equal(t, 3, snap.Delayed[0].Attempt)
}
