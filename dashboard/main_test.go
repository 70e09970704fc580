package dashboard_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/dashboard"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitFor = 10 * time.Second

var errBoom = errors.New("boom")

// fixture is a scheduler with a dead letter, a delayed task, a periodic
// schedule and a running task, mounted under /tasks/ on a 127.0.0.1
// server.
type fixture struct {
	s       *taskpool.Scheduler
	srv     *httptest.Server
	release chan struct{} // closes to let the blocking task finish
	ran     chan string   // IDs of "flaky" tasks that succeeded
	url     string        // the dashboard's page
}

func newFixture(t *testing.T, opts ...dashboard.Option) *fixture {
	t.Helper()
	f := &fixture{release: make(chan struct{}), ran: make(chan string, 16)}
	var mu sync.Mutex
	failed := map[string]bool{}
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("flaky", func(_ context.Context, task taskpool.Task) error {
		mu.Lock()
		defer mu.Unlock()
		if !failed[task.ID] {
			failed[task.ID] = true
			return taskpool.SkipRetry(errBoom) // dead-lettered the first time
		}
		f.ran <- task.ID
		return nil
	}))
	require.NoError(t, reg.HandleFunc("block", func(ctx context.Context, _ taskpool.Task) error {
		select {
		case <-f.release:
		case <-ctx.Done():
		}
		return nil
	}))
	require.NoError(t, reg.HandleFunc("report", func(context.Context, taskpool.Task) error { return nil }))
	rec := &dashboard.Recorder{}
	s, err := taskpool.New(reg, taskpool.WithWorkers(2), taskpool.WithDeadLetters(10, nil),
		taskpool.WithMiddleware(rec.Middleware()))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	f.s = s
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() { close(f.release) })
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		assert.NoError(t, s.Stop(ctx))
	})

	ctx := context.Background()
	fut, err := s.SubmitFuture(ctx, taskpool.Task{Type: "flaky", ID: "poison-1", Params: map[string]any{"to": "a@example.com"}})
	require.NoError(t, err)
	_, err = fut.Wait(ctx)
	require.ErrorIs(t, err, errBoom)
	require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "block", ID: "busy-1", Priority: taskpool.PriorityHigh}))
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{Type: "report", ID: "later-1"}, time.Hour))
	require.NoError(t, s.SchedulePeriodic("hourly-report", taskpool.Every(time.Hour), taskpool.Task{Type: "report"}))
	require.Eventually(t, func() bool { return len(s.Inspect().Running) == 1 }, waitFor, time.Millisecond)

	h, err := dashboard.New(dashboard.NewSchedulerSource(s, rec), append([]dashboard.Option{
		dashboard.WithRefresh(200 * time.Millisecond), dashboard.WithHistory(time.Minute, 50*time.Millisecond),
	}, opts...)...)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/tasks/", http.StripPrefix("/tasks", h))
	f.srv = httptest.NewServer(mux) // binds 127.0.0.1
	t.Cleanup(f.srv.Close)
	f.url = f.srv.URL + "/tasks/"
	return f
}

// apiState is the part of api/state the tests read.
type apiState struct {
	Source   string `json:"source"`
	ReadOnly bool   `json:"read_only"`
	Queues   []struct {
		Priority string `json:"priority"`
		Depth    int    `json:"depth"`
		InFlight int    `json:"in_flight"`
	} `json:"queues"`
	Running   []dashboard.Task       `json:"running"`
	Delayed   []dashboard.Task       `json:"delayed"`
	Periodic  []dashboard.Periodic   `json:"periodic"`
	Dead      []dashboard.DeadLetter `json:"dead"`
	DeadTotal int                    `json:"dead_total"`
	History   []struct {
		Throughput float64  `json:"throughput"`
		LatencyMS  *float64 `json:"latency_ms"`
	} `json:"history"`
}

func (f *fixture) state(t *testing.T) apiState {
	t.Helper()
	resp, err := http.Get(f.url + "api/state")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var st apiState
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	return st
}

// post sends an action the way the page does, with the token unless it
// is empty, and returns the status code and body.
func (f *fixture) post(t *testing.T, action, body, token string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.url+"api/dead/"+action, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set(dashboard.CSRFHeader, token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// token reads the CSRF token from the page, as the page's script does.
func (f *fixture) token(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(f.url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(b), `<meta name="csrf-token" content="`)
	require.True(t, ok, "page has the token meta tag")
	tok, _, _ := strings.Cut(rest, `"`)
	return tok
}
