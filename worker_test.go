package taskpool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// stackDepth returns how far below the top of its goroutine's stack its
// own frame is, for a depth under 2 KiB: the runtime allocates stacks of
// 2 KiB and more in sizes that are multiples of 2 KiB, aligned to 2 KiB,
// so the top of any stack is a multiple of 2 KiB.
//
//go:noinline
func stackDepth() int {
	var x byte
	return 2048 - int(uintptr(unsafe.Pointer(&x))%2048)
}

// TestHandlerStackDepth checks the promise of runner.Run: the frames from
// a worker's loop to a HandlerFunc take at most half of a new goroutine's
// first stack (2 KiB, of which the runtime keeps the last 928 bytes as a
// guard), leaving the rest to a small handler, which then runs without
// the stack being copied into a bigger one. A thousand new workers each
// growing their stack on their first task spent a seventh of the CPU of
// BenchmarkSleep1ms.
func TestHandlerStackDepth(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes every frame bigger")
	}
	depth := make(chan int, 1)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("t", func(ctx context.Context, task taskpool.Task) error {
		depth <- stackDepth()
		return nil
	}))
	s := newStarted(t, reg, taskpool.WithWorkers(1))
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "t"}))
	d := <-depth
	t.Logf("stack depth in the handler's callee: %d bytes", d)
	assert.LessOrEqual(t, d, 1024)
}

// structMiddleware is middleware that is not a HandlerFunc: the worker
// calls it through HandleTask.
type structMiddleware struct{ next taskpool.Handler }

func (h structMiddleware) HandleTask(ctx context.Context, t taskpool.Task) error {
	return h.next.HandleTask(ctx, t)
}

// A plain task (no ID, no record) behaves the same whether it takes the
// fast path (no default timeout), runSlow (a default timeout, b009eed) or
// ranPlain (a failure, a hook): its outcome, Stats, IDs, the handler's
// context, panics, runtime.Goexit and middleware of either kind.
func TestPlainTaskPathsAgree(t *testing.T) {
	kinds := []string{"ok", "result", "err", "panic", "exit"}
	for _, timeout := range []time.Duration{0, time.Hour} {
		for _, hook := range []bool{false, true} {
			for _, mw := range []string{"none", "func", "struct"} {
				t.Run(fmt.Sprintf("timeout=%v/hook=%v/mw=%s", timeout, hook, mw), func(t *testing.T) {
					var mu sync.Mutex
					deadline := map[string]bool{}
					seenIDs := map[string]string{}
					var outs []taskpool.Outcome
					var wrapped atomic.Int64
					h := func(ctx context.Context, task taskpool.Task) error {
						_, d := ctx.Deadline()
						mu.Lock()
						deadline[task.Type] = d
						seenIDs[task.Type] = task.ID
						mu.Unlock()
						if task.Attempt != 1 || task.Priority != taskpool.PriorityLow {
							return fmt.Errorf("attempt %d priority %d", task.Attempt, task.Priority)
						}
						switch task.Type {
						case "result":
							task.SetResult(42)
						case "err":
							return errors.New("boom")
						case "panic":
							panic("boom")
						case "exit":
							runtime.Goexit()
						}
						return nil
					}
					reg := registry(t, map[string]taskpool.HandlerFunc{})
					for _, k := range kinds {
						require.NoError(t, reg.HandleFunc(k, h))
					}
					opts := []taskpool.Option{taskpool.WithWorkers(2), taskpool.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}
					if timeout > 0 {
						opts = append(opts, taskpool.WithTaskTimeout(timeout))
					}
					if hook {
						opts = append(opts, taskpool.WithCompletionHook(func(o taskpool.Outcome) {
							mu.Lock()
							outs = append(outs, o)
							mu.Unlock()
						}))
					}
					switch mw {
					case "func":
						opts = append(opts, taskpool.WithMiddleware(func(next taskpool.Handler) taskpool.Handler {
							return taskpool.HandlerFunc(func(ctx context.Context, t taskpool.Task) error {
								wrapped.Add(1)
								return next.HandleTask(ctx, t)
							})
						}))
					case "struct":
						opts = append(opts, taskpool.WithMiddleware(func(next taskpool.Handler) taskpool.Handler {
							wrapped.Add(100)
							return structMiddleware{next}
						}))
					}
					s, err := taskpool.New(reg, opts...)
					require.NoError(t, err)
					require.NoError(t, s.Start())
					for _, k := range kinds {
						require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: k, Params: k, Priority: taskpool.PriorityLow}))
					}
					require.NoError(t, stopBounded(t, s, 10*time.Second))
					st := s.Stats()
					assert.Equal(t, uint64(5), st.Submitted)
					assert.Equal(t, uint64(2), st.Succeeded)
					assert.Equal(t, uint64(3), st.Failed)
					assert.Equal(t, uint64(1), st.Panicked)
					assert.Zero(t, st.NotRun)
					for _, k := range kinds {
						assert.Equal(t, timeout > 0, deadline[k], "%s: deadline", k)
						assert.NotEmpty(t, seenIDs[k], k)
					}
					ids := map[string]bool{}
					for _, id := range seenIDs {
						assert.False(t, ids[id], "ID %s twice", id)
						ids[id] = true
					}
					switch mw {
					case "func":
						assert.Equal(t, int64(5), wrapped.Load())
					case "struct":
						assert.Equal(t, int64(500), wrapped.Load()) // once per type
					}
					if !hook {
						return
					}
					require.Len(t, outs, 5)
					for _, o := range outs {
						k := o.Task.Type
						assert.Equal(t, seenIDs[k], o.Task.ID, k)
						assert.Equal(t, 1, o.Attempts, k)
						assert.Equal(t, k, o.Task.Params, k)
						assert.Equal(t, 1, o.Task.Attempt, k)
						var pe *taskpool.PanicError
						switch k {
						case "ok":
							assert.NoError(t, o.Err)
							assert.Nil(t, o.Result)
						case "result":
							assert.NoError(t, o.Err)
							assert.Equal(t, 42, o.Result)
						case "err":
							assert.EqualError(t, o.Err, "boom")
						case "panic":
							assert.ErrorAs(t, o.Err, &pe)
						case "exit":
							assert.ErrorIs(t, o.Err, taskpool.ErrHandlerExited)
						}
					}
				})
			}
		}
	}
}

// A worker keeps nothing of a plain task once it has run: its params can
// be collected while the scheduler idles, whether the handler returned,
// failed, panicked or called runtime.Goexit (the fast path keeps the
// running task in the worker's state, and clears it after the call).
func TestPlainTaskParamsAreNotKeptAfterItsRun(t *testing.T) {
	for _, kind := range []string{"ok", "err", "panic", "exit"} {
		t.Run(kind, func(t *testing.T) {
			reg := registry(t, map[string]taskpool.HandlerFunc{
				"t": func(ctx context.Context, task taskpool.Task) error {
					switch kind {
					case "err":
						return errors.New("boom")
					case "panic":
						panic("boom")
					case "exit":
						runtime.Goexit()
					}
					return nil
				},
			})
			s := newStarted(t, reg, taskpool.WithWorkers(1),
				taskpool.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			collected := make(chan struct{})
			func() {
				params := new([1 << 10]byte)
				runtime.AddCleanup(params, func(ch chan struct{}) { close(ch) }, collected)
				require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "t", Params: params}))
			}()
			require.Eventually(t, func() bool {
				st := s.Stats()
				return st.Succeeded+st.Failed == 1 && st.Running == 0
			}, 10*time.Second, time.Millisecond)
			require.Eventually(t, func() bool {
				runtime.GC()
				select {
				case <-collected:
					return true
				default:
					return false
				}
			}, 10*time.Second, 5*time.Millisecond, "the task's params are still reachable")
		})
	}
}
