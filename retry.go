package taskpool

import (
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
		return rand.N(ceiling + 1)
	}
}

// ConstantBackoff returns a Backoff that always waits d.
func ConstantBackoff(d time.Duration) Backoff {
	return func(int) time.Duration { return d }
}

// defaultBackoff is used when no backoff is configured.
var defaultBackoff = ExponentialBackoff(100*time.Millisecond, time.Minute)
