package taskpooltest

import (
	"context"

	"github.com/taskpool/taskpool"
)

// Run runs h on t once, the way a scheduler's worker does, and returns
// what the task's Future would: the value the handler passed to
// SetResult, and its error (a panic becomes a *taskpool.PanicError,
// runtime.Goexit taskpool.ErrHandlerExited, a timeout the handler's
// context error). t gets an ID if it has none; opts configure the
// one-worker scheduler Run uses (WithTaskTimeout, WithBaseContext, ...).
// ctx bounds the wait: when it ends first Run returns its error, after
// cancelling the handler's context and waiting for the handler to return.
func Run(ctx context.Context, h taskpool.Handler, t taskpool.Task, opts ...taskpool.Option) (any, error) {
	if t.Type == "" {
		t.Type = "taskpooltest"
	}
	s, err := taskpool.New(typeOnly{h}, append([]taskpool.Option{taskpool.WithWorkers(1)}, opts...)...)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	f, err := s.SubmitFuture(ctx, t)
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
type typeOnly struct{ h taskpool.Handler }

func (t typeOnly) HandleTask(ctx context.Context, tk taskpool.Task) error {
	return t.h.HandleTask(ctx, tk)
}
