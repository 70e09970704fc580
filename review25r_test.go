package taskpool_test

// Tests of the review of Pause/Resume, Resize, limits, delayed tasks,
// periodic schedules, Futures, typed handlers, Inspect/Stats and
// taskpooltest (review25r). Each names the promise it holds.

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/taskpooltest"
)

// Future.Wait: "When ctx ends first it returns ctx's error". A Future
// whose task finished before ctx ended returns the outcome, however often
// it is asked (a select between two ready channels picks one at random).
func TestReview25rWaitAfterTheOutcomeWithAnEndedCtx(t *testing.T) {
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"r": func(_ context.Context, tk taskpool.Task) error { tk.SetResult(7); return nil },
	})
	s := newStarted(t, reg)
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "r"})
	require.NoError(t, err)
	waitFuture(t, f, "r")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 200 {
		v, err := f.Wait(ctx)
		require.NoError(t, err, "Wait %d", i)
		require.Equal(t, 7, v, "Wait %d", i)
	}
}

// taskpooltest.Run: "Run runs h on t once, the way a scheduler's worker
// does, and returns what the task's Future would".
func TestReview25rTaskpooltestRunRunsOnce(t *testing.T) {
	var calls atomic.Int64
	boom := errors.New("boom")
	var seen atomic.Int64
	h := taskpool.HandlerFunc(func(_ context.Context, tk taskpool.Task) error {
		calls.Add(1)
		seen.Store(int64(tk.MaxAttempts))
		return boom
	})
	ctx, cancel := context.WithTimeout(context.Background(), hangAfter)
	defer cancel()
	_, err := taskpooltest.Run(ctx, h, taskpool.Task{MaxAttempts: 3})
	require.ErrorIs(t, err, boom)
	assert.EqualValues(t, 1, calls.Load(), "Run ran the handler more than once")
	assert.EqualValues(t, 3, seen.Load(), "the handler sees the task's MaxAttempts")

	calls.Store(0)
	_, err = taskpooltest.Run(ctx, h, taskpool.Task{}, taskpool.WithRetry(3, taskpool.ConstantBackoff(0)))
	require.ErrorIs(t, err, boom)
	assert.EqualValues(t, 1, calls.Load(), "a WithRetry in opts made Run retry")
	assert.EqualValues(t, 0, seen.Load())

	_, err = taskpooltest.Run(ctx, h, taskpool.Task{MaxAttempts: -1})
	assert.ErrorIs(t, err, taskpool.ErrInvalidTask)
}

// Pause: "no task starts ... delayed tasks and retries become due as
// usual" and wait; Resume lets them start.
func TestReview25rPausedDelayedTaskComesDueButDoesNotStart(t *testing.T) {
	clock := taskpooltest.NewClock(time.Unix(1000, 0))
	started := make(chan string, 4)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"d": func(_ context.Context, tk taskpool.Task) error { started <- tk.ID; return nil },
	})
	s := newStarted(t, reg, taskpool.WithClock(clock), taskpool.WithWorkers(2))
	require.NoError(t, s.Pause())
	require.NoError(t, s.SubmitAfter(context.Background(), taskpool.Task{ID: "d1", Type: "d"}, time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), hangAfter)
	defer cancel()
	require.NoError(t, clock.WaitArmed(ctx, clock.Now().Add(time.Second)))
	clock.Advance(time.Second)
	require.True(t, poll(hangAfter, func() bool { st := s.Stats(); return st.Delayed == 0 && st.Queued == 1 }),
		"the delayed task did not come due: %+v", s.Stats())
	select {
	case id := <-started:
		t.Fatalf("%s started while paused", id)
	default:
	}
	require.NoError(t, s.Resume())
	require.NoError(t, s.Resume(), "Resume twice does nothing")
	select {
	case id := <-started:
		assert.Equal(t, "d1", id)
	case <-ctx.Done():
		t.Fatal("the task did not start after Resume")
	}
}

// A limited task's Timeout bounds its run, not its wait for a slot: the
// handler's deadline is Timeout after the slot was freed, not after the
// worker took the task.
func TestReview25rSlotWaitDoesNotEatTheTimeout(t *testing.T) {
	const timeout = 2 * time.Second
	release := make(chan struct{})
	running := make(chan struct{}, 1)
	deadline := make(chan time.Time, 1)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("l", func(ctx context.Context, tk taskpool.Task) error {
		if tk.ID == "a" {
			running <- struct{}{}
			<-release
			return nil
		}
		d, _ := ctx.Deadline()
		deadline <- d
		return nil
	}, taskpool.WithConcurrencyLimit(1)))
	s := newStarted(t, reg, taskpool.WithWorkers(2))
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{ID: "a", Type: "l"}))
	<-running
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{ID: "b", Type: "l", Timeout: timeout}))
	require.True(t, poll(hangAfter, func() bool { return s.Inspect().WaitingForSlot["l"] == 1 }))
	freed := time.Now()
	close(release)
	select {
	case d := <-deadline:
		assert.False(t, d.Before(freed.Add(timeout)), "deadline %v is less than %v after the slot was freed", d.Sub(freed), timeout)
	case <-time.After(hangAfter):
		t.Fatal("b did not run")
	}
}

// Pause: a periodic activation that comes due while paused is submitted
// (counted, queued) but does not start until Resume.
func TestReview25rPausedPeriodicActivationWaits(t *testing.T) {
	clock := taskpooltest.NewClock(time.Unix(1000, 0))
	started := make(chan string, 4)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"p": func(_ context.Context, tk taskpool.Task) error { started <- tk.ID; return nil },
	})
	s := newStarted(t, reg, taskpool.WithClock(clock))
	require.NoError(t, s.Pause())
	require.NoError(t, s.SchedulePeriodic("sch", taskpool.Every(time.Minute), taskpool.Task{Type: "p"}))
	ctx, cancel := context.WithTimeout(context.Background(), hangAfter)
	defer cancel()
	require.NoError(t, clock.WaitArmed(ctx, clock.Now().Add(time.Minute)))
	clock.Advance(time.Minute)
	require.True(t, poll(hangAfter, func() bool { st := s.Stats(); return st.Submitted == 1 && st.Queued == 1 }),
		"%+v", s.Stats())
	select {
	case id := <-started:
		t.Fatalf("%s started while paused", id)
	default:
	}
	require.NoError(t, s.Unschedule("sch"))
	require.NoError(t, s.Resume())
	select {
	case id := <-started:
		assert.Contains(t, id, "sch@")
	case <-ctx.Done():
		t.Fatal("the activation did not start after Resume")
	}
}

// Resize while paused: new workers are held too, and Stats.Workers says
// how many there are; after Resume the tasks run on all of them at once,
// and a shrink retires the surplus as they go idle.
func TestReview25rResizeWhilePaused(t *testing.T) {
	release := make(chan struct{})
	var inside atomic.Int64
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"b": func(context.Context, taskpool.Task) error { inside.Add(1); <-release; return nil },
	})
	s := newStarted(t, reg, taskpool.WithWorkers(1))
	require.NoError(t, s.Pause())
	require.NoError(t, s.Resize(4))
	assert.Equal(t, 4, s.Stats().Workers)
	for range 4 {
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "b"}))
	}
	require.True(t, poll(hangAfter, func() bool { return s.Stats().Queued == 4 }), "%+v", s.Stats())
	assert.Zero(t, inside.Load(), "a task started while paused")
	assert.Zero(t, s.Stats().Running)
	require.NoError(t, s.Resume())
	require.True(t, poll(hangAfter, func() bool { return inside.Load() == 4 }), "4 workers do not run 4 tasks at once: %d", inside.Load())
	require.NoError(t, s.Resize(1))
	close(release)
	require.True(t, poll(hangAfter, func() bool { return s.Stats().Workers == 1 }), "%+v", s.Stats())
	require.NoError(t, stopBounded(t, s, hangAfter))
	st := s.Stats()
	assert.EqualValues(t, 4, st.Succeeded)
	assert.Equal(t, st.Submitted, st.Succeeded+st.Failed+st.NotRun+st.Canceled)
}

// SubmitAt with the zero time or a time in the past, and SubmitAfter with
// a negative delay, run at once ("A time in the past runs it at once");
// a huge delay waits, and Stop reports it not run (DelayedReport, the
// default) with every counter adding up.
func TestReview25rSubmitAtPastZeroAndHugeTimes(t *testing.T) {
	clock := taskpooltest.NewClock(time.Unix(1000, 0))
	got := newOutcomes()
	reg := registry(t, map[string]taskpool.HandlerFunc{"d": nop})
	s, err := taskpool.New(reg, taskpool.WithClock(clock), taskpool.WithCompletionHook(got.hook))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	ctx := context.Background()
	require.NoError(t, s.SubmitAt(ctx, taskpool.Task{ID: "zero", Type: "d"}, time.Time{}))
	require.NoError(t, s.SubmitAt(ctx, taskpool.Task{ID: "past", Type: "d"}, clock.Now().Add(-time.Hour)))
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "neg", Type: "d"}, -time.Second))
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "nodelay", Type: "d"}, 0))
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "huge", Type: "d"}, time.Duration(1<<63-1)))
	require.True(t, poll(hangAfter, func() bool { return s.Stats().Succeeded == 4 }), "%+v", s.Stats())
	in := s.Inspect()
	require.Len(t, in.Delayed, 1)
	assert.Equal(t, "huge", in.Delayed[0].ID)
	assert.Equal(t, 1, s.Stats().Delayed)
	require.NoError(t, stopBounded(t, s, hangAfter))
	assert.ErrorIs(t, got.first("huge").Err, taskpool.ErrSchedulerClosed)
	st := s.Stats()
	assert.EqualValues(t, 5, st.Submitted)
	assert.EqualValues(t, 1, st.NotRun)
	assert.Equal(t, st.Submitted, st.Succeeded+st.Failed+st.NotRun+st.Canceled)
}

// A delayed task holds its unique key while it waits: another task with
// the key is ErrDuplicateTask until it has run.
func TestReview25rDelayedTaskHoldsItsUniqueKey(t *testing.T) {
	clock := taskpooltest.NewClock(time.Unix(1000, 0))
	reg := registry(t, map[string]taskpool.HandlerFunc{"d": nop})
	s := newStarted(t, reg, taskpool.WithClock(clock))
	ctx, cancel := context.WithTimeout(context.Background(), hangAfter)
	defer cancel()
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{Type: "d", UniqueKey: "k"}, time.Second))
	assert.ErrorIs(t, s.Submit(ctx, taskpool.Task{Type: "d", UniqueKey: "k"}), taskpool.ErrDuplicateTask)
	assert.ErrorIs(t, s.SubmitAfter(ctx, taskpool.Task{Type: "d", UniqueKey: "k"}, time.Hour), taskpool.ErrDuplicateTask)
	require.NoError(t, clock.WaitArmed(ctx, clock.Now().Add(time.Second)))
	clock.Advance(time.Second)
	require.True(t, poll(hangAfter, func() bool { return s.Stats().Succeeded == 1 }))
	require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "d", UniqueKey: "k"}))
}

// SchedulePeriodic: a schedule with no activation (Every(0), Every(-1), a
// Next that panics or returns the zero time) is an error wrapping
// ErrInvalidOption, an ID in use ErrDuplicateTask; a schedule whose later
// Next goes back in time, returns the zero time or panics is removed.
func TestReview25rSchedulePeriodicEdges(t *testing.T) {
	clock := taskpooltest.NewClock(time.Unix(1000, 0))
	ran := make(chan string, 16)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"p": func(_ context.Context, tk taskpool.Task) error { ran <- tk.ID; return nil },
	})
	s := newStarted(t, reg, taskpool.WithClock(clock))
	tk := taskpool.Task{Type: "p"}
	assert.ErrorIs(t, s.SchedulePeriodic("a", taskpool.Every(0), tk), taskpool.ErrInvalidOption)
	assert.ErrorIs(t, s.SchedulePeriodic("a", taskpool.Every(-time.Second), tk), taskpool.ErrInvalidOption)
	assert.ErrorIs(t, s.SchedulePeriodic("a", schedFunc(func(time.Time) time.Time { panic("next") }), tk), taskpool.ErrInvalidOption)
	assert.ErrorIs(t, s.SchedulePeriodic("a", schedFunc(func(time.Time) time.Time { return time.Time{} }), tk), taskpool.ErrInvalidOption)
	assert.Empty(t, s.Inspect().Periodic)

	start := clock.Now()
	calls := map[string]int{}
	mk := func(id string, later func(after time.Time) time.Time) taskpool.Schedule {
		return schedFunc(func(after time.Time) time.Time {
			calls[id]++ // on the timer goroutine after the first call
			if calls[id] == 1 {
				return after.Add(time.Second)
			}
			return later(after)
		})
	}
	require.NoError(t, s.SchedulePeriodic("back", mk("back", func(time.Time) time.Time { return start }), tk))
	require.NoError(t, s.SchedulePeriodic("zero", mk("zero", func(time.Time) time.Time { return time.Time{} }), tk))
	require.NoError(t, s.SchedulePeriodic("boom", mk("boom", func(time.Time) time.Time { panic("later") }), tk))
	assert.ErrorIs(t, s.SchedulePeriodic("back", taskpool.Every(time.Second), tk), taskpool.ErrDuplicateTask)
	ctx, cancel := context.WithTimeout(context.Background(), hangAfter)
	defer cancel()
	require.NoError(t, clock.WaitArmed(ctx, start.Add(time.Second)))
	clock.Advance(time.Second)
	for range 3 {
		select {
		case <-ran:
		case <-ctx.Done():
			t.Fatal("an activation did not run")
		}
	}
	require.True(t, poll(hangAfter, func() bool { return len(s.Inspect().Periodic) == 0 }), "%+v", s.Inspect().Periodic)
	assert.ErrorIs(t, s.Unschedule("back"), taskpool.ErrTaskNotFound)
}

type schedFunc func(after time.Time) time.Time

func (f schedFunc) Next(after time.Time) time.Time { return f(after) }

type r25rArgs struct{ N int }

func (r25rArgs) Kind() string { return "r25r-args" }

// TaskOf with a nil pointer (a Kind with a value receiver serves A and *A
// alike, as Handle says) or a nil interface must not panic: bad input is
// an error, never a panic. The kind is the type's, as Handle takes it;
// where there is none, the task's Type is empty and Submit says
// ErrInvalidType.
func TestReview25rTaskOfNilDoesNotPanic(t *testing.T) {
	var tk taskpool.Task
	require.NotPanics(t, func() { tk = taskpool.TaskOf[*r25rArgs](nil) })
	assert.Equal(t, "r25r-args", tk.Type)
	require.NotPanics(t, func() { tk = taskpool.TaskOf[taskpool.Args](nil) })
	assert.Empty(t, tk.Type)
	s := newStarted(t, registry(t, map[string]taskpool.HandlerFunc{"x": nop}))
	assert.ErrorIs(t, s.Submit(context.Background(), tk), taskpool.ErrInvalidType)
}
