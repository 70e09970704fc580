package engine_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/internal/engine"
)

// ranOnce waits until every unit below n ran, then checks that each ran
// exactly once.
func ranOnce(t *testing.T, r *rec, e *engine.Engine[unit, local], n int) {
	t.Helper()
	if !assert.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.ran) == n
	}, 10*time.Second, time.Millisecond, "units still waiting") {
		r.mu.Lock()
		var missing []int
		for i := range n {
			if r.ran[i] == 0 {
				missing = append(missing, i)
			}
		}
		r.mu.Unlock()
		t.Fatalf("missing %v\n%s", missing, e.Dump()) // the dispatcher is parked: Dump may read its state
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range n {
		assert.Equal(t, 1, r.ran[i], "unit %d", i)
	}
}

// A unit that waits for a unit handed to the same worker behind it: the
// batch's rest is taken back for another worker, which runs it.
func TestUnitWaitingForOneBehindItInItsBatch(t *testing.T) {
	r := newRec()
	e := engine.New[unit, local](cfg(3, 64), r)
	e.Start()
	e.Hold()
	ch := make(chan struct{})
	require.NoError(t, e.Put(context.Background(), 1, unit{id: 0, wait: ch}, false, false))
	require.NoError(t, e.Put(context.Background(), 1, unit{id: 1, signal: ch}, false, false))
	for i := 2; i < 8; i++ {
		require.NoError(t, e.Put(context.Background(), 1, unit{id: i}, false, false))
	}
	// 8 units over 3 workers: batches of 3, the first one [0 1 2].
	e.Unhold()
	ranOnce(t, r, e, 8)
	e.CloseAdmission()
	e.Close()
}

// Units taken from behind a blocked one are the taker's: Inspect shows
// each unit once, running or unstarted.
func TestInspectAfterUnitsAreTaken(t *testing.T) {
	r := newRec()
	e := engine.New[unit, local](cfg(3, 64), r)
	e.Start()
	e.Hold()
	hold0, hold1 := make(chan struct{}), make(chan struct{})
	require.NoError(t, e.Put(context.Background(), 1, unit{id: 0, wait: hold0}, false, false))
	require.NoError(t, e.Put(context.Background(), 1, unit{id: 1, wait: hold1}, false, false))
	require.NoError(t, e.Put(context.Background(), 1, unit{id: 2}, false, false))
	require.NoError(t, e.Put(context.Background(), 1, unit{id: 3}, false, false))
	// Three workers, so one is always free: however the units were batched
	// (as [0 1] and [2 3], or 1 behind 0 with others), what waits behind 0
	// or 1 is taken for a free worker, and in the end 0 and 1 run, each
	// shown once, and nothing is shown unstarted.
	e.Unhold()
	seen := func() (running, unstarted []int) {
		e.Inspect(func(_ *local, u *unit, _ uint64, rest []unit) {
			if u != nil {
				running = append(running, u.id)
			}
			for _, x := range rest {
				unstarted = append(unstarted, x.id)
			}
		})
		return running, unstarted
	}
	require.Eventually(t, func() bool {
		running, unstarted := seen()
		return len(running) == 2 && len(unstarted) == 0
	}, 10*time.Second, time.Millisecond)
	running, _ := seen()
	assert.ElementsMatch(t, []int{0, 1}, running)
	close(hold0)
	close(hold1)
	ranOnce(t, r, e, 4)
	e.CloseAdmission()
	e.Close()
}

// Rounds of units of which a few wait for a later one, on fewer workers
// than units and more workers than waits, with Inspect reading the
// batches meanwhile: every unit runs, each once.
func TestStressUnitsWaitingForLaterOnes(t *testing.T) {
	rounds := 60
	if testing.Short() {
		rounds = 10
	}
	for round := range rounds {
		r := newRec()
		c := cfg(4, 256)
		c.BatchSize = 8
		e := engine.New[unit, local](c, r)
		e.Start()
		e.Hold()
		const n = 48
		units := make([]unit, n)
		for i := range units {
			units[i].id = i
		}
		// Two waits per round, so that a worker is always free.
		for _, i := range []int{rand.IntN(n/2 - 4), n/2 + rand.IntN(n/2-4)} { // signals below n/2, then from n/2 on: never the same unit
			ch := make(chan struct{})
			units[i].wait = ch
			units[i+1+rand.IntN(3)].signal = ch
		}
		for _, u := range units {
			require.NoError(t, e.Put(context.Background(), u.id%engine.Lanes, u, false, false))
		}
		stop := inspectMeanwhile(t, e)
		e.Unhold()
		ranOnce(t, r, e, n)
		stop()
		e.CloseAdmission()
		e.Close()
		if t.Failed() {
			t.Fatalf("round %d", round)
		}
	}
}

// inspectMeanwhile calls Inspect over and over until the function it
// returns is called, checking what it can of each view. Inspect reads one
// worker after another: a unit taken back in between shows in the batch
// it left and in the one it joined. One worker's view never has a unit
// twice, and no unit runs on two workers.
func inspectMeanwhile(t *testing.T, e *engine.Engine[unit, local]) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			running := map[int]bool{}
			e.Inspect(func(_ *local, u *unit, _ uint64, rest []unit) {
				seen := map[int]bool{}
				if u != nil {
					assert.False(t, running[u.id], "unit %d running twice", u.id)
					running[u.id], seen[u.id] = true, true
				}
				for _, x := range rest {
					assert.False(t, seen[x.id], "unit %d twice in one batch", x.id)
					seen[x.id] = true
				}
			})
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}
