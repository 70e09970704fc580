package taskpool_test

import (
	"context"
	"encoding/json"
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

// sizedArgs has a value-receiver Kind that reads its fields.
type sizedArgs struct{ N int }

func (a sizedArgs) Kind() string { return fmt.Sprint("sized", a.N) }

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
	// Params of another type in process, and JSON that does not decode
	// into the args (as a broker would deliver it).
	for id, params := range map[string]any{
		"wrong-type": 42,
		"bad-json":   json.RawMessage(`{"to": 1}`),
	} {
		f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: id, Type: "email", Params: params})
		require.NoError(t, err)
		_, err = f.Wait(context.Background())
		assert.ErrorIs(t, err, taskpool.ErrSkipRetry, id)
	}
	require.NoError(t, s.Stop(context.Background()))
	assert.Zero(t, runs.Load(), "the handler never sees params it cannot take")
	outs := got.snapshot()
	require.Len(t, outs, 2)
	for _, out := range outs {
		assert.Equal(t, 1, out.Attempts, "a mismatch is not retried: %s", out.Task.ID)
		assert.ErrorIs(t, out.Err, taskpool.ErrSkipRetry, out.Task.ID)
	}
}

type noKindArgs struct{}

func (noKindArgs) Kind() string { return "" }

func TestHandleTypedRegistrationErrors(t *testing.T) {
	t.Parallel()
	ok := func(context.Context, emailArgs, taskpool.Task) error { return nil }
	assert.ErrorIs(t, taskpool.Handle(taskpool.NewRegistry(),
		func(context.Context, noKindArgs, taskpool.Task) error { return nil }), taskpool.ErrInvalidType)
	assert.ErrorIs(t, taskpool.Handle(nil, ok), taskpool.ErrNilHandler)
	assert.ErrorIs(t, taskpool.Handle(taskpool.NewRegistry(), ok, nil), taskpool.ErrInvalidOption)

	// Typed and untyped registrations share the registry's type names.
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.Handle("email", taskpool.HandlerFunc(func(context.Context, taskpool.Task) error { return nil })))
	assert.ErrorIs(t, taskpool.Handle(reg, ok), taskpool.ErrDuplicateType)
	reg = taskpool.NewRegistry()
	require.NoError(t, taskpool.Handle(reg, ok))
	assert.ErrorIs(t, reg.Handle("email", taskpool.HandlerFunc(func(context.Context, taskpool.Task) error { return nil })), taskpool.ErrDuplicateType)
}

func TestHandleTypedPointerArgs(t *testing.T) {
	t.Parallel()
	reg := taskpool.NewRegistry()
	got := make(chan *ptrArgs, 2)
	require.NoError(t, taskpool.Handle(reg, func(_ context.Context, a *ptrArgs, tk taskpool.Task) error {
		assert.Equal(t, "ptr", tk.Type)
		got <- a
		return nil
	}))
	s := start(t, reg)
	require.NoError(t, s.Submit(context.Background(), taskpool.TaskOf(&ptrArgs{N: 7})))
	assert.Equal(t, &ptrArgs{N: 7}, <-got)
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "ptr", Params: []byte(`{"N": 8}`)}))
	assert.Equal(t, &ptrArgs{N: 8}, <-got)
}

func TestHandleTypedPointerKinds(t *testing.T) {
	t.Parallel()
	reg := taskpool.NewRegistry()
	// A pointer receiver: Kind is called on a pointer to the zero value.
	require.NoError(t, taskpool.Handle(reg, func(context.Context, *ptrArgs, taskpool.Task) error { return nil }))
	// A value receiver, with a pointer T: the same, never a nil pointer, so
	// even a Kind that reads its (zero) fields works.
	require.NoError(t, taskpool.Handle(reg, func(context.Context, *sizedArgs, taskpool.Task) error { return nil }))
	assert.ElementsMatch(t, []string{"ptr", "sized0"}, reg.Types())
	// An interface T has no zero value to call Kind on.
	err := taskpool.Handle(reg, func(context.Context, taskpool.Args, taskpool.Task) error { return nil })
	assert.ErrorIs(t, err, taskpool.ErrInvalidType)
}

// A value and a pointer to it encode alike on the wire; in process a typed
// handler takes either.
func TestHandleTypedValueOrPointer(t *testing.T) {
	t.Parallel()
	want := emailArgs{To: "ada@example.com", Subject: "hi"}
	byPtr := make(chan *emailArgs, 1)
	reg := taskpool.NewRegistry()
	require.NoError(t, taskpool.Handle(reg, func(_ context.Context, a *emailArgs, _ taskpool.Task) error {
		byPtr <- a
		return nil
	}))
	s := start(t, reg)
	require.NoError(t, s.Submit(context.Background(), taskpool.TaskOf(want)))
	assert.Equal(t, &want, <-byPtr)

	byVal := make(chan emailArgs, 1)
	reg = taskpool.NewRegistry()
	require.NoError(t, taskpool.Handle(reg, func(_ context.Context, a emailArgs, _ taskpool.Task) error {
		byVal <- a
		return nil
	}))
	s = start(t, reg)
	require.NoError(t, s.Submit(context.Background(), taskpool.TaskOf(&want)))
	assert.Equal(t, want, <-byVal)
	// A nil *emailArgs has no value to give: a final failure.
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "email", Params: (*emailArgs)(nil)})
	require.NoError(t, err)
	_, err = f.Wait(context.Background())
	assert.ErrorIs(t, err, taskpool.ErrSkipRetry)
	assert.Empty(t, byVal)
}
