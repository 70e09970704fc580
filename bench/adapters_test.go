package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alitto/pond/v2"
	"github.com/gammazero/workerpool"
	"github.com/panjf2000/ants/v2"
	concpool "github.com/sourcegraph/conc/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/taskpool/taskpool"
)

// runner is the common face of every library under test: Go submits one
// task, blocking while the pool is full (for the libraries that have a
// bound), and Wait waits for every submitted task to finish and releases
// the pool. Each adapter uses its library's own way of waiting for all
// tasks where it has one, and a sync.WaitGroup where it has not.
//
// The adapters add no allocation per task of their own, except where the
// library's API makes one unavoidable (errgroup wants a func() error).
type runner interface {
	Go(f func()) error
	Wait() error
}

// lib names a library and starts a pool of it with a given number of
// workers.
type lib struct {
	name  string
	start func(workers int) (runner, error)
}

var (
	libTaskpool = lib{"taskpool", startTaskpool}
	libAnts     = lib{"ants", startAnts}
	libPond     = lib{"pond", startPond}
	// libPondBounded is pond with taskpool's default queue bound, so that
	// both block their submitters at the same depth.
	libPondBounded = lib{"pond-q1024", startPondBounded}
	libWorkerpool  = lib{"workerpool", startWorkerpool}
	libConc        = lib{"conc", startConc}
	libErrgroup    = lib{"errgroup", startErrgroup}
	libGoroutine   = lib{"goroutine", startGoroutine}
	libNaive       = lib{"naive", startNaive}
)

// allLibs is every library, taskpool first, baselines last.
var allLibs = []lib{
	libTaskpool, libAnts, libPond, libPondBounded, libWorkerpool, libConc, libErrgroup,
	libGoroutine, libNaive,
}

// Compile-time checks that the adapters satisfy runner.
var (
	_ runner = taskpoolRunner{}
	_ runner = (*antsRunner)(nil)
	_ runner = pondRunner{}
	_ runner = workerpoolRunner{}
	_ runner = concRunner{}
	_ runner = errgroupRunner{}
	_ runner = goroutineRunner{}
	_ runner = naiveRunner{}
)

// --- taskpool ---

// funcType is the one task type of the taskpool adapter: its Params is the
// func() to run. In process, Params reach the handler untouched, and a
// func value fits in an interface without an allocation.
const funcType = "func"

func runFunc(_ context.Context, t taskpool.Task) error {
	t.Params.(func())()
	return nil
}

type taskpoolRunner struct{ s *taskpool.Scheduler }

func newTaskpool(opts ...taskpool.Option) (*taskpool.Scheduler, error) {
	reg := taskpool.NewRegistry()
	if err := reg.HandleFunc(funcType, runFunc); err != nil {
		return nil, err
	}
	s, err := taskpool.New(reg, opts...)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

func startTaskpool(workers int) (runner, error) {
	s, err := newTaskpool(taskpool.WithWorkers(workers))
	if err != nil {
		return nil, err
	}
	return taskpoolRunner{s}, nil
}

func (r taskpoolRunner) Go(f func()) error {
	return r.s.Submit(context.Background(), taskpool.Task{Type: funcType, Params: f})
}

func (r taskpoolRunner) Wait() error { return r.s.Stop(context.Background()) }

// --- ants ---

// antsRunner uses ants' PoolWithFunc, its fastest API: the argument is the
// func() to run, so no closure is made per task. ants has no way to wait
// for its tasks, hence the WaitGroup.
type antsRunner struct {
	p  *ants.PoolWithFunc
	wg sync.WaitGroup
}

func startAnts(workers int) (runner, error) {
	r := new(antsRunner)
	p, err := ants.NewPoolWithFunc(workers, func(arg any) {
		arg.(func())()
		r.wg.Done()
	})
	if err != nil {
		return nil, err
	}
	r.p = p
	return r, nil
}

func (r *antsRunner) Go(f func()) error {
	r.wg.Add(1)
	if err := r.p.Invoke(f); err != nil {
		r.wg.Done()
		return err
	}
	return nil
}

func (r *antsRunner) Wait() error {
	r.wg.Wait()
	// ReleaseTimeout waits for ants' workers and its purge and clock
	// goroutines to exit, so goleak finds none of them.
	return r.p.ReleaseTimeout(time.Minute)
}

// --- pond v2 ---

type pondRunner struct{ p pond.Pool }

func startPond(workers int) (runner, error) { return pondRunner{pond.NewPool(workers)}, nil }

func startPondBounded(workers int) (runner, error) {
	return pondRunner{pond.NewPool(workers, pond.WithQueueSize(taskpool.DefaultQueueSize))}, nil
}

func (r pondRunner) Go(f func()) error { return r.p.Go(f) }

func (r pondRunner) Wait() error {
	r.p.StopAndWait()
	return nil
}

// --- gammazero/workerpool ---

type workerpoolRunner struct{ p *workerpool.WorkerPool }

func startWorkerpool(workers int) (runner, error) {
	return workerpoolRunner{workerpool.New(workers)}, nil
}

func (r workerpoolRunner) Go(f func()) error {
	r.p.Submit(f)
	return nil
}

func (r workerpoolRunner) Wait() error {
	r.p.StopWait()
	return nil
}

// --- sourcegraph/conc ---

type concRunner struct{ p *concpool.Pool }

func startConc(workers int) (runner, error) {
	return concRunner{concpool.New().WithMaxGoroutines(workers)}, nil
}

func (r concRunner) Go(f func()) error {
	r.p.Go(f)
	return nil
}

func (r concRunner) Wait() error {
	r.p.Wait()
	return nil
}

// --- errgroup with SetLimit ---

type errgroupRunner struct{ g *errgroup.Group }

func startErrgroup(workers int) (runner, error) {
	g := new(errgroup.Group)
	g.SetLimit(workers)
	return errgroupRunner{g}, nil
}

func (r errgroupRunner) Go(f func()) error {
	// errgroup runs a func() error: wrapping f costs an allocation, as it
	// does in any real use, where the closure captures the task's inputs.
	r.g.Go(func() error {
		f()
		return nil
	})
	return nil
}

func (r errgroupRunner) Wait() error { return r.g.Wait() }

// --- one goroutine per task, no bound ---

type goroutineRunner struct{ wg *sync.WaitGroup }

func startGoroutine(int) (runner, error) { return goroutineRunner{new(sync.WaitGroup)}, nil }

func (r goroutineRunner) Go(f func()) error {
	r.wg.Add(1)
	go func() {
		f()
		r.wg.Done()
	}()
	return nil
}

func (r goroutineRunner) Wait() error {
	r.wg.Wait()
	return nil
}

// --- the naive article dispatcher ---

type naiveRunner struct{ s *naiveScheduler }

func startNaive(workers int) (runner, error) { return naiveRunner{newNaiveScheduler(workers)}, nil }

func (r naiveRunner) Go(f func()) error {
	r.s.submit(f)
	return nil
}

func (r naiveRunner) Wait() error {
	r.s.stop()
	return nil
}

// TestAdapters checks that every adapter runs each submitted task exactly
// once, that Wait returns only after all of them finished, and that no
// bounded library runs more tasks at once than it has workers.
func TestAdapters(t *testing.T) {
	const (
		workers = 3
		n       = 2000
	)
	for _, l := range allLibs {
		t.Run(l.name, func(t *testing.T) {
			t.Parallel()
			r, err := l.start(workers)
			require.NoError(t, err)
			hits := make([]atomic.Int32, n)
			var running, peak atomic.Int32
			for i := range n {
				err := r.Go(func() {
					now := running.Add(1)
					for {
						p := peak.Load()
						if now <= p || peak.CompareAndSwap(p, now) {
							break
						}
					}
					hits[i].Add(1)
					running.Add(-1)
				})
				require.NoError(t, err)
			}
			require.NoError(t, r.Wait())
			for i := range hits {
				assert.EqualValues(t, 1, hits[i].Load(), "task %d", i)
			}
			if l.name != libGoroutine.name {
				assert.LessOrEqual(t, peak.Load(), int32(workers), "peak concurrency")
			}
		})
	}
}
