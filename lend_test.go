package taskpool_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// lendHang bounds the waits of the lending tests: without lending they
// deadlock, and the wait ends with context.DeadlineExceeded instead.
const lendHang = 10 * time.Second

// fanOut returns a registry whose "parent" task submits n "child" tasks
// with SubmitFuture and waits for each, returning the sum of their
// results (each child's result is its Params, an int), and whose "wait"
// task SubmitWaits one "child" and returns its result. With one worker,
// each wait would hold the only worker.
func fanOut(t *testing.T, s **taskpool.Scheduler, n int) *taskpool.Registry {
	return registry(t, map[string]taskpool.HandlerFunc{
		"child": func(_ context.Context, t taskpool.Task) error {
			t.SetResult(t.Params)
			return nil
		},
		"parent": func(ctx context.Context, t taskpool.Task) error {
			fs := make([]*taskpool.Future, n)
			for i := range fs {
				f, err := (*s).SubmitFuture(ctx, taskpool.Task{Type: "child", Params: i})
				if err != nil {
					return err
				}
				fs[i] = f
			}
			sum := 0
			for _, f := range fs {
				v, err := f.Wait(ctx)
				if err != nil {
					return err
				}
				sum += v.(int)
			}
			t.SetResult(sum)
			return nil
		},
		"wait": func(ctx context.Context, t taskpool.Task) error {
			v, err := (*s).SubmitWait(ctx, taskpool.Task{Type: "child", Params: t.Params})
			t.SetResult(v)
			return err
		},
	})
}

// submitAndWait submits n tasks of type typ as futures, all before it
// waits for any, then waits for each, failing t on an error, and returns
// their results in order.
func submitAndWait(t *testing.T, ctx context.Context, s *taskpool.Scheduler, n int, typ string) []any {
	t.Helper()
	fs := make([]*taskpool.Future, n)
	for i := range fs {
		f, err := s.SubmitFuture(ctx, taskpool.Task{Type: typ})
		require.NoError(t, err)
		fs[i] = f
	}
	out := make([]any, n)
	for i, f := range fs {
		v, err := f.Wait(ctx)
		require.NoError(t, err)
		out[i] = v
	}
	return out
}

// A handler that waits for tasks it submitted to its own scheduler, with
// its ctx, lends its worker meanwhile: on a pool of one worker, and with
// every worker waiting, the tasks waited for run, and the pool shrinks
// back once the waits are over. (Each wait held the only worker: the
// pool deadlocked until the test's deadline.)
func TestHandlerWaitingForItsOwnTasksLendsItsWorker(t *testing.T) {
	t.Parallel()
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			t.Parallel()
			var s *taskpool.Scheduler
			s = newStarted(t, fanOut(t, &s, 8), taskpool.WithWorkers(workers))
			ctx, cancel := context.WithTimeout(context.Background(), lendHang)
			defer cancel()

			// As many parents as workers, and then some: every worker
			// waits at once.
			for _, v := range submitAndWait(t, ctx, s, 3*workers, "parent") {
				assert.Equal(t, 28, v) // 0+1+...+7
			}
			v, err := s.SubmitWait(ctx, taskpool.Task{Type: "wait", Params: 5})
			require.NoError(t, err)
			assert.Equal(t, 5, v)

			require.Eventually(t, func() bool { return s.Stats().Workers == workers },
				lendHang, time.Millisecond, "the lent workers are retired once idle")
		})
	}
}

// Waits nest: a handler waits for a task that waits for a task, on one
// worker, each lending its worker in turn.
func TestNestedWaitsLendAWorkerEach(t *testing.T) {
	t.Parallel()
	var s *taskpool.Scheduler
	const depth = 5
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"nest": func(ctx context.Context, t taskpool.Task) error {
			d := t.Params.(int)
			if d == 0 {
				t.SetResult(0)
				return nil
			}
			v, err := s.SubmitWait(ctx, taskpool.Task{Type: "nest", Params: d - 1})
			if err != nil {
				return err
			}
			t.SetResult(v.(int) + 1)
			return nil
		},
	})
	s = newStarted(t, reg, taskpool.WithWorkers(1))
	ctx, cancel := context.WithTimeout(context.Background(), lendHang)
	defer cancel()
	v, err := s.SubmitWait(ctx, taskpool.Task{Type: "nest", Params: depth})
	require.NoError(t, err)
	assert.Equal(t, depth, v)
	require.Eventually(t, func() bool { return s.Stats().Workers == 1 }, lendHang, time.Millisecond)
}

// A handler's Submit that waits for room in a full queue lends its worker
// too: handlers that each submit more tasks than the queue holds, on one
// worker, all get their tasks in, and every task runs.
func TestHandlerBlockedOnAFullQueueLendsItsWorker(t *testing.T) {
	t.Parallel()
	var s *taskpool.Scheduler
	var children atomic.Int64
	const perParent = 20
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"child": func(context.Context, taskpool.Task) error { children.Add(1); return nil },
		"parent": func(ctx context.Context, _ taskpool.Task) error {
			for range perParent {
				if err := s.Submit(ctx, taskpool.Task{Type: "child"}); err != nil {
					return err
				}
			}
			return nil
		},
	})
	s = newStarted(t, reg, taskpool.WithWorkers(1), taskpool.WithQueueSize(2), taskpool.WithBatchSize(1))
	ctx, cancel := context.WithTimeout(context.Background(), lendHang)
	defer cancel()
	submitAndWait(t, ctx, s, 3, "parent")
	require.NoError(t, s.Stop(ctx))
	assert.EqualValues(t, 3*perParent, children.Load())
}

// Only the handler's ctx, or one derived from it, lends: a handler that
// waits with another ctx holds its worker (the pool keeps its size), and
// so does a wait on a task that has finished already.
func TestOnlyAHandlersCtxLends(t *testing.T) {
	t.Parallel()
	var s *taskpool.Scheduler
	waiting := make(chan int, 2)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"child": nop,
		"other ctx": func(context.Context, taskpool.Task) error {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			f, err := s.SubmitFuture(ctx, taskpool.Task{Type: "child"})
			if err != nil {
				return err
			}
			_, err = f.Wait(ctx) // the only worker is here: the child waits
			waiting <- s.Stats().Workers
			return err
		},
		"derived ctx": func(ctx context.Context, _ taskpool.Task) error {
			ctx, cancel := context.WithTimeout(ctx, lendHang)
			defer cancel()
			_, err := s.SubmitWait(ctx, taskpool.Task{Type: "child"})
			return err
		},
	})
	s = newStarted(t, reg, taskpool.WithWorkers(1))
	ctx := context.Background()
	_, err := s.SubmitWait(ctx, taskpool.Task{Type: "other ctx"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, 1, <-waiting, "no worker lent")
	_, err = s.SubmitWait(ctx, taskpool.Task{Type: "derived ctx"})
	require.NoError(t, err)

	f, err := s.SubmitFuture(ctx, taskpool.Task{Type: "child"})
	require.NoError(t, err)
	_, err = f.Wait(ctx)
	require.NoError(t, err)
}

// A graceful Stop while handlers wait for their own tasks runs them all:
// the lent workers run the tasks waited for, and Stop returns nil with
// every task succeeded.
func TestStopWhileHandlersWaitForTheirOwnTasks(t *testing.T) {
	t.Parallel()
	var s *taskpool.Scheduler
	inWait := make(chan struct{}, 4)
	release := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"child": func(context.Context, taskpool.Task) error { <-release; return nil },
		"parent": func(ctx context.Context, _ taskpool.Task) error {
			f, err := s.SubmitFuture(ctx, taskpool.Task{Type: "child"})
			if err != nil {
				return err
			}
			inWait <- struct{}{}
			_, err = f.Wait(ctx)
			return err
		},
	})
	s = newStarted(t, reg, taskpool.WithWorkers(2))
	ctx, cancel := context.WithTimeout(context.Background(), lendHang)
	defer cancel()
	for range 2 {
		require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "parent"}))
	}
	for range 2 {
		<-inWait
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(ctx) }()
	close(release)
	require.NoError(t, <-stopped)
	st := s.Stats()
	assert.EqualValues(t, 4, st.Submitted)
	assert.EqualValues(t, 4, st.Succeeded)
}

// Resize while a handler lends its worker sets the size the pool returns
// to: the lent worker comes on top of it, and goes once the wait is over.
func TestResizeWhileAWorkerIsLent(t *testing.T) {
	t.Parallel()
	var s *taskpool.Scheduler
	inWait := make(chan struct{})
	release := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"child": func(context.Context, taskpool.Task) error { <-release; return nil },
		"parent": func(ctx context.Context, _ taskpool.Task) error {
			f, err := s.SubmitFuture(ctx, taskpool.Task{Type: "child"})
			if err != nil {
				return err
			}
			close(inWait)
			_, err = f.Wait(ctx)
			return err
		},
	})
	s = newStarted(t, reg, taskpool.WithWorkers(1))
	ctx, cancel := context.WithTimeout(context.Background(), lendHang)
	defer cancel()
	f, err := s.SubmitFuture(ctx, taskpool.Task{Type: "parent"})
	require.NoError(t, err)
	<-inWait
	require.Eventually(t, func() bool { return s.Stats().Workers == 2 }, lendHang, time.Millisecond, "one lent")
	require.NoError(t, s.Resize(3))
	require.Eventually(t, func() bool { return s.Stats().Workers == 4 }, lendHang, time.Millisecond, "3 and the lent one")
	close(release)
	_, err = f.Wait(ctx)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.Stats().Workers == 3 }, lendHang, time.Millisecond, "back to 3")
}

// Lending does not lift a type's concurrency limit: a handler of a type
// limited to 1 that waits for another task of its type waits until its
// own slot is free, which here is never: the wait ends with its ctx, and
// the child runs after the parent has returned, never beside it.
func TestLendingKeepsTheConcurrencyLimit(t *testing.T) {
	t.Parallel()
	var s *taskpool.Scheduler
	var running, most atomic.Int64
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("limited", func(ctx context.Context, t taskpool.Task) error {
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if t.Params == nil {
			return nil
		}
		ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := s.SubmitWait(ctx, taskpool.Task{Type: "limited"})
		return err
	}, taskpool.WithConcurrencyLimit(1)))
	s = newStarted(t, reg, taskpool.WithWorkers(1))
	ctx, cancel := context.WithTimeout(context.Background(), lendHang)
	defer cancel()
	_, err := s.SubmitWait(ctx, taskpool.Task{Type: "limited", Params: "parent"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, s.Stop(ctx))
	st := s.Stats()
	assert.EqualValues(t, 2, st.Submitted)
	assert.EqualValues(t, 1, st.Succeeded, "the child ran, after the parent")
	assert.EqualValues(t, 1, most.Load())
}

// Lend lends a handler's worker around any wait on work of its own
// scheduler: here a receive from a channel that another task feeds, on
// one worker. release is idempotent: the pool comes back to its size,
// not below. With a ctx that is not a handler's, Lend lends nothing.
func TestLendAroundAWaitOnAChannel(t *testing.T) {
	t.Parallel()
	var s *taskpool.Scheduler
	fed := make(chan int)
	workers := make(chan int, 1)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"feed": func(context.Context, taskpool.Task) error { fed <- 7; return nil },
		"consume": func(ctx context.Context, t taskpool.Task) error {
			if err := s.Submit(ctx, taskpool.Task{Type: "feed"}); err != nil {
				return err
			}
			release := taskpool.Lend(ctx)
			v := <-fed
			workers <- s.Stats().Workers
			release()
			release()
			t.SetResult(v)
			return nil
		},
	})
	s = newStarted(t, reg, taskpool.WithWorkers(1))
	ctx, cancel := context.WithTimeout(context.Background(), lendHang)
	defer cancel()
	v, err := s.SubmitWait(ctx, taskpool.Task{Type: "consume"})
	require.NoError(t, err)
	assert.Equal(t, 7, v)
	assert.Equal(t, 2, <-workers, "one lent")
	require.Eventually(t, func() bool { return s.Stats().Workers == 1 }, lendHang, time.Millisecond)
	require.NoError(t, s.Resize(2))
	require.Eventually(t, func() bool { return s.Stats().Workers == 2 }, lendHang, time.Millisecond,
		"a second release took nothing back")

	release := taskpool.Lend(context.Background())
	release()
	assert.Equal(t, 2, s.Stats().Workers)
}

// A handler that waits with its ctx lends its own scheduler's worker,
// whatever it waits for: here a Future of another scheduler. Its
// scheduler, of one worker, runs another task meanwhile.
func TestWaitingOnAnotherSchedulersFutureLendsTheHandlersOwn(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	other := newStarted(t, registry(t, map[string]taskpool.HandlerFunc{
		"slow": func(context.Context, taskpool.Task) error { <-release; return nil },
	}), taskpool.WithWorkers(1))
	ran := make(chan struct{})
	s := newStarted(t, registry(t, map[string]taskpool.HandlerFunc{
		"wait": func(ctx context.Context, _ taskpool.Task) error {
			f, err := other.SubmitFuture(ctx, taskpool.Task{Type: "slow"})
			if err != nil {
				return err
			}
			_, err = f.Wait(ctx)
			return err
		},
		"quick": func(context.Context, taskpool.Task) error { close(ran); return nil },
	}), taskpool.WithWorkers(1))
	ctx, cancel := context.WithTimeout(context.Background(), lendHang)
	defer cancel()
	f, err := s.SubmitFuture(ctx, taskpool.Task{Type: "wait"})
	require.NoError(t, err)
	require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "quick"}))
	select {
	case <-ran:
	case <-ctx.Done():
		t.Fatal("the quick task waited behind the handler that waits")
	}
	close(release)
	_, err = f.Wait(ctx)
	require.NoError(t, err)
}
