package engine_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskpool/taskpool/internal/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// unit is a test unit of work: what to do when run.
type unit struct {
	id     int
	exit   bool // runtime.Goexit
	wait   chan struct{}
	signal chan struct{} // closed when run
	sleep  time.Duration // how long it takes (a long unit), before its wait
}

type local struct{ ran int }

// rec records what the engine did with each unit.
type rec struct {
	mu      sync.Mutex
	ran     map[int]int
	at      map[int]time.Time // when each unit's run ended
	dropped map[int]int
	exited  map[int]int
	retired int
	running atomic.Int32
	peak    atomic.Int32
	started chan int
}

func newRec() *rec {
	return &rec{ran: map[int]int{}, at: map[int]time.Time{}, dropped: map[int]int{}, exited: map[int]int{}}
}

func (r *rec) Run(w *engine.Worker[unit, local], u *unit) {
	l := &w.Local
	if !w.Begin(0) {
		r.Drop(l, u)
		return
	}
	n := r.running.Add(1)
	for p := r.peak.Load(); n > p && !r.peak.CompareAndSwap(p, n); p = r.peak.Load() {
	}
	defer r.running.Add(-1)
	if r.started != nil {
		r.started <- u.id
	}
	if u.signal != nil {
		close(u.signal)
	}
	if u.sleep > 0 {
		time.Sleep(u.sleep)
	}
	if u.wait != nil {
		<-u.wait
	}
	if u.exit {
		runtime.Goexit()
	}
	l.ran++
	r.mu.Lock()
	r.ran[u.id]++
	r.at[u.id] = time.Now()
	r.mu.Unlock()
}

func (r *rec) Drop(_ *local, u *unit) {
	r.mu.Lock()
	r.dropped[u.id]++
	r.mu.Unlock()
}

func (r *rec) Exited(_ *local, u *unit, again bool) {
	r.mu.Lock()
	r.exited[u.id]++
	r.mu.Unlock()
}

func (r *rec) Retired(acc, l *local) {
	acc.ran += l.ran
	r.mu.Lock()
	r.retired++
	r.mu.Unlock()
}

func cfg(workers, queue int) engine.Config {
	return engine.Config{Workers: workers, BatchSize: 4, QueueSize: queue, Weights: [engine.Lanes]int{6, 3, 1}}
}

func TestEveryUnitRunsOnceAndCloseRetiresEveryWorker(t *testing.T) {
	r := newRec()
	e := engine.New[unit, local](cfg(4, 64), r)
	e.Start()
	const n = 5000
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < n; i += 4 {
				require.NoError(t, e.Put(context.Background(), i%engine.Lanes, unit{id: i}, true, false))
			}
		}()
	}
	wg.Wait()
	e.CloseAdmission()
	assert.ErrorIs(t, e.Put(context.Background(), 0, unit{}, true, false), engine.ErrClosed)
	require.Eventually(t, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.ran) == n }, 10*time.Second, time.Millisecond)
	e.Close()
	for i := range n {
		assert.Equal(t, 1, r.ran[i], "unit %d", i)
	}
	assert.Equal(t, uint64(n), e.Accepted())
	assert.Equal(t, 4, r.retired)
	total := 0
	e.Each(func(l *local) { total += l.ran })
	assert.Equal(t, n, total, "retired workers' state is folded, not lost")
}

func TestBoundIsExactAndWaitersAreAdmittedInOrder(t *testing.T) {
	r := newRec()
	e := engine.New[unit, local](cfg(1, 3), r)
	e.Start()
	e.Hold()
	for i := range 3 {
		require.NoError(t, e.Put(context.Background(), 1, unit{id: i}, false, false))
	}
	assert.ErrorIs(t, e.Put(context.Background(), 1, unit{id: 99}, false, false), engine.ErrFull)
	assert.Equal(t, [engine.Lanes]int{0, 3, 0}, e.Queued())
	// Blocked Puts queue up in order.
	var wg sync.WaitGroup
	for i := 3; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			require.NoError(t, e.Put(context.Background(), 1, unit{id: i}, true, false))
		}()
		// Wait until this one is blocked before starting the next.
		require.Eventually(t, func() bool { return e.Waiting(1) == i-2 }, 5*time.Second, time.Millisecond)
	}
	r.started = make(chan int, 8)
	e.Unhold()
	wg.Wait()
	got := make([]int, 0, 8)
	for range 8 {
		got = append(got, <-r.started)
	}
	assert.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7}, got, "one worker runs them in the order admitted")
	e.CloseAdmission()
	e.Close()
}

func TestHoldStopsStartsAndAbandonDropsTheRest(t *testing.T) {
	r := newRec()
	r.started = make(chan int, 100)
	e := engine.New[unit, local](cfg(2, 100), r)
	e.Start()
	e.Hold()
	for i := range 20 {
		require.NoError(t, e.Put(context.Background(), 1, unit{id: i}, false, false))
	}
	select {
	case id := <-r.started:
		t.Fatalf("unit %d started while held", id)
	case <-time.After(20 * time.Millisecond):
	}
	e.Abandon()
	e.CloseAdmission()
	require.Eventually(t, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.dropped) == 20 }, 5*time.Second, time.Millisecond)
	e.Close()
	assert.Empty(t, r.ran)
}

func TestGoexitInRunKeepsTheWorkerAndTheBatch(t *testing.T) {
	r := newRec()
	e := engine.New[unit, local](engine.Config{Workers: 1, BatchSize: 8, QueueSize: 100, Weights: [engine.Lanes]int{1, 1, 1}}, r)
	e.Start()
	e.Hold() // let the batch build up
	for i := range 10 {
		require.NoError(t, e.Put(context.Background(), 1, unit{id: i, exit: i%3 == 0}, false, false))
	}
	e.Unhold()
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.ran)+len(r.exited) == 10
	}, 5*time.Second, time.Millisecond)
	e.CloseAdmission()
	e.Close()
	assert.Len(t, r.exited, 4)
	assert.Len(t, r.ran, 6)
	assert.Equal(t, 1, r.retired, "the worker carried on as one")
}

func TestResizeNeverRetiresBelowTheTarget(t *testing.T) {
	r := newRec()
	r.started = make(chan int, 300)
	e := engine.New[unit, local](cfg(2, 1000), r)
	e.Start()
	for i := range 200 {
		e.Resize(1 + i%3)
		require.NoError(t, e.Put(context.Background(), 1, unit{id: i}, true, false))
	}
	e.Resize(2)
	require.Eventually(t, func() bool { return e.Workers() == 2 }, 5*time.Second, time.Millisecond)
	// Both remaining workers take work at once.
	require.Eventually(t, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.ran) == 200 }, 5*time.Second, time.Millisecond)
	for len(r.started) > 0 {
		<-r.started
	}
	release := make(chan struct{})
	for i := range 2 {
		require.NoError(t, e.Put(context.Background(), 1, unit{id: 1000 + i, wait: release}, true, false))
	}
	<-r.started
	<-r.started
	close(release)
	e.CloseAdmission()
	require.Eventually(t, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.ran) == 202 }, 5*time.Second, time.Millisecond)
	e.Close()
}

// sizer records, for each unit it runs, how many units were left in its
// batch counting it: a new batch begins after a unit that had 1 left.
type sizer struct {
	*rec
	e       *engine.Engine[unit, local]
	mu2     sync.Mutex
	batches []int
	last    int
}

func (s *sizer) Run(w *engine.Worker[unit, local], u *unit) {
	if !w.Begin(0) {
		s.Drop(&w.Local, u)
		return
	}
	s.e.Inspect(func(_ *local, running *unit, _ uint64, unstarted []unit) {
		if running == nil || running.id != u.id {
			return
		}
		s.mu2.Lock()
		if s.last <= 1 {
			s.batches = append(s.batches, 1+len(unstarted))
		}
		s.last = 1 + len(unstarted)
		s.mu2.Unlock()
	})
	s.rec.Run(w, u)
}

// runSized runs n units on one worker with BatchSize 128 and the given
// BatchWork, all queued before the engine starts, and returns the sizes
// of the batches it was handed. (Queued under a Hold instead, the first
// Put could find the dispatcher already parked and hand it a batch of
// one, and the fair share, which counts only the units that left the
// accumulator, then made the first batch a single unit.)
func runSized(t *testing.T, work time.Duration, n int) []int {
	s := &sizer{rec: newRec()}
	s.e = engine.New[unit, local](engine.Config{Workers: 1, BatchSize: 128, BatchWork: work, QueueSize: n, Weights: [engine.Lanes]int{1, 1, 1}}, s)
	for i := range n {
		require.NoError(t, s.e.Put(context.Background(), 1, unit{id: i}, false, false))
	}
	s.e.Start()
	require.Eventually(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.ran) == n }, 10*time.Second, time.Millisecond)
	s.e.CloseAdmission()
	s.e.Close()
	s.mu2.Lock()
	defer s.mu2.Unlock()
	return s.batches
}

// Batches are sized to the worker's time per unit in its last batch: at
// most 16 units before the worker has run a batch, then as many as fit in
// BatchWork, between 1 and BatchSize; without BatchWork, BatchSize.
func TestBatchesFollowTheTimePerUnit(t *testing.T) {
	sum := func(b []int) (n int) {
		for _, x := range b {
			n += x
		}
		return n
	}
	// Units far shorter than BatchWork: after the first batch of 16, full
	// batches of 128 while the queue holds that many. (The fair share
	// counts only the units that left the submitters' accumulator, so the
	// tail may come in two batches.)
	b := runSized(t, time.Hour, 400)
	require.Equal(t, 400, sum(b), "%v", b)
	require.GreaterOrEqual(t, len(b), 3, "%v", b)
	assert.Equal(t, []int{16, 128, 128}, b[:3])
	for _, x := range b {
		assert.LessOrEqual(t, x, 128, "%v", b)
	}
	// Units far longer than BatchWork: after the first batch, one by one.
	b = runSized(t, time.Nanosecond, 40)
	require.Equal(t, 40, sum(b), "%v", b)
	assert.Equal(t, 16, b[0])
	for i, x := range b[1:] {
		assert.Equal(t, 1, x, "batch %d: %v", i+1, b)
	}
	// Without BatchWork: BatchSize every time.
	b = runSized(t, 0, 300)
	require.Equal(t, 300, sum(b), "%v", b)
	assert.Equal(t, []int{128, 128}, b[:2])
}

// closer is a Runner that closes each unit's wait channel.
type closer struct{}

func (c closer) Run(w *engine.Worker[unit, local], u *unit) {
	if !w.Begin(0) {
		c.Drop(&w.Local, u)
		return
	}
	close(u.wait)
}
func (closer) Drop(*local, *unit)         {}
func (closer) Exited(*local, *unit, bool) {}
func (closer) Retired(*local, *local)     {}

// A parked dispatcher waits for a poke alone: whichever submitter puts
// the batch that a parking dispatcher did not see pokes it. Several
// submitters put one unit at a time and wait for it, so the dispatcher
// parks and wakes around concurrent Puts over and over; a lost wake-up
// leaves a unit that never runs.
func TestParkedDispatcherIsNeverLeftAsleep(t *testing.T) {
	e := engine.New[unit, local](engine.Config{Workers: 2, BatchSize: 16, BatchWork: 50 * time.Microsecond, QueueSize: 64, Weights: [engine.Lanes]int{1, 1, 1}}, closer{})
	e.Start()
	var wg sync.WaitGroup
	var stuck atomic.Int64
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 3000 {
				u := unit{id: i, wait: make(chan struct{})}
				if err := e.Put(context.Background(), (g+i)%engine.Lanes, u, true, false); err != nil {
					stuck.Add(1)
					return
				}
				select {
				case <-u.wait:
				case <-time.After(5 * time.Second):
					stuck.Add(1)
					return
				}
			}
		}()
	}
	wg.Wait()
	require.Zero(t, stuck.Load(), "units did not run: %s", e.Dump())
	e.CloseAdmission()
	e.Close()
}
