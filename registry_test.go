package taskpool_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

func TestRegistryErrors(t *testing.T) {
	t.Parallel()
	var reg taskpool.Registry // the zero value is ready to use
	require.NoError(t, reg.HandleFunc("a", nop))

	tests := []struct {
		name string
		typ  string
		h    taskpool.Handler
		want error
	}{
		{"empty type", "", taskpool.HandlerFunc(nop), taskpool.ErrInvalidType},
		{"nil handler", "b", nil, taskpool.ErrNilHandler},
		{"nil func", "b", taskpool.HandlerFunc(nil), taskpool.ErrNilHandler},
		{"duplicate", "a", taskpool.HandlerFunc(nop), taskpool.ErrDuplicateType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, reg.Handle(tt.typ, tt.h), tt.want)
		})
	}
	assert.ErrorIs(t, reg.HandleFunc("c", nil), taskpool.ErrNilHandler)
	assert.Equal(t, []string{"a"}, reg.Types(), "failed registrations leave no trace")
}

func TestRegistryDispatchesByType(t *testing.T) {
	t.Parallel()
	reg := taskpool.NewRegistry()
	for _, typ := range []string{"c", "a", "b"} {
		require.NoError(t, reg.HandleFunc(typ, func(_ context.Context, tk taskpool.Task) error {
			tk.SetResult(typ)
			return nil
		}))
	}
	assert.Equal(t, []string{"a", "b", "c"}, reg.Types())
	h, ok := reg.Lookup("b")
	require.True(t, ok)
	assert.NotNil(t, h)
	_, ok = reg.Lookup("z")
	assert.False(t, ok)
	assert.ErrorIs(t, reg.HandleTask(context.Background(), taskpool.Task{Type: "z"}), taskpool.ErrNoHandler)
	assert.NoError(t, reg.HandleTask(context.Background(), taskpool.Task{Type: "a"}))
}

func TestRegistryConcurrentUse(t *testing.T) {
	t.Parallel()
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("base", nop))
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := range 50 {
				assert.NoError(t, reg.HandleFunc(fmt.Sprintf("t%d-%d", i, j), nop))
			}
		}()
		go func() {
			defer wg.Done()
			for range 200 {
				assert.NoError(t, reg.HandleTask(context.Background(), taskpool.Task{Type: "base"}))
				_ = reg.Types()
			}
		}()
	}
	wg.Wait()
	assert.Len(t, reg.Types(), 201)
}

// Registry.Use wraps every handler of the registry, inside the
// scheduler's own middleware; it is closed once a scheduler runs the
// registry, and HandleTask called directly runs the bare handler.
func TestRegistryUse(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var order []string
	tag := func(name string) taskpool.Middleware {
		return func(next taskpool.Handler) taskpool.Handler {
			return taskpool.HandlerFunc(func(ctx context.Context, tk taskpool.Task) error {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				return next.HandleTask(ctx, tk)
			})
		}
	}
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.Use(tag("reg-a")))
	require.NoError(t, reg.HandleFunc("t", func(context.Context, taskpool.Task) error {
		mu.Lock()
		order = append(order, "handler")
		mu.Unlock()
		return nil
	}))
	require.NoError(t, reg.Use(tag("reg-b"))) // after Handle: still applies
	require.ErrorIs(t, reg.Use(nil), taskpool.ErrInvalidOption)

	// Called directly, the registry runs the bare handler.
	require.NoError(t, reg.HandleTask(context.Background(), taskpool.Task{Type: "t"}))
	assert.Equal(t, []string{"handler"}, order)
	order = nil

	s, err := taskpool.New(reg, taskpool.WithWorkers(1), taskpool.WithMiddleware(tag("sched")))
	require.NoError(t, err)
	require.ErrorIs(t, reg.Use(tag("late")), taskpool.ErrInvalidOption, "closed once a scheduler runs it")
	require.NoError(t, s.Start())
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "t"}))
	require.NoError(t, s.Stop(context.Background()))
	assert.Equal(t, []string{"sched", "reg-a", "reg-b", "handler"}, order)
}
