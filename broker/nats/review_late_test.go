package natsbroker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

var errLateCause = errors.New("test: the cause of a Stop's ctx")

// A Consumer's StopError.Err is the error of the context given to Stop
// (ctx.Err()), as the in-process scheduler's is and StopError's doc says,
// not its cause: 16ea2d3 set it to context.Cause, so that a Stop whose ctx
// had a cause of its own (WithTimeoutCause, WithCancelCause) returned an
// error that was no longer context.DeadlineExceeded or context.Canceled.
// Both the first Stop that gives up and a later one that cuts a graceful
// first one short are pinned.
func TestReviewLateStopErrorErrIsTheCtxsErrNotItsCause(t *testing.T) {
	t.Parallel()
	for _, later := range []bool{false, true} {
		name := map[bool]string{false: "first", true: "later"}[later]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cons := hangingConsumer(t)

			var first chan error
			if later {
				first = make(chan error, 1)
				go func() { first <- cons.Stop(context.Background()) }()
				require.Eventually(t, func() bool { return !cons.Health().Consuming }, 10*time.Second, time.Millisecond)
			}
			sctx, cancel := context.WithTimeoutCause(context.Background(), 100*time.Millisecond, errLateCause)
			defer cancel()
			stopped := make(chan error, 1)
			go func() { stopped <- cons.Stop(sctx) }()
			err := recvT(t, stopped, 10*time.Second, "the Stop with a deadline")
			var se *taskpool.StopError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, context.DeadlineExceeded, se.Err)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			if later {
				assert.NoError(t, recvT(t, first, 10*time.Second, "the first Stop"))
			}
		})
	}
}
