package taskpool_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// flakyAttempts is the attempts of the stress test's flaky tasks: the
// most runs any of its tasks may have.
const flakyAttempts = 3

var errFlaky = errors.New("flaky")

// envInt reads an integer knob of the stress test from the environment.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// yield gives the processor away n times: jitter for the stress test,
// without waiting on the clock.
func yield(n int) {
	for range n {
		runtime.Gosched()
	}
}

// TestStressEveryAcceptedTaskHasOneOutcome mixes everything that moves
// tasks between goroutines at once: concurrent Submit, TrySubmit and
// SubmitAfter at all priorities, unique keys, retries, Cancel, random
// Resize, Pause and Resume, panics, runtime.Goexit, concurrency limits,
// Stats and Inspect, and a Stop that sometimes runs out of time. Every
// accepted task must get exactly one outcome and run at most as often as
// it has attempts; a Cancel that returned nil must be the task's outcome,
// and only such a Cancel; Stop must return. STRESS_ITERS and the STRESS_* switches
// make it run longer or narrower.
func TestStressEveryAcceptedTaskHasOneOutcome(t *testing.T) {
	t.Parallel()
	iters := envInt("STRESS_ITERS", 20)
	useExit := envInt("STRESS_EXIT", 1) == 1
	useResize := envInt("STRESS_RESIZE", 1) == 1
	usePause := envInt("STRESS_PAUSE", 1) == 1
	useDeadline := envInt("STRESS_DEADLINE", 1) == 1
	for it := range iters {
		stressOnce(t, it, useExit, useResize, usePause, useDeadline)
		if t.Failed() {
			return
		}
	}
}

func stressOnce(t *testing.T, it int, useExit, useResize, usePause, useDeadline bool) {
	var runs sync.Map
	ran := func(id string) {
		n, _ := runs.LoadOrStore(id, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
	}
	reg := taskpool.NewRegistry()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(reg.HandleFunc("nop", func(_ context.Context, tk taskpool.Task) error { ran(tk.ID); return nil }))
	must(reg.HandleFunc("sleep", func(_ context.Context, tk taskpool.Task) error {
		ran(tk.ID)
		yield(rand.IntN(300))
		return nil
	}))
	must(reg.HandleFunc("block", func(ctx context.Context, tk taskpool.Task) error {
		ran(tk.ID)
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(rand.IntN(5)) * time.Millisecond):
		}
		return nil
	}))
	must(reg.HandleFunc("exit", func(_ context.Context, tk taskpool.Task) error { ran(tk.ID); runtime.Goexit(); return nil }))
	must(reg.HandleFunc("lim", func(_ context.Context, tk taskpool.Task) error {
		ran(tk.ID)
		yield(rand.IntN(200))
		return nil
	}, taskpool.WithConcurrencyLimit(1+rand.IntN(2))))
	must(reg.HandleFunc("panic", func(_ context.Context, tk taskpool.Task) error { ran(tk.ID); panic("x") }))
	must(reg.HandleFunc("flaky", func(_ context.Context, tk taskpool.Task) error {
		ran(tk.ID)
		if rand.IntN(2) == 0 {
			return errFlaky
		}
		return nil
	}, taskpool.WithRetry(flakyAttempts, taskpool.ConstantBackoff(time.Duration(rand.IntN(300))*time.Microsecond))))
	// block is long enough for a worker among more workers than
	// processors to register early for its next batch (engine/early.go).
	types := []string{"nop", "nop", "nop", "sleep", "block", "block", "lim", "panic", "flaky", "flaky"}
	if useExit {
		types = append(types, "exit")
	}

	var omu sync.Mutex
	outs := map[string]int{}
	outErr := map[string]error{}
	workers := 1 + rand.IntN(runtime.GOMAXPROCS(0)+6)
	batch := 1 + rand.IntN(8)
	queue := rand.IntN(32)
	s, err := taskpool.New(reg, taskpool.WithWorkers(workers), taskpool.WithBatchSize(batch), taskpool.WithQueueSize(queue),
		taskpool.WithCompletionHook(func(o taskpool.Outcome) {
			omu.Lock()
			outs[o.Task.ID]++
			outErr[o.Task.ID] = o.Err
			omu.Unlock()
		}))
	must(err)
	must(s.Start())
	var (
		wg       sync.WaitGroup
		amu      sync.Mutex
		accepted []string
		stop     = make(chan struct{})
		toCancel = make(chan string, 64)
		canceled sync.Map // ID -> true: a Cancel of it returned nil
	)
	const producers, per = 4, 300
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				typ := types[rand.IntN(len(types))]
				id := fmt.Sprintf("i%d-p%d-%d-%s", it, p, i, typ)
				tk := taskpool.Task{ID: id, Type: typ, Priority: taskpool.Priority(rand.IntN(3) - 1)}
				if rand.IntN(8) == 0 {
					tk.UniqueKey = fmt.Sprint("k", rand.IntN(4))
				}
				var err error
				switch rand.IntN(8) {
				case 0, 1:
					err = s.TrySubmit(tk)
				case 2:
					err = s.SubmitAfter(context.Background(), tk, time.Duration(rand.IntN(2000))*time.Microsecond)
				default:
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
					err = s.Submit(ctx, tk)
					cancel()
				}
				if err == nil {
					amu.Lock()
					accepted = append(accepted, id)
					amu.Unlock()
					if rand.IntN(6) == 0 {
						select {
						case toCancel <- id:
						default:
						}
					}
				}
			}
		}()
	}
	// Each disturbance repeats until stop is closed.
	var aux sync.WaitGroup
	repeat := func(f func()) {
		aux.Add(1)
		go func() {
			defer aux.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				f()
			}
		}()
	}
	if useResize {
		repeat(func() {
			_ = s.Resize(1 + rand.IntN(12))
			yield(rand.IntN(300))
		})
	}
	if usePause {
		repeat(func() {
			_ = s.Pause()
			yield(rand.IntN(200))
			_ = s.Resume()
			yield(rand.IntN(500))
		})
	}
	repeat(func() {
		_ = s.Stats()
		_ = s.Inspect()
		yield(100)
	})
	repeat(func() {
		select {
		case id := <-toCancel:
			yield(rand.IntN(200))
			if err := s.Cancel(id); err == nil {
				canceled.Store(id, true)
			} else if !errors.Is(err, taskpool.ErrTaskNotFound) {
				t.Errorf("Cancel(%s): %v", id, err)
			}
		default:
			yield(10)
		}
	})
	if rand.IntN(2) == 0 {
		wg.Wait()
	} else {
		yield(rand.IntN(3000))
	}
	ctx := context.Background()
	var cancel context.CancelFunc = func() {}
	if useDeadline && rand.IntN(3) == 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(rand.IntN(2000))*time.Microsecond)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(ctx) }()
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		buf := make([]byte, 1<<22)
		n := runtime.Stack(buf, true)
		t.Fatalf("iter %d (workers=%d batch=%d queue=%d): Stop hung\nstats %+v\ninspect %+v\n%s\n%s", it, workers, batch, queue, s.Stats(), s.Inspect(), taskpool.DumpEngine(s), buf[:n])
	}
	cancel()
	close(stop)
	wg.Wait()
	aux.Wait()
	omu.Lock()
	defer omu.Unlock()
	bad := 0
	for _, id := range accepted {
		if outs[id] != 1 {
			bad++
			if bad < 5 {
				t.Errorf("iter %d (workers=%d batch=%d queue=%d): task %s: %d outcomes", it, workers, batch, queue, id, outs[id])
			}
		}
		most := int32(1)
		if strings.HasSuffix(id, "-flaky") {
			most = flakyAttempts
		}
		if n, ok := runs.Load(id); ok && n.(*atomic.Int32).Load() > most {
			t.Errorf("iter %d: task %s ran %d times", it, id, n.(*atomic.Int32).Load())
		}
		_, wasCanceled := canceled.Load(id)
		if gotCanceled := errors.Is(outErr[id], taskpool.ErrCanceled); wasCanceled != gotCanceled {
			t.Errorf("iter %d: task %s: Cancel returned nil: %v, outcome %v", it, id, wasCanceled, outErr[id])
		}
	}
	if bad > 0 {
		t.Errorf("iter %d: %d of %d accepted tasks without exactly one outcome", it, bad, len(accepted))
	}
	st := s.Stats()
	if st.Workers != 0 || st.Running != 0 || st.Queued != 0 {
		t.Errorf("iter %d: stats after stop %+v", it, st)
	}
}

// A handler that calls runtime.Goexit ends its worker goroutine; the
// replacement must carry on as the same worker, or Resize and Stop lose
// track of it.
func TestGoexitDuringResizeDoesNotHangStop(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"exit": func(context.Context, taskpool.Task) error { runtime.Goexit(); return nil },
		"nop":  nop,
	})
	for i := range 100 {
		s, err := taskpool.New(reg, taskpool.WithWorkers(2), taskpool.WithBatchSize(1+i%2))
		require.NoError(t, err)
		require.NoError(t, s.Start())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				_ = s.Resize(1 + j%2)
				runtime.Gosched()
			}
		}()
		for j := range 100 {
			typ := "nop"
			if j%3 == 0 {
				typ = "exit"
			}
			require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: typ}))
		}
		wg.Wait()
		done := make(chan error, 1)
		go func() { done <- s.Stop(context.Background()) }()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("iteration %d: Stop did not return\n%s", i, buf[:runtime.Stack(buf, true)])
		}
	}
}

// n blocking tasks on n workers must all run at once: no worker may look
// busy to the dispatcher while it is idle.
func TestEveryWorkerTakesABlockingTask(t *testing.T) {
	t.Parallel()
	const n = 4
	for i := range 200 {
		var cur atomic.Int32
		gate := make(chan struct{})
		reg := registry(t, map[string]taskpool.HandlerFunc{
			"wait": func(context.Context, taskpool.Task) error { cur.Add(1); <-gate; return nil },
		})
		s, err := taskpool.New(reg, taskpool.WithWorkers(n), taskpool.WithBatchSize(1))
		require.NoError(t, err)
		require.NoError(t, s.Start())
		for range n {
			require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "wait"}))
		}
		ok := assert.Eventually(t, func() bool { return cur.Load() == n }, 5*time.Second, 100*time.Microsecond,
			"iteration %d: %d of %d tasks running with %d workers", i, cur.Load(), n, n)
		close(gate)
		require.NoError(t, s.Stop(context.Background()))
		if !ok {
			return
		}
	}
}
