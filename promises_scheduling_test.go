package taskpool_test

// Promises of delayed and periodic tasks, Pause and dead letters that no
// other test covered; each test is named after the promise it checks.

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/taskpooltest"
)

// Requeue: the task is submitted again "with its attempts counted from
// 1", and "the dead letter is kept when Submit fails".
func TestPromiseRequeueCountsFromOneAndKeepsOnFailure(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var attempts []int
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"fail": func(_ context.Context, tk taskpool.Task) error {
			mu.Lock()
			attempts = append(attempts, tk.Attempt)
			mu.Unlock()
			return errors.New("boom")
		},
	})
	got := newOutcomes()
	s, err := taskpool.New(reg, taskpool.WithRetry(2, taskpool.ConstantBackoff(0)),
		taskpool.WithDeadLetters(10, nil), taskpool.WithCompletionHook(got.hook))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "d", Type: "fail"})
	require.NoError(t, err)
	waitFuture(t, f, "first submission")
	require.Len(t, s.DeadLetters(), 1)

	require.NoError(t, s.Requeue(context.Background(), "d"))
	require.Eventually(t, func() bool { return got.count("d") == 2 }, waitFor, time.Millisecond)
	mu.Lock()
	assert.Equal(t, []int{1, 2, 1, 2}, attempts, "the requeued task runs from attempt 1 with all its attempts")
	mu.Unlock()
	dead := s.DeadLetters()
	require.Len(t, dead, 1)
	assert.Equal(t, 2, dead[0].Attempts)

	require.NoError(t, s.Stop(context.Background()))
	assert.ErrorIs(t, s.Requeue(context.Background(), "d"), taskpool.ErrSchedulerClosed)
	dead = s.DeadLetters()
	require.Len(t, dead, 1, "a Requeue that fails to submit keeps the dead letter")
	assert.Equal(t, "d", dead[0].Task.ID)
}

// WithDeadLetters: keeps "the last capacity tasks whose final outcome is
// a failure"; "The default keeps none".
func TestPromiseDeadLettersKeepTheLastFailures(t *testing.T) {
	t.Parallel()
	fatal := func(context.Context, taskpool.Task) error { return taskpool.SkipRetry(errors.New("no")) }
	reg := registry(t, map[string]taskpool.HandlerFunc{"fatal": fatal, "ok": nop})
	run := func(s *taskpool.Scheduler, tk taskpool.Task) {
		f, err := s.SubmitFuture(context.Background(), tk)
		require.NoError(t, err)
		waitFuture(t, f, tk.ID)
	}

	s := start(t, reg, taskpool.WithDeadLetters(2, nil), taskpool.WithClock(taskpooltest.NewClock(epoch)))
	for _, id := range []string{"d0", "d1", "d2"} {
		run(s, taskpool.Task{ID: id, Type: "fatal"})
	}
	run(s, taskpool.Task{ID: "fine", Type: "ok"})
	require.NoError(t, s.SubmitAfter(context.Background(), taskpool.Task{ID: "gone", Type: "fatal"}, time.Hour))
	require.NoError(t, s.Cancel("gone"))
	var ids []string
	for _, o := range s.DeadLetters() {
		ids = append(ids, o.Task.ID)
	}
	assert.Equal(t, []string{"d1", "d2"}, ids, "the last two failures, oldest first; no success, no cancel")

	plain := start(t, reg)
	run(plain, taskpool.Task{ID: "x", Type: "fatal"})
	assert.Empty(t, plain.DeadLetters(), "without WithDeadLetters none are kept")
	assert.Empty(t, plain.Inspect().Dead)
	assert.ErrorIs(t, plain.Requeue(context.Background(), "x"), taskpool.ErrTaskNotFound)
}

// SubmitAt: "A time in the past runs it at once. If t.ID is empty one is
// assigned ... never blocks on a full queue: a due task goes to its queue
// past the bound." README: a delayed task can be cancelled by the ID that
// Inspect shows.
func TestPromiseSubmitAtPastTimeRunsAtOncePastTheBound(t *testing.T) {
	t.Parallel()
	clock := taskpooltest.NewClock(epoch)
	var ran atomic.Int32
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"job": func(context.Context, taskpool.Task) error { ran.Add(1); return nil },
	})
	s := start(t, reg, taskpool.WithClock(clock), taskpool.WithWorkers(1), taskpool.WithQueueSize(1))
	require.NoError(t, s.Pause())
	require.NoError(t, s.TrySubmit(taskpool.Task{Type: "job"}))
	require.ErrorIs(t, s.TrySubmit(taskpool.Task{Type: "job"}), taskpool.ErrQueueFull)

	within(t, hangAfter, "SubmitAt on a full queue", func() {
		assert.NoError(t, s.SubmitAt(context.Background(), taskpool.Task{Type: "job"}, epoch.Add(-time.Hour)))
	})
	// Due at once, with no Advance: it leaves the timer heap for its
	// queue, past the bound.
	require.Eventually(t, func() bool {
		st := s.Stats()
		return st.Delayed == 0 && st.Queued == 2
	}, waitFor, time.Millisecond)

	// An unnamed delayed task gets an ID, which Cancel takes.
	require.NoError(t, s.SubmitAfter(context.Background(), taskpool.Task{Type: "job"}, time.Hour))
	in := s.Inspect()
	require.Len(t, in.Delayed, 1)
	require.NotEmpty(t, in.Delayed[0].ID)
	require.NoError(t, s.Cancel(in.Delayed[0].ID))

	require.NoError(t, s.Resume())
	require.Eventually(t, func() bool { return ran.Load() == 2 }, waitFor, time.Millisecond)
	assert.EqualValues(t, 1, s.Stats().Canceled)
}

// Pause: "delayed tasks and retries become due as usual" while no task
// starts; they run after Resume.
func TestPromisePausedDelayedTasksBecomeDue(t *testing.T) {
	t.Parallel()
	clock := taskpooltest.NewClock(epoch)
	var ran atomic.Int32
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"job": func(context.Context, taskpool.Task) error { ran.Add(1); return nil },
	})
	s := start(t, reg, taskpool.WithClock(clock))
	require.NoError(t, s.Pause())
	at := epoch.Add(time.Minute)
	require.NoError(t, s.SubmitAt(context.Background(), taskpool.Task{ID: "d", Type: "job"}, at))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(t, clock.WaitArmed(ctx, at))
	clock.Advance(time.Minute)
	require.Eventually(t, func() bool {
		st := s.Stats()
		return st.Delayed == 0 && st.Queued == 1
	}, waitFor, time.Millisecond, "the due task moves to its queue while paused")
	assert.Zero(t, ran.Load(), "but does not start")
	require.NoError(t, s.Resume())
	require.Eventually(t, func() bool { return ran.Load() == 1 }, waitFor, time.Millisecond)
}

// SchedulePeriodic: an error wrapping ErrInvalidOption for a nil schedule,
// and the errors of Submit for t (ErrInvalidType, ErrInvalidTask,
// ErrNotStarted before Start, ErrSchedulerClosed after Stop).
func TestPromiseSchedulePeriodicErrors(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{"tick": nop})
	s, err := taskpool.New(reg, taskpool.WithClock(taskpooltest.NewClock(epoch)))
	require.NoError(t, err)
	every := taskpool.Every(time.Minute)
	tick := taskpool.Task{Type: "tick"}
	assert.ErrorIs(t, s.SchedulePeriodic("p", every, tick), taskpool.ErrNotStarted)
	require.NoError(t, s.Start())
	assert.ErrorIs(t, s.SchedulePeriodic("p", nil, tick), taskpool.ErrInvalidOption)
	assert.ErrorIs(t, s.SchedulePeriodic("p", every, taskpool.Task{}), taskpool.ErrInvalidType)
	assert.ErrorIs(t, s.SchedulePeriodic("p", every, taskpool.Task{Type: "tick", MaxAttempts: -1}), taskpool.ErrInvalidTask)
	assert.Empty(t, s.Inspect().Periodic, "refused schedules leave no trace")
	require.NoError(t, s.Stop(context.Background()))
	assert.ErrorIs(t, s.SchedulePeriodic("p", every, tick), taskpool.ErrSchedulerClosed)
}

// deadLetterIDs runs a task of type "fail" (which must fail for good) for
// each of ids, one after the other, and returns a function that lists the
// IDs of s's dead letters, oldest first.
func deadLetterIDs(t *testing.T, s *taskpool.Scheduler, ids ...string) func() []string {
	t.Helper()
	for _, id := range ids {
		f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: id, Type: "fail"})
		require.NoError(t, err)
		waitFuture(t, f, id)
	}
	return func() []string {
		var out []string
		for _, o := range s.DeadLetters() {
			out = append(out, o.Task.ID)
		}
		return out
	}
}

// Requeue: a dead letter whose resubmission fails is kept "in its place":
// the list stays oldest first.
func TestPromiseRequeueFailureKeepsTheDeadLetterInPlace(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"fail": func(context.Context, taskpool.Task) error { return taskpool.SkipRetry(errors.New("boom")) },
	})
	s, err := taskpool.New(reg, taskpool.WithWorkers(1), taskpool.WithDeadLetters(3, nil))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	ids := deadLetterIDs(t, s, "a", "b", "c")
	require.Equal(t, []string{"a", "b", "c"}, ids())
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, s.Requeue(canceled, "b"), context.Canceled)
	assert.Equal(t, []string{"a", "b", "c"}, ids(), "the dead letter moved")
	require.NoError(t, s.Stop(context.Background()))
}

// Requeue: a dead letter whose resubmission fails goes back in its place
// by age, even when the list changed while Submit waited: here the letter
// before it was deleted meanwhile, and it still comes before the younger
// one (put back at its old index, it came after).
func TestPromiseRequeueFailurePutsTheLetterBackByAge(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"fail": func(context.Context, taskpool.Task) error { return taskpool.SkipRetry(errors.New("boom")) },
		"block": func(context.Context, taskpool.Task) error {
			select {
			case started <- struct{}{}:
			default:
			}
			<-release
			return nil
		},
	})
	s, err := taskpool.New(reg, taskpool.WithWorkers(1), taskpool.WithQueueSize(1), taskpool.WithDeadLetters(3, nil))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	ids := deadLetterIDs(t, s, "a", "b", "c")
	// The only worker held and the queue full: Requeue's Submit waits.
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "block"}))
	<-started
	for range 100 {
		if errors.Is(s.TrySubmit(taskpool.Task{Type: "block"}), taskpool.ErrQueueFull) {
			break
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Requeue(ctx, "b") }()
	require.True(t, poll(10*time.Second, func() bool { return slices.Equal(ids(), []string{"a", "c"}) }), "Requeue took b out: %v", ids())
	require.NoError(t, s.DeleteDeadLetter("a"))
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	assert.Equal(t, []string{"b", "c"}, ids(), "b is older than c")
	close(release)
	require.NoError(t, s.Stop(context.Background()))
}

// Inspect: periodic schedules are listed "soonest first".
func TestPromiseInspectListsPeriodicSoonestFirst(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{"ok": nop})
	s, err := taskpool.New(reg)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	for _, p := range []struct {
		id    string
		every time.Duration
	}{{"3h", 3 * time.Hour}, {"1h", time.Hour}, {"4h", 4 * time.Hour}, {"2h", 2 * time.Hour}} {
		require.NoError(t, s.SchedulePeriodic(p.id, taskpool.Every(p.every), taskpool.Task{Type: "ok"}))
	}
	var ids []string
	for _, p := range s.Inspect().Periodic {
		ids = append(ids, p.ID)
	}
	assert.Equal(t, []string{"1h", "2h", "3h", "4h"}, ids)
	require.NoError(t, s.Stop(context.Background()))
}

// Submit: a handler "should not wait on the Future of a task queued
// behind them unless there are more workers than such waits". With one
// such wait and four workers, the wait ends, though the task waited for
// was handed to the waiting handler's worker in the same batch, behind
// it (200 quick tasks queued behind make the batches big).
func TestPromiseWaitForTaskQueuedBehindWithMoreWorkers(t *testing.T) {
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("wait", func(ctx context.Context, t taskpool.Task) error {
		select {
		case <-t.Params.(chan struct{}):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}))
	require.NoError(t, reg.HandleFunc("signal", func(_ context.Context, t taskpool.Task) error {
		close(t.Params.(chan struct{}))
		return nil
	}))
	require.NoError(t, reg.HandleFunc("quick", func(context.Context, taskpool.Task) error { return nil }))
	s, err := taskpool.New(reg, taskpool.WithWorkers(4))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	require.NoError(t, s.Pause()) // queue them all before any batch is handed out
	ch := make(chan struct{})
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "wait", Params: ch})
	require.NoError(t, err)
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "signal", Params: ch}))
	for range 200 {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "quick"}))
	}
	require.NoError(t, s.Resume())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = f.Wait(ctx)
	require.NoError(t, err, "the waiting task never saw the task behind it run")
	require.NoError(t, s.Stop(context.Background()))
}
