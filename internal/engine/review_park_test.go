package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/internal/engine"
)

// A unit whose Put returned before Close was called runs before Close
// returns: the dispatcher may find no work, then Put and Close both
// happen, and it then sees closing. Close must not strand the unit.
func TestReviewParkPutBeforeCloseRuns(t *testing.T) {
	deadline := time.Now().Add(reviewStress(2 * time.Second))
	for i := 0; time.Now().Before(deadline); i++ {
		e := engine.New[unit, local](engine.Config{Workers: 1, BatchSize: 16, QueueSize: 64, Weights: [engine.Lanes]int{1, 1, 1}}, closer{})
		e.Start()
		u := unit{id: i, wait: make(chan struct{})}
		require.NoError(t, e.Put(context.Background(), i%engine.Lanes, u, false, false))
		e.CloseAdmission()
		e.Close()
		select {
		case <-u.wait:
		default:
			t.Fatalf("iteration %d: a unit put before Close did not run", i)
		}
	}
}
