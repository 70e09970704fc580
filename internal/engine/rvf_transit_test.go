package engine_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/internal/engine"
)

// Item 3: a batch taken out of a lane and not yet received by its worker
// was counted neither by Queued nor by Inspect: a caller that looked at
// Queued and then Inspect (as the root's Stats does) while the worker
// was being woken saw no trace of a unit put and not begun. One worker,
// parked between units, so that each hand-off wakes it.
func TestRvfUnitInTransitIsQueuedOrInspected(t *testing.T) {
	r := newRec()
	r.started = make(chan int, 1)
	e := engine.New[unit, local](engine.Config{Workers: 1, BatchSize: 1, QueueSize: 64, Weights: [engine.Lanes]int{1, 1, 1}}, r)
	e.Start()
	defer func() {
		e.CloseAdmission()
		e.Close()
	}()
	const trials = 100
	missed := 0
	for i := range trials {
		release := make(chan struct{})
		require.NoError(t, e.Put(context.Background(), 1, unit{id: i, wait: release}, false, false))
		for began := false; !began; {
			seen := false
			q := e.Queued()
			seen = q[1] > 0
			e.Inspect(func(_ *local, running *unit, _ uint64, rest []unit) {
				for _, u := range rest {
					seen = seen || u.id == i
				}
				if running != nil && running.id == i {
					seen, began = true, true
				}
			})
			if !seen {
				missed++
			}
		}
		<-r.started
		close(release)
	}
	assert.Zero(t, missed, "looks that saw a unit neither queued nor at a worker, over %d units", trials)
}
