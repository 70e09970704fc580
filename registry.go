package taskpool

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Handler runs tasks. HandleTask returns nil when the task succeeded. It
// should return promptly once ctx is done: ctx is cancelled when the task's
// timeout passes and when a [Scheduler.Stop] runs out of time.
//
// A Handler must be safe for concurrent use: the scheduler calls it from all
// of its workers at once.
type Handler interface {
	HandleTask(ctx context.Context, t Task) error
}

// HandlerFunc adapts an ordinary function to a [Handler].
type HandlerFunc func(ctx context.Context, t Task) error

// HandleTask calls f(ctx, t).
func (f HandlerFunc) HandleTask(ctx context.Context, t Task) error { return f(ctx, t) }

// Middleware wraps a Handler with behaviour of its own (logging, metrics,
// tracing, retries), ServeMux-style. The scheduler builds a type's chain
// once, the first time a task of that type is submitted, never per task.
type Middleware func(next Handler) Handler

// Registry maps task types to handlers. It is itself a [Handler] that
// dispatches each task by its Type, so a [Scheduler] depends only on
// Handler.
//
// A Registry is safe for concurrent use: handlers may be registered while
// tasks run. Lookups take no lock: the map is copied on registration, which
// suits registries that are written rarely and read for every task. The zero
// value is an empty registry ready to use.
type Registry struct {
	mu       sync.Mutex // serialises writers
	handlers atomic.Pointer[map[string]*handlerEntry]
	mw       atomic.Pointer[[]Middleware] // Use's middleware, outermost first
	inUse    bool                         // under mu: a scheduler runs it; Use is closed
}

// handlerEntry is a registered type: its handler and its settings.
type handlerEntry struct {
	typ string
	h   Handler
	typeConfig
}

// typeConfig holds the per-type settings of [HandleOption]s.
type typeConfig struct {
	maxAttempts int
	backoff     Backoff
	concurrency int
	rate        RateLimiter
}

// HandleOption configures one task type in [Registry.Handle].
type HandleOption interface {
	applyType(*typeConfig) error
}

type handleOptionFunc func(*typeConfig) error

func (f handleOptionFunc) applyType(c *typeConfig) error { return f(c) }

// WithConcurrencyLimit allows at most n tasks of the type to run at once,
// across all workers. Tasks over the limit wait without holding a worker,
// which goes on with tasks of other types. The default, and 0, is no
// limit; a negative n is invalid.
func WithConcurrencyLimit(n int) HandleOption {
	return handleOptionFunc(func(c *typeConfig) error {
		if n < 0 {
			return invalid("concurrency limit", n)
		}
		c.concurrency = n
		return nil
	})
}

// WithRateLimit paces the starts of the type's tasks with l (see the
// ratelimit sub-module). A task held back by l waits in the timer queue,
// not in a worker. The default is no rate limit.
func WithRateLimit(l RateLimiter) HandleOption {
	return handleOptionFunc(func(c *typeConfig) error {
		if l == nil {
			return invalid("rate limiter", "nil")
		}
		c.rate = l
		return nil
	})
}

var _ Handler = (*Registry)(nil)

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return new(Registry) }

// Handle registers h for tasks of type typ, with the type's own settings
// ([WithRetry], [WithConcurrencyLimit], [WithRateLimit]). It returns an
// error wrapping [ErrInvalidType] for an empty typ or one that is not
// valid UTF-8 (no task of it could be submitted), [ErrNilHandler] for a
// nil h, [ErrDuplicateType] when typ already has a handler, and
// [ErrInvalidOption] for a bad option.
func (r *Registry) Handle(typ string, h Handler, opts ...HandleOption) error {
	if typ == "" {
		return fmt.Errorf("%w: empty", ErrInvalidType)
	}
	if !utf8.ValidString(typ) {
		// No task of it could be submitted: Submit refuses such a type
		// with ErrInvalidTask, as the NATS broker does.
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidType, typ)
	}
	if isNil(h) {
		return fmt.Errorf("%w: type %q", ErrNilHandler, typ)
	}
	e := &handlerEntry{typ: typ, h: h}
	for _, opt := range opts {
		if opt == nil {
			return invalid("handle option", "nil")
		}
		if err := opt.applyType(&e.typeConfig); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.load()
	if _, ok := old[typ]; ok {
		return fmt.Errorf("%w: %q", ErrDuplicateType, typ)
	}
	m := make(map[string]*handlerEntry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[typ] = e
	r.handlers.Store(&m)
	return nil
}

// Use adds middleware around every handler of the registry, for every
// scheduler that runs it, in process or as a broker's consumer: given
// once here, it runs on both transports. The first middleware given is
// the outermost; a scheduler's own [WithMiddleware] wraps these. Calling
// [Registry.HandleTask] directly runs the handlers without them.
//
// Use must be called before the registry is given to [New] (a broker's
// consumer calls New): afterwards it returns an error wrapping
// [ErrInvalidOption], as it does for a nil middleware.
func (r *Registry) Use(mw ...Middleware) error {
	for i, m := range mw {
		if m == nil {
			return invalid(fmt.Sprintf("middleware[%d]", i), "nil")
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inUse {
		return invalid("Registry.Use", "after the registry was given to a scheduler")
	}
	var all []Middleware
	if old := r.mw.Load(); old != nil {
		all = append(all, *old...)
	}
	all = append(all, mw...)
	r.mw.Store(&all)
	return nil
}

// use marks the registry as run by a scheduler, closing Use.
func (r *Registry) use() {
	r.mu.Lock()
	r.inUse = true
	r.mu.Unlock()
}

// wrap puts Use's middleware around h.
func (r *Registry) wrap(h Handler) Handler {
	p := r.mw.Load()
	if p == nil {
		return h
	}
	mw := *p
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// HandleFunc registers f for tasks of type typ. It returns the same errors
// as [Registry.Handle].
func (r *Registry) HandleFunc(typ string, f func(ctx context.Context, t Task) error, opts ...HandleOption) error {
	if f == nil {
		return fmt.Errorf("%w: type %q", ErrNilHandler, typ)
	}
	return r.Handle(typ, HandlerFunc(f), opts...)
}

// Lookup returns the handler registered for typ, if any.
func (r *Registry) Lookup(typ string) (Handler, bool) {
	if e := r.load()[typ]; e != nil {
		return e.h, true
	}
	return nil, false
}

// Types returns the registered task types, sorted.
func (r *Registry) Types() []string {
	m := r.load()
	types := make([]string, 0, len(m))
	for typ := range m {
		types = append(types, typ)
	}
	slices.Sort(types)
	return types
}

// HandleTask runs the handler registered for t.Type. It returns an error
// wrapping [ErrNoHandler] when there is none.
func (r *Registry) HandleTask(ctx context.Context, t Task) error {
	e := r.load()[t.Type]
	if e == nil {
		return fmt.Errorf("%w: %q", ErrNoHandler, t.Type)
	}
	return e.h.HandleTask(ctx, t)
}

func (r *Registry) entry(typ string) *handlerEntry { return r.load()[typ] }

func (r *Registry) load() map[string]*handlerEntry {
	if p := r.handlers.Load(); p != nil {
		return *p
	}
	return nil
}

// isNil reports whether h is nil or a nil func or pointer inside an
// interface, the usual ways of passing "no handler" by mistake.
func isNil(h Handler) bool {
	switch v := h.(type) {
	case nil:
		return true
	case HandlerFunc:
		return v == nil
	case *Registry:
		return v == nil
	}
	return false
}
