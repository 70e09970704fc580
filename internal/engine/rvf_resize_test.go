package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/internal/engine"
)

// Item 6: Resize before Start started workers at once, and Start then
// resized to Config.Workers: the size asked for was lost (the surplus
// retired as it registered). Resize before Start sets the size Start
// uses, and starts nothing.
func TestRvfResizeBeforeStartIsTheSizeAtStart(t *testing.T) {
	r := newRec()
	r.started = make(chan int, 3)
	e := engine.New[unit, local](cfg(1, 64), r)
	e.Resize(3)
	assert.Zero(t, e.Workers(), "no worker before Start")
	e.Start()
	release := make(chan struct{})
	for i := range 3 {
		require.NoError(t, e.Put(context.Background(), 1, unit{id: i, wait: release}, false, false))
	}
	for range 3 {
		select {
		case <-r.started:
		case <-time.After(10 * time.Second):
			close(release)
			e.CloseAdmission()
			e.Close()
			t.Fatalf("3 units never ran at once: %d workers", e.Workers())
		}
	}
	assert.Equal(t, 3, e.Workers())
	close(release)
	e.CloseAdmission()
	e.Close()
	assert.Equal(t, 3, r.retired)
}
