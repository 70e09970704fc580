package dashboard_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/dashboard"
)

// The JSON state holds what Inspect holds: depths by priority, the
// running, delayed and periodic tasks and the dead letters with their
// error, attempts and payload.
func TestStateMatchesInspect(t *testing.T) {
	f := newFixture(t)
	st := f.state(t)
	in := f.s.Inspect()

	assert.Equal(t, "in-process scheduler", st.Source)
	assert.False(t, st.ReadOnly)
	require.Len(t, st.Queues, 3)
	for i, p := range []taskpool.Priority{taskpool.PriorityHigh, taskpool.PriorityDefault, taskpool.PriorityLow} {
		assert.Equal(t, p.String(), st.Queues[i].Priority)
		assert.Equal(t, in.Queued[i], st.Queues[i].Depth)
	}
	assert.Equal(t, 1, st.Queues[0].InFlight, "the high-priority task runs")

	require.Len(t, st.Running, len(in.Running))
	assert.Equal(t, "busy-1", st.Running[0].ID)
	assert.Equal(t, "block", st.Running[0].Type)
	assert.Equal(t, "high", st.Running[0].Priority)

	require.Len(t, st.Delayed, len(in.Delayed))
	for i, d := range in.Delayed {
		assert.Equal(t, d.ID, st.Delayed[i].ID)
		assert.Equal(t, d.Reason, st.Delayed[i].Reason)
		assert.True(t, d.NextRun.Equal(st.Delayed[i].NextRun), "next run %v, want %v", st.Delayed[i].NextRun, d.NextRun)
	}
	require.Len(t, st.Periodic, len(in.Periodic))
	assert.Equal(t, in.Periodic[0].ID, st.Periodic[0].ID)
	assert.True(t, in.Periodic[0].NextRun.Equal(st.Periodic[0].NextRun))

	require.Len(t, st.Dead, len(in.Dead))
	assert.Equal(t, len(in.Dead), st.DeadTotal)
	d := st.Dead[0]
	assert.Equal(t, "poison-1", d.ID)
	assert.Equal(t, "flaky", d.Type)
	assert.Equal(t, in.Dead[0].Err.Error(), d.Error)
	assert.Equal(t, in.Dead[0].Attempts, d.Attempts)
	assert.JSONEq(t, `{"to":"a@example.com"}`, d.Payload)
}

// The charts' history grows as the page polls: throughput and, with the
// Recorder's middleware, latency.
func TestHistory(t *testing.T) {
	f := newFixture(t)
	f.state(t) // the baseline
	require.NoError(t, f.s.Submit(t.Context(), taskpool.Task{Type: "report"}))
	// The run is timed (latency) a little before its outcome is counted
	// (throughput): the two may land in different points.
	deadline := time.Now().Add(waitFor)
	var throughput, latency bool
	for !throughput || !latency {
		st := f.state(t)
		for _, p := range st.History {
			throughput = throughput || p.Throughput > 0
			latency = latency || p.LatencyMS != nil
		}
		require.True(t, time.Now().Before(deadline), "no throughput or no latency: %+v", st.History)
	}
}

func TestRequeueDeleteAndPurge(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t)
	require.NotEmpty(t, tok)

	code, body := f.post(t, "requeue", `{"id":"poison-1"}`, tok)
	require.Equal(t, http.StatusOK, code, body)
	select {
	case id := <-f.ran:
		assert.Equal(t, "poison-1", id, "the requeued task ran")
	case <-time.After(waitFor):
		t.Fatal("the requeued task did not run")
	}
	assert.Empty(t, f.s.DeadLetters())

	code, body = f.post(t, "requeue", `{"id":"poison-1"}`, tok)
	assert.Equal(t, http.StatusNotFound, code, body)
	code, body = f.post(t, "delete", `{"id":"nope"}`, tok)
	assert.Equal(t, http.StatusNotFound, code, body)
	code, body = f.post(t, "delete", `{}`, tok)
	assert.Equal(t, http.StatusBadRequest, code, body)

	for _, id := range []string{"p2", "p3", "p4"} {
		fut, err := f.s.SubmitFuture(t.Context(), taskpool.Task{Type: "flaky", ID: id})
		require.NoError(t, err)
		_, err = fut.Wait(t.Context())
		require.ErrorIs(t, err, errBoom)
	}
	code, body = f.post(t, "delete", `{"id":"p3"}`, tok)
	require.Equal(t, http.StatusOK, code, body)
	assert.Len(t, f.s.DeadLetters(), 2)
	code, body = f.post(t, "purge", ``, tok)
	require.Equal(t, http.StatusOK, code, body)
	assert.JSONEq(t, `{"purged":2}`, body)
	assert.Empty(t, f.s.DeadLetters())
}

// Actions without the token, with a wrong one, or from another origin are
// refused and change nothing.
func TestCSRF(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t)
	tests := []struct {
		name  string
		token string
		hdr   []string
	}{
		{"no token", "", nil},
		{"wrong token", "x" + tok, nil},
		{"cross-site fetch", tok, []string{"Sec-Fetch-Site", "cross-site"}},
		{"other origin", tok, []string{"Origin", "https://evil.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, action := range []string{"requeue", "delete", "purge"} {
				code, body := f.post(t, action, `{"id":"poison-1"}`, tt.token, tt.hdr...)
				assert.Equal(t, http.StatusForbidden, code, "%s: %s", action, body)
			}
		})
	}
	assert.Len(t, f.s.DeadLetters(), 1, "nothing changed")

	// A GET cannot act, and a same-origin request with the token can.
	resp, err := http.Get(f.url + "api/dead/purge")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	code, body := f.post(t, "delete", `{"id":"poison-1"}`, tok, "Sec-Fetch-Site", "same-origin", "Origin", f.srv.URL)
	assert.Equal(t, http.StatusOK, code, body)
}

func TestReadOnly(t *testing.T) {
	f := newFixture(t, dashboard.WithReadOnly())
	assert.Empty(t, f.token(t), "no token in a read-only page")
	assert.True(t, f.state(t).ReadOnly)
	for _, action := range []string{"requeue", "delete", "purge"} {
		code, body := f.post(t, action, `{"id":"poison-1"}`, "anything")
		assert.Equal(t, http.StatusForbidden, code)
		assert.Contains(t, body, "read-only")
	}
	assert.Len(t, f.s.DeadLetters(), 1)
	resp, err := http.Get(f.url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.NotContains(t, string(b), `id="purge"`)
}

// The page and its assets are served from the embedded files, under any
// prefix; the prefix without its slash redirects.
func TestAssetsAndMount(t *testing.T) {
	f := newFixture(t)
	for path, want := range map[string]string{
		"":                 "<title>taskpool dashboard</title>",
		"static/app.js":    "api/state",
		"static/style.css": "font",
	} {
		resp, err := http.Get(f.url + path)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Contains(t, string(b), want, path)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(strings.TrimSuffix(f.url, "/"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Contains(t, []int{http.StatusMovedPermanently, http.StatusTemporaryRedirect}, resp.StatusCode)
	assert.True(t, strings.HasSuffix(resp.Header.Get("Location"), "tasks/"), resp.Header.Get("Location"))

	// Mounted with StripPrefix("/dash") but reached as "/dash": the handler
	// itself redirects to the slash its relative URLs need.
	h, err := dashboard.New(dashboard.NewSchedulerSource(f.s, nil))
	require.NoError(t, err)
	rr := httptest.NewRecorder()
	http.StripPrefix("/dash", h).ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/dash?x=1", nil))
	assert.Equal(t, http.StatusMovedPermanently, rr.Code)
	assert.Equal(t, "dash/", rr.Header().Get("Location"))

	resp, err = http.Get(f.url + "nope")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}
