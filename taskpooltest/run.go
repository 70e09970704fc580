package taskpooltest

import (
	"context"

	"github.com/taskpool/taskpool"
)

// Run runs h on t once, the way a scheduler's worker does, and returns
// what the task's Future would: the value the handler passed to
// SetResult, and its error (a panic becomes a *taskpool.PanicError,
// runtime.Goexit taskpool.ErrHandlerExited, a timeout the handler's
// context error). A failed run is not retried, whatever t.MaxAttempts or
// a WithRetry in opts allow; h sees t's MaxAttempts as given (a
// WithMiddleware in opts sees the task's attempt there). t gets an ID if
// it has none; opts configure the one-worker scheduler Run uses
// (WithTaskTimeout, WithBaseContext, ...).
// ctx bounds the wait: when it ends first Run returns its error, after
// cancelling the handler's context and waiting for the handler to return.
// It returns taskpool.ErrNilHandler for a nil h (a nil interface,
// HandlerFunc or *Registry), as taskpool.New does, without running t.
func Run(ctx context.Context, h taskpool.Handler, t taskpool.Task, opts ...taskpool.Option) (any, error) {
	if nilHandler(h) {
		// New sees typeOnly, never h: check h as New would.
		return nil, taskpool.ErrNilHandler
	}
	if t.Type == "" {
		t.Type = "taskpooltest"
	}
	// The scheduler runs the task once: its own MaxAttempts, which comes
	// before any default, is the attempt it starts at. The handler is
	// given t's own.
	once := t
	if t.Attempt >= 0 && t.MaxAttempts >= 0 {
		once.MaxAttempts = max(t.Attempt, 1)
	}
	s, err := taskpool.New(typeOnly{h: h, maxAttempts: t.MaxAttempts}, append([]taskpool.Option{taskpool.WithWorkers(1)}, opts...)...)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	f, err := s.SubmitFuture(ctx, once)
	if err != nil {
		_ = s.Stop(context.Background())
		return nil, err
	}
	res, err := f.Wait(ctx)
	if stopErr := s.Stop(ctx); stopErr != nil && err == nil {
		err = stopErr
	}
	return res, err
}

// typeOnly hides a Registry's type lookup, so that Run runs any task type
// on h, as a unit test wants. The registry still dispatches by type.
// It gives the handler the task's MaxAttempts as Run was given it.
type typeOnly struct {
	h           taskpool.Handler
	maxAttempts int
}

func (t typeOnly) HandleTask(ctx context.Context, tk taskpool.Task) error {
	tk.MaxAttempts = t.maxAttempts
	return t.h.HandleTask(ctx, tk)
}

// nilHandler reports whether h is nil as taskpool.New tells it: a nil
// interface, HandlerFunc or *Registry.
func nilHandler(h taskpool.Handler) bool {
	switch v := h.(type) {
	case nil:
		return true
	case taskpool.HandlerFunc:
		return v == nil
	case *taskpool.Registry:
		return v == nil
	}
	return false
}
