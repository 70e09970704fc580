package taskpool_test

// Promises of Future, SubmitWait and the priority options that no other
// test covered; each test is named after the promise it checks.

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// Future: "any number of goroutines may wait on one Future", with or
// without a context that can end, and each gets the same outcome.
func TestPromiseManyGoroutinesWaitOnOneFuture(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"sq": func(_ context.Context, tk taskpool.Task) error {
			<-release
			tk.SetResult(tk.Params.(int) * tk.Params.(int))
			return errors.New("and an error")
		},
	})
	s, err := taskpool.New(reg, taskpool.WithWorkers(1))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "sq", Params: 9, MaxAttempts: 1})
	require.NoError(t, err)
	const waiters = 16
	type got struct {
		v   any
		err error
	}
	results := make(chan got, waiters)
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			if i%2 == 1 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
			}
			v, err := f.Wait(ctx)
			results <- got{v, err}
		}()
	}
	close(release)
	wg.Wait()
	close(results)
	n := 0
	for r := range results {
		n++
		assert.Equal(t, 81, r.v)
		assert.EqualError(t, r.err, "and an error")
	}
	assert.Equal(t, waiters, n)
	require.NoError(t, s.Stop(context.Background()))
}

// SubmitWait: "when ctx ends first, SubmitWait returns ctx's error and the
// task goes on" (ctx ending while it waits, not before it submits).
func TestPromiseSubmitWaitCtxEndsWhileWaitingTaskGoesOn(t *testing.T) {
	t.Parallel()
	running := make(chan struct{})
	release := make(chan struct{})
	done := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"slow": func(context.Context, taskpool.Task) error {
			close(running)
			<-release
			close(done)
			return nil
		},
	})
	s, err := taskpool.New(reg, taskpool.WithWorkers(1))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.SubmitWait(ctx, taskpool.Task{Type: "slow"})
		errc <- err
	}()
	<-running
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	close(release)
	<-done // the task went on to its end
	require.NoError(t, s.Stop(context.Background()))
	assert.Equal(t, uint64(1), s.Stats().Succeeded)
}

// WithPriorityWeights and WithStrictPriority: "the later of the two wins".
// Strict: with every priority queued while paused, all high tasks start
// before any normal one. Weighted after strict: a low task starts before
// the last high one.
func TestPromiseLaterPriorityOptionWins(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		opts   []taskpool.Option
		strict bool
	}{
		{"weights then strict", []taskpool.Option{taskpool.WithPriorityWeights(1, 1, 1), taskpool.WithStrictPriority()}, true},
		{"strict then weights", []taskpool.Option{taskpool.WithStrictPriority(), taskpool.WithPriorityWeights(1, 1, 1)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var order []taskpool.Priority
			reg := registry(t, map[string]taskpool.HandlerFunc{
				"t": func(_ context.Context, tk taskpool.Task) error {
					mu.Lock()
					order = append(order, tk.Priority)
					mu.Unlock()
					return nil
				},
			})
			opts := append([]taskpool.Option{taskpool.WithWorkers(1), taskpool.WithBatchSize(1)}, tc.opts...)
			s, err := taskpool.New(reg, opts...)
			require.NoError(t, err)
			require.NoError(t, s.Start())
			require.NoError(t, s.Pause())
			const each = 20
			for _, p := range []taskpool.Priority{taskpool.PriorityLow, taskpool.PriorityDefault, taskpool.PriorityHigh} {
				for range each {
					require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "t", Priority: p}))
				}
			}
			require.NoError(t, s.Resume())
			require.NoError(t, s.Stop(context.Background()))
			require.Len(t, order, 3*each)
			lastHigh, firstLow := -1, -1
			for i, p := range order {
				if p == taskpool.PriorityHigh {
					lastHigh = i
				}
				if p == taskpool.PriorityLow && firstLow < 0 {
					firstLow = i
				}
			}
			if tc.strict {
				assert.Less(t, lastHigh, firstLow, "strict: every high task before any low one: %v", order)
			} else {
				assert.Less(t, firstLow, lastHigh, "weighted: a low task before the last high one: %v", order)
			}
		})
	}
}
