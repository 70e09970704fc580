package engine_test

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/internal/engine"
)

// Long units with Goexit, resizes (down to one), holds, abandons and
// Inspect: every unit ends exactly once (ran, dropped or exited), and
// Close returns.
func TestReveStressEarlyExitResizeAbandon(t *testing.T) {
	rounds := 30
	var early uint64
	defer func() { t.Logf("early hand-offs %d", early) }()
	for round := range rounds {
		r := newRec()
		workers := 2*runtime.GOMAXPROCS(0) + 2
		e := engine.New[unit, local](longCfg(2, 256), r)
		e.Start()
		e.Resize(workers)
		const n = 200
		units := make([]unit, n)
		for i := range units {
			units[i].id = i
			if rand.IntN(3) > 0 {
				units[i].sleep = time.Duration(50+rand.IntN(250)) * time.Microsecond
			}
			if rand.IntN(8) == 0 {
				units[i].exit = true
			}
		}
		abandon := round%3 == 2
		stop := inspectMeanwhile(t, e)
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				case <-time.After(time.Duration(rand.IntN(400)) * time.Microsecond):
				}
				switch i % 4 {
				case 0:
					e.Hold()
					e.Unhold()
				case 1:
					e.Resize(1 + rand.IntN(2))
				default:
					e.Resize(workers - 2 + rand.IntN(5))
				}
			}
		}()
		for _, u := range units {
			require.NoError(t, e.Put(context.Background(), u.id%engine.Lanes, u, true, false))
		}
		if abandon {
			time.Sleep(time.Duration(rand.IntN(5000)) * time.Microsecond)
			e.Abandon()
		}
		count := func() int {
			r.mu.Lock()
			defer r.mu.Unlock()
			return len(r.ran) + len(r.dropped) + len(r.exited)
		}
		deadline := time.Now().Add(20 * time.Second)
		for count() < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		close(done)
		wg.Wait()
		stop()
		if count() < n {
			t.Fatalf("round %d: stuck at %d/%d\n%s", round, count(), n, e.Dump())
		}
		early += e.EarlyHandOffs()
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
			t.FailNow()
		}
	}
}
