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

// WithLendHook is told +1 when a handler lends its worker and -1 when it
// gives it back; a nil hook is invalid.
func TestTrialLendHook(t *testing.T) {
	_, err := taskpool.New(taskpool.NewRegistry(), taskpool.WithLendHook(nil))
	require.ErrorIs(t, err, taskpool.ErrInvalidOption)

	var mu sync.Mutex
	var deltas []int
	reg := taskpool.NewRegistry()
	gate := make(chan struct{})
	lent := make(chan struct{})
	require.NoError(t, reg.HandleFunc("wait", func(ctx context.Context, _ taskpool.Task) error {
		release := taskpool.Lend(ctx)
		defer release()
		close(lent)
		<-gate
		release()
		return nil
	}))
	s, err := taskpool.New(reg, taskpool.WithWorkers(1), taskpool.WithLendHook(func(d int) {
		mu.Lock()
		deltas = append(deltas, d)
		mu.Unlock()
	}))
	require.NoError(t, err)
	s.Start()
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "wait"})
	require.NoError(t, err)
	<-lent
	assert.Equal(t, 2, s.Stats().Workers)
	close(gate)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = f.Wait(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Stop(ctx))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []int{1, -1}, deltas)
}

// A handler lends its one worker, however many of its waits overlap: a
// handler that fans out and waits for its tasks from several goroutines
// at once (errgroup style) grows the pool by one worker, not by one per
// wait, so the pool stays bounded.
func TestTrialLendOncePerHandler(t *testing.T) {
	reg := taskpool.NewRegistry()
	const fan = 10
	gate := make(chan struct{})
	workers := make(chan int, 1)
	require.NoError(t, reg.HandleFunc("child", func(context.Context, taskpool.Task) error {
		<-gate
		return nil
	}))
	var s *taskpool.Scheduler
	require.NoError(t, reg.HandleFunc("parent", func(ctx context.Context, _ taskpool.Task) error {
		var releases []func()
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range fan {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := taskpool.Lend(ctx)
				mu.Lock()
				releases = append(releases, r)
				mu.Unlock()
			}()
		}
		wg.Wait()
		workers <- s.Stats().Workers
		for _, r := range releases {
			r()
		}
		return nil
	}))
	var err error
	s, err = taskpool.New(reg, taskpool.WithWorkers(2))
	require.NoError(t, err)
	s.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = s.SubmitWait(ctx, taskpool.Task{Type: "parent"})
	require.NoError(t, err)
	assert.Equal(t, 3, <-workers, "2 workers and the parent's, lent once")
	// The lent worker gone (a retired worker's goroutine is counted
	// until it exits), so that the next peak counts only the next loans.
	require.Eventually(t, func() bool { return s.Stats().Workers == 2 }, 10*time.Second, time.Millisecond)

	// The same with waits on Futures, from goroutines of one handler.
	peak := make(chan int, 1)
	require.NoError(t, reg.HandleFunc("fanout", func(ctx context.Context, _ taskpool.Task) error {
		var wg sync.WaitGroup
		for range fan {
			f, err := s.SubmitFuture(ctx, taskpool.Task{Type: "child"})
			if err != nil {
				return err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = f.Wait(ctx)
			}()
		}
		// Wait until the waits have lent what they lend, then look.
		for s.Stats().Running < 2 {
			runtime.Gosched()
		}
		peak <- s.Stats().Workers
		close(gate)
		wg.Wait()
		return nil
	}))
	_, err = s.SubmitWait(ctx, taskpool.Task{Type: "fanout"})
	require.NoError(t, err)
	assert.LessOrEqual(t, <-peak, 3)
	require.NoError(t, s.Stop(ctx))
}

type trialPtrArgs struct{ N int }

func (trialPtrArgs) Kind() string { return "trial-ptr-args" }

// A nil *A travels the wire as JSON null, which is no params: a typed
// handler of *A is not called and the task fails with ErrInvalidParams,
// in process as through the wire (WithStrictCodec shows it). In process
// the handler was called with the nil pointer.
func TestTrialNilPointerParamsAreNoParams(t *testing.T) {
	for _, strict := range []bool{false, true} {
		reg := taskpool.NewRegistry()
		var called atomic.Bool
		require.NoError(t, taskpool.Handle(reg, func(_ context.Context, _ *trialPtrArgs, _ taskpool.Task) error {
			called.Store(true)
			return nil
		}))
		var opts []taskpool.Option
		if strict {
			opts = append(opts, taskpool.WithStrictCodec(nil))
		}
		s, err := taskpool.New(reg, opts...)
		require.NoError(t, err)
		s.Start()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = s.SubmitWait(ctx, taskpool.TaskOf((*trialPtrArgs)(nil)))
		assert.ErrorIs(t, err, taskpool.ErrInvalidParams, "strict %v", strict)
		assert.ErrorIs(t, err, taskpool.ErrSkipRetry, "strict %v", strict)
		assert.False(t, called.Load(), "strict %v", strict)
		require.NoError(t, s.Stop(ctx))
		cancel()
	}
	_, err := taskpool.ParamsAs[*trialPtrArgs](taskpool.Task{Type: "x", Params: (*trialPtrArgs)(nil)})
	assert.ErrorIs(t, err, taskpool.ErrInvalidParams)
	_, err = taskpool.ParamsAs[map[string]int](taskpool.Task{Type: "x", Params: map[string]int(nil)})
	assert.ErrorIs(t, err, taskpool.ErrInvalidParams)
	got, err := taskpool.ParamsAs[*trialPtrArgs](taskpool.Task{Type: "x", Params: &trialPtrArgs{N: 1}})
	require.NoError(t, err)
	assert.Equal(t, 1, got.N)
}
