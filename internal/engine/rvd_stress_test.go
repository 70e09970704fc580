package engine

import (
	"context"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// zU is a unit of zRunner.
type zU struct {
	id     int
	sleep  time.Duration
	exit   bool // runtime.Goexit in Run
	exit2  bool // and again in the first Exited
	retry  bool // puts another unit with force before it ends
	parent int
}

type zRunner struct {
	e      *Engine[zU, struct{}]
	nextID atomic.Int64
	mu     sync.Mutex
	ended  map[int]int
	ids    int // ids handed out, under mu with ended
}

func (r *zRunner) end(id int) {
	r.mu.Lock()
	r.ended[id]++
	r.mu.Unlock()
}

func (r *zRunner) Run(w *Worker[zU, struct{}], u *zU) {
	if !w.Begin(uint64(u.id)) {
		r.Drop(&w.Local, u)
		return
	}
	if u.sleep > 0 {
		time.Sleep(u.sleep)
	} else {
		runtime.Gosched()
	}
	if u.retry {
		id := int(r.nextID.Add(1))
		_ = r.e.Put(context.Background(), id%Lanes, zU{id: id, parent: u.id}, false, true)
	}
	if u.exit {
		runtime.Goexit()
	}
	r.end(u.id)
}
func (r *zRunner) Drop(_ *struct{}, u *zU) { r.end(u.id) }
func (r *zRunner) Exited(_ *struct{}, u *zU, again bool) {
	if u.exit2 && !again {
		runtime.Goexit()
	}
	r.end(u.id)
}
func (r *zRunner) Retired(*struct{}, *struct{}) {}

// rvdRounds is the rounds of a stress test: n, or TASKPOOL_ROUNDS.
func rvdRounds(n int) int {
	if v, err := strconv.Atoi(os.Getenv("TASKPOOL_ROUNDS")); err == nil && v > 0 {
		return v
	}
	if testing.Short() {
		return max(n/5, 1)
	}
	return n
}

// Everything at once, Close included: long units (early batches), Goexit
// in Run and in Exited, retries put with force by running units (during
// Close too), blocked Puts whose ctx ends, holds, resizes and Inspect
// going on while Close runs, an Abandon in some rounds. Every unit
// accepted (and every retry) ends exactly once, Close returns, and the
// counts add up.
func TestRvdStressCloseDuringEverything(t *testing.T) {
	for round := range rvdRounds(40) {
		rng := rand.New(rand.NewPCG(uint64(round), 11))
		r := &zRunner{ended: map[int]int{}}
		workers := 2 + rng.IntN(12)
		e := New[zU, struct{}](Config{Workers: workers, BatchSize: 8, BatchWork: 20 * time.Microsecond,
			QueueSize: 32 + rng.IntN(64), Weights: [Lanes]int{3, 2, 1}}, r)
		r.e = e
		e.Start()
		r.nextID.Store(1 << 20)
		var accepted atomic.Int64
		var ids sync.Map
		var wg sync.WaitGroup
		for s := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rr := rand.New(rand.NewPCG(uint64(round), uint64(s)))
				for i := range 150 {
					u := zU{id: s*100000 + i}
					switch k := rr.IntN(20); {
					case k < 6:
						u.sleep = time.Duration(50+rr.IntN(400)) * time.Microsecond
					case k == 6:
						u.exit = true
					case k == 7:
						u.exit, u.exit2 = true, true
					case k < 10:
						u.retry = true
					}
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rr.IntN(3000))*time.Microsecond)
					err := e.Put(ctx, i%Lanes, u, rr.IntN(3) > 0, false)
					cancel()
					if err == nil {
						accepted.Add(1)
						ids.Store(u.id, true)
					}
				}
			}()
		}
		stop := make(chan struct{})
		var cw sync.WaitGroup
		cw.Add(1)
		go func() {
			defer cw.Done()
			cr := rand.New(rand.NewPCG(uint64(round), 99))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				switch cr.IntN(4) {
				case 0:
					e.Hold()
					runtime.Gosched()
					e.Unhold()
				case 1:
					e.Resize(1 + cr.IntN(14))
				default:
					e.Inspect(func(_ *struct{}, u *zU, _ uint64, rest []zU) {
						seen := map[int]bool{}
						if u != nil {
							seen[u.id] = true
						}
						for _, x := range rest {
							if seen[x.id] {
								t.Errorf("unit %d twice in one worker's view", x.id)
							}
							seen[x.id] = true
						}
					})
				}
				time.Sleep(time.Duration(cr.IntN(300)) * time.Microsecond)
			}
		}()
		wg.Wait()
		if w := e.Waiting(0) + e.Waiting(1) + e.Waiting(2); w != 0 {
			t.Errorf("round %d: %d Puts waiting after every Put returned", round, w)
		}
		if got := e.Accepted(); got != uint64(accepted.Load()) {
			t.Errorf("round %d: Accepted %d, want %d", round, got, accepted.Load())
		}
		e.CloseAdmission()
		mode := rng.IntN(3)
		if mode == 1 {
			e.Abandon()
		}
		done := make(chan struct{})
		go func() {
			e.Close()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("round %d (mode %d): Close did not return\n%s", round, mode, buf)
		}
		close(stop)
		cw.Wait()
		r.mu.Lock()
		ids.Range(func(k, _ any) bool {
			if n := r.ended[k.(int)]; n != 1 {
				t.Errorf("round %d: unit %d ended %d times", round, k, n)
			}
			return true
		})
		for id, n := range r.ended {
			if _, ok := ids.Load(id); !ok && id < 1<<20 {
				t.Errorf("round %d: unit %d not accepted ended %d times", round, id, n)
			}
			if n != 1 {
				t.Errorf("round %d: unit %d ended %d times", round, id, n)
			}
		}
		retries := int(r.nextID.Load() - 1<<20)
		if got := len(r.ended); got != int(accepted.Load())+retries {
			t.Errorf("round %d: %d units ended, want %d accepted + %d retries", round, got, accepted.Load(), retries)
		}
		r.mu.Unlock()
		if q := e.Queued(); q != [Lanes]int{} {
			t.Errorf("round %d: Queued %v after Close", round, q)
		}
		if t.Failed() {
			t.Fatalf("round %d failed", round)
		}
	}
}
