package engine_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/taskpool/taskpool/internal/engine"
)

// A second Close, once the first has returned, starts nothing: the
// shutdown had set the number of workers to 0, and Close started a worker
// for it as after Resize(0), one no dispatcher would ever retire (a
// goroutine left running after Close returned).
func TestReviewS29SecondCloseStartsNoWorker(t *testing.T) {
	e := engine.New[unit, local](cfg(2, 64), newRec())
	e.Start()
	e.CloseAdmission()
	e.Close()
	e.Close()
	assert.Zero(t, e.Workers(), "no worker after Close")
}
