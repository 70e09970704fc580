package taskpool_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// reviewFastTasks is enough plain tasks on one worker for its IDs to come
// from three blocks of ID numbers: the first, whose IDs are formatted, and
// two whose IDs are copies of the block's head with the last three digits
// written in (4096 numbers a block).
const reviewFastTasks = 2*4096 + 300

// A handler that keeps its Task (a copy of the worker's) finds it as it
// was given after the worker has run thousands of tasks since: the ID, a
// string over the worker's ID slab, is never written again, and the Type,
// Params and Attempt are its own. While a kept Task is read on another
// goroutine the worker goes on writing the next IDs (the race detector
// sees any write to the bytes of an ID handed out). Each ID is the next
// number of the worker's, shown by Inspect as the handler sees it, and
// the completion hook reports it with the task's params. The variants
// take each path of a plain task: the fast path, ranPlain (a failure, a
// hook, a hook that calls runtime.Goexit), runSlow (a default timeout, a
// concurrency limit, a rate limit), middleware of both kinds, a handler
// that calls runtime.Goexit, and WithoutPanicRecovery.
func TestReviewFastKeptTasksStayTheirs(t *testing.T) {
	tests := []struct {
		give   string
		opts   []taskpool.Option
		handle []taskpool.HandleOption
		// fail makes task i fail: "err", "panic", "exit" or "".
		fail     func(i int) string
		hook     bool
		hookExit bool
	}{
		{give: "fast"},
		{give: "norecover", hook: true, opts: []taskpool.Option{taskpool.WithoutPanicRecovery()}, fail: func(i int) string {
			if f := reviewFastFailure(i); f != "panic" { // a panic would end the process
				return f
			}
			return ""
		}},
		{give: "timeout", opts: []taskpool.Option{taskpool.WithTaskTimeout(1 << 40)}},
		{give: "limit", handle: []taskpool.HandleOption{taskpool.WithConcurrencyLimit(1)}},
		{give: "ratelimit", hook: true, fail: reviewFastFailure, handle: []taskpool.HandleOption{
			taskpool.WithRateLimit(rateFunc(func(time.Time) time.Duration { return 0 })),
		}},
		{give: "hook", hook: true},
		{give: "failures", hook: true, fail: reviewFastFailure},
		{give: "hookexit", hook: true, hookExit: true},
		{give: "func-middleware", opts: []taskpool.Option{taskpool.WithMiddleware(func(next taskpool.Handler) taskpool.Handler {
			return taskpool.HandlerFunc(func(ctx context.Context, t taskpool.Task) error { return next.HandleTask(ctx, t) })
		})}},
		{give: "struct-middleware", opts: []taskpool.Option{taskpool.WithMiddleware(func(next taskpool.Handler) taskpool.Handler {
			return structMiddleware{next}
		})}},
		{give: "exit", hook: true, fail: func(i int) string {
			if i%7 == 3 {
				return "exit"
			}
			return ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			t.Parallel()
			var (
				mu    sync.Mutex
				kept  = make([]taskpool.Task, reviewFastTasks)
				ids   = make([]string, reviewFastTasks) // clones, as the handler saw them
				shown = make([]string, 0, reviewFastTasks/97+1)
				outs  = make(map[string]taskpool.Outcome, reviewFastTasks)
				s     *taskpool.Scheduler
			)
			fail := tt.fail
			if fail == nil {
				fail = func(int) string { return "" }
			}
			// A reader of the kept Tasks, on its own goroutine, while the
			// worker runs the next ones.
			reads := make(chan taskpool.Task, 64)
			readerDone := make(chan int)
			go func() {
				n := 0
				for k := range reads {
					n += len(k.ID) + len(k.Type)
				}
				readerDone <- n
			}()
			h := func(ctx context.Context, task taskpool.Task) error {
				i, ok := task.Params.(int)
				if !ok {
					return errors.New("params are not an int")
				}
				mu.Lock()
				kept[i] = task
				ids[i] = strings.Clone(task.ID)
				mu.Unlock()
				reads <- task
				if i%97 == 0 {
					// Inspect from the handler: the worker is running it.
					var running []string
					for _, ti := range s.Inspect().Running {
						running = append(running, ti.ID)
					}
					mu.Lock()
					if slices.Contains(running, task.ID) {
						shown = append(shown, task.ID)
					}
					mu.Unlock()
				}
				switch fail(i) {
				case "err":
					return errors.New("boom")
				case "panic":
					panic("boom")
				case "exit":
					runtime.Goexit()
				}
				return nil
			}
			reg := taskpool.NewRegistry()
			require.NoError(t, reg.HandleFunc("t", h, tt.handle...))
			opts := append([]taskpool.Option{
				taskpool.WithWorkers(1),
				taskpool.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
			}, tt.opts...)
			if tt.hook {
				opts = append(opts, taskpool.WithCompletionHook(func(o taskpool.Outcome) {
					mu.Lock()
					outs[o.Task.ID] = o
					mu.Unlock()
					if tt.hookExit && o.Task.Params.(int)%5 == 1 {
						runtime.Goexit()
					}
				}))
			}
			var err error
			s, err = taskpool.New(reg, opts...)
			require.NoError(t, err)
			require.NoError(t, s.Start())
			for i := range reviewFastTasks {
				require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "t", Params: i}))
			}
			require.NoError(t, stopBounded(t, s, hangAfter))
			close(reads)
			<-readerDone

			prefix, _, ok := strings.Cut(ids[0], "-")
			require.True(t, ok, "a generated ID is the prefix, '-' and a number: %q", ids[0])
			seen := make(map[string]bool, reviewFastTasks)
			for i, k := range kept {
				require.Equal(t, ids[i], k.ID, "task %d: its kept ID changed", i)
				assert.Equal(t, i, k.Params, "task %d: its kept params", i)
				assert.Equal(t, "t", k.Type, "task %d", i)
				assert.Equal(t, 1, k.Attempt, "task %d", i)
				assert.False(t, seen[k.ID], "task %d: ID %s twice", i, k.ID)
				seen[k.ID] = true
				// One worker: its IDs are consecutive numbers.
				assert.Equal(t, prefix+"-"+strconv.FormatUint(uint64(i), 16), k.ID, "task %d", i)
			}
			assert.Len(t, shown, reviewFastTasks/97+1, "Inspect shows the running task under the ID its handler sees")
			if !tt.hook {
				return
			}
			require.Len(t, outs, reviewFastTasks)
			for i, id := range ids {
				o := outs[id]
				assert.Equal(t, i, o.Task.Params, "task %d: the outcome's params", i)
				assert.Equal(t, 1, o.Task.Attempt, "task %d", i)
				assert.Equal(t, fail(i) == "", o.Err == nil, "task %d: %v", i, o.Err)
			}
		})
	}
}

// reviewFastFailure makes one task in three fail, by an error, a panic or
// runtime.Goexit in turn.
func reviewFastFailure(i int) string {
	switch i % 9 {
	case 1:
		return "err"
	case 4:
		return "panic"
	case 7:
		return "exit"
	}
	return ""
}

// A Stop whose ctx has ended drops the tasks of a paused scheduler, among
// them any that a worker had taken and was holding in Begin (the fast
// path had written its Task into the worker's state already): each
// dropped task's outcome is NotRun, with its own params, attempt 1, no
// attempts run, and an ID no other task had; each task that ran reports
// the ID its handler saw. Pause lands while two workers stream trivial
// tasks, so that a worker is at times between taking a task and Begin.
func TestReviewFastDroppedAfterPauseReportTheirOwnTask(t *testing.T) {
	const rounds, tasks = 20, 500
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for round := range rounds {
		var mu sync.Mutex
		ranIDs := make(map[int]string, tasks)
		reg := registry(t, map[string]taskpool.HandlerFunc{"t": func(_ context.Context, task taskpool.Task) error {
			mu.Lock()
			ranIDs[task.Params.(int)] = strings.Clone(task.ID)
			mu.Unlock()
			return nil
		}})
		got := newOutcomes()
		s, err := taskpool.New(reg, taskpool.WithWorkers(2), taskpool.WithQueueSize(tasks),
			taskpool.WithCompletionHook(got.hook))
		require.NoError(t, err)
		require.NoError(t, s.Start())
		for i := range tasks {
			require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "t", Params: i}))
			if i == tasks/2 {
				require.NoError(t, s.Pause())
			}
		}
		err = s.Stop(ended)
		require.ErrorIs(t, err, context.Canceled, "round %d", round)

		outs := got.snapshot()
		require.Len(t, outs, tasks, "round %d: one outcome per task", round)
		byParams := make(map[int]taskpool.Outcome, tasks)
		ids := make(map[string]bool, tasks)
		for _, o := range outs {
			i := o.Task.Params.(int)
			_, dup := byParams[i]
			require.False(t, dup, "round %d: task %d settled twice", round, i)
			byParams[i] = o
			assert.False(t, ids[o.Task.ID], "round %d: ID %s twice", round, o.Task.ID)
			ids[o.Task.ID] = true
			assert.Equal(t, 1, o.Task.Attempt, "round %d: task %d", round, i)
			id, ran := ranIDs[i]
			if ran {
				assert.Equal(t, taskpool.OutcomeSucceeded, o.Status, "round %d: task %d", round, i)
				assert.Equal(t, id, o.Task.ID, "round %d: task %d: the outcome's ID is the handler's", round, i)
				assert.Equal(t, 1, o.Attempts, "round %d: task %d", round, i)
				continue
			}
			assert.Equal(t, taskpool.OutcomeNotRun, o.Status, "round %d: task %d", round, i)
			assert.Zero(t, o.Attempts, "round %d: task %d", round, i)
			assert.NotEmpty(t, o.Task.ID, "round %d: task %d", round, i)
		}
	}
}
