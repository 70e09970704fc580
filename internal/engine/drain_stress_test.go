package engine

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type sU struct {
	sleep time.Duration
	exit  bool // runtime.Goexit in Run
	again bool // puts another unit, with force, before it ends (a retry)
}

type sL struct{}

type sRunner struct {
	e        *Engine[sU, sL]
	accepted atomic.Int64
	done     atomic.Int64
}

func (r *sRunner) Run(w *Worker[sU, sL], u *sU) {
	if !w.Begin(0) {
		r.Drop(&w.Local, u)
		return
	}
	if u.sleep > 0 {
		time.Sleep(u.sleep)
	} else {
		runtime.Gosched()
	}
	if u.again {
		r.accepted.Add(1)
		_ = r.e.Put(context.Background(), 2, sU{}, false, true)
	}
	if u.exit {
		runtime.Goexit()
	}
	r.done.Add(1)
}
func (r *sRunner) Drop(*sL, *sU)         { r.done.Add(1) }
func (r *sRunner) Exited(*sL, *sU, bool) { r.done.Add(1) }
func (r *sRunner) Retired(*sL, *sL)      {}

// The owner's wait of Scheduler.shutdown, on the real dispatcher: every
// unit's outcome is counted before the signal that follows it, whatever
// Drain meets (batches running, early batches, rests taken back, Goexit
// replacements, retired workers, an Abandon). A missed signal shows as a
// wait of seconds with units done == accepted never seen.
func TestDrainStressOwnerNeverMissesTheLastSignal(t *testing.T) {
	rounds := 150
	if testing.Short() {
		rounds = 30
	}
	var early uint64
	defer func() { t.Logf("early hand-offs in all: %d", early) }()
	for round := range rounds {
		rng := rand.New(rand.NewPCG(uint64(round), 7))
		workers := 4 + rng.IntN(60)
		r := &sRunner{}
		e := New[sU, sL](Config{Workers: workers, BatchSize: 16, BatchWork: 20 * time.Microsecond,
			QueueSize: 512, Weights: [Lanes]int{4, 2, 1}}, r)
		r.e = e
		e.Start()
		n := 100 + rng.IntN(400)
		r.accepted.Add(int64(n))
		var wg sync.WaitGroup
		for p := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rr := rand.New(rand.NewPCG(uint64(round), uint64(p)))
				for i := range n / 2 {
					u := sU{}
					switch k := rr.IntN(20); {
					case k < 8:
						u.sleep = time.Duration(rr.IntN(300)) * time.Microsecond
					case k == 8:
						u.exit = true
					case k == 9:
						u.again = true
					}
					_ = e.Put(context.Background(), (i+p)%Lanes, u, true, false)
				}
			}()
		}
		if n%2 == 1 {
			_ = e.Put(context.Background(), 0, sU{}, true, false)
		}
		mode := rng.IntN(4)
		if mode == 1 {
			e.Resize(max(workers/3, 1)) // retire some while draining
		}
		if mode == 2 {
			e.Hold() // a Pause held when Stop begins
		}
		// Stop's order: the submitters are done, then admission closes.
		wg.Wait()
		e.CloseAdmission()
		e.Drain()
		if mode == 2 {
			e.Unhold()
		}
		if mode == 3 {
			d := time.Duration(rng.IntN(2000)) * time.Microsecond
			go func() {
				time.Sleep(d) // when it comes does not matter: any time is an interleaving
				e.Abandon()
				e.Notify()
			}()
		}
		for r.done.Load() != r.accepted.Load() {
			select {
			case <-e.Progress():
			case <-time.After(10 * time.Second):
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("round %d (mode %d, %d workers): no signal for 10s with %d of %d units done, busy %d\n%s",
					round, mode, workers, r.done.Load(), r.accepted.Load(), e.busy.Load(), buf)
			}
		}
		e.Close()
		early += e.EarlyHandOffs()
		if b := e.busy.Load(); b != 0 {
			t.Fatalf("round %d: busy %d after Close", round, b)
		}
	}
}
