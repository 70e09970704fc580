package engine_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/internal/engine"
)

// holdWatch is a Runner that reports a unit whose Begin both started
// after a Hold returned and returned before the matching Unhold: gen is
// odd from right after Hold returns until right before Unhold.
type holdWatch struct {
	gen        atomic.Int64
	violations atomic.Int64
	ran        atomic.Int64
	dropped    atomic.Int64
}

func (h *holdWatch) Run(w *engine.Worker[unit, local], u *unit) {
	g := h.gen.Load()
	if !w.Begin(uint64(g)) {
		h.Drop(&w.Local, u)
		return
	}
	if g%2 == 1 && h.gen.Load() == g {
		h.violations.Add(1)
	}
	h.ran.Add(1)
	runtime.Gosched()
}
func (h *holdWatch) Drop(*local, *unit)         { h.dropped.Add(1) }
func (h *holdWatch) Exited(*local, *unit, bool) {}
func (h *holdWatch) Retired(*local, *local)     {}

// After Hold returns no unit begins until Unhold, under a steady flow of
// units and rapid holds.
func TestReviewEngNoBeginWhileHeld(t *testing.T) {
	h := &holdWatch{}
	e := engine.New[unit, local](engine.Config{Workers: 4, BatchSize: 8, BatchWork: 50 * time.Microsecond, QueueSize: 256, Weights: [engine.Lanes]int{1, 1, 1}}, h)
	e.Start()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for p := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if e.Put(context.Background(), p, unit{}, false, false) != nil {
					runtime.Gosched()
				}
			}
		}()
	}
	deadline := time.Now().Add(reviewStress(time.Second))
	for i := 0; time.Now().Before(deadline); i++ {
		e.Hold()
		h.gen.Add(1) // odd
		for range i % 20 {
			runtime.Gosched()
		}
		h.gen.Add(1) // even
		e.Unhold()
		for range i % 7 {
			runtime.Gosched()
		}
	}
	stop.Store(true)
	wg.Wait()
	e.CloseAdmission()
	e.Close()
	assert.Zero(t, h.violations.Load(), "units began while held (%d ran)", h.ran.Load())
}

// counter is a Runner that counts the units it ran.
type counter struct {
	ran  atomic.Int64
	next chan struct{}
}

func (c *counter) Run(w *engine.Worker[unit, local], u *unit) {
	if !w.Begin(0) {
		c.Drop(&w.Local, u)
		return
	}
	c.ran.Add(1)
	if c.next != nil {
		c.next <- struct{}{}
	}
}
func (c *counter) Drop(*local, *unit)         {}
func (c *counter) Exited(*local, *unit, bool) {}
func (c *counter) Retired(*local, *local)     {}

// A unit put while the dispatcher is idle, or parking, runs: it is never
// left in the accumulator with the dispatcher parked. One unit at a time,
// each waited for, on one or several lanes.
func TestReviewEngLoneUnitIsNotStranded(t *testing.T) {
	for _, lanes := range []int{1, 3} {
		t.Run(fmt.Sprint(lanes), func(t *testing.T) {
			c := &counter{next: make(chan struct{}, 1)}
			e := engine.New[unit, local](engine.Config{Workers: 2, BatchSize: 16, BatchWork: 50 * time.Microsecond, QueueSize: 64, Weights: [engine.Lanes]int{1, 1, 1}}, c)
			e.Start()
			n := 3000
			for i := range n {
				require.NoError(t, e.Put(context.Background(), i%lanes, unit{id: i}, false, false))
				select {
				case <-c.next:
				case <-time.After(5 * time.Second):
					t.Fatalf("unit %d did not run: %s", i, e.Dump())
				}
			}
			e.CloseAdmission()
			e.Close()
		})
	}
}

// blocker is a Runner whose units wait for release.
type blocker struct {
	release chan struct{}
	ran     atomic.Int64
}

func (b *blocker) Run(w *engine.Worker[unit, local], u *unit) {
	if !w.Begin(0) {
		b.Drop(&w.Local, u)
		return
	}
	<-b.release
	b.ran.Add(1)
}
func (b *blocker) Drop(*local, *unit)         {}
func (b *blocker) Exited(*local, *unit, bool) {}
func (b *blocker) Retired(*local, *local)     {}

// With every worker blocked, a lane never holds more than QueueSize units,
// whichever way they arrive (non-blocking Puts from several goroutines,
// blocked Puts admitted later), and once the flood ends the lane is full:
// no Put was refused with room to spare.
func TestReviewEngBoundIsNeverExceeded(t *testing.T) {
	const qs = 100
	b := &blocker{release: make(chan struct{})}
	e := engine.New[unit, local](engine.Config{Workers: 2, BatchSize: 4, BatchWork: 50 * time.Microsecond, QueueSize: qs, Weights: [engine.Lanes]int{1, 1, 1}}, b)
	e.Start()
	var stop atomic.Bool
	var over atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			for p, q := range e.Queued() {
				if q > qs {
					over.Store(int64(p*1000000 + q))
				}
			}
			runtime.Gosched()
		}
	}()
	var accepted atomic.Int64
	var sub sync.WaitGroup
	for g := range 4 {
		sub.Add(1)
		go func() {
			defer sub.Done()
			for range 200 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
				err := e.Put(ctx, 1, unit{}, g%2 == 0, false)
				cancel()
				if err == nil {
					accepted.Add(1)
				}
			}
		}()
	}
	sub.Wait()
	stop.Store(true)
	wg.Wait()
	assert.Zero(t, over.Load(), "a lane held more than %d units", qs)
	// Two workers hold at most 4 units each; the rest is queued.
	q := e.Queued()[1]
	assert.Equal(t, qs, q, "the lane is full after the flood (accepted %d)", accepted.Load())
	assert.ErrorIs(t, e.Put(context.Background(), 1, unit{}, false, false), engine.ErrFull)
	e.CloseAdmission()
	close(b.release)
	e.Close()
	assert.Equal(t, accepted.Load(), b.ran.Load())
}
