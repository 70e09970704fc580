package taskpool_test

// Promises of Stop, Cancel, the completion hook and Outcome that no
// other test covered; each test is named after the promise it checks.

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// Stop: "a later call waits for the same shutdown". With ctx ending first,
// the call that gives up returns the *StopError; the others return nil
// once the shutdown is over.
func TestPromiseLaterStopWaitsForSameShutdown(t *testing.T) {
	t.Parallel()
	running := make(chan struct{})
	release := make(chan struct{})
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"block": func(ctx context.Context, _ taskpool.Task) error {
			close(running)
			<-release // ignores its context: Stop must wait for it
			return nil
		},
		"ok": nop,
	})
	s, err := taskpool.New(reg, taskpool.WithWorkers(1), taskpool.WithBatchSize(1))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "block"}))
	<-running
	require.NoError(t, s.Submit(context.Background(), taskpool.Task{Type: "ok"}))

	first := startStop(t, s, context.Background())
	second := make(chan error, 1)
	go func() { second <- s.Stop(context.Background()) }()
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	third := make(chan error, 2)
	go func() { third <- s.Stop(expired) }()
	go func() { third <- s.Stop(expired) }()
	// Not a wait for something to happen: a check that nothing returns
	// while the handler runs.
	select {
	case err := <-first:
		t.Fatalf("first Stop returned %v while a handler runs", err)
	case err := <-second:
		t.Fatalf("second Stop returned %v while a handler runs", err)
	case err := <-third:
		t.Fatalf("a Stop with an expired ctx returned %v while a handler runs", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	assert.NoError(t, awaitStop(t, first))
	assert.NoError(t, awaitStop(t, second))
	var stopErrs int
	for range 2 {
		err := awaitStop(t, third)
		if err == nil {
			continue
		}
		stopErrs++
		var se *taskpool.StopError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, 1, se.NotRun, "the queued task was left unrun")
		assert.ErrorIs(t, err, taskpool.ErrSchedulerClosed)
		assert.ErrorIs(t, err, context.Canceled)
	}
	assert.Equal(t, 1, stopErrs, "exactly one call gives up the shutdown and reports it")
	assert.NoError(t, s.Stop(expired), "after the shutdown, Stop returns nil")
}
