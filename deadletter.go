package taskpool

import (
	"context"
	"fmt"
	"slices"
	"sync"
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
