package engine_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/internal/engine"
)

// Long units with Goexit, resizes (down to one), holds, abandons and
// Inspect: every unit ends exactly once (ran, dropped or exited), and
// Close returns.
func TestReveStressEarlyExitResizeAbandon(t *testing.T) {
	rounds := 30
	if testing.Short() {
		rounds = 6
	}
	var early uint64
	defer func() { t.Logf("early hand-offs %d", early) }()
	for round := range rounds {
		e, r, workers := resizedLongEngine(2, 256)
		const n = 200
		units := newUnits(n, true, 8)
		stopInspect := inspectMeanwhile(t, e)
		stopChurn := churn(func(i int) {
			switch i % 4 {
			case 0:
				e.Hold()
				e.Unhold()
			case 1:
				e.Resize(1 + rand.IntN(2))
			default:
				e.Resize(workers - 2 + rand.IntN(5))
			}
		}, func() time.Duration { return time.Duration(rand.IntN(400)) * time.Microsecond })
		for _, u := range units {
			require.NoError(t, e.Put(context.Background(), u.id%engine.Lanes, u, true, false))
		}
		if round%3 == 2 {
			time.Sleep(time.Duration(rand.IntN(5000)) * time.Microsecond)
			e.Abandon()
		}
		endedOnce(t, r, e, n, func(int) {}, stopChurn, stopInspect)
		early += e.EarlyHandOffs()
		e.CloseAdmission()
		e.Close()
	}
}
