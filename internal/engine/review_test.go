package engine_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskpool/taskpool/internal/engine"
)

// reviewStress is how long the review's stress tests run: short by default,
// longer with TASKPOOL_STRESS set to a Go duration.
func reviewStress(short time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv("TASKPOOL_STRESS")); err == nil && d > 0 {
		return d
	}
	return short
}

// A Put that finds its lane full registers as a waiter under lane.mu, but
// it reads l.out (the room check) before it publishes nwait, while fill
// publishes out (out.Add) and only then reads nwait, without the lock. The
// interleaving "Put reads out (full) / fill adds out / fill reads nwait == 0
// / Put adds nwait" leaves a waiter behind with room in the lane and no
// fill to come: the lane is then empty, the dispatcher parks, and every
// later Put queues behind the stranded waiter. Blocked Puts hang until
// CloseAdmission.
func TestReviewBlockedPutIsNotStrandedWithRoom(t *testing.T) {
	for _, submitters := range []int{1, 2} {
		t.Run(fmt.Sprint(submitters), func(t *testing.T) { strandedPut(t, submitters) })
	}
}

func strandedPut(t *testing.T, submitters int) {
	r := newRec()
	e := engine.New[unit, local](engine.Config{Workers: 2, BatchSize: 1, QueueSize: 1, Weights: [engine.Lanes]int{1, 1, 1}}, r)
	e.Start()
	defer e.Close()
	defer e.CloseAdmission()

	var stop atomic.Bool
	var wg sync.WaitGroup
	deadline := time.Now().Add(reviewStress(2 * time.Second))
	for range submitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load() && time.Now().Before(deadline); n++ {
				// Units run at once: a Put that waits 2s for room is stranded.
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				err := e.Put(ctx, 0, unit{}, true, false)
				cancel()
				if err != nil {
					if stop.CompareAndSwap(false, true) {
						t.Errorf("Put %d: %v after 2s with queued %v: a waiter was stranded with room in the lane", n, err, e.Queued())
					}
					return
				}
			}
		}()
	}
	wg.Wait()
}
