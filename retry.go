package taskpool

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Backoff returns how long to wait before running a task again after its
// run number attempt (1 for the first run) failed. A Backoff must be safe
// for concurrent use.
type Backoff func(attempt int) time.Duration

// ExponentialBackoff returns a Backoff with full jitter: the wait after run
// n is drawn uniformly from [0, min(max, base·2^(n-1))]. Jitter spreads
// retries of tasks that failed together. It is the default, with base
// 100ms and max 1m.
func ExponentialBackoff(base, max time.Duration) Backoff {
	return func(attempt int) time.Duration {
		if attempt < 1 {
			attempt = 1
		}
		ceiling := max
		if shift := attempt - 1; shift < 62 && base <= max>>shift {
			ceiling = base << shift
		}
		if ceiling <= 0 {
			return 0
		}
		// In uint64, ceiling+1 cannot overflow even at math.MaxInt64.
		return time.Duration(rand.Uint64N(uint64(ceiling) + 1))
	}
}

// ConstantBackoff returns a Backoff that always waits d.
func ConstantBackoff(d time.Duration) Backoff {
	return func(int) time.Duration { return d }
}

// defaultBackoff is used when no backoff is configured.
var defaultBackoff = ExponentialBackoff(100*time.Millisecond, time.Minute)

// Retryable reports whether a task whose run failed with err may run
// again, attempts permitting: false for an error wrapping [ErrSkipRetry],
// [ErrNoHandler], [ErrCanceled] or [ErrHandlerExited], true for any other
// (panics and timeouts included). It is the test the [Scheduler] applies,
// and that a broker applies through [RetryPolicy].
func Retryable(err error) bool {
	return !errors.Is(err, ErrSkipRetry) && !errors.Is(err, ErrNoHandler) &&
		!errors.Is(err, ErrCanceled) && !errors.Is(err, ErrHandlerExited)
}

// RetryPolicy is the retry decision a [Scheduler] makes for a failed task,
// as a value that a broker's consumer applies too, so that a task type
// registered with [WithRetry] gets the same attempts and backoff in
// process and distributed. A task's own MaxAttempts comes first, then its
// type's [WithRetry] in Registry, then MaxAttempts and Backoff here (the
// scheduler's [WithRetry] given to [New] plays that part in process). The
// zero value has the scheduler's defaults: 1 attempt and
// [ExponentialBackoff] from 100ms to 1m.
type RetryPolicy struct {
	// Registry holds the per-type settings; nil means none.
	Registry *Registry
	// MaxAttempts is the default for types without their own; 0 means 1.
	MaxAttempts int
	// Backoff is the default for types without their own; nil means
	// ExponentialBackoff(100ms, 1m).
	Backoff Backoff
}

// Attempts is how many runs t may have: t.MaxAttempts, else its type's,
// else p.MaxAttempts, else 1.
func (p RetryPolicy) Attempts(t Task) int { return attemptsOf(p.entry(t.Type), &t, p.MaxAttempts) }

// Wait is the wait before the next run after t's run number attempt
// failed: its type's Backoff, else p.Backoff, else the default; never
// negative. A Backoff that panics gives an error, a [*PanicError]: the
// scheduler does not retry the task then.
func (p RetryPolicy) Wait(t Task, attempt int) (time.Duration, error) {
	return waitAfter(backoffOf(p.entry(t.Type), p.Backoff), attempt)
}

// Retry reports whether t, whose run number attempt failed with err, runs
// again: attempt < p.Attempts(t) and [Retryable](err).
func (p RetryPolicy) Retry(t Task, attempt int, err error) bool {
	return attempt < p.Attempts(t) && Retryable(err)
}

func (p RetryPolicy) entry(typ string) *handlerEntry {
	if p.Registry == nil {
		return nil
	}
	return p.Registry.entry(typ)
}

// RetryPolicy returns the retry policy the scheduler decides with: its
// registry (nil when its handler is not a [*Registry]) and the defaults
// given with the scheduler-wide [WithRetry], zero where none was given
// (which RetryPolicy reads as the built-in defaults). A broker's consumer
// that runs its tasks on a local scheduler takes its defaults from it, so
// that one WithRetry sets them on both transports. It is safe for
// concurrent use.
func (s *Scheduler) RetryPolicy() RetryPolicy {
	return RetryPolicy{Registry: s.reg, MaxAttempts: s.opts.retryGiven.maxAttempts, Backoff: s.opts.retryGiven.backoff}
}

// attemptsOf is how many runs t of the type ent may have: its own
// MaxAttempts, else its type's, else def, else 1.
func attemptsOf(ent *handlerEntry, t *Task, def int) int {
	if t.MaxAttempts > 0 {
		return t.MaxAttempts
	}
	if ent != nil && ent.maxAttempts > 0 {
		return ent.maxAttempts
	}
	return max(def, 1)
}

// backoffOf is the Backoff of the type ent, else def, else the default.
func backoffOf(ent *handlerEntry, def Backoff) Backoff {
	if ent != nil && ent.backoff != nil {
		return ent.backoff
	}
	if def != nil {
		return def
	}
	return defaultBackoff
}

// waitAfter calls bo, turning a panic into a *PanicError.
func waitAfter(bo Backoff, attempt int) (d time.Duration, err error) {
	defer func() {
		if v := recover(); v != nil {
			d, err = 0, newPanicError(v)
		}
	}()
	return max(bo(attempt), 0), nil
}

// attemptsFor is how many runs a task of binding b may have (see
// RetryPolicy.Attempts).
func (s *Scheduler) attemptsFor(b *binding, t *Task) int {
	return attemptsOf(b.ent, t, s.opts.retry.maxAttempts)
}

// backoffFor returns the wait after run number attempt failed (see
// RetryPolicy.Wait). A Backoff that panics is logged, and the task is not
// retried.
func (s *Scheduler) backoffFor(b *binding, attempt int) (time.Duration, bool) {
	d, err := waitAfter(backoffOf(b.ent, s.opts.retry.backoff), attempt)
	if pe, ok := err.(*PanicError); ok {
		s.opts.logger.Error("taskpool: panic in Backoff", "panic", fmt.Sprint(pe.Value), "stack", string(pe.Stack))
		return 0, false
	}
	return d, true
}

// retry decides what follows a failed run: the next attempt, filed in the
// timer heap (or run at once by a Stop with DelayedRunEarly), or nothing,
// when the task has no attempt left or the error is final. It reports
// whether the task is taken care of; if not, the caller delivers err as
// the final outcome. Once Stop's deadline has passed, the next attempt is
// reported not run, as one waiting in the timer heap then is, with an
// error wrapping ErrSchedulerClosed and err.
func (s *Scheduler) retry(l *local, j *job, r *record, t *Task, err error) bool {
	if t.Attempt >= s.attemptsFor(j.b, t) || !Retryable(err) {
		return false
	}
	if s.gaveUp.Load() {
		s.notRetried(l, r, t, err)
		return true
	}
	l.stage, l.err = stageBackoff, err
	delay, ok := s.backoffFor(j.b, t.Attempt)
	l.stage, l.err = stageUser, nil
	if !ok {
		return false
	}
	if r == nil {
		r = s.recordFor(j, t.ID, t.Attempt)
	}
	r.lastErr, r.rated, r.woken = err, false, false
	if !r.indexed {
		s.index.add(r) // Cancel reaches what Inspect lists
	}
	// Counted before the retry is filed: another worker may run it and
	// deliver its outcome before this one goes on, and whoever sees that
	// outcome must see the retry counted (FuzzNew caught Stats.Retried
	// still 0 in a completion hook of the second run).
	l.c.retried.Add(1)
	if !s.retryAt(r, t.Attempt+1, s.now().Add(delay)) {
		// Stop has begun and the retry is not run early: the task ends
		// unrun, with its last error, and no attempt follows.
		l.c.retried.Add(^uint64(0))
		s.notRetried(l, r, t, err)
		return true
	}
	s.logFailure(t, err, delay)
	return true
}

// notRetried settles t, whose run failed with err, as not run because Stop
// keeps its next attempt from starting: its error wraps ErrSchedulerClosed
// and err (as notRunErr gives a record whose last error is err). Its Task
// has the number of that next attempt, the run that never came, as a
// retry waiting in the timer heap that Stop reports not run has: whether
// Stop catches a retry before or after it is filed, the outcome is the
// same, in the hook and in the Future (which reads the record's Task).
func (s *Scheduler) notRetried(l *local, r *record, t *Task, err error) {
	l.stage = stageIdle
	tt := *t
	tt.result = nil
	tt.Attempt = t.Attempt + 1
	if r != nil {
		q := &s.timers
		q.mu.Lock() // Inspect reads a running record's Attempt under it
		r.task.Attempt = tt.Attempt
		q.mu.Unlock()
	}
	s.finalize(l, r, &tt, nil, errors.Join(ErrSchedulerClosed, err), t.Attempt, settledNotRun)
}
