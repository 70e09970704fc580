package taskpool

import (
	"errors"
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

// retryable reports whether a failed run may be tried again.
func retryable(err error) bool {
	return !errors.Is(err, ErrSkipRetry) && !errors.Is(err, ErrNoHandler) &&
		!errors.Is(err, ErrCanceled) && !errors.Is(err, ErrHandlerExited)
}

// attemptsFor is how many runs a task of binding b may have: the task's
// own MaxAttempts, else its type's, else the scheduler's.
func (s *Scheduler) attemptsFor(b *binding, t *Task) int {
	if t.MaxAttempts > 0 {
		return t.MaxAttempts
	}
	if b.ent != nil && b.ent.maxAttempts > 0 {
		return b.ent.maxAttempts
	}
	return s.opts.retry.maxAttempts
}

// backoffFor returns the wait after run number attempt failed. A Backoff
// that panics is logged, and the task is not retried.
func (s *Scheduler) backoffFor(b *binding, attempt int) (d time.Duration, ok bool) {
	bo := s.opts.retry.backoff
	if b.ent != nil && b.ent.backoff != nil {
		bo = b.ent.backoff
	}
	defer func() {
		if v := recover(); v != nil {
			s.logPanic("Backoff", v)
			d, ok = 0, false
		}
	}()
	return max(bo(attempt), 0), true
}

// retry decides what follows a failed run: the next attempt, filed in the
// timer heap (or run at once by a Stop with DelayedRunEarly), or nothing,
// when the task has no attempt left, the error is final, or Stop's
// deadline has passed. It reports whether the task is taken care of; if
// not, the caller delivers err as the final outcome.
func (s *Scheduler) retry(l *local, j *job, r *record, t *Task, err error) bool {
	if t.Attempt >= s.attemptsFor(j.b, t) || !retryable(err) || s.gaveUp.Load() {
		return false
	}
	delay, ok := s.backoffFor(j.b, t.Attempt)
	if !ok {
		return false
	}
	if r == nil {
		r = s.recordFor(j, t.ID, t.Attempt)
	}
	r.lastErr, r.rated, r.woken = err, false, false
	if !s.retryAt(r, t.Attempt+1, s.now().Add(delay)) {
		// Stop has begun and the retry is not run early: the task ends
		// unrun, with its last error.
		l.stage = stageIdle
		tt := *t
		tt.result = nil
		s.finalize(l, r, &tt, nil, notRunErr(r), t.Attempt, settledNotRun)
		return true
	}
	l.c.retried.Add(1)
	s.logFailure(t, err, delay)
	return true
}
