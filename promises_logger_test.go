package taskpool_test

// The logger's promises: WithLogger's doc and the README's "The library
// logs through log/slog only when given a logger".

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// logRecorder is a slog.Handler that keeps every record's level and
// message, at every level.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Level.String()+" "+rec.Message)
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

func (r *logRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// WithLogger: "The default discards everything: the library is silent
// unless asked." A scheduler without WithLogger goes through what
// WithLogger's logger is told of (start, a failed task, a handler panic,
// a panicking completion hook, a Stop whose deadline passes) and logs
// nothing, not even through slog's default logger; the same run with
// WithLogger logs each of them there and only there. It sets the
// process's default logger, so it does not run in parallel.
func TestPromiseLoggerSilentByDefault(t *testing.T) {
	def := &logRecorder{}
	old := slog.Default()
	slog.SetDefault(slog.New(def))
	t.Cleanup(func() { slog.SetDefault(old) })

	run := func(opts ...taskpool.Option) {
		running := make(chan struct{})
		reg := registry(t, map[string]taskpool.HandlerFunc{
			"fail":  func(context.Context, taskpool.Task) error { return errors.New("bad input") },
			"panic": func(context.Context, taskpool.Task) error { panic("kaput") },
			"block": func(ctx context.Context, _ taskpool.Task) error {
				close(running)
				<-ctx.Done()
				return ctx.Err()
			},
			"ok": nop,
		})
		hook := taskpool.WithCompletionHook(func(o taskpool.Outcome) {
			if o.Task.Type == "fail" {
				panic("hook kaput")
			}
		})
		s, err := taskpool.New(reg, append([]taskpool.Option{taskpool.WithWorkers(1), hook}, opts...)...)
		require.NoError(t, err)
		require.NoError(t, s.Start())
		ctx := context.Background()
		for _, typ := range []string{"fail", "panic"} {
			f, err := s.SubmitFuture(ctx, taskpool.Task{Type: typ})
			require.NoError(t, err)
			_, err = f.Wait(ctx)
			require.Error(t, err)
		}
		require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "block"}))
		<-running
		require.NoError(t, s.Submit(ctx, taskpool.Task{Type: "ok"}))
		expired, cancel := context.WithCancel(ctx)
		cancel()
		var se *taskpool.StopError
		require.ErrorAs(t, s.Stop(expired), &se, "the stop deadline passes")
	}

	run()
	assert.Empty(t, def.all(), "the default logger logged")

	given := &logRecorder{}
	run(taskpool.WithLogger(slog.New(given)))
	assert.Empty(t, def.all(), "WithLogger's logger is the only one")
	got := given.all()
	for _, want := range []string{
		"DEBUG taskpool: started",
		"WARN taskpool: task failed",
		"ERROR taskpool: handler panic",
		"WARN taskpool: stop deadline passed",
	} {
		assert.Contains(t, got, want, "the run logs it when given a logger")
	}
	hookPanic := false
	for _, m := range got {
		hookPanic = hookPanic || m == "ERROR taskpool: panic in completion hook"
	}
	assert.True(t, hookPanic, "the hook's panic is logged: %q", got)
}
