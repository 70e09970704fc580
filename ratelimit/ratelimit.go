// Package ratelimit paces task starts with a token bucket from
// golang.org/x/time/rate, as a [taskpool.RateLimiter] for
// [taskpool.WithRateLimit].
//
// A [Limiter] allows burst starts at once and then one start every 1/r
// seconds. The scheduler asks it once per task, when a worker would start
// the task: [Limiter.Reserve] takes a token at that moment, borrowing
// against the future when the bucket is empty, and returns how long the
// task must wait. The reservation is consumed when the scheduler asks, so
// a task delayed by the limiter becomes ready at its reserved time without
// asking again, and tasks held back one after another get successive
// slots. A task dropped while it waits (cancelled, or the scheduler
// stopped) does not give its slot back.
//
// All of its time comes from the now passed to Reserve, which the
// scheduler reads from its [taskpool.Clock], so a fake clock drives it.
package ratelimit

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"github.com/taskpool/taskpool"
)

// ErrInvalidLimit is returned by [New] and [Every] for a rate, interval or
// burst that allows no start. The returned error wraps it with the value
// at fault; test for it with errors.Is.
var ErrInvalidLimit = errors.New("ratelimit: invalid limit")

// Limiter is a token-bucket [taskpool.RateLimiter] backed by a
// rate.Limiter. It is safe for concurrent use. Its zero value is not
// usable: create one with [New] or [Every].
type Limiter struct {
	l *rate.Limiter
}

var _ taskpool.RateLimiter = (*Limiter)(nil)

// New returns a Limiter that allows burst starts at once and then r starts
// per second. Its bucket starts full. rate.Inf allows every start at once
// (burst must still be at least 1).
//
// New returns an error wrapping [ErrInvalidLimit] when r is not positive
// (or is NaN) or burst is less than 1.
func New(r rate.Limit, burst int) (*Limiter, error) {
	// !(r > 0) rather than r <= 0 also rejects NaN.
	if !(r > 0) {
		return nil, fmt.Errorf("%w: rate %v, want > 0", ErrInvalidLimit, float64(r))
	}
	if burst < 1 {
		return nil, fmt.Errorf("%w: burst %d, want >= 1", ErrInvalidLimit, burst)
	}
	return &Limiter{l: rate.NewLimiter(r, burst)}, nil
}

// Every returns a Limiter that allows burst starts at once and then one
// start every interval: New(rate.Every(interval), burst).
//
// Every returns an error wrapping [ErrInvalidLimit] when interval is not
// positive or burst is less than 1. (rate.Every reads a zero interval as no
// limit; use New(rate.Inf, 1) for that.)
func Every(interval time.Duration, burst int) (*Limiter, error) {
	if interval <= 0 {
		return nil, fmt.Errorf("%w: interval %v, want > 0", ErrInvalidLimit, interval)
	}
	return New(rate.Every(interval), burst)
}

// Reserve takes one start from the limiter at now and returns how long
// after now it may happen: 0 while the bucket holds a token, otherwise the
// time until the token it borrowed is refilled. The start is reserved
// whether or not the caller then waits for it; it is never given back.
// Reserve never blocks and is safe for concurrent use. The delay is
// computed in floating point by x/time/rate, so it can be a nanosecond
// short of an exact multiple of the interval.
func (l *Limiter) Reserve(now time.Time) time.Duration {
	// The reservation is always OK: one token never exceeds a burst of at
	// least 1, and ReserveN allows any wait. (An extremely small rate makes
	// the wait saturate at rate.InfDuration, about 292 years.)
	r := l.l.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d == 0 && r.DelayFrom(now.Add(-time.Nanosecond)) == 0 {
		// The token is due before now, which no reservation is: a wait
		// that x/time/rate computed as about 2^63 ns (an interval close to
		// the largest Duration) overflowed when it was converted to a
		// Duration. It is the saturated wait. (A reservation due now is
		// due a nanosecond after now-1ns.)
		return rate.InfDuration
	}
	return d
}
