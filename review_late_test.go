package taskpool_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// A lend hook that panics is logged, as a completion or dead-letter hook
// is, and neither stops the other hooks nor the loan. It propagated
// instead, out of the lender with its count taken: the handler's wait
// failed with a *PanicError, the other hooks were never told, the pool
// kept the lent worker for good (Workers stayed 2 with WithWorkers(1)),
// and that worker's handlers never lent again.
func TestReviewLateLendHookPanicIsLogged(t *testing.T) {
	var mu sync.Mutex
	var deltas []int
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("child", func(context.Context, taskpool.Task) error { return nil }))
	var s *taskpool.Scheduler
	require.NoError(t, reg.HandleFunc("parent", func(ctx context.Context, _ taskpool.Task) error {
		_, err := s.SubmitWait(ctx, taskpool.Task{Type: "child"})
		return err
	}))
	var err error
	s, err = taskpool.New(reg, taskpool.WithWorkers(1),
		taskpool.WithLendHook(func(int) { panic("lend hook") }),
		taskpool.WithLendHook(func(d int) {
			mu.Lock()
			deltas = append(deltas, d)
			mu.Unlock()
		}))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		_, err = s.SubmitWait(ctx, taskpool.Task{Type: "parent"})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return s.Stats().Workers == 1 }, 10*time.Second, time.Millisecond,
		"the lent worker is given back")
	require.NoError(t, s.Stop(ctx))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []int{1, -1, 1, -1}, deltas, "the other hook is told each loan")
}

// A lend hook that calls runtime.Goexit ends only its own call: the other
// hooks are told, the wait goes on, and the loan is given back, for a
// wait on a Future and for a Submit waiting for room in a full queue
// (where the Goexit ran inside the engine's wait, with the Put's waiter
// queued).
func TestLendHookGoexitEndsOnlyItsCall(t *testing.T) {
	var told atomic.Int64
	var s *taskpool.Scheduler
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"child": nop,
		"parent": func(ctx context.Context, _ taskpool.Task) error {
			_, err := s.SubmitWait(ctx, taskpool.Task{Type: "child"})
			return err
		},
		"flood": func(ctx context.Context, _ taskpool.Task) error {
			for range 6 { // more than the queue holds: a Submit waits for room
				if err := s.Submit(ctx, taskpool.Task{Type: "child"}); err != nil {
					return err
				}
			}
			return nil
		},
	})
	var err error
	s, err = taskpool.New(reg, taskpool.WithWorkers(1), taskpool.WithQueueSize(2), taskpool.WithBatchSize(1),
		taskpool.WithLendHook(func(int) { runtime.Goexit() }),
		taskpool.WithLendHook(func(int) { told.Add(1) }))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = s.SubmitWait(ctx, taskpool.Task{Type: "parent"})
	require.NoError(t, err)
	_, err = s.SubmitWait(ctx, taskpool.Task{Type: "flood"})
	require.NoError(t, err)
	require.NoError(t, s.Stop(ctx))
	st := s.Stats()
	assert.EqualValues(t, 2+1+6, st.Submitted)
	assert.EqualValues(t, st.Submitted, st.Succeeded)
	assert.Positive(t, told.Load())
	assert.Zero(t, told.Load()%2, "each loan told, and its end")
}
