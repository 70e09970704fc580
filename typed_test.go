package taskpool_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

type emailArgs struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

func (emailArgs) Kind() string { return "email" }

type ptrArgs struct{ N int }

func (*ptrArgs) Kind() string { return "ptr" }

type badArgs struct{ N int }

func (b badArgs) Kind() string { return fmt.Sprint("bad", b.N) }

func TestHandleTyped(t *testing.T) {
	t.Parallel()
	reg := taskpool.NewRegistry()
	got := make(chan emailArgs, 2)
	require.NoError(t, taskpool.Handle(reg, func(_ context.Context, a emailArgs, tk taskpool.Task) error {
		assert.Equal(t, "email", tk.Type)
		got <- a
		return nil
	}))
	assert.ErrorIs(t, taskpool.Handle(reg, func(context.Context, emailArgs, taskpool.Task) error { return nil }), taskpool.ErrDuplicateType)
	assert.ErrorIs(t, taskpool.Handle[emailArgs](taskpool.NewRegistry(), nil), taskpool.ErrNilHandler)
	s := start(t, reg)

	// In process, Params holds the value itself.
	want := emailArgs{To: "ada@example.com", Subject: "hi"}
	require.NoError(t, s.Submit(context.Background(), taskpool.TaskOf(want)))
	assert.Equal(t, want, <-got)
	// From a broker, Params holds its JSON encoding.
	raw, err := json.Marshal(want)
	require.NoError(t, err)
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "email", Params: json.RawMessage(raw)}))
	assert.Equal(t, want, <-got)
	require.NoError(t, s.Stop(context.Background()))
}

func TestHandleTypedMismatchIsNotRetried(t *testing.T) {
	t.Parallel()
	reg := taskpool.NewRegistry()
	var runs atomic.Int32
	require.NoError(t, taskpool.Handle(reg, func(context.Context, emailArgs, taskpool.Task) error {
		runs.Add(1)
		return nil
	}, taskpool.WithRetry(3, taskpool.ConstantBackoff(0))))
	got := newOutcomes()
	s := start(t, reg, taskpool.WithCompletionHook(got.hook))
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "m", Type: "email", Params: 42})
	require.NoError(t, err)
	_, err = f.Wait(context.Background())
	assert.ErrorIs(t, err, taskpool.ErrSkipRetry)
	require.NoError(t, s.Stop(context.Background()))
	assert.Zero(t, runs.Load(), "the handler never sees params it cannot take")
	outs := got.snapshot()
	require.Len(t, outs, 1)
	assert.Equal(t, 1, outs[0].Attempts, "a mismatch is not retried")
}

func TestHandleTypedPointerKinds(t *testing.T) {
	t.Parallel()
	reg := taskpool.NewRegistry()
	// A pointer receiver is called on a nil *ptrArgs: fine.
	require.NoError(t, taskpool.Handle(reg, func(context.Context, *ptrArgs, taskpool.Task) error { return nil }))
	assert.Equal(t, []string{"ptr"}, reg.Types())
	// A Kind that reads its fields through a nil pointer is an error.
	err := taskpool.Handle(reg, func(context.Context, *badArgs, taskpool.Task) error { return nil })
	assert.ErrorIs(t, err, taskpool.ErrInvalidType)
	assert.True(t, errors.Is(err, taskpool.ErrInvalidType))
}
