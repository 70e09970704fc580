package dashboard_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/dashboard"
)

// fakeSource is a Source holding the dead letters "poison-1" and "x",
// which records the actions it performed.
type fakeSource struct {
	mu   sync.Mutex
	done []string // "requeue ID", "delete ID", "purge"
}

func (*fakeSource) Name() string { return "fake" }

func (*fakeSource) Snapshot(context.Context) (dashboard.Snapshot, error) {
	return dashboard.Snapshot{}, nil
}

func (s *fakeSource) act(op, id string) error {
	if id != "poison-1" && id != "x" {
		return fmt.Errorf("%w: dead letter %q", dashboard.ErrNotFound, id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = append(s.done, op+" "+id)
	return nil
}

func (s *fakeSource) Requeue(_ context.Context, id string) error { return s.act("requeue", id) }

func (s *fakeSource) DeleteDeadLetter(_ context.Context, id string) error { return s.act("delete", id) }

func (s *fakeSource) PurgeDeadLetters(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = append(s.done, "purge")
	return 2, nil
}

// pageToken reads the CSRF token from h's page, as the page's script does.
func pageToken(t *testing.T, h http.Handler) string {
	t.Helper()
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusOK, rr.Code)
	_, rest, ok := strings.Cut(rr.Body.String(), `<meta name="csrf-token" content="`)
	require.True(t, ok, "page has the token meta tag")
	tok, _, _ := strings.Cut(rest, `"`)
	return tok
}

// actionCodes are the status codes Handler's doc gives an action, and the
// redirects with which ServeMux answers a path that is not clean.
var actionCodes = map[int]bool{
	http.StatusOK: true, http.StatusBadRequest: true, http.StatusForbidden: true,
	http.StatusNotFound: true, http.StatusMethodNotAllowed: true, http.StatusRequestEntityTooLarge: true,
	http.StatusMovedPermanently: true, http.StatusTemporaryRedirect: true, http.StatusPermanentRedirect: true,
}

// FuzzActions sends the dashboard requests with arbitrary methods, paths,
// bodies, tokens and origins, as a server would hand them to it (one that
// net/http cannot parse never reaches a handler). Every answer is one of
// the documented codes, never a 500 or a panic; an action is performed
// only by a POST to its path, with the right token, from the same origin,
// with a body of at most 4 KiB that is one {"id": "..."} naming a dead
// letter the source holds (requeue, delete), or none or {} (purge), and
// then the answer is 200; every other request performs nothing.
func FuzzActions(f *testing.F) {
	// method, path, body, token (0 none, 1 right, 2 wrong), origin,
	// Sec-Fetch-Site, read-only.
	f.Add("POST", "/api/dead/requeue", []byte(`{"id":"poison-1"}`), uint8(1), "", "", false)
	f.Add("POST", "/api/dead/delete", []byte(`{"id":"x"}`+"\n"), uint8(1), "", "same-origin", false)
	f.Add("POST", "/api/dead/delete", []byte(`{"id":"nope"}`), uint8(1), "", "", false)
	f.Add("POST", "/api/dead/purge", []byte(``), uint8(1), "", "", false)
	f.Add("POST", "/api/dead/purge", []byte(`{}`), uint8(1), "http://127.0.0.1", "same-origin", false)
	f.Add("POST", "/api/dead/requeue", []byte(`{"id":"poison-1"}`), uint8(0), "", "", false)
	f.Add("POST", "/api/dead/requeue", []byte(`{"id":"poison-1"}`), uint8(2), "", "", false)
	f.Add("POST", "/api/dead/requeue", []byte(`{"id":"poison-1"}`), uint8(1), "https://evil.example", "", false)
	f.Add("POST", "/api/dead/requeue", []byte(`{"id":"poison-1"}`), uint8(1), "", "cross-site", false)
	f.Add("POST", "/api/dead/requeue", []byte(`{"id":"poison-1"}`), uint8(1), "", "", true)
	f.Add("POST", "/api/dead/requeue", []byte(`{"id":"poison-1"} {"id":"x"}`), uint8(1), "", "", false)
	f.Add("POST", "/api/dead/delete", []byte(`{"id":""}`), uint8(1), "", "", false)
	f.Add("POST", "/api/dead/delete", []byte(`{"id":5}`), uint8(1), "", "", false)
	f.Add("POST", "/api/dead/delete", []byte(`{"id":"x","pad":"`+strings.Repeat("y", 4<<10)+`"}`), uint8(1), "", "", false)
	f.Add("POST", "/api/dead/delete", []byte(`{"id":"x"}`+strings.Repeat(" ", 5000)), uint8(1), "", "", false)
	// Found by the fuzzer: purge ignored its body, so that any body (an
	// ID meant for delete, say) deleted every dead letter.
	f.Add("POST", "/api/dead/purge", []byte(`0`), uint8(1), "", "", false)
	f.Add("POST", "/api/dead/purge", []byte(`{"id":"x"}`), uint8(1), "", "", false)
	f.Add("POST", "/api/dead/purge", []byte(`null`), uint8(1), "", "", false)
	f.Add("POST", "/api/dead/purge", []byte("\u00a0"), uint8(1), "", "", false)
	f.Add("PUT", "/api/dead/purge", []byte(``), uint8(1), "", "", false)
	f.Add("GET", "/api/dead/purge", []byte(``), uint8(1), "", "", false)
	f.Add("POST", "/api/dead/../dead/purge", []byte(``), uint8(1), "", "", false)
	f.Add("POST", "/api//dead/purge", []byte(``), uint8(1), "", "", false)
	f.Add("POST", "/api/dead/purge/", []byte(``), uint8(1), "", "", false)
	f.Add("POST", "/api/dead/%70urge", []byte(``), uint8(1), "", "", false)
	f.Add("POST", "/", []byte(``), uint8(1), "", "", false)
	f.Add("GET", "/", []byte(``), uint8(0), "", "", false)
	f.Add("GET", "/api/state", []byte(``), uint8(0), "", "", false)
	f.Add("GET", "/static/app.js", []byte(``), uint8(0), "", "", false)
	f.Fuzz(func(t *testing.T, method, target string, body []byte, tokenMode uint8, origin, fetchSite string, readOnly bool) {
		src := &fakeSource{}
		var opts []dashboard.Option
		if readOnly {
			opts = append(opts, dashboard.WithReadOnly())
		}
		h, err := dashboard.New(src, opts...)
		require.NoError(t, err)
		var token string
		if !readOnly {
			token = pageToken(t, h)
		}

		// The request as a server reads it off the wire: one that does
		// not parse, or whose fields would not survive the request line
		// and its headers, never reaches the handler.
		if strings.ContainsAny(method+target, " \r\n") || strings.ContainsAny(origin+fetchSite, "\r\n") {
			return
		}
		var raw bytes.Buffer
		fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n", method, target)
		switch tokenMode % 3 {
		case 1:
			fmt.Fprintf(&raw, "%s: %s\r\n", dashboard.CSRFHeader, token)
		case 2:
			fmt.Fprintf(&raw, "%s: x%s\r\n", dashboard.CSRFHeader, token)
		}
		if origin != "" {
			fmt.Fprintf(&raw, "Origin: %s\r\n", origin)
		}
		if fetchSite != "" {
			fmt.Fprintf(&raw, "Sec-Fetch-Site: %s\r\n", fetchSite)
		}
		fmt.Fprintf(&raw, "Content-Length: %d\r\n\r\n", len(body))
		raw.Write(body)
		req, err := http.ReadRequest(bufio.NewReader(&raw))
		if err != nil {
			return
		}
		req.RemoteAddr = "127.0.0.1:1234"

		// What the request may do, from the request as parsed.
		op := ""
		if req.Method == http.MethodPost {
			op = map[string]string{
				"/api/dead/requeue": "requeue", "/api/dead/delete": "delete", "/api/dead/purge": "purge",
			}[req.URL.Path]
		}
		allowed := op != "" && !readOnly && token != "" &&
			req.Header.Get(dashboard.CSRFHeader) == token &&
			http.NewCrossOriginProtection().Check(req) == nil
		want := 0 // the code wanted, when allowed
		id := ""
		if allowed {
			var v struct {
				ID string `json:"id"`
			}
			switch {
			case len(body) > 4<<10:
				want = http.StatusRequestEntityTooLarge
			case op == "purge":
				want = http.StatusBadRequest
				if len(bytes.Trim(body, " \t\r\n")) == 0 { // JSON's white space
					want = http.StatusOK
				} else if m := map[string]any(nil); json.Unmarshal(body, &m) == nil && m != nil && len(m) == 0 {
					want = http.StatusOK
				}
			case json.Unmarshal(body, &v) != nil || v.ID == "":
				want = http.StatusBadRequest
			case v.ID != "poison-1" && v.ID != "x":
				want = http.StatusNotFound
			default:
				want, id = http.StatusOK, v.ID
			}
		}

		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, req)
		res := rr.Result()
		_, _ = io.Copy(io.Discard, res.Body)
		desc := fmt.Sprintf("%s %q (path %q), body %q, token %d, origin %q, fetch site %q, read-only %v: %d %s",
			req.Method, target, req.URL.Path, body, tokenMode%3, origin, fetchSite, readOnly, rr.Code, rr.Body.String())
		require.NotEqual(t, http.StatusInternalServerError, rr.Code, desc)
		if op != "" || strings.HasPrefix(req.URL.Path, "/api/dead") {
			require.True(t, actionCodes[rr.Code], "undocumented code: %s", desc)
		}
		if want != 0 {
			require.Equal(t, want, rr.Code, desc)
		}
		switch {
		case want == http.StatusOK && op == "purge":
			require.Equal(t, []string{"purge"}, src.done, desc)
		case want == http.StatusOK:
			require.Equal(t, []string{op + " " + id}, src.done, desc)
		default:
			require.Empty(t, src.done, "an action performed: %s", desc)
		}
		if allowed {
			require.Equal(t, "application/json", rr.Header().Get("Content-Type"), desc)
			require.True(t, json.Valid(rr.Body.Bytes()), desc)
		}
	})
}
