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

// pendingIDs counts the queued tasks submitted with an ID, so that Cancel
// can reach them before a worker does. Tasks without an ID skip it.
type pendingIDs struct {
	mu  sync.Mutex
	ids map[string]*pendingID
}

type pendingID struct{ queued, canceled int }

func (p *pendingIDs) add(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ids == nil {
		p.ids = make(map[string]*pendingID)
	}
	st := p.ids[id]
	if st == nil {
		st = new(pendingID)
		p.ids[id] = st
	}
	st.queued++
}

func (p *pendingIDs) remove(id string) { p.take(id) }

// take counts one task with id out of the queue, and reports whether it
// was cancelled.
func (p *pendingIDs) take(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.ids[id]
	if st == nil {
		return false
	}
	st.queued--
	canceled := st.canceled > 0
	if canceled {
		st.canceled--
	}
	if st.queued == 0 {
		delete(p.ids, id)
	}
	return canceled
}

// cancel marks one queued task with id cancelled, if one is left unmarked.
func (p *pendingIDs) cancel(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.ids[id]
	if st == nil || st.canceled >= st.queued {
		return false
	}
	st.canceled++
	return true
}
