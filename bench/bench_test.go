package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alitto/pond/v2"
	concpool "github.com/sourcegraph/conc/pool"
	"go.uber.org/goleak"

	"github.com/taskpool/taskpool"
)

// The peer comparison. Every benchmark op is one task, and every benchmark
// reports ns/task: the wall time from the first submit to the moment the
// last task has finished and the pool is released, divided by the number
// of tasks. Pools are built before the clock starts. run.sh runs each
// benchmark in interleaved rounds with a fixed -benchtime=Nx; with
// -benchtime=1x every benchmark finishes in well under a second.

func TestMain(m *testing.M) {
	// ants starts a default pool, with two goroutines that live forever,
	// when its package initialises: ignore what exists before the tests.
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

var counter atomic.Int64

// trivial is the trivial task: one atomic add.
func trivial() { counter.Add(1) }

// spin burns about d of CPU.
func spin(d time.Duration) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
	}
}

func cpu1us() { spin(time.Microsecond) }

func sleep1ms() { time.Sleep(time.Millisecond) }

func reportPerTask(b *testing.B, elapsed time.Duration, tasks int) {
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(tasks), "ns/task")
}

// runTasks submits b.N copies of f to a fresh pool of l from one goroutine
// and waits for them.
func runTasks(b *testing.B, l lib, workers int, f func()) {
	b.ReportAllocs()
	r, err := l.start(workers)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start, cpu := time.Now(), processCPU()
	for range b.N {
		if err := r.Go(f); err != nil {
			b.Fatal(err)
		}
	}
	if err := r.Wait(); err != nil {
		b.Fatal(err)
	}
	elapsed, cpu := time.Since(start), processCPU()-cpu
	b.StopTimer()
	reportPerTask(b, elapsed, b.N)
	if cpu > 0 {
		// The CPU the whole process used per task, beside the wall time:
		// a pool must not win by burning processors (spinning workers).
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/task")
	}
}

func libWorkers(l lib, workers int) string {
	return fmt.Sprintf("lib=%s/workers=%d", l.name, workers)
}

// BenchmarkTrivial measures the overhead per task: the task is an atomic
// add, so the pool's submit and hand-off are all there is.
func BenchmarkTrivial(b *testing.B) {
	for _, workers := range []int{runtime.GOMAXPROCS(0), 64} {
		for _, l := range allLibs {
			b.Run(libWorkers(l, workers), func(b *testing.B) {
				runTasks(b, l, workers, trivial)
			})
		}
	}
}

// BenchmarkCPU1us runs tasks of 1µs of CPU on GOMAXPROCS workers. lib=ideal
// is the same work split over GOMAXPROCS goroutines with no pool at all.
func BenchmarkCPU1us(b *testing.B) {
	workers := runtime.GOMAXPROCS(0)
	for _, l := range allLibs {
		b.Run(libWorkers(l, workers), func(b *testing.B) {
			runTasks(b, l, workers, cpu1us)
		})
	}
	b.Run(fmt.Sprintf("lib=ideal/workers=%d", workers), func(b *testing.B) {
		b.ReportAllocs()
		var wg sync.WaitGroup
		start := time.Now()
		for p := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := p; i < b.N; i += workers {
					cpu1us()
				}
			}()
		}
		wg.Wait()
		reportPerTask(b, time.Since(start), b.N)
	})
}

// BenchmarkSleep1ms runs tasks that sleep 1ms on 1000 workers: the pool
// must keep 1000 goroutines busy. The ideal is 1000 ns/task.
func BenchmarkSleep1ms(b *testing.B) {
	const workers = 1000
	for _, l := range allLibs {
		b.Run(libWorkers(l, workers), func(b *testing.B) {
			runTasks(b, l, workers, sleep1ms)
		})
	}
}

// futureChunk is how many futures the Future benchmark submits before it
// waits for them.
const futureChunk = 1024

// chunks calls submit for each task and wait after every futureChunk of
// them and after the last one.
func chunks(b *testing.B, submit func(i int), wait func()) {
	n := 0
	for i := range b.N {
		submit(n)
		n++
		if n == futureChunk || i == b.N-1 {
			wait()
			n = 0
		}
	}
}

// BenchmarkFuture measures the cost of a waitable result: trivial tasks
// submitted in chunks of 1024, then each one waited for. Only libraries
// with a per-task future or result take part: taskpool (SubmitFuture),
// pond (Submit returns a Task to Wait on) and conc (a ResultPool per
// chunk, whose Wait returns the chunk's results), against one goroutine
// and one channel per task.
func BenchmarkFuture(b *testing.B) {
	workers := runtime.GOMAXPROCS(0)
	ctx := context.Background()
	b.Run(libWorkers(libTaskpool, workers), func(b *testing.B) {
		b.ReportAllocs()
		s, err := newTaskpool(taskpool.WithWorkers(workers))
		if err != nil {
			b.Fatal(err)
		}
		task := taskpool.Task{Type: funcType, Params: trivial}
		futures := make([]*taskpool.Future, futureChunk)
		b.ResetTimer()
		start := time.Now()
		chunks(b, func(i int) {
			f, err := s.SubmitFuture(ctx, task)
			if err != nil {
				b.Fatal(err)
			}
			futures[i] = f
		}, func() {
			for i, f := range futures {
				if f == nil {
					break
				}
				if _, err := f.Wait(ctx); err != nil {
					b.Fatal(err)
				}
				futures[i] = nil
			}
		})
		elapsed := time.Since(start)
		b.StopTimer()
		if err := s.Stop(ctx); err != nil {
			b.Fatal(err)
		}
		reportPerTask(b, elapsed, b.N)
	})
	b.Run(libWorkers(libPond, workers), func(b *testing.B) {
		b.ReportAllocs()
		p := pond.NewPool(workers)
		futures := make([]pond.Task, futureChunk)
		b.ResetTimer()
		start := time.Now()
		chunks(b, func(i int) {
			futures[i] = p.Submit(trivial)
		}, func() {
			for i, f := range futures {
				if f == nil {
					break
				}
				if err := f.Wait(); err != nil {
					b.Fatal(err)
				}
				futures[i] = nil
			}
		})
		elapsed := time.Since(start)
		b.StopTimer()
		p.StopAndWait()
		reportPerTask(b, elapsed, b.N)
	})
	b.Run(fmt.Sprintf("lib=conc/workers=%d", workers), func(b *testing.B) {
		b.ReportAllocs()
		// A conc pool cannot be reused after Wait: one ResultPool per chunk.
		var p *concpool.ResultPool[int64]
		work := func() int64 { return counter.Add(1) }
		b.ResetTimer()
		start := time.Now()
		chunks(b, func(int) {
			if p == nil {
				p = concpool.NewWithResults[int64]().WithMaxGoroutines(workers)
			}
			p.Go(work)
		}, func() {
			_ = p.Wait()
			p = nil
		})
		reportPerTask(b, time.Since(start), b.N)
	})
	b.Run(fmt.Sprintf("lib=goroutine/workers=%d", workers), func(b *testing.B) {
		b.ReportAllocs()
		futures := make([]chan struct{}, futureChunk)
		b.ResetTimer()
		start := time.Now()
		chunks(b, func(i int) {
			done := make(chan struct{})
			go func() {
				trivial()
				close(done)
			}()
			futures[i] = done
		}, func() {
			for i, f := range futures {
				if f == nil {
					break
				}
				<-f
				futures[i] = nil
			}
		})
		reportPerTask(b, time.Since(start), b.N)
	})
}

// BenchmarkParallelSubmit has several goroutines submit trivial tasks to
// one pool of GOMAXPROCS workers at once. RunParallel starts
// parallelism × GOMAXPROCS goroutines, so the producer counts are
// rounded to a multiple of GOMAXPROCS (on 2 cores: exactly 2, 4, 8, 16).
func BenchmarkParallelSubmit(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	workers := procs
	seen := map[int]bool{}
	for _, want := range []int{2, 4, 8, 16} {
		par := max(1, want/procs)
		producers := par * procs
		if seen[producers] {
			continue
		}
		seen[producers] = true
		for _, l := range []lib{libTaskpool, libPond, libPondBounded, libAnts} {
			name := fmt.Sprintf("lib=%s/producers=%d", l.name, producers)
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				r, err := l.start(workers)
				if err != nil {
					b.Fatal(err)
				}
				b.SetParallelism(par)
				b.ResetTimer()
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := r.Go(trivial); err != nil {
							b.Error(err)
							return
						}
					}
				})
				if err := r.Wait(); err != nil {
					b.Fatal(err)
				}
				elapsed := time.Since(start)
				b.StopTimer()
				reportPerTask(b, elapsed, b.N)
			})
		}
	}
}

// heapInUse is the memory that queued tasks can occupy: the heap, and the
// stacks of the goroutines that hold tasks in the libraries without a
// queue.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// BenchmarkQueuedMemory reports the memory per queued task (B/queued-task)
// with many tasks waiting behind a single blocked worker: the heap and
// stack in use after GC, less what was in use before the pool was made.
//
// taskpool needs a queue that big (WithQueueSize(1<<20)); its channel
// buffer is allocated up front and counted. pond and workerpool queue
// without a bound. naive and goroutine hold each waiting task in a parked
// goroutine, so they queue only 1<<16 tasks to keep the run short. ants,
// conc and errgroup have no queue: a Submit on a full pool blocks its
// caller, so there is nothing to measure.
func BenchmarkQueuedMemory(b *testing.B) {
	const queued = 1_000_000
	type entry struct {
		name   string
		queued int
		start  func() (runner, error)
	}
	entries := []entry{
		{"taskpool", queued, func() (runner, error) {
			s, err := newTaskpool(taskpool.WithWorkers(1), taskpool.WithQueueSize(1<<20))
			return taskpoolRunner{s}, err
		}},
		{"pond", queued, func() (runner, error) { return startPond(1) }},
		{"workerpool", queued, func() (runner, error) { return startWorkerpool(1) }},
		{"naive", 1 << 16, func() (runner, error) { return startNaive(1) }},
		{"goroutine", 1 << 16, func() (runner, error) { return startGoroutine(1) }},
	}
	for _, e := range entries {
		b.Run(fmt.Sprintf("lib=%s/queued=%d", e.name, e.queued), func(b *testing.B) {
			b.ReportAllocs()
			var perTask float64
			for range b.N {
				release := make(chan struct{})
				block := func() { <-release }
				before := heapInUse()
				r, err := e.start()
				if err != nil {
					b.Fatal(err)
				}
				for range e.queued {
					if err := r.Go(block); err != nil {
						b.Fatal(err)
					}
				}
				after := heapInUse()
				perTask += (float64(after) - float64(before)) / float64(e.queued)
				close(release)
				if err := r.Wait(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(perTask/float64(b.N), "B/queued-task")
		})
	}
}

// latency parameters: GOMAXPROCS workers run tasks of latencyTask of CPU,
// so the capacity is workers/latencyTask tasks per second.
const latencyTask = 100 * time.Microsecond

// BenchmarkLatency measures the time from the Submit call to the start of
// the task under a steady, paced load of 50% and 90% of capacity. Each op
// is one task (run.sh uses 20000). A single producer computes each
// submit's time from the start and the rate, and spins (yielding the
// processor) until then, so a late submit is followed by quicker ones
// rather than lowering the rate. The producer shares the machine's
// processors with the workers, as it would in a real program. Reported:
// p50-ns and p99-ns of the submit-to-start latency, and overrun-%: the
// share of tasks whose 100µs of spinning took more than 150µs of wall
// time. The Go runtime does not preempt a goroutine that soon, so an
// overrun means the operating system gave the worker's core to another
// process: a round with many of them measured a busy machine, not the
// pool.
func BenchmarkLatency(b *testing.B) {
	workers := runtime.GOMAXPROCS(0)
	for _, load := range []int{50, 90} {
		interval := time.Duration(float64(latencyTask) / (float64(workers) * float64(load) / 100))
		for _, l := range []lib{libTaskpool, libPond, libAnts} {
			b.Run(fmt.Sprintf("lib=%s/load=%d", l.name, load), func(b *testing.B) {
				b.ReportAllocs()
				measureLatency(b, l, workers, interval)
			})
		}
	}
}

// idleGap is the pause before each submit of BenchmarkLatencyIdle: far
// longer than any pool takes to park its goroutines after a task.
const idleGap = 200 * time.Microsecond

// BenchmarkLatencyIdle measures the time from the Submit call to the start
// of the task on a pool at rest: each op sleeps idleGap, submits a task
// that records its start, and waits for it to finish, so that every
// submit finds the pool's goroutines parked (or, for pond, gone: its
// workers exit when the queue is empty) and the processors idle. It
// reports p50-ns and p99-ns like BenchmarkLatency, and ns/task, which is
// mostly the sleep. run.sh uses 2000 ops: time.Sleep on an idle machine
// lasts about a millisecond, whatever shorter time it is asked for.
func BenchmarkLatencyIdle(b *testing.B) {
	workers := runtime.GOMAXPROCS(0)
	for _, l := range []lib{libTaskpool, libPond, libAnts} {
		b.Run(fmt.Sprintf("lib=%s/load=idle", l.name), func(b *testing.B) {
			b.ReportAllocs()
			measureIdleLatency(b, l, workers)
		})
	}
}

func measureIdleLatency(b *testing.B, l lib, workers int) {
	done := make(chan struct{}, 1)
	measure(b, l, workers, latencyRun{
		work: func() { done <- struct{}{} },
		pace: func(int, int64, func() int64) { time.Sleep(idleGap) },
		wait: func() { <-done },
	})
}

func measureLatency(b *testing.B, l lib, workers int, interval time.Duration) {
	measure(b, l, workers, latencyRun{
		work: func() { spin(latencyTask) },
		pace: func(i int, start int64, since func() int64) {
			next := start + int64(i)*int64(interval)
			for since() < next {
				runtime.Gosched()
			}
		},
		overrun: int64(latencyTask) * 3 / 2,
	})
}

// latencyRun is how a latency benchmark submits its tasks: each task
// records its start and does work; pace returns when submit i is due
// (start and since are on the run's clock); wait, if not nil, follows each
// submit; a task whose work took more than overrun (if not zero) counts as
// an overrun.
type latencyRun struct {
	work    func()
	pace    func(i int, start int64, since func() int64)
	wait    func()
	overrun int64
}

// measure submits b.N tasks to a fresh pool of l as run says and reports
// the p50 and p99 of the time from each Submit call to its task's start,
// the share of overruns when run counts them, and ns/task.
func measure(b *testing.B, l lib, workers int, run latencyRun) {
	n := b.N
	base := time.Now()
	since := func() int64 { return int64(time.Since(base)) }
	submitted := make([]int64, n)
	started := make([]int64, n)
	ended := make([]int64, n)
	tasks := make([]func(), n)
	for i := range tasks {
		tasks[i] = func() {
			started[i] = since()
			run.work()
			ended[i] = since()
		}
	}
	r, err := l.start(workers)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := since()
	for i := range n {
		run.pace(i, start, since)
		submitted[i] = since()
		if err := r.Go(tasks[i]); err != nil {
			b.Fatal(err)
		}
		if run.wait != nil {
			run.wait()
		}
	}
	if err := r.Wait(); err != nil {
		b.Fatal(err)
	}
	elapsed := since() - start
	b.StopTimer()
	lat := make([]int64, n)
	overruns := 0
	for i := range lat {
		lat[i] = started[i] - submitted[i]
		if run.overrun > 0 && ended[i]-started[i] > run.overrun {
			overruns++
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[n/2]), "p50-ns")
	b.ReportMetric(float64(lat[n*99/100]), "p99-ns")
	if run.overrun > 0 {
		b.ReportMetric(float64(overruns)*100/float64(n), "overrun-%")
	}
	reportPerTask(b, time.Duration(elapsed), n)
}
