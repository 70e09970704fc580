package taskpool_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskpool/taskpool"
)

// The workloads of the performance report. Each benchmark op is one task;
// the ns/task metric is wall time per task from the first submit to the
// last completion (Stop waits for it). The peers run the same workloads in
// the bench module.

var sink atomic.Int64

func trivial(context.Context, taskpool.Task) error {
	sink.Add(1)
	return nil
}

// spin burns about d of CPU without touching memory others use.
func spin(d time.Duration) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
	}
}

func benchRegistry(b *testing.B, typ string, h taskpool.HandlerFunc) *taskpool.Registry {
	b.Helper()
	reg := taskpool.NewRegistry()
	if err := reg.Handle(typ, h); err != nil {
		b.Fatal(err)
	}
	return reg
}

// startBench returns a started scheduler over reg.
func startBench(b *testing.B, reg *taskpool.Registry, opts ...taskpool.Option) *taskpool.Scheduler {
	b.Helper()
	s, err := taskpool.New(reg, opts...)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	return s
}

// runScheduler submits b.N tasks from one goroutine and waits for them all.
func runScheduler(b *testing.B, h taskpool.HandlerFunc, opts ...taskpool.Option) {
	b.Helper()
	b.ReportAllocs()
	s := startBench(b, benchRegistry(b, "t", h), opts...)
	ctx := context.Background()
	task := taskpool.Task{Type: "t"}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := s.Submit(ctx, task); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Stop(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/task")
}

// runGoroutinePerTask is the baseline: one goroutine per task, a WaitGroup
// to wait, no bound.
func runGoroutinePerTask(b *testing.B, f func()) {
	b.Helper()
	b.ReportAllocs()
	var wg sync.WaitGroup
	start := time.Now()
	for range b.N {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/task")
}

func BenchmarkTrivial(b *testing.B) {
	for _, workers := range []int{runtime.GOMAXPROCS(0), 64} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			runScheduler(b, trivial, taskpool.WithWorkers(workers))
		})
	}
	b.Run("baseline=goroutine-per-task", func(b *testing.B) {
		runGoroutinePerTask(b, func() { sink.Add(1) })
	})
	b.Run("baseline=buffered-channel", func(b *testing.B) {
		// The floor of any channel-based pool: one send and one receive
		// per task on a buffered channel, with one consumer.
		b.ReportAllocs()
		ch := make(chan func(), taskpool.DefaultQueueSize)
		done := make(chan struct{})
		go func() {
			for f := range ch {
				f()
			}
			close(done)
		}()
		f := func() { sink.Add(1) }
		start := time.Now()
		for range b.N {
			ch <- f
		}
		close(ch)
		<-done
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/task")
	})
}

func BenchmarkCPU1us(b *testing.B) {
	work := func(context.Context, taskpool.Task) error { spin(time.Microsecond); return nil }
	b.Run(fmt.Sprintf("workers=%d", runtime.GOMAXPROCS(0)), func(b *testing.B) {
		runScheduler(b, work)
	})
	b.Run("baseline=ideal", func(b *testing.B) {
		// The work alone, on every core, with no pool: the ideal.
		b.ReportAllocs()
		procs := runtime.GOMAXPROCS(0)
		var wg sync.WaitGroup
		start := time.Now()
		for p := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := p; i < b.N; i += procs {
					spin(time.Microsecond)
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/task")
	})
}

func BenchmarkSleep1ms(b *testing.B) {
	work := func(context.Context, taskpool.Task) error { time.Sleep(time.Millisecond); return nil }
	b.Run("workers=1000", func(b *testing.B) {
		runScheduler(b, work, taskpool.WithWorkers(1000), taskpool.WithBatchSize(1))
	})
}

func BenchmarkFuture(b *testing.B) {
	b.ReportAllocs()
	reg := benchRegistry(b, "t", func(_ context.Context, t taskpool.Task) error {
		t.SetResult(nil)
		return nil
	})
	s := startBench(b, reg)
	defer s.Stop(context.Background())
	ctx := context.Background()
	task := taskpool.Task{Type: "t"}
	futures := make([]*taskpool.Future, 0, 1024)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		f, err := s.SubmitFuture(ctx, task)
		if err != nil {
			b.Fatal(err)
		}
		futures = append(futures, f)
		if len(futures) == cap(futures) || i == b.N-1 {
			for _, f := range futures {
				if _, err := f.Wait(ctx); err != nil {
					b.Fatal(err)
				}
			}
			futures = futures[:0]
		}
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/task")
}

func BenchmarkParallelSubmit(b *testing.B) {
	for _, producers := range []int{2, 4, 8, 16} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			b.ReportAllocs()
			s := startBench(b, benchRegistry(b, "t", trivial))
			ctx := context.Background()
			task := taskpool.Task{Type: "t"}
			// RunParallel starts parallelism × GOMAXPROCS goroutines.
			b.SetParallelism((producers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.Submit(ctx, task); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if err := s.Stop(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/task")
		})
	}
}

// BenchmarkQueuedMemory reports the heap bytes per queued task with 1M
// tasks waiting behind a blocked worker.
func BenchmarkQueuedMemory(b *testing.B) {
	const queued = 1 << 20
	for range b.N {
		release := make(chan struct{})
		reg := benchRegistry(b, "t", func(context.Context, taskpool.Task) error {
			<-release
			return nil
		})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := startBench(b, reg, taskpool.WithWorkers(1), taskpool.WithQueueSize(queued))
		for range queued {
			if err := s.Submit(context.Background(), taskpool.Task{Type: "t"}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/queued, "B/queued-task")
		close(release)
		if err := s.Stop(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDelayed schedules 1M tasks (or b.N, whichever is smaller) due
// at 100,000 a second, and reports the heap bytes per waiting task and how
// late they start: p50 and p99 of start time minus due time.
func BenchmarkDelayed(b *testing.B) {
	n := min(b.N, 1_000_000)
	b.ReportAllocs()
	spread := max(time.Second, time.Duration(n)*10*time.Microsecond)
	lateness := make([]time.Duration, n)
	var idx atomic.Int64
	var done sync.WaitGroup
	done.Add(n)
	reg := benchRegistry(b, "t", func(_ context.Context, t taskpool.Task) error {
		due := t.Params.(time.Time)
		lateness[idx.Add(1)-1] = time.Since(due)
		done.Done()
		return nil
	})
	s := startBench(b, reg)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	// Leave time to submit them all before the first is due.
	base := time.Now().Add(time.Second + time.Duration(n)*5*time.Microsecond)
	ctx := context.Background()
	b.ResetTimer()
	for i := range n {
		due := base.Add(spread * time.Duration(i) / time.Duration(n))
		if err := s.SubmitAt(ctx, taskpool.Task{Type: "t", Params: due}, due); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if time.Now().After(base) {
		b.Logf("submitting took longer than the lead time: lateness includes it")
	}
	done.Wait()
	b.StopTimer()
	if err := s.Stop(ctx); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lateness)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "B/delayed-task")
	b.ReportMetric(float64(lateness[n/2].Microseconds()), "p50-late-µs")
	b.ReportMetric(float64(lateness[n*99/100].Microseconds()), "p99-late-µs")
}

// BenchmarkRetryStorm runs tasks of which half fail twice before they
// succeed, with retries due at once: it measures the retry path (timer
// heap and back into the queue) per task.
func BenchmarkRetryStorm(b *testing.B) {
	b.ReportAllocs()
	reg := benchRegistry(b, "t", func(_ context.Context, t taskpool.Task) error {
		if t.Params.(bool) && t.Attempt < 3 {
			return errRetry
		}
		return nil
	})
	// Wait for the final outcomes, not for Stop: Stop would report the
	// retries still waiting instead of running them.
	var finished atomic.Int64
	allDone := make(chan struct{})
	s := startBench(b, reg, taskpool.WithRetry(3, taskpool.ConstantBackoff(0)),
		taskpool.WithCompletionHook(func(taskpool.Outcome) {
			if finished.Add(1) == int64(b.N) {
				close(allDone)
			}
		}))
	ctx := context.Background()
	fail, ok := taskpool.Task{Type: "t", Params: true}, taskpool.Task{Type: "t", Params: false}
	start := time.Now()
	for i := range b.N {
		t := ok
		if i%2 == 0 {
			t = fail
		}
		if err := s.Submit(ctx, t); err != nil {
			b.Fatal(err)
		}
	}
	<-allDone
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/task")
	if err := s.Stop(ctx); err != nil {
		b.Fatal(err)
	}
	if st := s.Stats(); st.Succeeded != uint64(b.N) {
		b.Fatalf("%d of %d tasks succeeded", st.Succeeded, b.N)
	}
}

var errRetry = errors.New("retry me")

// BenchmarkPriorityMix submits a mix of 10% high, 80% default and 10% low
// priority trivial tasks.
func BenchmarkPriorityMix(b *testing.B) {
	b.ReportAllocs()
	s := startBench(b, benchRegistry(b, "t", trivial))
	ctx := context.Background()
	tasks := []taskpool.Task{{Type: "t", Priority: taskpool.PriorityHigh}}
	for range 8 {
		tasks = append(tasks, taskpool.Task{Type: "t"})
	}
	tasks = append(tasks, taskpool.Task{Type: "t", Priority: taskpool.PriorityLow})
	start := time.Now()
	for i := range b.N {
		if err := s.Submit(ctx, tasks[i%len(tasks)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Stop(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/task")
}

// BenchmarkRoundTrip measures the idle path: one task submitted at a time
// to an idle scheduler, whose handler signals the submitter, which waits
// for it before the next. Each op is a Submit to a parked dispatcher, a
// hand-off to a parked worker and the signal back: the latency floor of
// a quiet scheduler (bench's Latency measures it under load, against the
// peers).
func BenchmarkRoundTrip(b *testing.B) {
	b.ReportAllocs()
	started := make(chan struct{})
	s := startBench(b, benchRegistry(b, "t", func(context.Context, taskpool.Task) error {
		started <- struct{}{}
		return nil
	}), taskpool.WithWorkers(runtime.GOMAXPROCS(0)))
	ctx := context.Background()
	task := taskpool.Task{Type: "t"}
	b.ResetTimer()
	for range b.N {
		if err := s.Submit(ctx, task); err != nil {
			b.Fatal(err)
		}
		<-started
	}
	b.StopTimer()
	if err := s.Stop(ctx); err != nil {
		b.Fatal(err)
	}
}
