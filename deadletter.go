package taskpool

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
)

// deadLetters is a bounded list of the last failed outcomes.
type deadLetters struct {
	capacity int

	mu   sync.Mutex
	list []letter // oldest first: by seq
	next uint64   // the seq of the next letter
}

// letter is a dead letter and its number in the order letters came.
type letter struct {
	out Outcome
	seq uint64
}

func (d *deadLetters) add(out Outcome) {
	if d.capacity == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.next++
	d.insertLocked(letter{out, d.next})
}

// insertLocked puts l in its place by age and drops the oldest letter
// when the list is over capacity. The caller holds d.mu.
func (d *deadLetters) insertLocked(l letter) {
	i, _ := slices.BinarySearchFunc(d.list, l.seq, func(x letter, seq uint64) int { return cmp.Compare(x.seq, seq) })
	d.list = slices.Insert(d.list, i, l)
	if len(d.list) > d.capacity {
		d.list = slices.Delete(d.list, 0, 1)
	}
}

// find returns the index of the oldest dead letter of the task id, or -1.
// The caller holds d.mu.
func (d *deadLetters) find(id string) int {
	return slices.IndexFunc(d.list, func(l letter) bool { return l.out.Task.ID == id })
}

// DeadLetters returns the failed outcomes kept by [WithDeadLetters],
// oldest first.
func (s *Scheduler) DeadLetters() []Outcome {
	s.dead.mu.Lock()
	defer s.dead.mu.Unlock()
	outs := make([]Outcome, len(s.dead.list))
	for i, l := range s.dead.list {
		outs[i] = l.out
	}
	return outs
}

// Requeue removes the dead letter of the task with the given ID and
// submits the task again, with its attempts counted from 1. When several
// dead letters have that ID (a task ID used again), it takes the oldest:
// the first in [Scheduler.DeadLetters]. It returns an
// error wrapping [ErrTaskNotFound] when there is no such dead letter, and
// otherwise the errors of [Scheduler.Submit]: [ErrDuplicateTask], among
// them, for a task whose UniqueKey is taken, under [WithUniqueTTL] by its
// own failed run until the TTL is over. When Submit fails, the dead
// letter is put back in its place, by age among the letters kept then:
// if letters that came while Submit waited put the list over its
// capacity, the oldest is dropped, as always, and that may be this one.
func (s *Scheduler) Requeue(ctx context.Context, id string) error {
	if ctx == nil {
		return ErrNilContext
	}
	d := &s.dead
	d.mu.Lock()
	i := d.find(id)
	if i < 0 {
		d.mu.Unlock()
		return fmt.Errorf("%w: dead letter %q", ErrTaskNotFound, id)
	}
	l := d.list[i]
	d.list = slices.Delete(d.list, i, i+1)
	d.mu.Unlock()
	t := l.out.Task
	t.Attempt = 0
	if err := s.Submit(ctx, t); err != nil {
		d.mu.Lock()
		d.insertLocked(l)
		d.mu.Unlock()
		return err
	}
	return nil
}

// DeleteDeadLetter removes the dead letter of the task with the given ID
// without running it again; when several have that ID, the oldest, as
// [Scheduler.Requeue] does. It is safe for concurrent use and does not
// block on running tasks. It returns an error wrapping [ErrTaskNotFound]
// when there is no such dead letter.
func (s *Scheduler) DeleteDeadLetter(id string) error {
	s.dead.mu.Lock()
	defer s.dead.mu.Unlock()
	i := s.dead.find(id)
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
