package taskpool

import (
	"fmt"
	"sync"
	"time"
)

// uniqueKeys holds the unique keys of tasks that are queued, delayed or
// running, and of finished ones within the unique TTL.
type uniqueKeys struct {
	mu      sync.Mutex
	keys    map[string]time.Time // zero: held until released; else free after
	sweepAt int
}

func (u *uniqueKeys) acquire(key string, now time.Time) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.keys == nil {
		u.keys = make(map[string]time.Time)
	}
	if until, ok := u.keys[key]; ok && (until.IsZero() || now.Before(until)) {
		return fmt.Errorf("%w: unique key %q", ErrDuplicateTask, key)
	}
	u.keys[key] = time.Time{}
	if len(u.keys) > u.sweepAt {
		// Forget keys whose TTL is over, now and then, so that the map
		// stays in proportion to the keys in use.
		for k, until := range u.keys {
			if !until.IsZero() && !now.Before(until) {
				delete(u.keys, k)
			}
		}
		u.sweepAt = 2*len(u.keys) + 64
	}
	return nil
}

// release frees key now (zero until) or at until.
func (u *uniqueKeys) release(key string, until time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if until.IsZero() {
		delete(u.keys, key)
		return
	}
	u.keys[key] = until
}
