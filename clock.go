package taskpool

import "time"

// Clock tells the time and makes timers. The scheduler reads time only
// through its Clock, for delayed, retried and periodic tasks and for
// uniqueness TTLs, so that tests can drive time by hand. Handler timeouts
// use the context package and real time.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is the part of [time.Timer] a [Clock] provides.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

// SystemClock is the [Clock] of the time package, the default.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// NewTimer returns a time.Timer as a [Timer].
func (SystemClock) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time        { return t.t.C }
func (t systemTimer) Stop() bool                 { return t.t.Stop() }
func (t systemTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }

// Schedule decides when a periodic task runs next. Next returns the first
// activation strictly after the given time, or the zero time when there is
// none. [Every] makes a fixed-interval Schedule; the cron sub-module parses
// cron expressions into one.
type Schedule interface {
	Next(after time.Time) time.Time
}

// Every returns a Schedule that fires every d, counted from the previous
// activation (a late one does not move the next), or, in process, after
// activations that the scheduler missed altogether (not replayed), from
// the time it caught up. d must be positive; SchedulePeriodic rejects
// others. The Schedule's String method returns "@every <d>", which a
// broker's client hands to its server, and which the cron sub-module's
// Parse reads back as the same schedule. The NATS broker's server runs
// only whole seconds, at least one: its client refuses another d with
// ErrInvalidOption.
func Every(d time.Duration) Schedule { return every(d) }

type every time.Duration

// String returns "@every <d>", the schedule in the cron dialect that a
// broker can run on its server.
func (e every) String() string { return "@every " + time.Duration(e).String() }

func (e every) Next(after time.Time) time.Time {
	if e <= 0 {
		return time.Time{}
	}
	return after.Add(time.Duration(e))
}

// RateLimiter paces the starts of one task type. Reserve takes one start
// from the limiter and returns how long after now the task may start; 0
// means now. The scheduler holds a delayed task back without occupying a
// worker. It must be safe for concurrent use. The ratelimit sub-module
// adapts golang.org/x/time/rate.
type RateLimiter interface {
	Reserve(now time.Time) time.Duration
}
