package taskpool_test

import (
	"context"
	"testing"
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
