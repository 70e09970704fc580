package taskpool_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// TestMetadataReachesHandlerMiddlewareAndHooks: a task's Metadata is seen
// by the middleware and the handler on every attempt, and by the
// completion hook, the dead-letter hook, the dead letters and the Future.
func TestMetadataReachesHandlerMiddlewareAndHooks(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]string{} // where -> trace values seen
	note := func(where string, md map[string]string) {
		mu.Lock()
		defer mu.Unlock()
		seen[where] = append(seen[where], md["trace"])
	}
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("ok", func(_ context.Context, task taskpool.Task) error {
		note("handler", task.Metadata)
		return nil
	}))
	require.NoError(t, reg.HandleFunc("fail", func(_ context.Context, task taskpool.Task) error {
		note("handler", task.Metadata)
		return errors.New("boom")
	}, taskpool.WithRetry(2, taskpool.ConstantBackoff(0))))
	mw := func(next taskpool.Handler) taskpool.Handler {
		return taskpool.HandlerFunc(func(ctx context.Context, task taskpool.Task) error {
			note("middleware", task.Metadata)
			return next.HandleTask(ctx, task)
		})
	}
	s := start(t, reg,
		taskpool.WithMiddleware(mw),
		taskpool.WithCompletionHook(func(out taskpool.Outcome) { note("complete", out.Task.Metadata) }),
		taskpool.WithDeadLetters(10, func(out taskpool.Outcome) { note("dead", out.Task.Metadata) }),
	)
	ctx := context.Background()

	f, err := s.SubmitFuture(ctx, taskpool.Task{Type: "ok", Metadata: map[string]string{"trace": "t1"}})
	require.NoError(t, err)
	_, err = f.Wait(ctx)
	require.NoError(t, err)
	out, _ := f.Outcome()
	assert.Equal(t, "t1", out.Task.Metadata["trace"])

	f, err = s.SubmitFuture(ctx, taskpool.Task{Type: "fail", Metadata: map[string]string{"trace": "t2"}})
	require.NoError(t, err)
	_, err = f.Wait(ctx)
	require.Error(t, err)
	dl := s.DeadLetters()
	require.Len(t, dl, 1)
	assert.Equal(t, map[string]string{"trace": "t2"}, dl[0].Task.Metadata)

	// A delayed task keeps its metadata too.
	done := make(chan struct{})
	require.NoError(t, reg.HandleFunc("later", func(_ context.Context, task taskpool.Task) error {
		note("handler", task.Metadata)
		close(done)
		return nil
	}))
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{Type: "later", Metadata: map[string]string{"trace": "t3"}}, time.Millisecond))
	<-done

	require.NoError(t, s.Stop(ctx))
	mu.Lock()
	defer mu.Unlock()
	assert.ElementsMatch(t, []string{"t1", "t2", "t2", "t3"}, seen["handler"])
	assert.ElementsMatch(t, []string{"t1", "t2", "t2", "t3"}, seen["middleware"])
	assert.ElementsMatch(t, []string{"t1", "t2", "t3"}, seen["complete"])
	assert.Equal(t, []string{"t2"}, seen["dead"])
}
