package taskpool_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// Task.Validate's rules, and every way of submitting in process applying
// them (the NATS producer applies them too: broker/nats's
// TestConformanceDifferential submits odd tasks to both and compares).
func TestTaskValidate(t *testing.T) {
	t.Parallel()
	valid := []taskpool.Task{
		{Type: "t"},
		{Type: "t", ID: "a.b*c>d/é e", UniqueKey: "any key\twith a tab", Attempt: 3, MaxAttempts: 2},
		{Type: "ü", Metadata: map[string]string{"tenant": "acme", "x-Trace_1": "00-ab é", "empty": ""}},
		{Type: "t", Priority: 7, Timeout: -time.Second},
		{Type: "t", ID: strings.Repeat("i", taskpool.MaxIDLength), UniqueKey: strings.Repeat("k", taskpool.MaxIDLength)},
	}
	for _, tk := range valid {
		assert.NoError(t, tk.Validate(), "%+v", tk)
	}
	invalid := []struct {
		give taskpool.Task
		want error
	}{
		{taskpool.Task{}, taskpool.ErrInvalidType},
		{taskpool.Task{Type: "t", Attempt: -1}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "t", MaxAttempts: -1}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "bad\xff"}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "t", ID: "bad\xff"}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "t", UniqueKey: "bad\xff"}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "t", ID: strings.Repeat("i", taskpool.MaxIDLength+1)}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "t", UniqueKey: strings.Repeat("k", taskpool.MaxIDLength+1)}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "t", ID: "tab\t"}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "t", ID: "nul\x00"}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "t", ID: " lead"}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "t", ID: "trail "}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "t", ID: "del\x7f"}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "t", Metadata: map[string]string{"": "v"}}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "t", Metadata: map[string]string{"a b": "v"}}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "t", Metadata: map[string]string{"é": "v"}}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "t", Metadata: map[string]string{"k:": "v"}}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "t", Metadata: map[string]string{"k": "line\nbreak"}}, taskpool.ErrInvalidTask},
		{taskpool.Task{Type: "t", Metadata: map[string]string{"k": " v"}}, taskpool.ErrInvalidTask},
	}
	h := taskpool.HandlerFunc(func(context.Context, taskpool.Task) error { return nil })
	s := newStarted(t, h)
	ctx := context.Background()
	for _, tt := range invalid {
		tk := tt.give
		require.ErrorIs(t, tk.Validate(), tt.want, "%+v", tk)
		assert.ErrorIs(t, s.Submit(ctx, tk), tt.want, "Submit %+v", tk)
		assert.ErrorIs(t, s.TrySubmit(tk), tt.want, "TrySubmit %+v", tk)
		_, err := s.SubmitFuture(ctx, tk)
		assert.ErrorIs(t, err, tt.want, "SubmitFuture %+v", tk)
		assert.ErrorIs(t, s.SubmitAfter(ctx, tk, time.Hour), tt.want, "SubmitAfter %+v", tk)
		if tk.ID == "" {
			// The schedule's id is the ID of every copy; t's own is not used.
			assert.ErrorIs(t, s.SchedulePeriodic("p", taskpool.Every(time.Hour), tk), tt.want, "SchedulePeriodic %+v", tk)
		} else {
			assert.ErrorIs(t, s.SchedulePeriodic(tk.ID, taskpool.Every(time.Hour), taskpool.Task{Type: "t"}), tt.want,
				"SchedulePeriodic with id %q", tk.ID)
		}
	}
	for _, tk := range valid {
		require.NoError(t, s.Submit(ctx, tk), "%+v", tk)
	}
	ins := s.Inspect()
	assert.Empty(t, ins.Delayed)
	assert.Empty(t, ins.Periodic)
}

func ExampleTask_Validate() {
	for _, t := range []taskpool.Task{
		{Type: "email.send", ID: "welcome-42", Metadata: map[string]string{"tenant": "acme"}},
		{Type: "email.send", Metadata: map[string]string{"tenant id": "acme"}},
	} {
		fmt.Println(t.Validate())
	}
	// Output:
	// <nil>
	// taskpool: invalid task: task email.send: metadata key "tenant id" is not a header token
}
