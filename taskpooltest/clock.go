// Package taskpooltest helps test code that uses taskpool: a fake
// [taskpool.Clock] whose time moves only when the test says so, and [Run],
// which runs a handler on one task the way a scheduler does.
package taskpooltest

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/taskpool/taskpool"
)

// Clock is a fake clock. Its zero value is not usable; call NewClock. It
// is safe for concurrent use. It keeps only the timers that are set: one
// that fires or is stopped is dropped until it is set again, so a long
// test that makes timer after timer does not grow it.
type Clock struct {
	mu  sync.Mutex
	now time.Time
	// timers are the timers set and not fired: a timer leaves when it
	// fires or is stopped, and comes back when it is set again, so that a
	// long test that makes timer after timer does not keep them all.
	timers []*timer
	armed  chan struct{} // signalled whenever a timer is (re)armed, for Armed
	// wake is closed and replaced whenever a timer is (re)armed: every
	// WaitArmed caller wakes, and none takes Armed's signal.
	wake chan struct{}
}

var _ taskpool.Clock = (*Clock)(nil)

// NewClock returns a fake clock set to now.
func NewClock(now time.Time) *Clock {
	return &Clock{now: now, armed: make(chan struct{}, 1), wake: make(chan struct{})}
}

// Now returns the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires when the fake time reaches now+d
// (at once for d <= 0), sending the fake time on its channel. It behaves as
// a time.Timer does since Go 1.23: no value from before a Stop or Reset is
// received after the call returns, and both report true when they stop a
// timer that fired and whose value was not received (so that the older
// idiom "if !t.Stop() { <-t.C() }" does not block), false once the value
// was received or the timer stopped.
func (c *Clock) NewTimer(d time.Duration) taskpool.Timer {
	t := &timer{c: c, ch: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

// Advance moves the fake time forward by d and fires the timers due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	set := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			set = append(set, t)
			continue
		}
		// Under the lock, as Stop and Reset drain the channel: a value
		// sent after one of them returned would fire a timer stopped or
		// set again. The send does not block.
		t.active = false
		t.fire(c.now)
	}
	clear(c.timers[len(set):]) // keep no fired timer
	c.timers = set
}

// Skip moves the fake time forward by d without firing any timer, as if
// the goroutine that waits on them had not woken up yet: work that is due
// by the clock has not been seen by the scheduler. The timers due fire at
// the next Advance (Advance(0) fires them without moving time).
func (c *Clock) Skip(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Pending returns the deadlines of the timers that are set and have not
// fired, in no particular order: a test can poll it to know the scheduler
// waits for a given time.
func (c *Clock) Pending() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var at []time.Time
	for _, t := range c.timers {
		at = append(at, t.at)
	}
	return at
}

// Armed returns a channel that receives whenever a timer is set: a test can
// wait on it to know the scheduler has seen a new deadline.
func (c *Clock) Armed() <-chan struct{} { return c.armed }

// WaitArmed waits until a timer is set to fire at or before by: the
// scheduler has seen a task due then, so that Advance to by runs it. Call
// it between SubmitAt (or SubmitAfter, a retry, a schedule) and Advance;
// it returns ctx's error if ctx ends first. Any number of goroutines may
// wait at once, and WaitArmed leaves Armed's signal to the test. A nil
// ctx is refused with taskpool.ErrNilContext.
func (c *Clock) WaitArmed(ctx context.Context, by time.Time) error {
	if ctx == nil {
		return taskpool.ErrNilContext
	}
	for {
		c.mu.Lock()
		for _, t := range c.timers {
			if !t.at.After(by) {
				c.mu.Unlock()
				return nil
			}
		}
		wake := c.wake
		c.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

type timer struct {
	c      *Clock
	ch     chan time.Time
	at     time.Time
	active bool // set and not fired: in c.timers
}

func (t *timer) C() <-chan time.Time { return t.ch }

// fire puts now in the channel unless a value waits there already. The
// caller holds c.mu.
func (t *timer) fire(now time.Time) {
	select {
	case t.ch <- now:
	default:
	}
}

// Stop stops the timer and, like a time.Timer since Go 1.23, discards a
// value not yet received: none is received after Stop returns. As there,
// a timer whose value was not received counts as stopped by the call:
// Stop reports true, so that "if !t.Stop() { <-t.C() }" does not block.
func (t *timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.unset()
	return t.discard() || was
}

// unset takes an active timer out of c.timers. The caller holds c.mu.
func (t *timer) unset() {
	if !t.active {
		return
	}
	t.active = false
	c := t.c
	if i := slices.Index(c.timers, t); i >= 0 {
		c.timers = slices.Delete(c.timers, i, i+1)
	}
}

// discard empties the channel, reporting whether a value waited there.
// The caller holds c.mu.
func (t *timer) discard() bool {
	select {
	case <-t.ch:
		return true
	default:
		return false
	}
}

func (t *timer) Reset(d time.Duration) bool {
	c := t.c
	c.mu.Lock()
	// Like Go 1.23 timers: a reset discards a value not yet received, and
	// reports true for it, as Stop does.
	was := t.discard() || t.active
	t.at = c.now.Add(d)
	if !t.at.After(c.now) {
		t.unset()
		t.fire(c.now)
	} else if !t.active {
		t.active = true
		c.timers = append(c.timers, t)
	}
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
	select {
	case c.armed <- struct{}{}:
	default:
	}
	return was
}
