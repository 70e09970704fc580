package taskpool_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/taskpooltest"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const waitFor = 5 * time.Second

// delayed waits until the scheduler holds n tasks in its timer heap.
func delayed(t *testing.T, s *taskpool.Scheduler, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return s.Stats().Delayed == n }, waitFor, time.Millisecond,
		"want %d delayed tasks", n)
}

func TestRetryWithBackoff(t *testing.T) {
	t.Parallel()
	clock := taskpooltest.NewClock(epoch)
	var runs atomic.Int32
	var attemptsSeen []int
	var mu sync.Mutex
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"flaky": func(_ context.Context, tk taskpool.Task) error {
			if runs.Add(1) < 3 {
				return errors.New("not yet")
			}
			tk.SetResult("ok")
			return nil
		},
	})
	seen := func(next taskpool.Handler) taskpool.Handler {
		return taskpool.HandlerFunc(func(ctx context.Context, tk taskpool.Task) error {
			mu.Lock()
			attemptsSeen = append(attemptsSeen, tk.Attempt)
			mu.Unlock()
			return next.HandleTask(ctx, tk)
		})
	}
	got := newOutcomes()
	s := start(t, reg, taskpool.WithClock(clock), taskpool.WithMiddleware(seen),
		taskpool.WithRetry(5, taskpool.ConstantBackoff(time.Second)), taskpool.WithCompletionHook(got.hook))

	f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "r", Type: "flaky"})
	require.NoError(t, err)
	delayed(t, s, 1)
	assert.Equal(t, "retry", s.Inspect().Delayed[0].Reason)
	assert.Equal(t, 2, s.Inspect().Delayed[0].Attempt)
	clock.Advance(time.Second)
	require.Eventually(t, func() bool { return runs.Load() == 2 && s.Stats().Delayed == 1 }, waitFor, time.Millisecond)
	clock.Advance(time.Second)

	res, err := f.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "ok", res)
	out, _ := f.Outcome()
	assert.Equal(t, 3, out.Attempts)
	mu.Lock()
	assert.Equal(t, []int{1, 2, 3}, attemptsSeen, "middleware sees every attempt")
	mu.Unlock()
	require.Eventually(t, func() bool { return len(got.snapshot()) == 1 }, waitFor, time.Millisecond)
	assert.Equal(t, 1, got.count("r"), "the hook sees the final outcome only")
	st := s.Stats()
	assert.EqualValues(t, 2, st.Retried)
	assert.EqualValues(t, 1, st.Succeeded)
	assert.Zero(t, st.Failed)
}

func TestRetryLimitsAndDeadLetters(t *testing.T) {
	t.Parallel()
	clock := taskpooltest.NewClock(epoch)
	boom := errors.New("boom")
	var deadHook atomic.Int32
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("fail", func(context.Context, taskpool.Task) error { return boom }))
	require.NoError(t, reg.HandleFunc("fatal", func(context.Context, taskpool.Task) error {
		return taskpool.SkipRetry(boom)
	}))
	require.NoError(t, reg.HandleFunc("panic", func(context.Context, taskpool.Task) error { panic(boom) },
		taskpool.WithRetry(2, taskpool.ConstantBackoff(0))))
	s := start(t, reg, taskpool.WithClock(clock), taskpool.WithRetry(3, taskpool.ConstantBackoff(0)),
		taskpool.WithDeadLetters(10, func(taskpool.Outcome) { deadHook.Add(1) }))

	tests := []struct {
		name         string
		give         taskpool.Task
		wantAttempts int
		wantErr      error
	}{
		{"scheduler default", taskpool.Task{Type: "fail"}, 3, boom},
		{"task overrides", taskpool.Task{Type: "fail", MaxAttempts: 1}, 1, boom},
		{"skip retry", taskpool.Task{Type: "fatal"}, 1, taskpool.ErrSkipRetry},
		{"type overrides, panics retried", taskpool.Task{Type: "panic"}, 2, boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := s.SubmitFuture(context.Background(), tt.give)
			require.NoError(t, err)
			_, err = f.Wait(context.Background())
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.wantErr)
			out, _ := f.Outcome()
			assert.Equal(t, tt.wantAttempts, out.Attempts)
		})
	}
	var pe *taskpool.PanicError
	dead := s.DeadLetters()
	require.Len(t, dead, 4)
	assert.ErrorAs(t, dead[3].Err, &pe)
	assert.EqualValues(t, 4, deadHook.Load())
	assert.Len(t, s.Inspect().Dead, 4)

	require.NoError(t, s.Requeue(context.Background(), dead[1].Task.ID))
	require.Eventually(t, func() bool {
		d := s.DeadLetters()
		return len(d) == 4 && d[3].Task.ID == dead[1].Task.ID
	}, waitFor, time.Millisecond, "the requeued task ran again and failed again")
	assert.ErrorIs(t, s.Requeue(context.Background(), "nope"), taskpool.ErrTaskNotFound)
}

func TestDeleteAndPurgeDeadLetters(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("fatal", func(context.Context, taskpool.Task) error {
		return taskpool.SkipRetry(boom)
	}))
	s := start(t, reg, taskpool.WithDeadLetters(10, nil))
	for i := range 3 {
		f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "fatal", ID: fmt.Sprintf("d%d", i)})
		require.NoError(t, err)
		_, err = f.Wait(context.Background())
		require.ErrorIs(t, err, boom)
	}
	require.Len(t, s.DeadLetters(), 3)

	require.NoError(t, s.DeleteDeadLetter("d1"))
	ids := []string{}
	for _, o := range s.DeadLetters() {
		ids = append(ids, o.Task.ID)
	}
	assert.Equal(t, []string{"d0", "d2"}, ids)
	assert.ErrorIs(t, s.DeleteDeadLetter("d1"), taskpool.ErrTaskNotFound, "deleted already")
	assert.ErrorIs(t, s.Requeue(context.Background(), "d1"), taskpool.ErrTaskNotFound)

	assert.Equal(t, 2, s.PurgeDeadLetters())
	assert.Empty(t, s.DeadLetters())
	assert.Empty(t, s.Inspect().Dead)
	assert.Zero(t, s.PurgeDeadLetters())
	assert.ErrorIs(t, s.DeleteDeadLetter("d0"), taskpool.ErrTaskNotFound)
}

func TestTimeoutsAreRetried(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"slow-once": func(ctx context.Context, _ taskpool.Task) error {
			if runs.Add(1) == 1 {
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		},
	})
	s := start(t, reg, taskpool.WithRetry(2, taskpool.ConstantBackoff(0)))
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "slow-once", Timeout: time.Millisecond})
	require.NoError(t, err)
	_, err = f.Wait(context.Background())
	assert.NoError(t, err)
	assert.EqualValues(t, 2, runs.Load())
}

func TestDelayedTasks(t *testing.T) {
	t.Parallel()
	clock := taskpooltest.NewClock(epoch)
	ran := make(chan string, 10)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"job": func(_ context.Context, tk taskpool.Task) error { ran <- tk.ID; return nil },
	})
	got := newOutcomes()
	s := start(t, reg, taskpool.WithClock(clock), taskpool.WithCompletionHook(got.hook))
	ctx := context.Background()
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "later", Type: "job"}, 2*time.Minute))
	require.NoError(t, s.SubmitAt(ctx, taskpool.Task{ID: "sooner", Type: "job"}, epoch.Add(time.Minute)))
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "dropped", Type: "job"}, time.Hour))
	assert.ErrorIs(t, s.SubmitAfter(ctx, taskpool.Task{Type: "nope"}, time.Second), taskpool.ErrNoHandler)

	in := s.Inspect()
	require.Len(t, in.Delayed, 3)
	assert.Equal(t, "sooner", in.Delayed[0].ID)
	assert.Equal(t, epoch.Add(time.Minute), in.Delayed[0].NextRun)
	assert.Equal(t, "delayed", in.Delayed[0].Reason)

	require.NoError(t, s.Cancel("dropped"))
	assert.ErrorIs(t, s.Cancel("dropped"), taskpool.ErrTaskNotFound)
	assert.Equal(t, 1, got.count("dropped"))
	assert.ErrorIs(t, got.byID["dropped"][0].Err, taskpool.ErrCanceled)

	clock.Advance(time.Minute)
	assert.Equal(t, "sooner", <-ran)
	select {
	case id := <-ran:
		t.Fatalf("%s ran before its time", id)
	default:
	}
	clock.Advance(time.Minute)
	assert.Equal(t, "later", <-ran)
	st := s.Stats()
	assert.EqualValues(t, 3, st.Submitted)
	assert.EqualValues(t, 1, st.Canceled)
}

func TestCancelQueuedTask(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var ran sync.Map
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"block": func(context.Context, taskpool.Task) error { <-release; return nil },
		"job":   func(_ context.Context, tk taskpool.Task) error { ran.Store(tk.ID, true); return nil },
	})
	got := newOutcomes()
	s := start(t, reg, taskpool.WithWorkers(1), taskpool.WithBatchSize(1), taskpool.WithCompletionHook(got.hook))
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "block"}))
	require.Eventually(t, func() bool { return s.Stats().Running == 1 }, waitFor, time.Millisecond)
	for _, id := range []string{"q1", "q2", "q3"} {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{ID: id, Type: "job"}))
	}
	require.NoError(t, s.Cancel("q2"))
	assert.ErrorIs(t, s.Cancel("q2"), taskpool.ErrTaskNotFound, "only one q2 was queued")
	assert.ErrorIs(t, s.Cancel("never"), taskpool.ErrTaskNotFound)
	close(release)
	require.NoError(t, s.Stop(context.Background()))
	_, q1 := ran.Load("q1")
	_, q2 := ran.Load("q2")
	_, q3 := ran.Load("q3")
	assert.True(t, q1)
	assert.False(t, q2, "a cancelled task does not run")
	assert.True(t, q3)
	require.Equal(t, 1, got.count("q2"))
	assert.ErrorIs(t, got.byID["q2"][0].Err, taskpool.ErrCanceled)
	assert.EqualValues(t, 1, s.Stats().Canceled)
}

func TestPeriodic(t *testing.T) {
	t.Parallel()
	clock := taskpooltest.NewClock(epoch)
	ran := make(chan string, 100)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"tick": func(_ context.Context, tk taskpool.Task) error { ran <- tk.ID; return nil },
	})
	s := start(t, reg, taskpool.WithClock(clock))
	require.NoError(t, s.SchedulePeriodic("every-minute", taskpool.Every(time.Minute), taskpool.Task{Type: "tick"}))
	assert.ErrorIs(t, s.SchedulePeriodic("every-minute", taskpool.Every(time.Minute), taskpool.Task{Type: "tick"}),
		taskpool.ErrDuplicateTask)
	assert.ErrorIs(t, s.SchedulePeriodic("", taskpool.Every(time.Minute), taskpool.Task{Type: "tick"}),
		taskpool.ErrInvalidOption)
	assert.ErrorIs(t, s.SchedulePeriodic("zero", taskpool.Every(0), taskpool.Task{Type: "tick"}),
		taskpool.ErrInvalidOption)
	assert.ErrorIs(t, s.SchedulePeriodic("x", taskpool.Every(time.Minute), taskpool.Task{Type: "nope"}),
		taskpool.ErrNoHandler)

	in := s.Inspect()
	require.Len(t, in.Periodic, 1)
	assert.Equal(t, epoch.Add(time.Minute), in.Periodic[0].NextRun)
	assert.Equal(t, "@every 1m0s", in.Periodic[0].Spec, "the schedule as text, from its String method")

	clock.Advance(time.Minute)
	assert.Equal(t, "every-minute@2026-01-01T00:01:00Z", <-ran)
	clock.Advance(time.Minute)
	assert.Equal(t, "every-minute@2026-01-01T00:02:00Z", <-ran)

	// Ten minutes pass at once: one activation, not ten.
	clock.Advance(10 * time.Minute)
	<-ran
	require.Eventually(t, func() bool {
		p := s.Inspect().Periodic
		return len(p) == 1 && p[0].NextRun.Equal(epoch.Add(13*time.Minute))
	}, waitFor, time.Millisecond)

	require.NoError(t, s.Unschedule("every-minute"))
	assert.ErrorIs(t, s.Unschedule("every-minute"), taskpool.ErrTaskNotFound)
	clock.Advance(time.Hour)
	require.NoError(t, s.Stop(context.Background()))
	assert.Empty(t, ran, "no activation after Unschedule")
	assert.EqualValues(t, 3, s.Stats().Submitted)
}

func TestStopWithDelayedTasks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		give    taskpool.DelayedPolicy
		wantRun bool
		wantErr error
	}{
		{"report", taskpool.DelayedReport, false, taskpool.ErrSchedulerClosed},
		{"run early", taskpool.DelayedRunEarly, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ran atomic.Bool
			reg := registry(t, map[string]taskpool.HandlerFunc{
				"job": func(context.Context, taskpool.Task) error { ran.Store(true); return nil },
			})
			got := newOutcomes()
			s, err := taskpool.New(reg, taskpool.WithClock(taskpooltest.NewClock(epoch)),
				taskpool.WithDelayedOnStop(tt.give), taskpool.WithCompletionHook(got.hook))
			require.NoError(t, err)
			require.NoError(t, s.Start())
			require.NoError(t, s.SubmitAfter(context.Background(), taskpool.Task{ID: "d", Type: "job"}, time.Hour))
			require.NoError(t, s.Stop(context.Background()))
			assert.Equal(t, tt.wantRun, ran.Load())
			require.Equal(t, 1, got.count("d"), "the delayed task is never dropped silently")
			assert.ErrorIs(t, got.byID["d"][0].Err, tt.wantErr)
		})
	}
}

// priorityOrder runs 60 high and 20 low tasks on one worker, all queued
// before the worker is free, and returns the order they ran in.
func priorityOrder(t *testing.T, opts ...taskpool.Option) []taskpool.Priority {
	t.Helper()
	release := make(chan struct{})
	var mu sync.Mutex
	var order []taskpool.Priority
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"block": func(context.Context, taskpool.Task) error { <-release; return nil },
		"job": func(_ context.Context, tk taskpool.Task) error {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, tk.Priority)
			return nil
		},
	})
	opts = append(opts, taskpool.WithWorkers(1), taskpool.WithBatchSize(1), taskpool.WithQueueSize(100))
	s, err := taskpool.New(reg, opts...)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "block"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.Stats().Running == 1 }, waitFor, time.Millisecond)
	for range 60 {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "job", Priority: taskpool.PriorityHigh}))
	}
	for range 20 {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "job", Priority: taskpool.PriorityLow}))
	}
	close(release)
	_, _ = f.Wait(context.Background())
	require.NoError(t, s.Stop(context.Background()))
	return order
}

func TestWeightedPriorityDoesNotStarveLow(t *testing.T) {
	t.Parallel()
	order := priorityOrder(t, taskpool.WithPriorityWeights(3, 2, 1))
	require.Len(t, order, 80)
	// With weights 3:2:1, the normal queue empty, and the cycle falling
	// back to the highest non-empty queue, one task in six is low: about
	// five in the first thirty (strict priority would give none).
	lows := 0
	for _, p := range order[:30] {
		if p == taskpool.PriorityLow {
			lows++
		}
	}
	assert.GreaterOrEqual(t, lows, 3, "low priority progresses under a flood of high: %v", order[:30])
	assert.Less(t, lows, 20, "high priority still goes first")
}

func TestStrictPriority(t *testing.T) {
	t.Parallel()
	order := priorityOrder(t, taskpool.WithStrictPriority())
	require.Len(t, order, 80)
	for i, p := range order[:60] {
		assert.Equal(t, taskpool.PriorityHigh, p, "task %d", i)
	}
}

func TestUniqueTasks(t *testing.T) {
	t.Parallel()
	clock := taskpooltest.NewClock(epoch)
	release := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"job": func(context.Context, taskpool.Task) error { <-release; return nil },
	})
	s := start(t, reg, taskpool.WithClock(clock), taskpool.WithUniqueTTL(time.Minute))
	task := taskpool.Task{Type: "job", UniqueKey: "report:42"}
	f, err := s.SubmitFuture(context.Background(), task)
	require.NoError(t, err)
	assert.ErrorIs(t, s.Submit(context.Background(), task), taskpool.ErrDuplicateTask, "while queued or running")
	assert.ErrorIs(t, s.SubmitAfter(context.Background(), task, time.Hour), taskpool.ErrDuplicateTask)
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "job", UniqueKey: "report:43"}))
	close(release)
	_, err = f.Wait(context.Background())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.Stats().Succeeded == 2 }, waitFor, time.Millisecond)
	assert.ErrorIs(t, s.Submit(context.Background(), task), taskpool.ErrDuplicateTask, "within the TTL")
	clock.Advance(time.Minute)
	assert.NoError(t, s.Submit(context.Background(), task), "after the TTL")
}

func TestConcurrencyLimitDoesNotHoldWorkers(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var cur, peak atomic.Int32
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("limited", func(context.Context, taskpool.Task) error {
		n := cur.Add(1)
		if n > peak.Load() {
			peak.Store(n)
		}
		<-release
		cur.Add(-1)
		return nil
	}, taskpool.WithConcurrencyLimit(1)))
	var free atomic.Int32
	require.NoError(t, reg.HandleFunc("free", func(context.Context, taskpool.Task) error {
		free.Add(1)
		return nil
	}))
	assert.ErrorIs(t, reg.HandleFunc("bad", nop, taskpool.WithConcurrencyLimit(-1)), taskpool.ErrInvalidOption)
	s := start(t, reg, taskpool.WithWorkers(3), taskpool.WithBatchSize(1))
	for range 5 {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "limited"}))
	}
	for range 20 {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "free"}))
	}
	// Every free task runs while one limited task blocks and four wait.
	require.Eventually(t, func() bool { return free.Load() == 20 }, waitFor, time.Millisecond)
	require.Eventually(t, func() bool { return s.Inspect().WaitingForSlot["limited"] == 4 }, waitFor, time.Millisecond)
	running := s.Inspect().Running
	require.Len(t, running, 1)
	assert.Equal(t, "limited", running[0].Type)
	assert.Equal(t, "running", running[0].Reason)
	assert.NotEmpty(t, running[0].ID)
	close(release)
	require.NoError(t, s.Stop(context.Background()))
	assert.EqualValues(t, 1, peak.Load())
	assert.EqualValues(t, 25, s.Stats().Succeeded)
}

// stepLimiter lets one task start per second of the fake clock.
type stepLimiter struct {
	mu   sync.Mutex
	next time.Time
}

func (l *stepLimiter) Reserve(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next.Before(now) {
		l.next = now
	}
	d := l.next.Sub(now)
	l.next = l.next.Add(time.Second)
	return d
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	clock := taskpooltest.NewClock(epoch)
	var ran atomic.Int32
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("paced", func(context.Context, taskpool.Task) error {
		ran.Add(1)
		return nil
	}, taskpool.WithRateLimit(&stepLimiter{})))
	assert.ErrorIs(t, reg.HandleFunc("bad", nop, taskpool.WithRateLimit(nil)), taskpool.ErrInvalidOption)
	s := start(t, reg, taskpool.WithClock(clock))
	for range 3 {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "paced"}))
	}
	require.Eventually(t, func() bool { return ran.Load() == 1 && s.Stats().Delayed == 2 }, waitFor, time.Millisecond)
	assert.Equal(t, "rate limited", s.Inspect().Delayed[0].Reason)
	clock.Advance(time.Second)
	require.Eventually(t, func() bool { return ran.Load() == 2 }, waitFor, time.Millisecond)
	clock.Advance(time.Second)
	require.Eventually(t, func() bool { return ran.Load() == 3 }, waitFor, time.Millisecond)
}

func TestResize(t *testing.T) {
	t.Parallel()
	var cur atomic.Int32
	gate := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"wait": func(context.Context, taskpool.Task) error {
			cur.Add(1)
			<-gate
			cur.Add(-1)
			return nil
		},
		"ok": nop,
	})
	s := start(t, reg, taskpool.WithWorkers(1), taskpool.WithBatchSize(1))
	assert.ErrorIs(t, s.Resize(0), taskpool.ErrInvalidOption)
	require.NoError(t, s.Resize(4))
	assert.Equal(t, 4, s.Stats().Workers)
	for range 4 {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "wait"}))
	}
	require.Eventually(t, func() bool { return cur.Load() == 4 }, waitFor, time.Millisecond, "four run at once")
	require.NoError(t, s.Resize(2))
	close(gate)
	require.Eventually(t, func() bool { return s.Stats().Workers == 2 }, waitFor, time.Millisecond)
	for range 10 {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "ok"}))
	}
	require.NoError(t, s.Stop(context.Background()))
	assert.EqualValues(t, 14, s.Stats().Succeeded)
	assert.ErrorIs(t, s.Resize(3), taskpool.ErrSchedulerClosed)
}
