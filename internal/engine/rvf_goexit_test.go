package engine_test

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/internal/engine"
)

// goexiter exits the goroutine in the callbacks it is told to, once per
// callback, and otherwise records as rec does.
type goexiter struct {
	*rec
	inDrop, inExited, inRetired atomic.Bool
}

func (g *goexiter) Drop(l *local, u *unit) {
	g.rec.Drop(l, u)
	if g.inDrop.CompareAndSwap(true, false) {
		runtime.Goexit()
	}
}

func (g *goexiter) Exited(l *local, u *unit, again bool) {
	g.rec.Exited(l, u, again)
	if g.inExited.CompareAndSwap(true, false) {
		runtime.Goexit()
	}
}

func (g *goexiter) Retired(acc, l *local) {
	g.rec.Retired(acc, l)
	if g.inRetired.CompareAndSwap(true, false) {
		runtime.Goexit()
	}
}

// Item 4: runtime.Goexit in Retired, which the worker called under the
// engine's lock, left the lock held (Workers, Each, Resize and Close
// hung), and the worker's goroutine was replaced as if it had died in
// Run, by one that called Exited on a unit of a batch it no longer had
// (index out of range: the process crashed). A worker that exits in
// Retired has retired; Goexit in Drop or Exited is survived as in Run.
func TestRvfGoexitInRetiredRetiresTheWorker(t *testing.T) {
	g := &goexiter{rec: newRec()}
	g.inRetired.Store(true)
	e := engine.New[unit, local](cfg(3, 64), g)
	e.Start()
	e.Resize(2)
	counted := make(chan int)
	go func() {
		for {
			n := e.Workers() // takes the engine's lock
			if n == 2 {
				counted <- n
				return
			}
			runtime.Gosched()
		}
	}()
	select {
	case <-counted:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker count never came to 2: the engine's lock is held")
	}
	assert.False(t, g.inRetired.Load(), "Retired exited")
	for i := range 20 {
		require.NoError(t, e.Put(context.Background(), 1, unit{id: i}, false, false))
	}
	e.CloseAdmission()
	rvfClose(t, e, nil, "after a Goexit in Retired")
	assert.Len(t, g.ran, 20)
	assert.Empty(t, g.exited, "no unit is reported exited")
	assert.Equal(t, 3, g.retired)
}

func TestRvfGoexitInDropAndExitedIsSurvived(t *testing.T) {
	g := &goexiter{rec: newRec()}
	g.inDrop.Store(true)
	g.inExited.Store(true)
	e := engine.New[unit, local](cfg(1, 64), g)
	e.Start()
	e.Hold()
	for i := range 10 {
		require.NoError(t, e.Put(context.Background(), 1, unit{id: i}, false, false))
	}
	e.Abandon()
	e.CloseAdmission()
	rvfClose(t, e, nil, "after a Goexit in Drop and in Exited")
	g.mu.Lock()
	defer g.mu.Unlock()
	assert.Len(t, g.dropped, 10, "every unit dropped")
	assert.False(t, g.inDrop.Load() || g.inExited.Load(), "both exited")
	assert.Equal(t, 1, g.retired, "the worker carried on as one")
	assert.Zero(t, e.Workers())
}
