package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"sync"
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
		units := make([]unit, n)
		for i := range units {
			units[i].id = i
			if rand.IntN(10) == 0 {
				units[i].exit = true
			}
		}
		// At most two waits, on at least three workers: one is always free.
		for k := 0; k < 2; k++ {
			i := rand.IntN(n - 8)
			if units[i].wait != nil || units[i].signal != nil {
				continue
			}
			j := i + 1 + rand.IntN(4)
			if units[j].wait != nil || units[j].signal != nil {
				continue
			}
			ch := make(chan struct{})
			units[i].wait, units[j].signal = ch, ch
		}
		for _, u := range units {
			require.NoError(t, e.Put(context.Background(), u.id%engine.Lanes, u, false, false))
		}
		stopInspect := inspectMeanwhile(t, e)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				e.Resize(3 + k%4)
				if k%3 == 0 {
					e.Hold()
					time.Sleep(50 * time.Microsecond)
					e.Unhold()
				}
				time.Sleep(100 * time.Microsecond)
			}
		}()
		e.Unhold()
		if round%2 == 1 {
			time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
			e.Abandon()
		}
		// Waits are all released: each signal unit runs or is dropped
		// (a dropped signal leaves its waiter to Abandon's drops only if
		// the waiter has not started; release them all at the end).
		done := func() int {
			r.mu.Lock()
			defer r.mu.Unlock()
			return len(r.ran) + len(r.dropped) + len(r.exited)
		}
		deadline := time.Now().Add(10 * time.Second)
		for done() < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
			if round%2 == 1 {
				// a dropped signal unit strands its waiter: release it
				for i := range units {
					if units[i].signal != nil {
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
			}
		}
		close(stop)
		wg.Wait()
		stopInspect()
		if done() < n {
			r.mu.Lock()
			var missing []int
			for i := range n {
				if r.ran[i]+r.dropped[i]+r.exited[i] == 0 {
					missing = append(missing, i)
				}
			}
			r.mu.Unlock()
			waiting, running := visible(e)
			t.Fatalf("round %d: stuck: missing %v, running %v, %d waiting\n%s", round, missing, running, waiting, e.Dump())
		}
		e.CloseAdmission()
		e.Close()
		r.mu.Lock()
		for i := range n {
			got := r.ran[i] + r.dropped[i] + r.exited[i]
			if !assert.Equal(t, 1, got, "round %d unit %d: ran %d dropped %d exited %d", round, i, r.ran[i], r.dropped[i], r.exited[i]) {
				break
			}
		}
		r.mu.Unlock()
		if t.Failed() {
			t.Fatal(fmt.Sprintf("round %d\n%s", round, e.Dump()))
		}
	}
}
