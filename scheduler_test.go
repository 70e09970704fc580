package taskpool_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskpool/taskpool"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// outcomes collects what the completion hook sees.
type outcomes struct {
	mu   sync.Mutex
	byID map[string][]taskpool.Outcome
	all  []taskpool.Outcome
}

func newOutcomes() *outcomes { return &outcomes{byID: make(map[string][]taskpool.Outcome)} }

func (o *outcomes) hook(out taskpool.Outcome) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.byID[out.Task.ID] = append(o.byID[out.Task.ID], out)
	o.all = append(o.all, out)
}

func (o *outcomes) snapshot() []taskpool.Outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]taskpool.Outcome(nil), o.all...)
}

func (o *outcomes) count(id string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.byID[id])
}

// start returns a started scheduler over reg that is stopped at the end of
// the test.
func start(t *testing.T, reg *taskpool.Registry, opts ...taskpool.Option) *taskpool.Scheduler {
	t.Helper()
	s, err := taskpool.New(reg, opts...)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	t.Cleanup(func() { assert.NoError(t, s.Stop(context.Background())) })
	return s
}

func registry(t *testing.T, handlers map[string]taskpool.HandlerFunc) *taskpool.Registry {
	t.Helper()
	reg := taskpool.NewRegistry()
	for typ, h := range handlers {
		require.NoError(t, reg.Handle(typ, h))
	}
	return reg
}

func nop(context.Context, taskpool.Task) error { return nil }

func TestEveryTaskRunsExactlyOnce(t *testing.T) {
	t.Parallel()
	const producers, perProducer = 8, 2000
	var ran sync.Map // ID -> *atomic.Int32
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"count": func(_ context.Context, tk taskpool.Task) error {
			n, _ := ran.LoadOrStore(tk.ID, new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
			return nil
		},
	})
	got := newOutcomes()
	s, err := taskpool.New(reg, taskpool.WithWorkers(4), taskpool.WithQueueSize(16),
		taskpool.WithCompletionHook(got.hook))
	require.NoError(t, err)
	require.NoError(t, s.Start())

	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perProducer {
				id := fmt.Sprintf("p%d-%d", p, i)
				assert.NoError(t, s.Submit(context.Background(), taskpool.Task{ID: id, Type: "count"}))
			}
		}()
	}
	wg.Wait()
	require.NoError(t, s.Stop(context.Background()))

	for p := range producers {
		for i := range perProducer {
			id := fmt.Sprintf("p%d-%d", p, i)
			n, ok := ran.Load(id)
			require.True(t, ok, "task %s never ran", id)
			assert.EqualValues(t, 1, n.(*atomic.Int32).Load(), "task %s", id)
			assert.Equal(t, 1, got.count(id), "hook calls for %s", id)
		}
	}
	st := s.Stats()
	assert.EqualValues(t, producers*perProducer, st.Submitted)
	assert.EqualValues(t, producers*perProducer, st.Succeeded)
	assert.Zero(t, st.Queued)
	assert.Zero(t, st.Running)
	assert.Zero(t, st.Workers)
}

func TestStopDuringSubmitStorm(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{"nop": nop})
	got := newOutcomes()
	s, err := taskpool.New(reg, taskpool.WithWorkers(2), taskpool.WithQueueSize(8),
		taskpool.WithCompletionHook(got.hook))
	require.NoError(t, err)
	require.NoError(t, s.Start())

	const producers = 8
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted []string
		rejected atomic.Int64
		started  = make(chan struct{}, producers)
	)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if i == 10 {
					started <- struct{}{}
				}
				id := fmt.Sprintf("p%d-%d", p, i)
				err := s.Submit(context.Background(), taskpool.Task{ID: id, Type: "nop"})
				if err != nil {
					assert.ErrorIs(t, err, taskpool.ErrSchedulerClosed)
					rejected.Add(1)
					return
				}
				mu.Lock()
				accepted = append(accepted, id)
				mu.Unlock()
			}
		}()
	}
	for range producers {
		<-started
	}
	require.NoError(t, s.Stop(context.Background()))
	wg.Wait()

	assert.EqualValues(t, producers, rejected.Load(), "each producer stops on ErrSchedulerClosed")
	require.NotEmpty(t, accepted)
	for _, id := range accepted {
		assert.Equal(t, 1, got.count(id), "task %s reported %d times", id, got.count(id))
	}
	assert.Len(t, got.snapshot(), len(accepted), "no outcome for a rejected task")
	for _, out := range got.snapshot() {
		assert.NoError(t, out.Err, "graceful stop runs every accepted task")
	}
}

func TestStopDeadlineCancelsRunningAndReportsNotRun(t *testing.T) {
	t.Parallel()
	const workers, tasks = 2, 10
	running := make(chan struct{}, tasks)
	causes := make(chan error, tasks)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"block": func(ctx context.Context, _ taskpool.Task) error {
			running <- struct{}{}
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return ctx.Err()
		},
	})
	got := newOutcomes()
	s, err := taskpool.New(reg, taskpool.WithWorkers(workers), taskpool.WithBatchSize(1),
		taskpool.WithCompletionHook(got.hook))
	require.NoError(t, err)
	require.NoError(t, s.Start())

	futures := make([]*taskpool.Future, tasks)
	for i := range futures {
		futures[i], err = s.SubmitFuture(context.Background(), taskpool.Task{Type: "block"})
		require.NoError(t, err)
	}
	for range workers {
		<-running
	}

	stopErr := stopPastDeadline(t, s)
	assert.Equal(t, tasks-workers, stopErr.NotRun)
	assert.ErrorIs(t, stopErr, taskpool.ErrSchedulerClosed)
	assert.ErrorIs(t, stopErr, context.Canceled)

	for range workers {
		assert.ErrorIs(t, <-causes, taskpool.ErrSchedulerClosed, "handlers see the stop as the cause")
	}
	outs := got.snapshot()
	require.Len(t, outs, tasks, "the hook sees every accepted task")
	var notRun, cancelled int
	for _, out := range outs {
		switch {
		case errors.Is(out.Err, taskpool.ErrSchedulerClosed):
			notRun++
			assert.Zero(t, out.Attempts)
		case errors.Is(out.Err, context.Canceled):
			cancelled++
			assert.Equal(t, 1, out.Attempts)
		}
	}
	assert.Equal(t, tasks-workers, notRun)
	assert.Equal(t, workers, cancelled)
	for _, f := range futures {
		_, err := f.Wait(context.Background())
		assert.Error(t, err)
	}
	assert.EqualValues(t, tasks-workers, s.Stats().NotRun)
	assert.NoError(t, s.Stop(context.Background()), "a second Stop does nothing")
}

// stopPastDeadline stops s with a context that has already ended, and
// returns the *StopError that Stop must return then.
func stopPastDeadline(t *testing.T, s *taskpool.Scheduler) *taskpool.StopError {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the deadline has already passed
	var stopErr *taskpool.StopError
	require.ErrorAs(t, s.Stop(ctx), &stopErr)
	return stopErr
}

// A running task whose handler fails because Stop's deadline cancelled it,
// with attempts left, is reported not run, as a retry waiting at the
// deadline is: its error wraps ErrSchedulerClosed and the run's error, it
// counts in NotRun (and StopError.NotRun), not in Failed, and it is no
// dead letter. Its next attempt never starts.
func TestStopDeadlineReportsTheRetryOfAnInterruptedTaskNotRun(t *testing.T) {
	t.Parallel()
	const workers = 2
	running := make(chan struct{}, workers)
	var runs atomic.Int32
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("block", func(ctx context.Context, _ taskpool.Task) error {
		runs.Add(1)
		running <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}, taskpool.WithRetry(3, taskpool.ConstantBackoff(time.Millisecond))))
	got := newOutcomes()
	s, err := taskpool.New(reg, taskpool.WithWorkers(workers), taskpool.WithCompletionHook(got.hook),
		taskpool.WithDeadLetters(8, nil))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	for range workers {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "block"}))
	}
	for range workers {
		<-running
	}

	assert.Equal(t, workers, stopPastDeadline(t, s).NotRun)
	outs := got.snapshot()
	require.Len(t, outs, workers)
	for _, out := range outs {
		assert.ErrorIs(t, out.Err, taskpool.ErrSchedulerClosed)
		assert.ErrorIs(t, out.Err, context.Canceled, "the run's error is kept")
		assert.Equal(t, 1, out.Attempts)
	}
	st := s.Stats()
	assert.EqualValues(t, workers, st.NotRun)
	assert.Zero(t, st.Failed)
	assert.Empty(t, s.DeadLetters())
	assert.EqualValues(t, workers, runs.Load(), "no second attempt")
}

func TestStopWaitsForRunningAndQueuedTasks(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var ran atomic.Int32
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"slow": func(context.Context, taskpool.Task) error {
			<-release
			ran.Add(1)
			return nil
		},
	})
	s, err := taskpool.New(reg, taskpool.WithWorkers(2))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	for range 20 {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "slow"}))
	}
	stopped := make(chan error)
	go func() { stopped <- s.Stop(context.Background()) }()
	accepted := int32(20)
	require.Eventually(t, func() bool {
		err := s.TrySubmit(taskpool.Task{Type: "slow"})
		if err == nil { // got in before Stop closed the gate
			accepted++
		}
		return errors.Is(err, taskpool.ErrSchedulerClosed)
	}, 5*time.Second, time.Millisecond, "Stop stops accepting")
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned %v with tasks still running", err)
	default:
	}
	close(release)
	require.NoError(t, <-stopped)
	assert.Equal(t, accepted, ran.Load())
}

func TestPanicIsRecoveredAndWorkerSurvives(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	boom := errors.New("boom")
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"panic":     func(context.Context, taskpool.Task) error { panic("kaput") },
		"panic-err": func(context.Context, taskpool.Task) error { panic(boom) },
		"ok":        nop,
	})
	s := start(t, reg, taskpool.WithWorkers(1), taskpool.WithLogger(logger))

	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "panic"})
	require.NoError(t, err)
	_, err = f.Wait(context.Background())
	var pe *taskpool.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "kaput", pe.Value)
	assert.Contains(t, string(pe.Stack), "scheduler_test.go")

	f, err = s.SubmitFuture(context.Background(), taskpool.Task{Type: "panic-err"})
	require.NoError(t, err)
	_, err = f.Wait(context.Background())
	assert.ErrorIs(t, err, boom, "PanicError unwraps an error value")

	f, err = s.SubmitFuture(context.Background(), taskpool.Task{Type: "ok"})
	require.NoError(t, err)
	_, err = f.Wait(context.Background())
	assert.NoError(t, err, "the only worker survived both panics")

	st := s.Stats()
	assert.EqualValues(t, 2, st.Panicked)
	assert.EqualValues(t, 1, st.Succeeded)
	assert.Equal(t, 1, st.Workers)
	logMu.Lock()
	defer logMu.Unlock()
	assert.Contains(t, logs.String(), "handler panic")
	assert.Contains(t, logs.String(), "kaput")
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func TestGoexitInHandlerDoesNotLoseTheWorker(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"exit": func(context.Context, taskpool.Task) error { runtime.Goexit(); return nil },
		"ok":   nop,
	})
	s := start(t, reg, taskpool.WithWorkers(1), taskpool.WithBatchSize(4))

	var fs []*taskpool.Future
	for _, typ := range []string{"exit", "ok", "exit", "ok"} {
		f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: typ})
		require.NoError(t, err)
		fs = append(fs, f)
	}
	for i, f := range fs {
		_, err := f.Wait(context.Background())
		if i%2 == 0 {
			assert.ErrorIs(t, err, taskpool.ErrHandlerExited)
		} else {
			assert.NoError(t, err)
		}
	}
	assert.Equal(t, 1, s.Stats().Workers)
}

func TestErrors(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{"ok": nop})

	t.Run("new", func(t *testing.T) {
		tests := []struct {
			name string
			give []taskpool.Option
			h    taskpool.Handler
			want error
		}{
			{"nil handler", nil, nil, taskpool.ErrNilHandler},
			{"nil registry", nil, (*taskpool.Registry)(nil), taskpool.ErrNilHandler},
			{"nil func", nil, taskpool.HandlerFunc(nil), taskpool.ErrNilHandler},
			{"negative workers", []taskpool.Option{taskpool.WithWorkers(-1)}, reg, taskpool.ErrInvalidOption},
			{"negative queue", []taskpool.Option{taskpool.WithQueueSize(-1)}, reg, taskpool.ErrInvalidOption},
			{"negative batch", []taskpool.Option{taskpool.WithBatchSize(-1)}, reg, taskpool.ErrInvalidOption},
			{"negative timeout", []taskpool.Option{taskpool.WithTaskTimeout(-time.Second)}, reg, taskpool.ErrInvalidOption},
			{"nil middleware", []taskpool.Option{taskpool.WithMiddleware(nil)}, reg, taskpool.ErrInvalidOption},
			{"nil base context", []taskpool.Option{taskpool.WithBaseContext(nil)}, reg, taskpool.ErrInvalidOption}, //nolint:staticcheck // testing the nil check
			{"nil option", []taskpool.Option{nil}, reg, taskpool.ErrInvalidOption},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s, err := taskpool.New(tt.h, tt.give...)
				assert.ErrorIs(t, err, tt.want)
				assert.Nil(t, s)
			})
		}
	})

	t.Run("submit", func(t *testing.T) {
		s := start(t, reg)
		tests := []struct {
			name string
			give taskpool.Task
			want error
		}{
			{"empty type", taskpool.Task{}, taskpool.ErrInvalidType},
			{"unknown type", taskpool.Task{Type: "nope"}, taskpool.ErrNoHandler},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				assert.ErrorIs(t, s.Submit(context.Background(), tt.give), tt.want)
				assert.ErrorIs(t, s.TrySubmit(tt.give), tt.want)
				_, err := s.SubmitFuture(context.Background(), tt.give)
				assert.ErrorIs(t, err, tt.want)
			})
		}
		assert.Zero(t, s.Stats().Submitted, "rejected tasks are not counted")
	})

	t.Run("lifecycle", func(t *testing.T) {
		s, err := taskpool.New(reg)
		require.NoError(t, err)
		task := taskpool.Task{Type: "ok"}
		assert.ErrorIs(t, s.Submit(context.Background(), task), taskpool.ErrNotStarted)
		assert.ErrorIs(t, s.TrySubmit(task), taskpool.ErrNotStarted)
		require.NoError(t, s.Start())
		assert.ErrorIs(t, s.Start(), taskpool.ErrAlreadyStarted)
		require.NoError(t, s.Stop(context.Background()))
		require.NoError(t, s.Stop(context.Background()), "Stop is idempotent")
		assert.ErrorIs(t, s.Submit(context.Background(), task), taskpool.ErrSchedulerClosed)
		assert.ErrorIs(t, s.TrySubmit(task), taskpool.ErrSchedulerClosed)
		assert.ErrorIs(t, s.Start(), taskpool.ErrSchedulerClosed)
	})

	t.Run("stop before start", func(t *testing.T) {
		s, err := taskpool.New(reg)
		require.NoError(t, err)
		require.NoError(t, s.Stop(context.Background()))
		assert.ErrorIs(t, s.Start(), taskpool.ErrSchedulerClosed)
		assert.ErrorIs(t, s.Submit(context.Background(), taskpool.Task{Type: "ok"}), taskpool.ErrSchedulerClosed)
	})

	t.Run("cancelled submit context", func(t *testing.T) {
		s := start(t, reg)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		assert.ErrorIs(t, s.Submit(ctx, taskpool.Task{Type: "ok"}), context.Canceled)
	})
}

// fullScheduler returns a scheduler whose only worker is blocked and whose
// queue is full, and the function that unblocks it.
func fullScheduler(t *testing.T) (*taskpool.Scheduler, func()) {
	t.Helper()
	release := make(chan struct{})
	running := make(chan struct{}, 1)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"block": func(context.Context, taskpool.Task) error {
			select {
			case running <- struct{}{}:
			default:
			}
			<-release
			return nil
		},
	})
	s := start(t, reg, taskpool.WithWorkers(1), taskpool.WithQueueSize(2), taskpool.WithBatchSize(1))
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "block"}))
	<-running
	// Full means: one task running and two in the queue. Tasks the
	// dispatcher holds while it waits for a worker count against the
	// bound, so exactly two more are accepted.
	for range 2 {
		require.NoError(t, s.TrySubmit(taskpool.Task{Type: "block"}))
	}
	require.ErrorIs(t, s.TrySubmit(taskpool.Task{Type: "block"}), taskpool.ErrQueueFull)
	var once sync.Once
	return s, func() { once.Do(func() { close(release) }) }
}

func TestBackpressure(t *testing.T) {
	t.Parallel()
	t.Run("try submit on a full queue", func(t *testing.T) {
		s, release := fullScheduler(t)
		defer release()
		assert.ErrorIs(t, s.TrySubmit(taskpool.Task{Type: "block"}), taskpool.ErrQueueFull)
	})
	t.Run("submit waits for its context", func(t *testing.T) {
		s, release := fullScheduler(t)
		defer release()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		assert.ErrorIs(t, s.Submit(ctx, taskpool.Task{Type: "block"}), context.DeadlineExceeded)
	})
	t.Run("submit waits for room", func(t *testing.T) {
		s, release := fullScheduler(t)
		done := make(chan error)
		go func() { done <- s.Submit(context.Background(), taskpool.Task{Type: "block"}) }()
		release()
		assert.NoError(t, <-done)
	})
	t.Run("stop releases a blocked submit", func(t *testing.T) {
		s, release := fullScheduler(t)
		done := make(chan error)
		go func() { done <- s.Submit(context.Background(), taskpool.Task{Type: "block"}) }()
		stopped := make(chan error)
		go func() { stopped <- s.Stop(context.Background()) }()
		// The blocked Submit either got in before Stop closed the gate or
		// was turned away; either way it returns, and only then is the
		// worker released.
		err := <-done
		if err != nil {
			assert.ErrorIs(t, err, taskpool.ErrSchedulerClosed)
		}
		release()
		assert.NoError(t, <-stopped)
	})
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"wait": func(ctx context.Context, _ taskpool.Task) error {
			<-ctx.Done()
			return ctx.Err()
		},
		"deadline": func(ctx context.Context, tk taskpool.Task) error {
			_, ok := ctx.Deadline()
			tk.SetResult(ok)
			return nil
		},
	})
	s := start(t, reg, taskpool.WithTaskTimeout(5*time.Millisecond))

	tests := []struct {
		name       string
		give       taskpool.Task
		wantErr    error
		wantResult any
	}{
		{"default timeout", taskpool.Task{Type: "wait"}, context.DeadlineExceeded, nil},
		{"task timeout", taskpool.Task{Type: "wait", Timeout: time.Millisecond}, context.DeadlineExceeded, nil},
		{"has deadline", taskpool.Task{Type: "deadline"}, nil, true},
		{"no timeout", taskpool.Task{Type: "deadline", Timeout: -1}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := s.SubmitFuture(context.Background(), tt.give)
			require.NoError(t, err)
			res, err := f.Wait(context.Background())
			assert.ErrorIs(t, err, tt.wantErr)
			assert.Equal(t, tt.wantResult, res)
		})
	}
}

func TestMiddlewareOrder(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var trace []string
	record := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		trace = append(trace, s)
	}
	mw := func(name string) taskpool.Middleware {
		return func(next taskpool.Handler) taskpool.Handler {
			return taskpool.HandlerFunc(func(ctx context.Context, t taskpool.Task) error {
				record(name + " before")
				err := next.HandleTask(ctx, t)
				record(name + " after")
				return err
			})
		}
	}
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"job": func(context.Context, taskpool.Task) error { record("handler"); return nil },
	})
	s := start(t, reg, taskpool.WithMiddleware(mw("outer")), taskpool.WithMiddleware(mw("inner")))
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "job"})
	require.NoError(t, err)
	_, err = f.Wait(context.Background())
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"outer before", "inner before", "handler", "inner after", "outer after"}, trace)
}

func TestConcurrencyNeverExceedsWorkers(t *testing.T) {
	t.Parallel()
	const workers = 3
	var cur, peak atomic.Int32
	var running atomic.Int32
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"work": func(context.Context, taskpool.Task) error {
			n := cur.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			runtime.Gosched()
			cur.Add(-1)
			running.Add(1)
			return nil
		},
	})
	s := start(t, reg, taskpool.WithWorkers(workers))
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				assert.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "work"}))
				assert.LessOrEqual(t, s.Stats().Running, workers)
			}
		}()
	}
	wg.Wait()
	require.NoError(t, s.Stop(context.Background()))
	assert.LessOrEqual(t, peak.Load(), int32(workers))
	assert.EqualValues(t, 2000, running.Load())
}

func TestStats(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"ok":    nop,
		"fail":  func(context.Context, taskpool.Task) error { return errors.New("no") },
		"panic": func(context.Context, taskpool.Task) error { panic("no") },
	})
	s, err := taskpool.New(reg, taskpool.WithWorkers(3))
	require.NoError(t, err)
	assert.Equal(t, taskpool.Stats{Workers: 0}, s.Stats())
	require.NoError(t, s.Start())
	for i := range 30 {
		typ := []string{"ok", "fail", "panic"}[i%3]
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: typ}))
	}
	require.NoError(t, s.Stop(context.Background()))
	assert.Equal(t, taskpool.Stats{Submitted: 30, Succeeded: 10, Failed: 20, Panicked: 10}, s.Stats())
}

func TestStatsQueuedByPriority(t *testing.T) {
	t.Parallel()
	s := newStarted(t, registry(t, map[string]taskpool.HandlerFunc{"ok": nop}), taskpool.WithWorkers(2))
	require.NoError(t, s.Pause())
	prios := []taskpool.Priority{taskpool.PriorityHigh, taskpool.PriorityHigh,
		taskpool.PriorityDefault, taskpool.PriorityDefault, taskpool.PriorityDefault, taskpool.PriorityLow}
	for _, p := range prios {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "ok", Priority: p}))
	}
	st := s.Stats()
	assert.Equal(t, [3]int{2, 3, 1}, st.QueuedByPriority, "high, default, low")
	assert.Equal(t, uint64(6), st.Queued)
	assert.Equal(t, s.Inspect().Queued, st.QueuedByPriority)
	require.NoError(t, s.Resume())
}

func TestIDsAndResults(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"echo": func(_ context.Context, tk taskpool.Task) error {
			assert.Equal(t, 1, tk.Attempt)
			tk.SetResult(tk.Params)
			return nil
		},
	})
	got := newOutcomes()
	s := start(t, reg, taskpool.WithCompletionHook(got.hook))
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "mine", Type: "echo", Params: 42})
	require.NoError(t, err)
	res, err := f.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 42, res)
	out, ok := f.Outcome()
	require.True(t, ok)
	assert.Equal(t, "mine", out.Task.ID)
	assert.Equal(t, 1, out.Attempts)

	const n = 100
	for range n {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "echo"}))
	}
	require.NoError(t, s.Stop(context.Background()))
	outs := got.snapshot()
	require.Len(t, outs, n+1)
	seen := make(map[string]bool)
	for _, out := range outs {
		require.NotEmpty(t, out.Task.ID)
		assert.False(t, seen[out.Task.ID], "duplicate ID %s", out.Task.ID)
		seen[out.Task.ID] = true
	}
}

func TestFuture(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"wait": func(_ context.Context, tk taskpool.Task) error {
			<-release
			tk.SetResult("done")
			return nil
		},
	})
	s := start(t, reg)
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "wait"})
	require.NoError(t, err)

	_, ok := f.Outcome()
	assert.False(t, ok)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = f.Wait(ctx)
	assert.ErrorIs(t, err, context.Canceled, "Wait gives up with its context")

	close(release)
	<-f.Done()
	res, err := f.Wait(context.Background())
	assert.NoError(t, err)
	assert.Equal(t, "done", res)
	<-f.Done() // closed channels stay closed
}

func TestBaseContextReachesHandlers(t *testing.T) {
	t.Parallel()
	type key struct{}
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"read": func(ctx context.Context, tk taskpool.Task) error {
			tk.SetResult(ctx.Value(key{}))
			return nil
		},
	})
	s := start(t, reg, taskpool.WithBaseContext(context.WithValue(context.Background(), key{}, "v")))
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "read"})
	require.NoError(t, err)
	res, err := f.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "v", res)
}

func TestCustomHandlerWithoutLookup(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	s, err := taskpool.New(taskpool.HandlerFunc(func(context.Context, taskpool.Task) error {
		n.Add(1)
		return nil
	}))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "anything"}))
	assert.ErrorIs(t, s.Submit(context.Background(), taskpool.Task{}), taskpool.ErrInvalidType)
	require.NoError(t, s.Stop(context.Background()))
	assert.EqualValues(t, 1, n.Load())
}

func TestParamsAs(t *testing.T) {
	t.Parallel()
	type email struct {
		To string `json:"to"`
	}
	tests := []struct {
		name    string
		give    any
		want    email
		wantErr bool
	}{
		{"value", email{To: "a@b"}, email{To: "a@b"}, false},
		{"json bytes", []byte(`{"to":"a@b"}`), email{To: "a@b"}, false},
		{"json string", `{"to":"a@b"}`, email{To: "a@b"}, false},
		{"bad json", []byte(`{`), email{}, true},
		{"wrong type", 42, email{}, true},
		{"nil", nil, email{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := taskpool.ParamsAs[email](taskpool.Task{Type: "email", Params: tt.give})
			assert.Equal(t, tt.wantErr, err != nil, "error: %v", err)
			if tt.wantErr {
				assert.ErrorIs(t, err, taskpool.ErrInvalidParams)
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

// A handler that submits to its own scheduler without end (lending its
// worker whenever the queue is full) is ended by Stop: its Submit returns
// ErrSchedulerClosed, and every child accepted runs. Self-submission
// cannot hang a graceful stop.
func TestStopReleasesHandlerBlockedInSelfSubmit(t *testing.T) {
	t.Parallel()
	var s *taskpool.Scheduler
	var ran atomic.Int64
	blocked := make(chan error, 1)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"child": func(context.Context, taskpool.Task) error { ran.Add(1); return nil },
		"parent": func(ctx context.Context, _ taskpool.Task) error {
			for {
				// The queue fills up and a Submit waits for room
				// (lending the worker, which drains it).
				if err := s.Submit(ctx, taskpool.Task{Type: "child"}); err != nil {
					blocked <- err
					return nil
				}
			}
		},
	})
	var err error
	s, err = taskpool.New(reg, taskpool.WithWorkers(1), taskpool.WithQueueSize(2), taskpool.WithBatchSize(1))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "parent"}))
	require.Eventually(t, func() bool { return s.Stats().Queued >= 2 }, 5*time.Second, time.Millisecond)
	require.NoError(t, s.Stop(context.Background()))
	require.ErrorIs(t, <-blocked, taskpool.ErrSchedulerClosed)
	st := s.Stats()
	assert.EqualValues(t, st.Submitted-1, ran.Load(), "every accepted child ran")
	assert.EqualValues(t, st.Submitted, st.Succeeded)
}

// Nothing waits behind a blocked handler while another worker could run
// it: tasks are handed only to workers with room for them.
func TestNoTaskWaitsBehindABlockedWorker(t *testing.T) {
	t.Parallel()
	for _, blocked := range []int{1, 2} {
		t.Run(fmt.Sprintf("blocked=%d", blocked), func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			started := make(chan struct{}, blocked)
			var quick atomic.Int64
			reg := registry(t, map[string]taskpool.HandlerFunc{
				"slow": func(context.Context, taskpool.Task) error {
					started <- struct{}{}
					<-release
					return nil
				},
				"quick": func(context.Context, taskpool.Task) error {
					quick.Add(1)
					return nil
				},
			})
			s := start(t, reg, taskpool.WithWorkers(blocked+1), taskpool.WithBatchSize(1))
			defer close(release)
			for range blocked {
				require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "slow"}))
			}
			for range blocked {
				<-started
			}
			const n = 200
			for i := range n {
				require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "quick"}))
				if i%10 == 0 {
					runtime.Gosched()
				}
			}
			require.Eventually(t, func() bool { return quick.Load() == n }, 5*time.Second, time.Millisecond,
				"quick tasks done: %d of %d", quick.Load(), n)
		})
	}
}
