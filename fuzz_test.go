package taskpool_test

// Fuzz targets of the public entry points that take outside input: New
// with arbitrary option values, and the submit family with arbitrary task
// fields and times. Plain go test runs their seeds; go test -run '^$'
// -fuzz FuzzNew (or FuzzSubmit) searches for more. Each input builds, runs
// and stops its own scheduler on the fake clock, within milliseconds.

import (
	"cmp"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/taskpooltest"
)

// fzHang bounds every wait of the fuzz targets: an input that makes the
// scheduler hang fails instead of stalling the fuzzer.
const fzHang = 10 * time.Second

// fzMaxRunWorkers is the most workers a FuzzNew input starts: larger
// valid values are checked by New and Stop only, as a million goroutines
// per input would make the fuzzer crawl.
const fzMaxRunWorkers = 64

var errFz = errors.New("fuzz: first run fails")

// fzRecv receives from ch, failing the test if nothing comes within fzHang.
func fzRecv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(fzHang):
		t.Fatalf("%s: nothing within %v", what, fzHang)
		panic("unreachable")
	}
}

// fzStop stops s, failing the test if Stop does not return nil within
// fzHang (every handler of these targets returns at once).
func fzStop(t *testing.T, s *taskpool.Scheduler) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fzHang)
	defer cancel()
	require.NoError(t, s.Stop(ctx), "Stop did not return in time")
}

// fzSettled checks the accounting promise of a stopped scheduler:
// everything accepted has exactly one outcome, and nothing is left.
func fzSettled(t *testing.T, s *taskpool.Scheduler, accepted uint64) {
	t.Helper()
	st := s.Stats()
	require.Equal(t, accepted, st.Submitted, "stats: %+v", st)
	require.Equal(t, st.Submitted, st.Succeeded+st.Failed+st.NotRun+st.Canceled, "stats: %+v", st)
	require.Zero(t, st.Queued, "stats: %+v", st)
	require.Zero(t, st.Delayed, "stats: %+v", st)
	require.Zero(t, st.Running, "stats: %+v", st)
	require.ErrorIs(t, s.Start(), taskpool.ErrSchedulerClosed)
}

// FuzzNew gives New arbitrary option values. Each value out of its
// documented range makes New return an error wrapping ErrInvalidOption,
// and nothing else does. A scheduler New accepts starts, runs a task that
// fails its first run (retried after the backoff, on the fake clock, when
// the attempts allow; dead-lettered otherwise), applies the task timeout
// and the unique TTL as documented, and stops cleanly.
func FuzzNew(f *testing.F) {
	// workers, queue, batch, timeout, high, normal, low, strict, ttl,
	// dead-letter capacity, attempts, backoff, delayed policy.
	f.Add(0, 0, 0, int64(0), 6, 3, 1, false, int64(0), 0, 0, int64(0), 0)
	f.Add(2, 1, 1, int64(time.Second), 1, 1, 1, true, int64(time.Minute), 4, 3, int64(time.Second), 1)
	f.Add(1, 1, taskpool.MaxBatchSize, int64(1), taskpool.MaxPriorityWeight, taskpool.MaxPriorityWeight, taskpool.MaxPriorityWeight, false, int64(1), 1, 2, int64(-5), 0)
	f.Add(taskpool.MaxWorkers, taskpool.MaxQueueSize, 0, int64(0), 6, 3, 1, false, int64(0), 1<<40, 1<<40, int64(1<<62), 1)
	// One value out of range each.
	f.Add(-1, 0, 0, int64(0), 6, 3, 1, false, int64(0), 0, 0, int64(0), 0)
	f.Add(taskpool.MaxWorkers+1, 0, 0, int64(0), 6, 3, 1, false, int64(0), 0, 0, int64(0), 0)
	f.Add(0, -1, 0, int64(0), 6, 3, 1, false, int64(0), 0, 0, int64(0), 0)
	f.Add(0, taskpool.MaxQueueSize+1, 0, int64(0), 6, 3, 1, false, int64(0), 0, 0, int64(0), 0)
	f.Add(0, 0, -1, int64(0), 6, 3, 1, false, int64(0), 0, 0, int64(0), 0)
	f.Add(0, 0, taskpool.MaxBatchSize+1, int64(0), 6, 3, 1, false, int64(0), 0, 0, int64(0), 0)
	f.Add(0, 0, 0, int64(-1), 6, 3, 1, false, int64(0), 0, 0, int64(0), 0)
	f.Add(0, 0, 0, int64(0), 0, 3, 1, false, int64(0), 0, 0, int64(0), 0)
	f.Add(0, 0, 0, int64(0), 6, taskpool.MaxPriorityWeight+1, 1, false, int64(0), 0, 0, int64(0), 0)
	f.Add(0, 0, 0, int64(0), 6, 3, -1, false, int64(0), 0, 0, int64(0), 0)
	f.Add(0, 0, 0, int64(0), 6, 3, 1, false, int64(-1), 0, 0, int64(0), 0)
	f.Add(0, 0, 0, int64(0), 6, 3, 1, false, int64(0), -1, 0, int64(0), 0)
	f.Add(0, 0, 0, int64(0), 6, 3, 1, false, int64(0), 0, -1, int64(0), 0)
	f.Add(0, 0, 0, int64(0), 6, 3, 1, false, int64(0), 0, 0, int64(0), 2)
	f.Add(0, 0, 0, int64(0), 6, 3, 1, false, int64(0), 0, 0, int64(0), -1)
	f.Fuzz(func(t *testing.T, workers, queue, batch int, timeout int64, high, normal, low int, strict bool,
		ttl int64, deadCap, attempts int, backoff int64, policy int) {
		weight := func(w int) bool { return w >= 1 && w <= taskpool.MaxPriorityWeight }
		wantInvalid := workers < 0 || workers > taskpool.MaxWorkers ||
			queue < 0 || queue > taskpool.MaxQueueSize ||
			batch < 0 || batch > taskpool.MaxBatchSize ||
			timeout < 0 || !weight(high) || !weight(normal) || !weight(low) ||
			ttl < 0 || deadCap < 0 || attempts < 0 ||
			(policy != int(taskpool.DelayedReport) && policy != int(taskpool.DelayedRunEarly))

		clock := taskpooltest.NewClock(epoch)
		var hasDeadline atomic.Int32 // runs whose context had a deadline, +100 for those that had none
		outc := make(chan taskpool.Outcome, 4)
		reg := taskpool.NewRegistry()
		require.NoError(t, reg.HandleFunc("flaky", func(ctx context.Context, tk taskpool.Task) error {
			if _, ok := ctx.Deadline(); ok {
				hasDeadline.Add(1)
			} else {
				hasDeadline.Add(100)
			}
			if tk.Attempt == 1 {
				return errFz
			}
			return nil
		}))
		opts := []taskpool.Option{
			taskpool.WithWorkers(workers), taskpool.WithQueueSize(queue), taskpool.WithBatchSize(batch),
			taskpool.WithTaskTimeout(time.Duration(timeout)),
		}
		// WithStrictPriority and WithPriorityWeights: the later wins.
		if strict {
			opts = append(opts, taskpool.WithPriorityWeights(high, normal, low), taskpool.WithStrictPriority())
		} else {
			opts = append(opts, taskpool.WithStrictPriority(), taskpool.WithPriorityWeights(high, normal, low))
		}
		opts = append(opts,
			taskpool.WithUniqueTTL(time.Duration(ttl)),
			taskpool.WithDeadLetters(deadCap, nil),
			taskpool.WithRetry(attempts, taskpool.ConstantBackoff(time.Duration(backoff))),
			taskpool.WithDelayedOnStop(taskpool.DelayedPolicy(policy)),
			taskpool.WithClock(clock),
			taskpool.WithCompletionHook(func(o taskpool.Outcome) { outc <- o }),
		)
		s, err := taskpool.New(reg, opts...)
		if wantInvalid {
			require.ErrorIs(t, err, taskpool.ErrInvalidOption)
			require.Nil(t, s)
			return
		}
		require.NoError(t, err)
		require.NotNil(t, s)
		if workers > fzMaxRunWorkers {
			// Valid, but too many goroutines to start per input: a
			// scheduler stopped before Start is closed.
			fzStop(t, s)
			fzSettled(t, s, 0)
			return
		}
		require.NoError(t, s.Start())
		require.ErrorIs(t, s.Start(), taskpool.ErrAlreadyStarted)

		retried := attempts >= 2 // the first run fails; a second succeeds
		require.NoError(t, s.Submit(context.Background(), taskpool.Task{ID: "a", Type: "flaky", UniqueKey: "k"}))
		if retried && backoff > 0 {
			// The retry waits in the timer heap until the backoff has
			// passed on the fake clock.
			due := clock.Now().Add(time.Duration(backoff))
			ctx, cancel := context.WithTimeout(context.Background(), fzHang)
			require.NoError(t, clock.WaitArmed(ctx, due), "the retry is not armed for %v", due)
			cancel()
			clock.Advance(time.Duration(backoff))
		}
		out := fzRecv(t, outc, "outcome of task a")
		require.Equal(t, "a", out.Task.ID)
		runs := 1
		if retried {
			runs = 2
			require.NoError(t, out.Err)
			require.Equal(t, uint64(1), s.Stats().Retried)
		} else {
			require.ErrorIs(t, out.Err, errFz)
			require.Zero(t, s.Stats().Retried)
		}
		require.Equal(t, runs, out.Attempts)
		// The task has no timeout of its own: the scheduler's applies.
		if timeout > 0 {
			require.Equal(t, int32(runs), hasDeadline.Load(), "a run without the task timeout %v", time.Duration(timeout))
		} else {
			require.Equal(t, int32(100*runs), hasDeadline.Load(), "a run with a deadline, without a task timeout")
		}
		dead := s.DeadLetters()
		if !retried && deadCap > 0 {
			require.Len(t, dead, 1)
			require.Equal(t, "a", dead[0].Task.ID)
			require.ErrorIs(t, dead[0].Err, errFz)
		} else {
			require.Empty(t, dead)
		}

		// The unique key: taken for the TTL after the final outcome (the
		// fake clock has not moved since), free at its end.
		accepted := uint64(1)
		again := taskpool.Task{ID: "b", Type: "flaky", UniqueKey: "k", MaxAttempts: 1}
		if ttl > 0 {
			require.ErrorIs(t, s.TrySubmit(again), taskpool.ErrDuplicateTask)
			clock.Advance(time.Duration(ttl))
		}
		require.NoError(t, s.TrySubmit(again))
		accepted++
		out = fzRecv(t, outc, "outcome of task b")
		require.Equal(t, "b", out.Task.ID)
		require.ErrorIs(t, out.Err, errFz)

		fzStop(t, s)
		fzSettled(t, s, accepted)
		require.Empty(t, outc, "an outcome too many")
	})
}

// Submit variants of FuzzSubmit.
const (
	fzSubmit = iota
	fzTrySubmit
	fzSubmitFuture
	fzSubmitWait
	fzSubmitAt
	fzSubmitAfter
	fzSubmitAtAbsolute // SubmitAt a time given in nanoseconds since 1970
	fzVariants
)

var fzVariantNames = [fzVariants]string{"Submit", "TrySubmit", "SubmitFuture", "SubmitWait", "SubmitAt", "SubmitAfter", "SubmitAt(abs)"}

// fzParams is what FuzzSubmit's tasks carry: handlers and outcomes must
// see this very pointer.
type fzParams struct{ s string }

// FuzzSubmit submits a task with arbitrary fields, through each of the
// submit variants, at arbitrary times, once or twice (paused in between,
// so that the first is still pending), with a live or a cancelled
// context, cancelled by ID while pending or not, stopping at once or
// after the task is due. A submission
// either returns one of the documented errors that apply to the task
// (errors.Is) and has no outcome, or the task is settled exactly once:
// its outcome is the task as submitted (ID filled in when empty), with
// the error and attempts its handler and retries give, or
// ErrSchedulerClosed when Stop came before it was due, or ErrCanceled for
// the one task Cancel removed; and Stop returns.
// Its Attempts counts the runs a submitted Attempt above 1 stands for, as
// Outcome documents.
func FuzzSubmit(f *testing.F) {
	// variant, type, ID, unique key, priority, timeout, max attempts,
	// attempt, delay, metadata value, twice, stop first, cancelled ctx,
	// Cancel by ID while pending.
	f.Add(uint8(fzSubmit), "ok", "", "", int8(0), int64(0), 0, 0, int64(0), "", false, false, false, false)
	f.Add(uint8(fzTrySubmit), "flaky", "id-1", "key", int8(1), int64(time.Second), 2, 0, int64(0), "m", true, false, false, false)
	f.Add(uint8(fzSubmitFuture), "ok", "x", "k", int8(-1), int64(-1), 1, 1, int64(0), "", true, true, false, false)
	f.Add(uint8(fzSubmitWait), "flaky", "", "k", int8(0), int64(0), 3, 2, int64(0), "meta", true, false, false, false)
	f.Add(uint8(fzSubmitAt), "ok", "d", "", int8(0), int64(0), 0, 0, int64(time.Hour), "", false, false, false, false)
	f.Add(uint8(fzSubmitAfter), "flaky", "d", "u", int8(-1), int64(0), 2, 0, int64(time.Minute), "", true, true, false, false)
	f.Add(uint8(fzSubmitAtAbsolute), "ok", "", "", int8(1), int64(0), 0, 0, int64(-1), "", false, false, false, false)
	f.Add(uint8(fzSubmitAtAbsolute), "ok", "far", "", int8(0), int64(0), 0, 0, int64(1<<63-1), "", false, false, false, false)
	f.Add(uint8(fzSubmitAt), "ok", "past", "", int8(0), int64(0), 0, 0, int64(-1<<63), "", false, false, false, false)
	// A task submitted as its fifth run, as a broker submits a
	// redelivered one: its Attempts count the four runs before, whether
	// it runs (4+1) or Stop comes first (4), which Outcome's doc did not
	// say ("the number of times the handler ran: 0 for a task that never
	// ran").
	f.Add(uint8(fzSubmit), "ok", "r", "", int8(0), int64(0), 0, 5, int64(0), "", false, false, false, false)
	f.Add(uint8(fzSubmitAfter), "ok", "r", "", int8(0), int64(0), 0, 5, int64(time.Hour), "", false, true, false, false)
	// Found by the fuzzer: a priority other than -1, 0 or 1 reached the
	// handler and the outcome as -1 or 1 for a plain task, but as
	// submitted for one with an ID, a key, a timeout, attempts, metadata
	// or a delay.
	f.Add(uint8(fzSubmit), "ok", "", "", int8(31), int64(0), 0, 0, int64(0), "", false, false, false, false)
	f.Add(uint8(fzSubmitAt), "ok", "p", "", int8(-128), int64(0), 0, 0, int64(time.Hour), "", false, false, false, false)
	f.Add(uint8(fzTrySubmit), "flaky", "p", "", int8(127), int64(0), 2, 0, int64(0), "", false, false, false, false)
	// A retry that arises while Stop runs is reported not run, with the
	// run's error (DelayedReport).
	f.Add(uint8(fzTrySubmit), "flaky", "0", "0", int8(1), int64(time.Second), 2, 0, int64(0), "0", true, true, false, false)
	// Cancel by ID: a paused queued task, a delayed one, one of two with
	// the same ID, and IDs that name nothing.
	f.Add(uint8(fzSubmitFuture), "ok", "c", "k", int8(0), int64(0), 0, 0, int64(0), "", true, false, false, true)
	f.Add(uint8(fzSubmitAfter), "flaky", "c", "", int8(0), int64(0), 2, 0, int64(time.Minute), "", true, false, false, true)
	f.Add(uint8(fzSubmitAt), "ok", "c", "", int8(0), int64(0), 0, 0, int64(time.Minute), "", false, true, false, true)
	f.Add(uint8(fzSubmitAt), "ok", "c", "", int8(0), int64(0), 3, 0, int64(time.Minute), "", false, false, false, true)
	f.Add(uint8(fzSubmitWait), "ok", "c", "", int8(0), int64(0), 0, 0, int64(0), "", false, false, false, true)
	f.Add(uint8(fzSubmit), "ok", "", "", int8(0), int64(0), 0, 0, int64(0), "", true, false, false, true)
	f.Add(uint8(fzSubmit), "", "c", "", int8(0), int64(0), 0, 0, int64(0), "", false, false, false, true)
	// Each error: an empty or unknown type, a negative attempt or max
	// attempts, a cancelled context.
	f.Add(uint8(fzSubmit), "", "", "", int8(0), int64(0), 0, 0, int64(0), "", false, false, false, false)
	f.Add(uint8(fzSubmitAt), "nope", "", "", int8(0), int64(0), 0, 0, int64(0), "", false, false, false, false)
	f.Add(uint8(fzSubmitFuture), "ok", "", "", int8(0), int64(0), 0, -1, int64(0), "", false, false, false, false)
	f.Add(uint8(fzSubmitAfter), "ok", "", "", int8(0), int64(0), -1, 0, int64(0), "", false, false, false, false)
	f.Add(uint8(fzSubmitWait), "ok", "", "", int8(0), int64(0), 0, 0, int64(0), "", false, false, true, false)
	f.Add(uint8(fzSubmit), "flaky", "", "k", int8(0), int64(0), 0, 0, int64(0), "", false, false, true, false)
	// Found by the fuzzer: an ID Task.Validate refuses (a space at an
	// end) on an unknown type is ErrInvalidTask, which the oracle did not
	// know.
	f.Add(uint8(fzSubmit), "0", " ", "0", int8(0), int64(0), 0, 0, int64(0), "0", false, false, false, true)
	f.Fuzz(func(t *testing.T, variant uint8, typ, id, key string, prio int8, timeout int64, maxAttempts, attempt int,
		delay int64, meta string, twice, stopFirst, canceled, cancel bool) {
		variant %= fzVariants
		clock := taskpooltest.NewClock(epoch)
		start := max(attempt, 1) // the number of the first run
		var runs, badDeadline atomic.Int32
		check := func(ctx context.Context, tk taskpool.Task) {
			runs.Add(1)
			if _, ok := ctx.Deadline(); ok != (timeout > 0) {
				badDeadline.Add(1)
			}
		}
		reg := taskpool.NewRegistry()
		require.NoError(t, reg.HandleFunc("ok", func(ctx context.Context, tk taskpool.Task) error {
			check(ctx, tk)
			tk.SetResult(tk.Params)
			return nil
		}))
		require.NoError(t, reg.HandleFunc("flaky", func(ctx context.Context, tk taskpool.Task) error {
			check(ctx, tk)
			if tk.Attempt == start {
				return errFz
			}
			return nil
		}))
		outc := make(chan taskpool.Outcome, 4)
		s, err := taskpool.New(reg, taskpool.WithWorkers(2), taskpool.WithClock(clock),
			taskpool.WithRetry(1, taskpool.ConstantBackoff(0)),
			taskpool.WithCompletionHook(func(o taskpool.Outcome) { outc <- o }))
		require.NoError(t, err)
		require.NoError(t, s.Start())

		params := &fzParams{meta}
		task := taskpool.Task{ID: id, Type: typ, Params: params, Timeout: time.Duration(timeout),
			Priority: taskpool.Priority(prio), UniqueKey: key, MaxAttempts: maxAttempts, Attempt: attempt}
		if meta != "" {
			task.Metadata = map[string]string{"m": meta}
		}
		now := clock.Now()
		at := now
		switch variant {
		case fzSubmitAt, fzSubmitAfter:
			at = now.Add(time.Duration(delay))
		case fzSubmitAtAbsolute:
			at = time.Unix(0, delay)
		}
		delayed := at.After(now)

		ctx := context.Background()
		if canceled {
			c, cancel := context.WithCancel(ctx)
			cancel()
			ctx = c
		}
		usesCtx := variant != fzTrySubmit
		// The errors that apply to the task, any of which Submit may
		// return.
		var want []error
		if typ == "" {
			want = append(want, taskpool.ErrInvalidType)
		}
		if attempt < 0 || maxAttempts < 0 {
			want = append(want, taskpool.ErrInvalidTask)
		}
		if err := task.Validate(); errors.Is(err, taskpool.ErrInvalidTask) {
			// An ID, unique key or metadata a header cannot carry, a type
			// that is not UTF-8 (found by the fuzzer: the ID " ").
			want = append(want, taskpool.ErrInvalidTask)
		}
		if typ != "" && typ != "ok" && typ != "flaky" {
			want = append(want, taskpool.ErrNoHandler)
		}
		if canceled && usesCtx && len(want) == 0 {
			want = append(want, context.Canceled)
		}

		// SubmitWait's outcome: waited for in a goroutine when paused.
		type waited struct {
			res any
			err error
		}
		var waits []chan waited
		submit := func() error {
			switch variant {
			case fzSubmit:
				return s.Submit(ctx, task)
			case fzTrySubmit:
				return s.TrySubmit(task)
			case fzSubmitFuture:
				fut, err := s.SubmitFuture(ctx, task)
				if err == nil {
					require.NotNil(t, fut)
					ch := make(chan waited, 1)
					waits = append(waits, ch)
					go func() {
						res, err := fut.Wait(context.Background())
						ch <- waited{res, err}
					}()
				} else {
					require.Nil(t, fut)
				}
				return err
			case fzSubmitWait:
				res, err := s.SubmitWait(ctx, task)
				if err == nil || errors.Is(err, errFz) {
					ch := make(chan waited, 1)
					ch <- waited{res, err}
					waits = append(waits, ch)
					return nil // accepted; its outcome is checked below
				}
				return err
			case fzSubmitAt, fzSubmitAtAbsolute:
				return s.SubmitAt(ctx, task, at)
			case fzSubmitAfter:
				return s.SubmitAfter(ctx, task, time.Duration(delay))
			}
			panic("unknown variant")
		}
		accepted := uint64(0)
		expect := func(err error, what string) bool {
			t.Helper()
			if len(want) == 0 {
				require.NoError(t, err, "%s %s", what, fzVariantNames[variant])
				accepted++
				return true
			}
			require.Error(t, err, "%s %s: accepted, want one of %v", what, fzVariantNames[variant], want)
			for _, w := range want {
				if errors.Is(err, w) {
					return false
				}
			}
			t.Fatalf("%s %s: %v, want one of %v", what, fzVariantNames[variant], err, want)
			return false
		}

		// SubmitWait waits for the outcome: it cannot be paused.
		paused := twice && variant != fzSubmitWait
		if paused {
			require.NoError(t, s.Pause())
		}
		if expect(submit(), "first") && twice {
			// While the first is pending (paused, or delayed), its unique
			// key is taken; once it is settled (SubmitWait), it is free.
			pending := paused || delayed
			if key != "" && pending {
				require.ErrorIs(t, submit(), taskpool.ErrDuplicateTask, "second %s", fzVariantNames[variant])
			} else {
				expect(submit(), "second")
			}
		}
		// Cancel, while what was accepted is pending (paused or delayed),
		// removes one task of that ID; an ID that names none is
		// ErrTaskNotFound.
		canceledWant := cancel && id != "" && accepted > 0 && (paused || delayed)
		if cancel && (paused || delayed || accepted == 0) {
			err := s.Cancel(id)
			if canceledWant {
				require.NoError(t, err, "Cancel(%q)", id)
			} else {
				require.ErrorIs(t, err, taskpool.ErrTaskNotFound, "Cancel(%q)", id)
			}
		}
		if paused {
			require.NoError(t, s.Resume())
		}
		notRun := delayed && stopFirst
		if delayed && !stopFirst && accepted > 0 && !(canceledWant && accepted == 1) {
			wctx, cancel := context.WithTimeout(context.Background(), fzHang)
			require.NoError(t, clock.WaitArmed(wctx, at), "the delayed task is not armed for %v", at)
			cancel()
			clock.Advance(at.Sub(now))
		}
		if stopFirst {
			fzStop(t, s)
		}

		seenCanceled := false
		for i := uint64(0); i < accepted; i++ {
			out := fzRecv(t, outc, "outcome")
			wantTask := task
			if id == "" {
				require.NotEmpty(t, out.Task.ID)
				wantTask.ID = out.Task.ID
			}
			// The scheduler sets Attempt and reads Priority as one of
			// the three; the rest is the task as submitted.
			wantTask.Attempt = out.Task.Attempt
			wantTask.Priority = taskpool.Priority(cmp.Compare(prio, 0))
			require.Equal(t, wantTask, out.Task, "outcome %+v", out)
			require.True(t, out.Task.Params == params, "params %#v", out.Task.Params)
			switch {
			case errors.Is(out.Err, taskpool.ErrCanceled):
				require.True(t, canceledWant && !seenCanceled, "an outcome ErrCanceled: %+v", out)
				seenCanceled = true
				require.Equal(t, start-1, out.Attempts, "attempts of a task never run")
			case notRun:
				require.ErrorIs(t, out.Err, taskpool.ErrSchedulerClosed)
				require.Equal(t, start-1, out.Attempts, "attempts of a task never run")
			case typ == "ok":
				require.NoError(t, out.Err)
				require.True(t, out.Result == params, "result %#v", out.Result)
				require.Equal(t, start, out.Attempts)
			default: // flaky: the first run fails, a retry succeeds
				switch {
				case start < max(maxAttempts, 1) && stopFirst && out.Err != nil:
					// The first run failed once Stop had begun: a retry
					// that arises while Stop runs is reported not run
					// (DelayedReport), with the run's error.
					require.ErrorIs(t, out.Err, taskpool.ErrSchedulerClosed)
					require.ErrorIs(t, out.Err, errFz)
					require.Equal(t, start, out.Attempts)
				case start < max(maxAttempts, 1):
					require.NoError(t, out.Err)
					require.Equal(t, start+1, out.Attempts)
				default:
					require.ErrorIs(t, out.Err, errFz)
					require.Equal(t, start, out.Attempts)
				}
			}
		}
		require.Equal(t, canceledWant, seenCanceled, "no outcome ErrCanceled")
		for _, ch := range waits {
			w := fzRecv(t, ch, "Future")
			switch {
			case canceledWant && errors.Is(w.err, taskpool.ErrCanceled):
			case notRun:
				require.ErrorIs(t, w.err, taskpool.ErrSchedulerClosed)
			case typ == "ok":
				require.NoError(t, w.err)
				require.True(t, w.res == params, "result %#v", w.res)
			}
		}
		if !stopFirst {
			fzStop(t, s)
		}
		require.Empty(t, outc, "an outcome too many")
		require.Zero(t, badDeadline.Load(), "a run whose deadline does not match the task timeout %v", time.Duration(timeout))
		if notRun {
			require.Zero(t, runs.Load())
		}
		fzSettled(t, s, accepted)
		if canceledWant {
			require.Equal(t, uint64(1), s.Stats().Canceled)
		}
		for _, err := range []error{
			s.Submit(context.Background(), taskpool.Task{Type: "ok"}),
			s.TrySubmit(taskpool.Task{Type: "ok"}),
			s.SubmitAt(context.Background(), taskpool.Task{Type: "ok"}, at),
		} {
			require.ErrorIs(t, err, taskpool.ErrSchedulerClosed, "submit after Stop")
		}
	})
}
