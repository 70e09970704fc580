package engine_test

import (
	"context"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/internal/engine"
)

// longCfg is a configuration under which a unit of 200µs is long: its
// worker registers early (at four times BatchWork) and gets one at a time.
func longCfg(workers, queue int) engine.Config {
	return engine.Config{Workers: workers, BatchSize: 8, BatchWork: 10 * time.Microsecond, QueueSize: queue, Weights: [engine.Lanes]int{1, 1, 1}}
}

const long = 200 * time.Microsecond

// A worker of long units, among more workers than processors, registers
// for its next batch while it runs one: the next unit waits in its
// channel, where Inspect shows it. When that unit is stuck behind a unit
// that waits for it, and a worker turns up with nothing to do, the
// dispatcher takes the early batch back for it.
func TestEarlyBatchTakenBackForAnIdleWorker(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	// Units of 250ms: unit 2 would be taken back by expiry only some 500ms
	// after its hand-off, so that taken back sooner, it was for the idle
	// worker.
	e, r, block := stuckEarly(t, 250*time.Millisecond)
	shown := time.Now()
	// A third worker, idle: unit 2 is taken back for it, and unit 1 ends.
	runWithThird(t, e, r, block, "unit 2 not taken back")
	r.mu.Lock()
	ran2 := r.at[2]
	r.mu.Unlock()
	assert.Less(t, ran2.Sub(shown), 400*time.Millisecond, "unit 2 was taken back by expiry, not for the idle worker")
}

// An early batch that waits longer than twice its worker's time per unit
// (and stealAfter) is taken back even when no worker is idle to take it:
// it waits for the next worker that registers, not for the one it was
// handed to.
func TestEarlyBatchTakenBackAfterItsWait(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	e, r, block := stuckEarly(t, 20*time.Millisecond)
	// Both workers are stuck: only the expiry takes unit 2 back.
	require.Eventually(t, func() bool {
		return len(nextUnits(e)) == 0
	}, 10*time.Second, time.Millisecond, "unit 2 still a worker's next")
	r.mu.Lock()
	assert.Zero(t, r.ran[2], "unit 2 ran while both workers were stuck")
	r.mu.Unlock()
	assert.Equal(t, [engine.Lanes]int{}, e.Queued(), "a unit taken back is not queued again")
	runWithThird(t, e, r, block, "unit 2 not handed to the new worker")
}

// runWithThird adds a third worker to stuckEarly's engine, which runs unit
// 2, so that unit 1 ends; then it ends unit 0 and closes the engine.
func runWithThird(t *testing.T, e *engine.Engine[unit, local], r *rec, block chan struct{}, msg string) {
	t.Helper()
	e.Resize(3)
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.ran[1] == 1 && r.ran[2] == 1
	}, 10*time.Second, time.Millisecond, msg)
	close(block)
	ranOnce(t, r, e, 3)
	e.CloseAdmission()
	e.Close()
}

// stuckEarly starts an engine of two workers (more than the one processor
// the caller leaves) that have timed units of prime, and then has one worker
// run unit 0, which waits for block, and the other unit 1, which waits for
// unit 2; unit 2 is handed early to one of them, where Inspect shows it as
// that worker's next. Unless it is taken back, it waits forever.
func stuckEarly(t *testing.T, prime time.Duration) (*engine.Engine[unit, local], *rec, chan struct{}) {
	t.Helper()
	r := newRec()
	e := engine.New[unit, local](longCfg(2, 64), r)
	e.Start()
	// Long units first, until each worker has timed some: long enough
	// that unit 2 waits twice as long (and stealAfter) before it is taken
	// back, a window wide enough to see it waiting.
	for id := 0; ; {
		for range 4 {
			require.NoError(t, e.Put(context.Background(), 1, unit{id: id, sleep: prime}, false, false))
			id++
		}
		ranOnce(t, r, e, id)
		busy := 0 // workers that ran some (Each ends with the retired ones' sum, none here)
		e.Each(func(l *local) {
			if l.ran > 0 {
				busy++
			}
		})
		if busy == 2 {
			break
		}
		require.Less(t, id, 400, "one worker never ran a unit")
	}
	r.mu.Lock()
	r.ran, r.at = map[int]int{}, map[int]time.Time{}
	r.mu.Unlock()

	e.Hold()
	block, ch := make(chan struct{}), make(chan struct{})
	require.NoError(t, e.Put(context.Background(), 1, unit{id: 0, wait: block}, false, false))
	require.NoError(t, e.Put(context.Background(), 1, unit{id: 1, wait: ch}, false, false))
	require.NoError(t, e.Put(context.Background(), 1, unit{id: 2, signal: ch}, false, false))
	e.Unhold()
	require.Eventually(t, func() bool {
		var running []int
		e.Inspect(func(_ *local, u *unit, _ uint64, _ []unit) {
			if u != nil {
				running = append(running, u.id)
			}
		})
		slices.Sort(running)
		return slices.Equal(running, []int{0, 1}) && slices.Equal(nextUnits(e), []int{2})
	}, 10*time.Second, time.Millisecond, "unit 2 not shown as a worker's next")
	assert.Equal(t, uint64(1), e.EarlyHandOffs())
	return e, r, block
}

// resizedLongEngine starts an engine of longCfg(start, queue) and resizes
// it to more workers than processors (or no batch goes early), which it
// returns with the engine and its recorder.
func resizedLongEngine(start, queue int) (*engine.Engine[unit, local], *rec, int) {
	r := newRec()
	workers := 2*runtime.GOMAXPROCS(0) + 2
	e := engine.New[unit, local](longCfg(start, queue), r)
	e.Start()
	e.Resize(workers)
	return e, r, workers
}

// nextUnits is the units Inspect shows as handed to a worker and not
// begun.
func nextUnits(e *engine.Engine[unit, local]) []int {
	var next []int
	e.Inspect(func(_ *local, _ *unit, _ uint64, rest []unit) {
		for _, x := range rest {
			next = append(next, x.id)
		}
	})
	return next
}

// Long units with waits on later ones, holds, resizes and Inspect all at
// once: every unit runs exactly once, early batches are handed out, and
// Close returns.
func TestStressEarlyBatches(t *testing.T) {
	rounds := 20
	if testing.Short() {
		rounds = 4
	}
	var early uint64
	for round := range rounds {
		// Started with one, resized up: the channel of worker channels,
		// sized at Start, holds one registration (an early one must not
		// wait for room with its batch not run).
		e, r, workers := resizedLongEngine(1, 128)
		const n = 160
		units := newUnits(n, true, 0)
		waitOnLater(units)
		stopInspect := inspectMeanwhile(t, e)
		stopChurn := churn(func(i int) {
			if i%3 == 0 {
				e.Hold()
				e.Unhold()
				return
			}
			e.Resize(workers - 1 + rand.IntN(4))
		}, func() time.Duration { return time.Duration(rand.IntN(500)) * time.Microsecond })
		for _, u := range units {
			require.NoError(t, e.Put(context.Background(), u.id%engine.Lanes, u, true, false))
		}
		ranOnce(t, r, e, n, stopChurn, stopInspect)
		early += e.EarlyHandOffs()
		e.CloseAdmission()
		e.Close()
		if t.Failed() {
			t.Fatalf("round %d", round)
		}
	}
	assert.NotZero(t, early, "no batch was handed early")
}
