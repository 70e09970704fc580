package dashboard

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

// CSRFHeader is the request header that carries the handler's token on
// every action. The page reads the token from its own HTML, which another
// site cannot read.
const CSRFHeader = "X-Taskpool-CSRF"

//go:embed static
var staticFS embed.FS

var page = template.Must(template.ParseFS(staticFS, "static/index.html"))

// Handler is the dashboard: an [http.Handler] serving the page, its
// assets, the JSON state it polls and the dead-letter actions. Mount it in
// the application's mux, behind the application's authentication:
//
//	mux.Handle("/tasks/", http.StripPrefix("/tasks", dash))
//
// The actions (POST api/dead/requeue and api/dead/delete, whose body is
// {"id": "..."}, and api/dead/purge, whose body is empty or {}) answer 400
// Bad Request for a body that is not one such value, 413 Request Entity
// Too Large for one over 4 KiB, 403 Forbidden when read-only or when the CSRF or cross-origin
// checks fail, and 404 Not Found for a dead letter the source does not
// hold; a wrong method gets 405 Method Not Allowed.
//
// The page uses relative URLs, so any prefix works. It is safe for
// concurrent use and starts no goroutine: the charts' history is sampled
// when the page polls, so it covers the time the page has been open.
type Handler struct {
	src      Source
	opts     options
	token    string
	mux      *http.ServeMux
	static   http.Handler
	crossOrg *http.CrossOriginProtection

	mu      sync.Mutex
	last    sample
	history []point
}

// sample is the cumulative counters at one time.
type sample struct {
	at        time.Time
	processed uint64
	runTime   time.Duration
	runs      uint64
}

// point is one point of the charts.
type point struct {
	T time.Time `json:"t"`
	// Throughput is in tasks per second.
	Throughput float64 `json:"throughput"`
	// LatencyMS is the mean run time in milliseconds, null when unknown.
	LatencyMS *float64 `json:"latency_ms"`
	// Depth is the total queue depth.
	Depth int `json:"depth"`
}

// state is what GET api/state returns.
type state struct {
	Source    string    `json:"source"`
	ReadOnly  bool      `json:"read_only"`
	Now       time.Time `json:"now"`
	RefreshMS int64     `json:"refresh_ms"`
	Snapshot
	History []point `json:"history"`
}

// Option configures a [Handler].
type Option interface{ apply(*options) }

type options struct {
	readOnly bool
	refresh  time.Duration
	sample   time.Duration
	window   time.Duration
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithReadOnly hides the actions and makes the handler refuse them with
// 403 Forbidden. The default allows them.
func WithReadOnly() Option { return optionFunc(func(o *options) { o.readOnly = true }) }

// WithRefresh sets how often the page polls. The default, and the value
// used for zero or less, is 2s.
func WithRefresh(d time.Duration) Option { return optionFunc(func(o *options) { o.refresh = d }) }

// WithHistory sets how long the charts reach back and how far apart their
// points are at least. The defaults, used for zero or less, are 10 minutes
// and 2s.
func WithHistory(window, every time.Duration) Option {
	return optionFunc(func(o *options) { o.window, o.sample = window, every })
}

// New returns the dashboard of src. It returns an error only when the
// system's random source fails to make the CSRF token.
func New(src Source, opts ...Option) (*Handler, error) {
	o := options{}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.refresh <= 0 {
		o.refresh = 2 * time.Second
	}
	if o.window <= 0 {
		o.window = 10 * time.Minute
	}
	if o.sample <= 0 {
		o.sample = 2 * time.Second
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	h := &Handler{
		src: src, opts: o,
		token:    base64.RawURLEncoding.EncodeToString(b[:]),
		mux:      http.NewServeMux(),
		static:   http.StripPrefix("/static/", http.FileServerFS(sub)),
		crossOrg: http.NewCrossOriginProtection(),
	}
	h.mux.HandleFunc("GET /{$}", h.index)
	h.mux.Handle("GET /static/", h.static)
	h.mux.HandleFunc("GET /api/state", h.state)
	h.mux.HandleFunc("POST /api/dead/requeue", h.action(h.requeue))
	h.mux.HandleFunc("POST /api/dead/delete", h.action(h.delete))
	h.mux.HandleFunc("POST /api/dead/purge", h.action(h.purge))
	return h, nil
}

// ServeHTTP implements [http.Handler].
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "" {
		// Mounted under a prefix without its slash: the page's relative
		// URLs need one.
		// The Location is relative to the URL asked for, which the
		// stripped r.URL no longer holds: http.Redirect would resolve it
		// against the stripped path.
		orig, _, _ := strings.Cut(r.RequestURI, "?")
		w.Header().Set("Location", path.Base(orig)+"/")
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	data := struct {
		Token    string
		ReadOnly bool
		Source   string
	}{Source: h.src.Name(), ReadOnly: h.opts.readOnly}
	if !h.opts.readOnly {
		data.Token = h.token
	}
	_ = page.Execute(w, data) // a write error is the client gone
}

func (h *Handler) state(w http.ResponseWriter, r *http.Request) {
	snap, err := h.src.Snapshot(r.Context())
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	now := time.Now()
	st := state{
		Source: h.src.Name(), ReadOnly: h.opts.readOnly, Now: now,
		RefreshMS: h.opts.refresh.Milliseconds(), Snapshot: snap,
		History: h.record(now, snap),
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, st)
}

// record adds a point to the history when the last is old enough, and
// returns a copy of the history.
func (h *Handler) record(now time.Time, snap Snapshot) []point {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := sample{at: now, processed: snap.Processed, runTime: snap.RunTime, runs: snap.Runs}
	switch {
	case h.last.at.IsZero() || cur.processed < h.last.processed:
		h.last = cur // first sample, or the source restarted
	case now.Sub(h.last.at) >= h.opts.sample:
		dt := now.Sub(h.last.at).Seconds()
		p := point{T: now, Throughput: float64(cur.processed-h.last.processed) / dt}
		for _, q := range snap.Queues {
			p.Depth += q.Depth
		}
		if cur.runs > h.last.runs && cur.runTime >= h.last.runTime {
			ms := float64(cur.runTime-h.last.runTime) / float64(cur.runs-h.last.runs) / float64(time.Millisecond)
			p.LatencyMS = &ms
		}
		h.last = cur
		h.history = append(h.history, p)
		i := 0
		for i < len(h.history) && now.Sub(h.history[i].T) > h.opts.window {
			i++
		}
		h.history = h.history[i:]
	}
	out := make([]point, len(h.history))
	copy(out, h.history)
	return out
}

// action wraps a POST action with the read-only, cross-origin and token
// checks.
func (h *Handler) action(fn func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.opts.readOnly {
			writeError(w, http.StatusForbidden, errors.New("dashboard is read-only"))
			return
		}
		if err := h.crossOrg.Check(r); err != nil {
			writeError(w, http.StatusForbidden, err)
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(CSRFHeader)), []byte(h.token)) != 1 {
			writeError(w, http.StatusForbidden, errors.New("missing or wrong CSRF token"))
			return
		}
		res, err := fn(r)
		switch {
		case errors.Is(err, ErrNotFound):
			writeError(w, http.StatusNotFound, err)
		case errors.Is(err, errBadRequest):
			writeError(w, http.StatusBadRequest, err)
		case errors.Is(err, errTooLarge):
			writeError(w, http.StatusRequestEntityTooLarge, err)
		case err != nil:
			writeError(w, http.StatusInternalServerError, err)
		default:
			writeJSON(w, http.StatusOK, res)
		}
	}
}

var (
	errBadRequest = errors.New("bad request")
	errTooLarge   = errors.New("request body too large")
)

// maxBody is the largest body of an action.
const maxBody = 4 << 10

// bodyOf reads the body of an action, of at most maxBody bytes.
func bodyOf(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, fmt.Errorf("%w: the body is over %d bytes", errTooLarge, tooLarge.Limit)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", errBadRequest, err)
	}
	return b, nil
}

// idOf reads the {"id": ...} body of an action: one value and nothing
// after it, so that a second one is not dropped silently.
func idOf(r *http.Request) (string, error) {
	b, err := bodyOf(r)
	if err != nil {
		return "", err
	}
	var body struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &body); err != nil || body.ID == "" {
		return "", fmt.Errorf(`%w: want {"id": "..."}`, errBadRequest)
	}
	return body.ID, nil
}

// noArgs reads the body of an action that takes no argument: empty, or
// {} as the page sends it. Anything else is refused rather than ignored:
// a client that sends an ID to purge, say, means something else than
// deleting every dead letter.
func noArgs(r *http.Request) error {
	b, err := bodyOf(r)
	if err != nil {
		return err
	}
	if len(bytes.Trim(b, " \t\r\n")) == 0 { // JSON's white space
		return nil
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(b, &body); err != nil || body == nil || len(body) > 0 {
		return fmt.Errorf("%w: want no body or {}", errBadRequest)
	}
	return nil
}

func (h *Handler) requeue(r *http.Request) (any, error) {
	id, err := idOf(r)
	if err != nil {
		return nil, err
	}
	return map[string]string{"requeued": id}, h.src.Requeue(r.Context(), id)
}

func (h *Handler) delete(r *http.Request) (any, error) {
	id, err := idOf(r)
	if err != nil {
		return nil, err
	}
	return map[string]string{"deleted": id}, h.src.DeleteDeadLetter(r.Context(), id)
}

func (h *Handler) purge(r *http.Request) (any, error) {
	if err := noArgs(r); err != nil {
		return nil, err
	}
	n, err := h.src.PurgeDeadLetters(r.Context())
	return map[string]int{"purged": n}, err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}
