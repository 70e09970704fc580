package taskpool_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/taskpool/taskpool"
)

// WithLendHook is told +1 when a handler lends its worker and -1 when it
// gives it back; a nil hook is invalid.
func TestTrialLendHook(t *testing.T) {
	_, err := taskpool.New(taskpool.NewRegistry(), taskpool.WithLendHook(nil))
	require.ErrorIs(t, err, taskpool.ErrInvalidOption)

	var mu sync.Mutex
	var deltas []int
	reg := taskpool.NewRegistry()
	gate := make(chan struct{})
	lent := make(chan struct{})
	require.NoError(t, reg.HandleFunc("wait", func(ctx context.Context, _ taskpool.Task) error {
		release := taskpool.Lend(ctx)
		defer release()
		close(lent)
		<-gate
		release()
		return nil
	}))
	s, err := taskpool.New(reg, taskpool.WithWorkers(1), taskpool.WithLendHook(func(d int) {
		mu.Lock()
		deltas = append(deltas, d)
		mu.Unlock()
	}))
	require.NoError(t, err)
	s.Start()
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "wait"})
	require.NoError(t, err)
	<-lent
	assert.Equal(t, 2, s.Stats().Workers)
	close(gate)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = f.Wait(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Stop(ctx))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []int{1, -1}, deltas)
}
