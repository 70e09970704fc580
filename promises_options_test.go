package taskpool_test

// Promises of the options, New, Resize and the Registry that no other
// test covered; each test is named after the promise it checks.

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// Middleware: the scheduler builds a type's chain once, the first time a
// task of that type is submitted, never per task; for its own middleware
// and the registry's alike.
func TestPromiseMiddlewareChainBuiltOncePerType(t *testing.T) {
	t.Parallel()
	var schedBuilt, regBuilt atomic.Int32
	counting := func(n *atomic.Int32) taskpool.Middleware {
		return func(next taskpool.Handler) taskpool.Handler {
			n.Add(1)
			return next
		}
	}
	var ran atomic.Int32
	count := func(context.Context, taskpool.Task) error { ran.Add(1); return nil }
	reg := registry(t, map[string]taskpool.HandlerFunc{"a": count, "b": count, "unused": count})
	require.NoError(t, reg.Use(counting(&regBuilt)))
	s := start(t, reg, taskpool.WithMiddleware(counting(&schedBuilt)), taskpool.WithWorkers(2))
	assert.Zero(t, schedBuilt.Load()+regBuilt.Load(), "nothing is built before a type is submitted")
	const n = 100
	for i := range n {
		typ := "a"
		if i%2 == 1 {
			typ = "b"
		}
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: typ}))
	}
	require.Eventually(t, func() bool { return ran.Load() == n }, waitFor, time.Millisecond)
	assert.EqualValues(t, 2, schedBuilt.Load(), "the scheduler's middleware: once per type used")
	assert.EqualValues(t, 2, regBuilt.Load(), "the registry's middleware: once per type used")
}
