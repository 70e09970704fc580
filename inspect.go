package taskpool

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// deadLetters is a bounded list of the last failed outcomes.
type deadLetters struct {
	capacity int

	mu   sync.Mutex
	list []Outcome // oldest first
}

func (d *deadLetters) add(out Outcome) {
	if d.capacity == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.list) == d.capacity {
		copy(d.list, d.list[1:])
		d.list = d.list[:len(d.list)-1]
	}
	d.list = append(d.list, out)
}

// DeadLetters returns the failed outcomes kept by [WithDeadLetters],
// oldest first.
func (s *Scheduler) DeadLetters() []Outcome {
	s.dead.mu.Lock()
	defer s.dead.mu.Unlock()
	return slices.Clone(s.dead.list)
}

// Requeue removes the dead letter of the task with the given ID and
// submits the task again, with its attempts counted from 1. It returns an
// error wrapping [ErrTaskNotFound] when there is no such dead letter, and
// otherwise the errors of [Scheduler.Submit] (the dead letter is kept when
// Submit fails).
func (s *Scheduler) Requeue(ctx context.Context, id string) error {
	s.dead.mu.Lock()
	i := slices.IndexFunc(s.dead.list, func(o Outcome) bool { return o.Task.ID == id })
	if i < 0 {
		s.dead.mu.Unlock()
		return fmt.Errorf("%w: dead letter %q", ErrTaskNotFound, id)
	}
	out := s.dead.list[i]
	s.dead.list = slices.Delete(s.dead.list, i, i+1)
	s.dead.mu.Unlock()
	t := out.Task
	t.Attempt = 0
	if err := s.Submit(ctx, t); err != nil {
		s.dead.add(out)
		return err
	}
	return nil
}

// TaskInfo describes a task waiting in the scheduler.
type TaskInfo struct {
	ID       string
	Type     string
	Priority Priority
	// Attempt is the number of the run the task waits for.
	Attempt int
	// NextRun is when the task is due.
	NextRun time.Time
	// Reason is why it waits: "delayed", "retry" or "rate limited"; or
	// "running".
	Reason string
}

// PeriodicInfo describes a periodic schedule.
type PeriodicInfo struct {
	ID      string
	Type    string
	NextRun time.Time
}

// Inspection is a snapshot of what a scheduler holds.
type Inspection struct {
	// Queued counts due tasks waiting for a worker, by priority: high,
	// default, low. Tasks in a channel cannot be listed without taking
	// them out, so only their number is given.
	Queued [3]int
	// WaitingForSlot counts tasks waiting for their type's concurrency
	// limit, by type.
	WaitingForSlot map[string]int
	// Delayed lists the tasks in the timer heap, soonest first.
	Delayed []TaskInfo
	// Periodic lists the periodic schedules, soonest first.
	Periodic []PeriodicInfo
	// Running lists the tasks whose handler runs now. A worker moves on
	// while the list is made, so it is a close view, not an instant's.
	Running []TaskInfo
	// Dead lists the dead letters, oldest first.
	Dead []Outcome
}

// Inspect returns a snapshot of the queued (counted), delayed, periodic,
// running and dead tasks. It locks the timer heap while it copies it: inspection of a
// heap of millions of tasks is not free.
func (s *Scheduler) Inspect() Inspection {
	var in Inspection
	for q := range s.queues {
		in.Queued[q] = len(s.loaded(q))
	}
	s.limits.Range(func(k, v any) bool {
		if n := v.(*typeLimit).waitingCount(); n > 0 {
			if in.WaitingForSlot == nil {
				in.WaitingForSlot = make(map[string]int)
			}
			in.WaitingForSlot[k.(*handlerEntry).typ] = n
		}
		return true
	})
	q := &s.timers
	q.mu.Lock()
	for _, te := range q.h {
		t := te.env.task
		if te.kind == kindPeriodic {
			in.Periodic = append(in.Periodic, PeriodicInfo{ID: te.id, Type: t.Type, NextRun: te.at})
			continue
		}
		reason := "delayed"
		switch te.kind {
		case kindRetry:
			reason = "retry"
		case kindHeld:
			reason = "rate limited"
		}
		in.Delayed = append(in.Delayed, TaskInfo{
			ID: t.ID, Type: t.Type, Priority: t.Priority,
			Attempt: max(t.Attempt, 1), NextRun: te.at, Reason: reason,
		})
	}
	q.mu.Unlock()
	slices.SortFunc(in.Delayed, func(a, b TaskInfo) int { return a.NextRun.Compare(b.NextRun) })
	slices.SortFunc(in.Periodic, func(a, b PeriodicInfo) int { return a.NextRun.Compare(b.NextRun) })
	s.mu.Lock()
	for w := range s.workers {
		if ti, ok := w.running(); ok {
			in.Running = append(in.Running, ti)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(in.Running, func(a, b TaskInfo) int { return strings.Compare(a.ID, b.ID) })
	in.Dead = s.DeadLetters()
	return in
}
