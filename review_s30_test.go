package taskpool_test

import (
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
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
