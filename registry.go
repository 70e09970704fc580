package taskpool

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
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
// tracing, retries), ServeMux-style. The scheduler builds the chain once, at
// Start, never per task.
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
	handlers atomic.Pointer[map[string]Handler]
}

var _ Handler = (*Registry)(nil)

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return new(Registry) }

// Handle registers h for tasks of type typ. It returns an error wrapping
// [ErrInvalidType] for an empty typ, [ErrNilHandler] for a nil h, and
// [ErrDuplicateType] when typ already has a handler.
func (r *Registry) Handle(typ string, h Handler) error {
	if typ == "" {
		return fmt.Errorf("%w: empty", ErrInvalidType)
	}
	if isNil(h) {
		return fmt.Errorf("%w: type %q", ErrNilHandler, typ)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.load()
	if _, ok := old[typ]; ok {
		return fmt.Errorf("%w: %q", ErrDuplicateType, typ)
	}
	m := make(map[string]Handler, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[typ] = h
	r.handlers.Store(&m)
	return nil
}

// HandleFunc registers f for tasks of type typ. It returns the same errors
// as [Registry.Handle].
func (r *Registry) HandleFunc(typ string, f func(ctx context.Context, t Task) error) error {
	if f == nil {
		return fmt.Errorf("%w: type %q", ErrNilHandler, typ)
	}
	return r.Handle(typ, HandlerFunc(f))
}

// Lookup returns the handler registered for typ, if any.
func (r *Registry) Lookup(typ string) (Handler, bool) {
	h, ok := r.load()[typ]
	return h, ok
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
	h, ok := r.load()[t.Type]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoHandler, t.Type)
	}
	return h.HandleTask(ctx, t)
}

func (r *Registry) load() map[string]Handler {
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
