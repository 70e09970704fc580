package taskpool_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/taskpool/taskpool"
)

// walkPanicsError is an error whose Unwrap reads through its nil pointer.
type walkPanicsError struct{ next error }

func (*walkPanicsError) Error() string   { return "walk panics" }
func (e *walkPanicsError) Unwrap() error { return e.next }

// A PanicError made outside the package (as a broker makes one for a
// panic in its codec) keeps Unwrap's promise: it unwraps to Value when
// Value is an error whose chain can be walked, and to nil when walking it
// panics, so that errors.Is and errors.As stop there.
func TestPanicErrorMadeElsewhereUnwrapsSafely(t *testing.T) {
	pe := &taskpool.PanicError{Value: joinedEOF()}
	assert.ErrorIs(t, pe, io.EOF)

	pe = &taskpool.PanicError{Value: (*walkPanicsError)(nil)}
	assert.NotPanics(t, func() {
		assert.NoError(t, pe.Unwrap())
		assert.False(t, errors.Is(pe, io.EOF))
		var got *taskpool.PanicError
		assert.True(t, errors.As(pe, &got))
	})

	pe = &taskpool.PanicError{Value: "not an error"}
	assert.NoError(t, pe.Unwrap())
}

func joinedEOF() error { return errors.Join(errors.New("read"), io.EOF) }

// Every method that takes a context refuses a nil one with ErrNilContext
// and does nothing else, never a panic; Lend with a nil one lends
// nothing. (Each panicked with a nil dereference.)
func TestNilContextIsRefused(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{"ok": nop})
	s := newStarted(t, reg, taskpool.WithDeadLetters(4, nil))
	var nilCtx context.Context
	task := taskpool.Task{Type: "ok"}
	assert.NotPanics(t, func() {
		assert.ErrorIs(t, s.Submit(nilCtx, task), taskpool.ErrNilContext)
		_, err := s.SubmitFuture(nilCtx, task)
		assert.ErrorIs(t, err, taskpool.ErrNilContext)
		_, err = s.SubmitWait(nilCtx, task)
		assert.ErrorIs(t, err, taskpool.ErrNilContext)
		assert.ErrorIs(t, s.SubmitAt(nilCtx, task, time.Now()), taskpool.ErrNilContext)
		assert.ErrorIs(t, s.SubmitAfter(nilCtx, task, time.Second), taskpool.ErrNilContext)
		assert.ErrorIs(t, s.Requeue(nilCtx, "x"), taskpool.ErrNilContext)
		assert.ErrorIs(t, s.Stop(nilCtx), taskpool.ErrNilContext)
		taskpool.Lend(nilCtx)()
	})
	f, err := s.SubmitFuture(context.Background(), task)
	require.NoError(t, err, "the scheduler still runs: Stop(nil) stopped nothing")
	_, err = f.Wait(nilCtx)
	assert.ErrorIs(t, err, taskpool.ErrNilContext)
	_, err = f.Wait(context.Background())
	require.NoError(t, err)
	st := s.Stats()
	assert.EqualValues(t, 1, st.Submitted, "nothing was accepted with a nil ctx")
}

// resultRec is a result type for TestResultAsTakesAAndPointerAlike.
type resultRec struct{ N int }

// ResultAs takes an A and a *A alike, as the wire does (where both are the
// same JSON, and a nil *A is null): a result set as &A{} reads as an A,
// one set as A{} as a *A, and a nil *A as the zero A. (In process each
// was ErrInvalidResult, while a broker's client read them.)
func TestResultAsTakesAAndPointerAlike(t *testing.T) {
	t.Parallel()
	v, err := taskpool.ResultAs[resultRec](&resultRec{N: 7})
	require.NoError(t, err)
	assert.Equal(t, resultRec{N: 7}, v)

	p, err := taskpool.ResultAs[*resultRec](resultRec{N: 8})
	require.NoError(t, err)
	assert.Equal(t, &resultRec{N: 8}, p)

	v, err = taskpool.ResultAs[resultRec]((*resultRec)(nil))
	require.NoError(t, err)
	assert.Equal(t, resultRec{}, v)

	p, err = taskpool.ResultAs[*resultRec]((*resultRec)(nil))
	require.NoError(t, err)
	assert.Nil(t, p)

	for _, give := range []any{nil, "x", 3, &struct{ N int }{1}} {
		_, err := taskpool.ResultAs[resultRec](give)
		assert.ErrorIs(t, err, taskpool.ErrInvalidResult, "%#v", give)
	}
	_, err = taskpool.ResultAs[error](errors.New("an error is a result too"))
	assert.NoError(t, err)
	_, err = taskpool.ResultAs[error](3)
	assert.ErrorIs(t, err, taskpool.ErrInvalidResult)
}
