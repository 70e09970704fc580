package taskpool_test

// Tests of the parity review: user code called under the scheduler's
// locks, and the dead letters that share an ID.

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/taskpooltest"
)

// reentrantSpec is a Schedule, hourly, whose String calls back into the
// scheduler the first time it is called: call runs then, and later calls
// (from the Inspect that call may make) only say the spec.
type reentrantSpec struct {
	entered atomic.Bool
	call    func()
}

func (r *reentrantSpec) Next(after time.Time) time.Time { return after.Add(time.Hour) }

func (r *reentrantSpec) String() string {
	if r.entered.CompareAndSwap(false, true) {
		r.call()
	}
	return "@every 1h"
}

// Inspect calls the user's Schedule.String outside the timer heap's lock:
// a String that calls Unschedule or Inspect returns, where it deadlocked
// when Inspect called it holding the lock.
func TestParityInspectCallsScheduleStringOutsideTheLock(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// give is what String calls on s; it reports into got.
		give func(s *taskpool.Scheduler, got chan<- any)
		// want checks what give reported, and Inspect after it.
		want func(t *testing.T, s *taskpool.Scheduler, got any)
	}{
		{
			name: "Unschedule",
			give: func(s *taskpool.Scheduler, got chan<- any) { got <- s.Unschedule("p") },
			want: func(t *testing.T, s *taskpool.Scheduler, got any) {
				assert.Nil(t, got, "Unschedule from String")
				assert.Empty(t, s.Inspect().Periodic, "unscheduled")
			},
		},
		{
			name: "Inspect",
			give: func(s *taskpool.Scheduler, got chan<- any) { got <- s.Inspect() },
			want: func(t *testing.T, s *taskpool.Scheduler, got any) {
				in, ok := got.(taskpool.Inspection)
				require.True(t, ok)
				require.Len(t, in.Periodic, 1)
				assert.Equal(t, "p", in.Periodic[0].ID)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := registry(t, map[string]taskpool.HandlerFunc{"ok": nop})
			// A fake clock that is never moved: the schedule never fires.
			s, err := taskpool.New(reg, taskpool.WithClock(taskpooltest.NewClock(epoch)))
			require.NoError(t, err)
			require.NoError(t, s.Start())
			got := make(chan any, 1)
			sched := &reentrantSpec{call: func() { tt.give(s, got) }}
			require.NoError(t, s.SchedulePeriodic("p", sched, taskpool.Task{Type: "ok"}))

			done := make(chan taskpool.Inspection, 1)
			go func() { done <- s.Inspect() }()
			var in taskpool.Inspection
			select {
			case in = <-done:
			case <-time.After(10 * time.Second):
				// Deadlocked: Stop would block on the lock too, so the
				// scheduler is left behind (goleak reports it).
				t.Fatalf("Inspect did not return: String's %s waits for the lock Inspect holds", tt.name)
			}
			defer func() { assert.NoError(t, s.Stop(context.Background())) }()
			require.Len(t, in.Periodic, 1, "the snapshot taken before String ran")
			assert.Equal(t, "@every 1h", in.Periodic[0].Spec)
			tt.want(t, s, <-got)
		})
	}
}

// DeleteDeadLetter and Requeue act on the oldest of the dead letters that
// share an ID, as their docs say.
func TestParityDeadLettersSharingAnIDOldestFirst(t *testing.T) {
	t.Parallel()
	reg := registry(t, map[string]taskpool.HandlerFunc{
		"fail": func(context.Context, taskpool.Task) error { return taskpool.SkipRetry(errors.New("boom")) },
	})
	s := start(t, reg, taskpool.WithDeadLetters(10, nil))
	// Each letter told apart by its params.
	for n, id := range []string{"same", "same", "same", "other"} {
		f, err := s.SubmitFuture(context.Background(), taskpool.Task{ID: id, Type: "fail", Params: n})
		require.NoError(t, err)
		waitFuture(t, f, id)
	}
	params := func() []any {
		var ps []any
		for _, o := range s.DeadLetters() {
			ps = append(ps, o.Task.Params)
		}
		return ps
	}
	require.Equal(t, []any{0, 1, 2, 3}, params())

	require.NoError(t, s.DeleteDeadLetter("same"))
	assert.Equal(t, []any{1, 2, 3}, params(), "DeleteDeadLetter removed the oldest")

	// Requeue takes the oldest out and submits its task, which fails
	// again and comes back as the youngest letter.
	require.NoError(t, s.Requeue(context.Background(), "same"))
	require.True(t, poll(10*time.Second, func() bool { return len(s.DeadLetters()) == 3 }), "the requeued task failed again")
	assert.Equal(t, []any{2, 3, 1}, params(), "Requeue took the oldest")
}
