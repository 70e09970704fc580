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

// ranOnce waits until every unit below n ran, calls each stop, then
// checks that each ran exactly once.
func ranOnce(t *testing.T, r *rec, e *engine.Engine[unit, local], n int, stop ...func()) {
	t.Helper()
	endedOnce(t, r, e, n, func(int) {}, stop...)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range n {
		assert.Equal(t, 1, r.ran[i], "unit %d ran", i)
	}
}

// ended is the number of units that ran, were dropped or exited.
func (r *rec) ended() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ran) + len(r.dropped) + len(r.exited)
}

// endedOnce waits until every unit below n has ended (ran, was dropped or
// exited), calling poll between looks, then calls each stop (what else
// the test runs meanwhile) and checks that each unit ended exactly once.
// It fails with the units missing and the engine's state if they do not
// end within 20 seconds.
func endedOnce(t *testing.T, r *rec, e *engine.Engine[unit, local], n int, poll func(i int), stop ...func()) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; r.ended() < n && time.Now().Before(deadline); i++ {
		time.Sleep(time.Millisecond)
		poll(i)
	}
	for _, f := range stop {
		f()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var missing []int
	for i := range n {
		switch got := r.ran[i] + r.dropped[i] + r.exited[i]; got {
		case 0:
			missing = append(missing, i)
		case 1:
		default:
			t.Fatalf("unit %d ended %d times: ran %d dropped %d exited %d", i, got, r.ran[i], r.dropped[i], r.exited[i])
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing %v\n%s", missing, e.Dump()) // the dispatcher is parked: Dump may read its state
	}
}

// churn calls op with 0, 1, 2, ... from another goroutine, pausing for
// pause() before each call, until the function it returns is called.
func churn(op func(i int), pause func() time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(pause()):
			}
			op(i)
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// newUnits makes units 0..n-1. With long, two in three sleep 50 to 300µs;
// with exitOneIn > 0, about one in exitOneIn calls runtime.Goexit.
func newUnits(n int, long bool, exitOneIn int) []unit {
	units := make([]unit, n)
	for i := range units {
		units[i].id = i
		if long && rand.IntN(3) > 0 {
			units[i].sleep = time.Duration(50+rand.IntN(250)) * time.Microsecond
		}
		if exitOneIn > 0 && rand.IntN(exitOneIn) == 0 {
			units[i].exit = true
		}
	}
	return units
}

// waitOnLater makes two units wait for one of the three after each, one
// in each half of units (at least 8), so that with three workers or more
// one is always free: the signals of the first half are all below the
// second's waiter, and no unit is in two waits.
func waitOnLater(units []unit) {
	n := len(units)
	for _, i := range []int{rand.IntN(n/2 - 4), n/2 + rand.IntN(n/2-4)} {
		ch := make(chan struct{})
		units[i].wait = ch
		units[i+1+rand.IntN(3)].signal = ch
	}
}

// heldWaitOnNext starts an engine of 3 workers under a hold and puts n
// units in one lane, unit 0 waiting for unit 1, the one behind it.
func heldWaitOnNext(t *testing.T, n int) (*engine.Engine[unit, local], *rec) {
	t.Helper()
	r := newRec()
	e := engine.New[unit, local](cfg(3, 64), r)
	e.Start()
	e.Hold()
	ch := make(chan struct{})
	require.NoError(t, e.Put(context.Background(), 1, unit{id: 0, wait: ch}, false, false))
	require.NoError(t, e.Put(context.Background(), 1, unit{id: 1, signal: ch}, false, false))
	for i := 2; i < n; i++ {
		require.NoError(t, e.Put(context.Background(), 1, unit{id: i}, false, false))
	}
	return e, r
}

// A unit that waits for a unit handed to the same worker behind it: the
// batch's rest is taken back for another worker, which runs it.
func TestUnitWaitingForOneBehindItInItsBatch(t *testing.T) {
	// 8 units over 3 workers: batches of 3, the first one [0 1 2].
	e, r := heldWaitOnNext(t, 8)
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
		units := newUnits(n, false, 0)
		waitOnLater(units)
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
