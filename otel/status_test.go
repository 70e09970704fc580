package taskpoolotel_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	taskpoolotel "github.com/taskpool/taskpool/otel"
)

// CompletionHook's taskpool.task.outcome is the Outcome's Status, the
// scheduler's decision, counted in Stats: a handler that ran and returned
// an error of its own that wraps ErrCanceled (a task it waited for was
// cancelled) or joins ErrSchedulerClosed (another scheduler was closed)
// failed; read from the error, the hook counted one canceled and the
// other not_run. An Outcome built by hand, with no Status, counts as
// succeeded when its Err is nil and failed otherwise.
func TestCompletionHookOutcomeIsTheStatus(t *testing.T) {
	tel := newTelemetry(t)
	hook := taskpoolotel.CompletionHook(tel.opts()...)
	outs := newOutcomes(2)
	s := start(t, taskpool.HandlerFunc(func(_ context.Context, tk taskpool.Task) error {
		if tk.ID == "dep-canceled" {
			return fmt.Errorf("waiting for a dependency: %w", taskpool.ErrCanceled)
		}
		return errors.Join(taskpool.ErrSchedulerClosed, errors.New("submitting to another scheduler"))
	}), taskpool.WithCompletionHook(func(o taskpool.Outcome) { hook(o); outs.hook(o) }))
	require.NoError(t, s.Submit(ctxT(t), taskpool.Task{ID: "dep-canceled", Type: "dep"}))
	require.NoError(t, s.Submit(ctxT(t), taskpool.Task{ID: "other-closed", Type: "dep"}))
	outs.wait(t, 2)
	st := s.Stats()
	require.Equal(t, uint64(2), st.Failed)

	hook(taskpool.Outcome{Task: taskpool.Task{Type: "hand"}})
	hook(taskpool.Outcome{Task: taskpool.Task{Type: "hand"}, Err: errors.New("x")})

	completed := tel.collect(t)[taskpoolotel.MetricCompleted]
	for _, tt := range []struct {
		typ, outcome string
		want         int64
	}{
		{"dep", taskpoolotel.OutcomeFailed, int64(st.Failed)},
		{"dep", taskpoolotel.OutcomeCanceled, int64(st.Canceled)},
		{"dep", taskpoolotel.OutcomeNotRun, int64(st.NotRun)},
		{"hand", taskpoolotel.OutcomeSucceeded, 1},
		{"hand", taskpoolotel.OutcomeFailed, 1},
	} {
		n, _ := sum(t, completed, taskpoolotel.TaskTypeKey.String(tt.typ), taskpoolotel.TaskOutcomeKey.String(tt.outcome))
		assert.Equal(t, tt.want, n, "%s %s", tt.typ, tt.outcome)
	}
}
