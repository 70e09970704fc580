package taskpooltest_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/taskpooltest"
)

// Run "runs h on t once, the way a scheduler's worker does", and a
// scheduler refuses a nil handler: taskpool.New returns ErrNilHandler for
// one. Run, which wraps h before it reaches New, ran the task, and the
// nil handler's nil-pointer panic came back as a *taskpool.PanicError, as
// if the code under test had panicked.
func TestReview26bRunNilHandler(t *testing.T) {
	var reg *taskpool.Registry
	tests := []struct {
		name string
		give taskpool.Handler
	}{
		{"nil", nil},
		{"nil HandlerFunc", taskpool.HandlerFunc(nil)},
		{"nil *Registry", reg},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := taskpooltest.Run(context.Background(), tt.give, taskpool.Task{Type: "t"})
			assert.ErrorIs(t, err, taskpool.ErrNilHandler)
			var pe *taskpool.PanicError
			assert.NotErrorAs(t, err, &pe)
			assert.Nil(t, res)
		})
	}
}
