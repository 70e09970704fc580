package taskpool_test

// Tests of the review of issue 9's redesign. Each fails on the code it was
// written against; the comment above each says what it shows.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/taskpooltest"
)

// newStarted returns a started scheduler whose cleanup stops it with a
// deadline and gives up waiting after hangAfter, reporting the hang
// instead of hanging the test binary (the goroutine left behind then fails
// goleak as well).
func newStarted(t *testing.T, h taskpool.Handler, opts ...taskpool.Option) *taskpool.Scheduler {
	t.Helper()
	s, err := taskpool.New(h, opts...)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	t.Cleanup(func() { stopBounded(t, s, time.Second) })
	return s
}

// stopBounded calls Stop with a deadline d and reports (without failing
// the test at once) a Stop that has not returned hangAfter later. It
// returns Stop's error, or errStopHung.
func stopBounded(t *testing.T, s *taskpool.Scheduler, d time.Duration) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		ch <- s.Stop(ctx)
	}()
	timer := time.NewTimer(hangAfter)
	defer timer.Stop()
	select {
	case err := <-ch:
		return err
	case <-timer.C:
		t.Errorf("Stop with a %v deadline did not return within %v\n%s", d, hangAfter, stacks())
		return errStopHung
	}
}

var errStopHung = errors.New("Stop hung")

// ---- Cancel of a task whose Submit is still in progress ----

// submit (submit.go) puts a named task in the Cancel index (admit) before
// the engine has accepted it, in state stQueued (the zero state). Cancel
// wins the CAS stQueued -> stDone and delivers ErrCanceled, counts it in
// Stats.Canceled and releases the unique key; the blocked Put then fails
// (ctx, or Stop's CloseAdmission) and Submit returns an error: a task that
// was never accepted has an outcome, counted in Canceled but not in
// Submitted, so settled() (outcomes == accepted) is never true again and
// Stop hangs, even with a deadline. unadmit also releases the unique key a
// second time, which by then belongs to another task.
func TestReviewCancelDuringBlockedSubmit(t *testing.T) {
	release := make(chan struct{})
	running := make(chan struct{}, 1)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"block": func(context.Context, taskpool.Task) error { running <- struct{}{}; <-release; return nil },
		"rec":   nop,
	})
	got := newOutcomes()
	s := newStarted(t, reg, taskpool.WithWorkers(1), taskpool.WithQueueSize(1), taskpool.WithCompletionHook(got.hook))
	defer close(release)

	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "block"}))
	<-running
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "rec"})) // the queue is full now

	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- s.Submit(ctx, taskpool.Task{ID: "x", Type: "rec", UniqueKey: "k"}) }()
	// The Submit blocks on the full queue: x is not accepted yet, so
	// Cancel does not find it (the fix: records are out of Cancel's reach
	// until the engine accepts them).
	poll(time.Second, func() bool { return s.Stats().Submitted == 2 && len(got.snapshot()) == 0 })
	for range 100 {
		assert.ErrorIs(t, s.Cancel("x"), taskpool.ErrTaskNotFound)
		runtime.Gosched()
	}
	cancel()
	var err error
	within(t, hangAfter, "blocked Submit", func() { err = <-res })
	require.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, got.count("x"), "a task never accepted has no outcome")
	// The key is free again: another task takes it.
	require.NoError(t, s.SubmitAfter(context.Background(), taskpool.Task{ID: "y", Type: "rec", UniqueKey: "k"}, time.Hour))
	// "y" holds the key while it waits in the timer heap.
	err2 := s.SubmitAfter(context.Background(), taskpool.Task{ID: "z", Type: "rec", UniqueKey: "k"}, time.Hour)
	assert.ErrorIs(t, err2, taskpool.ErrDuplicateTask, "key k is held by y: the failed Submit of x released it again")

	st := s.Stats()
	assert.LessOrEqual(t, st.Canceled, st.Submitted, "more outcomes than accepted tasks: %+v", st)
	release <- struct{}{}
	err = stopBounded(t, s, time.Second)
	assert.NotErrorIs(t, err, errStopHung)
	st = s.Stats()
	assert.Equal(t, st.Submitted, st.Succeeded+st.Failed+st.NotRun+st.Canceled, "after Stop, outcomes equal accepted tasks: %+v", st)
}

// The same record, once Cancel has settled it in the window between admit
// (which puts it in the index in the zero state, stQueued) and the state
// store that follows (stQueued in submit, stDelayed in submitAt), is
// brought back to life by that store: the task was cancelled (Cancel
// returned nil, ErrCanceled delivered) and then runs, and has two
// outcomes. A stress test: the window is a few instructions.
func TestReviewCancelRacingSubmitDoesNotRevive(t *testing.T) {
	for _, at := range []bool{false, true} {
		name := "Submit"
		if at {
			name = "SubmitAt"
		}
		t.Run(name, func(t *testing.T) { cancelRacingSubmit(t, at) })
	}
}

func cancelRacingSubmit(t *testing.T, at bool) {
	got := newOutcomes()
	var ran sync.Map
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"rec": func(_ context.Context, tk taskpool.Task) error { ran.Store(tk.ID, true); return nil },
	})
	s, err := taskpool.New(reg, taskpool.WithWorkers(2), taskpool.WithCompletionHook(got.hook),
		taskpool.WithDelayedOnStop(taskpool.DelayedRunEarly))
	require.NoError(t, err)
	require.NoError(t, s.Start())

	var wins []string
	deadline := time.Now().Add(stressFor(2 * time.Second))
	for i := 0; time.Now().Before(deadline); i++ {
		id := fmt.Sprintf("r%d", i)
		var submitted atomic.Bool
		won := make(chan bool, 1)
		go func() {
			for !submitted.Load() {
				if s.Cancel(id) == nil {
					won <- true
					return
				}
			}
			won <- false
		}()
		var err error
		if at {
			err = s.SubmitAfter(context.Background(), taskpool.Task{ID: id, Type: "rec"}, time.Hour)
		} else {
			err = s.Submit(context.Background(), taskpool.Task{ID: id, Type: "rec"})
		}
		require.NoError(t, err)
		submitted.Store(true)
		if <-won {
			wins = append(wins, id)
		}
	}
	// A graceful Stop runs the delayed tasks early: a revived one runs.
	err = stopBounded(t, s, hangAfter/2)
	assert.NotErrorIs(t, err, errStopHung)
	t.Logf("%d cancels won", len(wins))
	for _, id := range wins {
		if _, ok := ran.Load(id); ok || got.count(id) != 1 {
			t.Errorf("%s: Cancel returned nil, yet the handler ran (%v) and it has %d outcomes", id, ok, got.count(id))
		}
	}
	st := s.Stats()
	assert.Equal(t, st.Submitted, st.Succeeded+st.Failed+st.NotRun+st.Canceled, "after Stop: %+v", st)
}

// ---- Goexit on the path of a task, outside the handler ----

// goexitLimiter calls runtime.Goexit in its first Reserve.
type goexitLimiter struct{ calls atomic.Int32 }

func (l *goexitLimiter) Reserve(time.Time) time.Duration {
	if l.calls.Add(1) == 1 {
		runtime.Goexit()
	}
	return 0
}

// A RateLimiter that calls runtime.Goexit ends the worker goroutine in
// admitRun, before runSlow sets l.stage = stageUser. Exited then reads the
// stage the previous task left (stageIdle on a fresh worker, or after a
// delivered outcome) and returns without settling the task: it has no
// outcome, its Future never completes, and Stop hangs even with a
// deadline. (With a stale stageUser instead, Exited settles it under the
// previous plain task's ID.)
func TestReviewRateLimiterGoexitSettlesTask(t *testing.T) {
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("rl", nop, taskpool.WithRateLimit(&goexitLimiter{})))
	s := newStarted(t, reg, taskpool.WithWorkers(1))
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "x", Type: "rl"})
	require.NoError(t, err)
	select {
	case <-f.Done():
	case <-time.After(3 * time.Second):
		t.Errorf("the task whose rate limiter called Goexit has no outcome after 3s: %+v", s.Stats())
	}
}

// A dead-letter hook that calls runtime.Goexit ends deliver before the
// completion hook: the task's outcome never reaches the completion hook
// (its Future is completed by deliver's deferred part). A dead-letter hook
// that panics is logged and the completion hook still runs; Goexit and
// panics are to be handled the same on the whole path of a task.
func TestReviewDeadLetterHookGoexitStillCallsCompletionHook(t *testing.T) {
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"fail": func(context.Context, taskpool.Task) error { return taskpool.SkipRetry(errors.New("boom")) },
	})
	got := newOutcomes()
	s := newStarted(t, reg, taskpool.WithWorkers(1), taskpool.WithCompletionHook(got.hook),
		taskpool.WithDeadLetters(8, func(taskpool.Outcome) { runtime.Goexit() }))
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "x", Type: "fail"})
	require.NoError(t, err)
	waitFuture(t, f, "x")
	require.NoError(t, stopBounded(t, s, hangAfter/2))
	assert.Equal(t, 1, got.count("x"), "the completion hook sees the outcome of x")
}

// goexitSchedule is Every(d), but calls runtime.Goexit in Next once it has
// been asked armed times.
type goexitSchedule struct {
	d     time.Duration
	armed int32
	calls atomic.Int32
}

func (g *goexitSchedule) Next(after time.Time) time.Time {
	if g.calls.Add(1) > g.armed {
		runtime.Goexit()
	}
	return after.Add(g.d)
}

// A Schedule.Next that calls runtime.Goexit ends the timer goroutine in
// fireDue after the due schedules were taken out of the heap: runTimers
// carries on in a new goroutine, but every other schedule due in the same
// round is lost for good (out of the heap, still in q.periodic), and so is
// the one that exited: Inspect lists neither, Unschedule of them returns
// nil, and SchedulePeriodic of their IDs returns ErrDuplicateTask. A
// Next that panics is logged and removed, the others go on.
func TestReviewScheduleNextGoexitKeepsOtherSchedules(t *testing.T) {
	clock := taskpooltest.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	var bRuns atomic.Int32
	bRan := make(chan struct{}, 16)
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"a": nop,
		"b": func(context.Context, taskpool.Task) error { bRuns.Add(1); bRan <- struct{}{}; return nil },
	})
	s := newStarted(t, reg, taskpool.WithWorkers(1), taskpool.WithClock(clock))
	// SchedulePeriodic asks Next once on this goroutine.
	require.NoError(t, s.SchedulePeriodic("a", &goexitSchedule{d: time.Minute, armed: 1}, taskpool.Task{Type: "a"}))
	require.NoError(t, s.SchedulePeriodic("b", taskpool.Every(time.Minute), taskpool.Task{Type: "b"}))
	for round := 1; round <= 2; round++ {
		clock.Advance(time.Minute)
		select {
		case <-bRan:
		case <-time.After(3 * time.Second):
			var ids []string
			for _, p := range s.Inspect().Periodic {
				ids = append(ids, p.ID)
			}
			t.Fatalf("round %d: schedule b did not fire within 3s (runs %d, periodic %v)", round, bRuns.Load(), ids)
		}
	}
}

// ---- smaller findings ----

// countLimiter counts Reserve calls and never holds a task back.
type countLimiter struct{ calls atomic.Int32 }

func (l *countLimiter) Reserve(time.Time) time.Duration { l.calls.Add(1); return 0 }

// admitRun (limit.go) marks a plain job that the rate limiter admitted and
// that must then wait for a concurrency slot as rated, so that it does
// not take a second start from the limiter when it is woken; a task with
// a record (an ID, a Future, ...) is not marked, and takes one start from
// the limiter before it waits and another when it is woken: under a
// concurrency limit its type runs at a fraction of its rate.
func TestReviewSlotWaiterTakesOneRateStart(t *testing.T) {
	release := make(chan struct{})
	running := make(chan struct{}, 1)
	rl := &countLimiter{}
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("lim", func(_ context.Context, tk taskpool.Task) error {
		if tk.ID == "first" {
			running <- struct{}{}
			<-release
		}
		return nil
	}, taskpool.WithConcurrencyLimit(1), taskpool.WithRateLimit(rl)))
	s := newStarted(t, reg, taskpool.WithWorkers(2))
	f1, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "first", Type: "lim"})
	require.NoError(t, err)
	<-running
	f2, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: "second", Type: "lim"})
	require.NoError(t, err)
	require.True(t, poll(hangAfter, func() bool { return s.Inspect().WaitingForSlot["lim"] == 1 }), "second waits for the slot")
	close(release)
	waitFuture(t, f1, "first")
	waitFuture(t, f2, "second")
	assert.Equal(t, int32(2), rl.calls.Load(), "two starts, two reservations")
}

// A retry of a task submitted without an ID waits in the timer heap with
// the ID Inspect shows, but only named and delayed records are in the
// Cancel index: Cancel of the retry Inspect lists returns ErrTaskNotFound,
// although Cancel is documented to remove "a retry waiting for its next
// attempt" (and SubmitAt indexes unnamed delayed tasks for this reason).
// The same holds for an unnamed task held by a rate limiter.
func TestReviewRetryShownByInspectCanBeCanceled(t *testing.T) {
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"fail": func(context.Context, taskpool.Task) error { return errors.New("boom") },
	})
	s := newStarted(t, reg, taskpool.WithWorkers(1), taskpool.WithRetry(2, taskpool.ConstantBackoff(time.Hour)))
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "fail"}))
	var id string
	require.True(t, poll(hangAfter, func() bool {
		for _, d := range s.Inspect().Delayed {
			if d.Reason == "retry" {
				id = d.ID
				return true
			}
		}
		return false
	}), "the retry is in the timer heap")
	assert.NoError(t, s.Cancel(id), "Cancel of the retry Inspect lists as %q", id)
}

// Stats.Running is "handlers running now", but a worker's unit stays
// begun (cur = index+1) until the next unit is announced, so a worker
// that is running the completion hook after the handler returned counts
// as running; Inspect.Running left the same task out (its record is
// stDone), so the two disagreed. Both now count a worker delivering an
// outcome as busy with its task, as their docs say.
func TestReviewRunningAgreesWithInspectDuringHooks(t *testing.T) {
	inHook := make(chan struct{})
	release := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{"job": nop})
	s := newStarted(t, reg, taskpool.WithWorkers(1), taskpool.WithCompletionHook(func(taskpool.Outcome) {
		inHook <- struct{}{}
		<-release
	}))
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{ID: "x", Type: "job"}))
	<-inHook
	st, in := s.Stats(), s.Inspect()
	close(release)
	assert.Equal(t, len(in.Running), st.Running, "Stats.Running and Inspect.Running agree (%v)", in.Running)
	assert.Equal(t, 1, st.Running, "the worker is busy with the task while its hook runs")
}

// IDs generated on a worker (a plain task's ID, in the handler, the hooks,
// dead letters, logs) come from the worker's own idGen, whose prefix is
// never set: they are "-<n>", without the scheduler's random prefix, so two
// schedulers hand out the same IDs; and Inspect.Running formats the running
// plain task's ID with the prefix, so it shows an ID the handler never saw.
func TestReviewInspectShowsTheRunningTaskID(t *testing.T) {
	ids := make(chan string, 1)
	release := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"job": func(_ context.Context, tk taskpool.Task) error { ids <- tk.ID; <-release; return nil },
	})
	s := newStarted(t, reg, taskpool.WithWorkers(1))
	defer close(release)
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "job"}))
	id := <-ids
	in := s.Inspect()
	require.Len(t, in.Running, 1)
	assert.Equal(t, id, in.Running[0].ID, "Inspect shows the ID the handler sees")
	assert.NotEqual(t, byte('-'), id[0], "a generated ID carries the scheduler's prefix: %q", id)
}

// A Stop after the scheduler has stopped picks at random between s.done
// and its own ctx when that ctx has ended too; picking the ctx, it calls
// giveUp (which Abandons an engine that has exited) and returns a
// *StopError with the deadline's error, although the shutdown had
// completed, gracefully, before the call.
func TestReviewStopAfterStopReturnsNil(t *testing.T) {
	reg := registry(t, map[string]taskpool.HandlerFunc{"job": nop})
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 20 {
		s, err := taskpool.New(reg, taskpool.WithWorkers(1))
		require.NoError(t, err)
		require.NoError(t, s.Start())
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "job"}))
		require.NoError(t, stopBounded(t, s, hangAfter/2))
		err = stopBounded(t, s, 0)
		if err == nil {
			err = s.Stop(expired)
		}
		require.NoError(t, err, "scheduler %d: Stop after a completed Stop", i)
	}
}
