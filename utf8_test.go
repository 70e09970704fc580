package taskpool_test

// Strings that are not valid UTF-8: the NATS broker refuses a task whose
// ID, type or unique key is not (its JSON envelope would carry another
// string), and the in-process scheduler refuses the same inputs with the
// same errors, so that a task accepted by one transport is accepted by
// the other.

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

const badUTF8 = "bad\xff"

type badKindArgs struct{}

func (badKindArgs) Kind() string { return badUTF8 }

func TestNonUTF8TaskRefusedWithErrInvalidTask(t *testing.T) {
	t.Parallel()
	ran := make(chan string, 16)
	h := taskpool.HandlerFunc(func(_ context.Context, tk taskpool.Task) error { ran <- tk.ID; return nil })
	reg := registry(t, map[string]taskpool.HandlerFunc{"t": h, "ü": h})
	tests := []struct {
		name string
		give taskpool.Handler
	}{
		{name: "registry", give: reg},
		{name: "plain handler", give: h},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStarted(t, tt.give)
			ctx := context.Background()
			for _, give := range []taskpool.Task{
				{ID: badUTF8, Type: "t"},
				{Type: badUTF8},
				{ID: "k", Type: "t", UniqueKey: badUTF8},
				{Type: "t", UniqueKey: badUTF8},
			} {
				assert.ErrorIs(t, s.Submit(ctx, give), taskpool.ErrInvalidTask, "Submit %+v", give)
				assert.ErrorIs(t, s.TrySubmit(give), taskpool.ErrInvalidTask, "TrySubmit %+v", give)
				_, err := s.SubmitFuture(ctx, give)
				assert.ErrorIs(t, err, taskpool.ErrInvalidTask, "SubmitFuture %+v", give)
				_, err = s.SubmitWait(ctx, give)
				assert.ErrorIs(t, err, taskpool.ErrInvalidTask, "SubmitWait %+v", give)
				assert.ErrorIs(t, s.SubmitAfter(ctx, give, time.Hour), taskpool.ErrInvalidTask, "SubmitAfter %+v", give)
				assert.ErrorIs(t, s.SubmitAt(ctx, give, time.Now().Add(time.Hour)), taskpool.ErrInvalidTask, "SubmitAt %+v", give)
			}
			// A periodic schedule: its id is the ID of every copy.
			assert.ErrorIs(t, s.SchedulePeriodic(badUTF8, taskpool.Every(time.Hour), taskpool.Task{Type: "t"}), taskpool.ErrInvalidTask)
			assert.ErrorIs(t, s.SchedulePeriodic("sched", taskpool.Every(time.Hour), taskpool.Task{Type: badUTF8}), taskpool.ErrInvalidTask)
			ins := s.Inspect()
			assert.Empty(t, ins.Periodic)
			assert.Empty(t, ins.Delayed)

			// Valid UTF-8 beyond ASCII is accepted.
			require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "é", Type: "ü", UniqueKey: "ключ"}))
			select {
			case id := <-ran:
				assert.Equal(t, "é", id)
			case <-time.After(hangAfter):
				t.Fatal("the valid task did not run")
			}
		})
	}
}

func TestNonUTF8TypeRegistrationRefusedWithErrInvalidType(t *testing.T) {
	t.Parallel()
	reg := taskpool.NewRegistry()
	assert.ErrorIs(t, reg.Handle(badUTF8, taskpool.HandlerFunc(nop)), taskpool.ErrInvalidType)
	assert.ErrorIs(t, reg.HandleFunc(badUTF8, nop), taskpool.ErrInvalidType)
	assert.ErrorIs(t, taskpool.Handle(reg, func(context.Context, badKindArgs, taskpool.Task) error { return nil }), taskpool.ErrInvalidType)
	assert.Empty(t, reg.Types())
}
