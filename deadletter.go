package taskpool

import (
	"context"
	"fmt"
	"math"
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
	d.insert(math.MaxInt, out)
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
// otherwise the errors of [Scheduler.Submit] (the dead letter is kept, in
// its place, when Submit fails).
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
		s.dead.insert(i, out) // back in its place
		return err
	}
	return nil
}

// insert puts out at index i of the list (at its end when i is past it),
// dropping the oldest when the list is over capacity.
func (d *deadLetters) insert(i int, out Outcome) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.list = slices.Insert(d.list, min(i, len(d.list)), out)
	if len(d.list) > d.capacity {
		d.list = slices.Delete(d.list, 0, 1)
	}
}

// DeleteDeadLetter removes the dead letter of the task with the given ID
// without running it again. It is safe for concurrent use and does not
// block on running tasks. It returns an error wrapping [ErrTaskNotFound]
// when there is no such dead letter.
func (s *Scheduler) DeleteDeadLetter(id string) error {
	s.dead.mu.Lock()
	defer s.dead.mu.Unlock()
	i := slices.IndexFunc(s.dead.list, func(o Outcome) bool { return o.Task.ID == id })
	if i < 0 {
		return fmt.Errorf("%w: dead letter %q", ErrTaskNotFound, id)
	}
	s.dead.list = slices.Delete(s.dead.list, i, i+1)
	return nil
}

// PurgeDeadLetters removes every dead letter and returns how many there
// were. It is safe for concurrent use; a task dead-lettered while it runs
// is either counted and removed or kept.
func (s *Scheduler) PurgeDeadLetters() int {
	s.dead.mu.Lock()
	defer s.dead.mu.Unlock()
	n := len(s.dead.list)
	// A fresh slice rather than list[:0]: DeadLetters hands out clones,
	// but a nil list also frees the outcomes' memory.
	s.dead.list = nil
	return n
}
