package engine

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// countRunner runs int units by counting them, and closes done at the
// n-th.
type countRunner struct {
	n    int64
	ran  atomic.Int64
	done chan struct{}
}

func (r *countRunner) Run(w *Worker[int, struct{}], u *int) {
	if !w.Begin(0) {
		r.Drop(&w.Local, u)
		return
	}
	if r.ran.Add(1) == r.n {
		close(r.done)
	}
}

// waitAll waits until every unit has run.
func (r *countRunner) waitAll(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d of %d units ran", r.ran.Load(), r.n)
	}
}

func (r *countRunner) Drop(*struct{}, *int)         {}
func (r *countRunner) Exited(*struct{}, *int, bool) {}
func (r *countRunner) Retired(*struct{}, *struct{}) {}

// A worker of short units (a full batch is less than BatchWork of work),
// with no more workers than processors and units in the lanes, yields for
// its next batch at the end of one instead of parking (receive): on one
// processor the yield runs the dispatcher, which hands the batch over, and
// the worker parks only once the lanes are empty. Before, it parked at the
// end of every batch. A worker of longer units, or one among more workers
// than processors, still parks at once.
func TestWorkerYieldsForItsNextBatchOnlyWhenItPays(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, tc := range []struct {
		name    string
		workers int
		work    time.Duration // BatchWork: units of a few ns are short against 1s, long against 1ns
		yields  bool
	}{
		{"short units", 1, time.Second, true},
		{"long units", 1, time.Nanosecond, false},
		{"more workers than processors", 2, time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 4096
			r := &countRunner{n: n, done: make(chan struct{})}
			e := New[int, struct{}](Config{Workers: tc.workers, BatchSize: 8, BatchWork: tc.work, QueueSize: n, Weights: [Lanes]int{1, 1, 1}}, r)
			for i := range n {
				if err := e.Put(context.Background(), 0, i, false, false); err != nil {
					t.Fatal(err)
				}
			}
			e.Start()
			ws := e.workerList()
			r.waitAll(t)
			e.CloseAdmission()
			e.Close()
			// After Close every worker has exited: the counts are final.
			var parks, handOffs uint64
			for _, w := range ws {
				parks += w.parks.Load()
				handOffs += w.hseq
			}
			t.Logf("%d parks, %d hand-offs", parks, handOffs)
			if tc.yields && parks > handOffs/8 {
				t.Errorf("parked %d times in %d hand-offs, with units queued", parks, handOffs)
			}
			if !tc.yields && parks < handOffs/2 {
				t.Errorf("parked only %d times in %d hand-offs: it yielded", parks, handOffs)
			}
		})
	}
}

// A submitter's lane.lock, which yields before it waits in the mutex,
// still excludes: it returns only once the holder has unlocked, however
// long that takes, and then holds the lock itself.
func TestLaneLockWaitsForTheHolder(t *testing.T) {
	var l lane[int]
	l.mu.Lock()
	got := make(chan struct{})
	go func() {
		l.lock(int32(runtime.GOMAXPROCS(0)))
		close(got)
	}()
	// Long enough for its yields to run out, on any number of processors.
	for range 100 * lockYields {
		runtime.Gosched()
	}
	select {
	case <-got:
		t.Fatal("lock returned while another held the lane")
	default:
	}
	l.mu.Unlock()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("lock did not return once the lane was unlocked")
	}
	if l.mu.TryLock() {
		t.Fatal("lock returned without holding the lane")
	}
	l.mu.Unlock()
}

// yieldRunner's units yield once and then count: long units, for a
// BatchWork of a nanosecond, whose workers register early, and during
// which the dispatcher runs even on one processor.
type yieldRunner struct{ countRunner }

func (r *yieldRunner) Run(w *Worker[int, struct{}], u *int) {
	runtime.Gosched()
	r.countRunner.Run(w, u)
}

// With more workers than processors, a dispatcher that has just handed a
// unit to an early registration yields before it waits for the next one:
// the workers, running their units meanwhile, register early, and it
// serves several in a turn instead of waiting (parking, to be woken) for
// each. With short units there are no early hand-offs, and it waits for
// registrations as before.
func TestDispatcherYieldsForEarlyRegistrations(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, tc := range []struct {
		name  string
		work  time.Duration // BatchWork: units yielding once are long against 1ns, short against 1s
		early bool
	}{
		{"long units", time.Nanosecond, true},
		{"short units", time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 4096
			r := &yieldRunner{countRunner{n: n, done: make(chan struct{})}}
			e := New[int, struct{}](Config{Workers: 8, BatchSize: 8, BatchWork: tc.work, QueueSize: n, Weights: [Lanes]int{1, 1, 1}}, r)
			for i := range n {
				if err := e.Put(context.Background(), 0, i, false, false); err != nil {
					t.Fatal(err)
				}
			}
			e.Start()
			r.waitAll(t)
			e.CloseAdmission()
			e.Close()
			// After Close the dispatcher has exited: its counts are final.
			early := e.nearly.Load()
			t.Logf("%d waits for a registration, %d early hand-offs, %d hand-offs that woke a worker", e.nwaits, early, e.nwake)
			if tc.early {
				if early < n/2 {
					t.Fatalf("only %d of %d units handed out early", early, n)
				}
				if e.nwaits > early/8 {
					t.Errorf("waited %d times for a registration in %d early hand-offs: it did not yield", e.nwaits, early)
				}
				return
			}
			if early != 0 {
				t.Fatalf("%d early hand-offs of short units", early)
			}
			if e.nwaits < e.nwake/2 {
				t.Errorf("waited only %d times for a registration, %d hand-offs woke a worker: it yielded", e.nwaits, e.nwake)
			}
		})
	}
}
