package dashboard_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An action's body is one {"id": "..."}: anything after it is bad input
// (400), not silently dropped, and nothing is done.
func TestReview25ActionTrailingData(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t)
	for _, body := range []string{
		`{"id":"poison-1"} {"id":"other"}`,
		`{"id":"poison-1"}garbage`,
		`{"id":"poison-1"}]`,
	} {
		for _, action := range []string{"requeue", "delete"} {
			code, resp := f.post(t, action, body, tok)
			assert.Equal(t, http.StatusBadRequest, code, "%s %s: %s", action, body, resp)
			assert.Contains(t, resp, `{\"id\": \"...\"}`, "%s %s", action, body)
		}
	}
	require.Len(t, f.s.DeadLetters(), 1, "nothing was done")
	// Trailing white space is not data.
	code, resp := f.post(t, "delete", "{\"id\":\"poison-1\"}\n \t", tok)
	assert.Equal(t, http.StatusOK, code, resp)
	assert.Empty(t, f.s.DeadLetters())
}

// Handler's doc: the actions answer 413 for a body over 4 KiB and 400
// for one that is not one {"id": "..."}, with a message that says which.
func TestReview25ActionBadBodies(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t)
	// A body of exactly 4 KiB is read (the ID is unknown: 404); one byte
	// more is too large.
	pad := func(n int) string {
		b := `{"id":"nope","pad":"`
		return b + strings.Repeat("x", n-len(b)-2) + `"}`
	}
	require.Len(t, pad(4<<10), 4<<10)
	code, resp := f.post(t, "delete", pad(4<<10), tok)
	assert.Equal(t, http.StatusNotFound, code, resp)
	for _, action := range []string{"requeue", "delete"} {
		code, resp = f.post(t, action, pad(4<<10+1), tok)
		assert.Equal(t, http.StatusRequestEntityTooLarge, code, resp)
		assert.Contains(t, resp, "over 4096 bytes")
		code, resp = f.post(t, action, `{"id":"poison-1","pad":"`+strings.Repeat("x", 1<<20)+`"}`, tok)
		assert.Equal(t, http.StatusRequestEntityTooLarge, code, resp)
		for _, body := range []string{``, `null`, `{}`, `{"id":""}`, `{"id":5}`, `"poison-1"`, `{"id":"poison-1"`, `[{"id":"poison-1"}]`} {
			code, resp = f.post(t, action, body, tok)
			assert.Equal(t, http.StatusBadRequest, code, "%s %q: %s", action, body, resp)
			assert.JSONEq(t, `{"error":"bad request: want {\"id\": \"...\"}"}`, resp, "%s %q", action, body)
		}
	}
	require.Len(t, f.s.DeadLetters(), 1, "nothing was done")
}

// Wrong methods are refused with 405.
func TestReview25WrongMethods(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, "api/state"},
		{http.MethodPut, "api/dead/requeue"},
		{http.MethodDelete, "api/dead/delete"},
		{http.MethodGet, "api/dead/requeue"},
		{http.MethodPost, ""},
	} {
		req, err := http.NewRequest(c.method, f.url+c.path, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "%s %s", c.method, c.path)
	}
	require.Len(t, f.s.DeadLetters(), 1, "nothing was done")
}
