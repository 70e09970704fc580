package engine_test

import (
	"context"
	"math/rand/v2"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/internal/engine"
)

// visible counts the units Queued and Inspect show as not started, and
// the running ones.
func visible(e *engine.Engine[unit, local]) (waiting int, running []int) {
	for _, n := range e.Queued() {
		waiting += n
	}
	e.Inspect(func(_ *local, u *unit, _ uint64, rest []unit) {
		if u != nil {
			running = append(running, u.id)
		}
		waiting += len(rest)
	})
	return waiting, running
}

// Units taken back from two busy workers while one worker waits: the
// second batch taken cannot be handed out until a worker is free, and
// meanwhile neither Queued nor Inspect showed it (Stats.Queued and
// Inspection.Queued in the root package add them up).
func TestUnitsTakenBackStayVisible(t *testing.T) {
	r := newRec()
	e := engine.New[unit, local](cfg(3, 64), r)
	e.Start()
	e.Hold()
	release := make(chan struct{})
	// 0, 1, 2 and 3 block: batched with 4 or 5 behind them, those are
	// taken back for the worker left free.
	for i := range 6 {
		u := unit{id: i}
		if i < 4 {
			u.wait = release
		}
		require.NoError(t, e.Put(context.Background(), 1, u, false, false))
	}
	e.Unhold()
	// However the units were batched, three block running and the rest
	// run, or wait where Queued or Inspect shows them.
	ran := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.ran)
	}
	var waiting int
	var running []int
	require.Eventually(t, func() bool {
		done := ran()
		waiting, running = visible(e)
		return len(running) == 3 && done+waiting == 3
	}, 10*time.Second, time.Millisecond, "running %v, %d waiting", &running, &waiting)
	close(release)
	ranOnce(t, r, e, 6)
	e.CloseAdmission()
	e.Close()
}

var holdingRE = regexp.MustCompile(`holding (\d+)`)

// A dispatcher that never parks never prunes its list of hand-offs: it
// grew by one per hand-off of more than one unit, for as long as work kept
// coming.
func TestHandOffListStaysBounded(t *testing.T) {
	r := newRec()
	const n = 20000
	e := engine.New[unit, local](cfg(4, n), r)
	e.Start()
	e.Hold()
	for i := range n {
		require.NoError(t, e.Put(context.Background(), 0, unit{id: i}, false, false))
	}
	e.CloseAdmission()
	e.Unhold()
	// Closed long before the lanes are empty: the dispatcher goes from
	// handing out to shutting down without parking.
	e.Close()
	ranOnce(t, r, e, n)
	m := holdingRE.FindStringSubmatch(e.Dump())
	require.NotNil(t, m, e.Dump())
	h, _ := strconv.Atoi(m[1])
	assert.LessOrEqual(t, h, 100, "hand-offs kept")
}

// A finished unit is never shown as unstarted: the worker cleared its
// progress before its batch, and Inspect in between saw the whole batch,
// run already, as not started.
func TestInspectNeverShowsFinishedUnits(t *testing.T) {
	for round := range 200 {
		r := newRec()
		e := engine.New[unit, local](cfg(1, 256), r)
		e.Start()
		e.Hold()
		const n = 64
		for i := range n {
			require.NoError(t, e.Put(context.Background(), 0, unit{id: i}, false, false))
		}
		e.Unhold()
		for {
			r.mu.Lock()
			done := make(map[int]bool, len(r.ran))
			for id := range r.ran {
				done[id] = true
			}
			r.mu.Unlock()
			var stale []int
			e.Inspect(func(_ *local, _ *unit, _ uint64, rest []unit) {
				for _, x := range rest {
					if done[x.id] {
						stale = append(stale, x.id)
					}
				}
			})
			require.Empty(t, stale, "round %d: finished units shown unstarted", round)
			if len(done) == n {
				break
			}
		}
		e.CloseAdmission()
		e.Close()
	}
}

// Units that wait for later ones, units that Goexit, Holds, Resizes and
// Inspect all at once, then an Abandon: every unit is run, dropped or
// exited exactly once, and Close returns.
func TestStressStealWithExitHoldResizeAbandon(t *testing.T) {
	rounds := 40
	if testing.Short() {
		rounds = 8
	}
	for round := range rounds {
		r := newRec()
		c := cfg(4, 1024)
		c.BatchSize = 8
		e := engine.New[unit, local](c, r)
		e.Start()
		e.Hold()
		const n = 400
		units := newUnits(n, false, 10)
		waitOnLater(units) // at least three workers: one is always free
		for _, u := range units {
			require.NoError(t, e.Put(context.Background(), u.id%engine.Lanes, u, false, false))
		}
		stopInspect := inspectMeanwhile(t, e)
		stopChurn := churn(func(k int) {
			e.Resize(3 + k%4)
			if k%3 == 0 {
				e.Hold()
				time.Sleep(50 * time.Microsecond)
				e.Unhold()
			}
		}, func() time.Duration { return 100 * time.Microsecond })
		e.Unhold()
		abandon := round%2 == 1
		if abandon {
			time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
			e.Abandon()
		}
		// A dropped signal unit strands its waiter: release it.
		release := func(int) {
			if !abandon {
				return
			}
			for i := range units {
				if units[i].signal == nil {
					continue
				}
				r.mu.Lock()
				d := r.dropped[i] > 0
				r.mu.Unlock()
				if d {
					select {
					case <-units[i].signal:
					default:
						close(units[i].signal)
					}
				}
			}
		}
		endedOnce(t, r, e, n, release, stopChurn, stopInspect)
		e.CloseAdmission()
		e.Close()
	}
}
