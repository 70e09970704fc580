package taskpool

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/taskpool/taskpool/internal/engine"
)

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
	ID   string
	Type string
	// NextRun is the schedule's next activation; while the schedule
	// fires, the activation it fires.
	NextRun time.Time
	// Spec is the schedule as text when it says it (a String method, as
	// [Every] and the cron sub-module's schedules have), else empty.
	Spec string
}

// Inspection is a snapshot of what a scheduler holds.
type Inspection struct {
	// Queued counts due tasks that have not started, by priority: high,
	// default, low; those in the queue and those handed to a worker in a
	// batch it has not reached. They sit in batches on their way to a
	// worker, so only their number is given.
	Queued [3]int
	// WaitingForSlot counts tasks waiting for their type's concurrency
	// limit, by type.
	WaitingForSlot map[string]int
	// Delayed lists the tasks in the timer heap, soonest first.
	Delayed []TaskInfo
	// Periodic lists the periodic schedules, soonest first.
	Periodic []PeriodicInfo
	// Running lists the tasks workers are busy with: running the handler,
	// or delivering the outcome to the hooks right after. A worker moves
	// on while the list is made, so it is a close view, not an instant's.
	Running []TaskInfo
	// Dead lists the dead letters, oldest first.
	Dead []Outcome
}

// Inspect returns a snapshot of the queued (counted), delayed, periodic,
// running and dead tasks. It locks the timer heap while it copies it:
// inspection of a heap of millions of tasks is not free. It calls the
// String method of each periodic schedule that has one (for
// PeriodicInfo.Spec) after the copy, holding no lock: a String may call
// the scheduler, Unschedule or Inspect among them.
func (s *Scheduler) Inspect() Inspection {
	in := Inspection{Queued: s.queued()}
	s.bindsMu.Lock()
	for _, lim := range s.limits {
		if n := lim.waitingCount(); n > 0 {
			if in.WaitingForSlot == nil {
				in.WaitingForSlot = make(map[string]int)
			}
			in.WaitingForSlot[lim.typ] = n
		}
	}
	s.bindsMu.Unlock()
	q := &s.timers
	q.mu.Lock()
	// The schedules from their map, not the heap: those that fire now are
	// out of the heap meanwhile (their NextRun is the activation that
	// fires). Their Schedules are asked for the spec once the lock is
	// released: a String is user code, which may call back into the
	// scheduler.
	scheds := make([]Schedule, 0, len(q.periodic))
	for _, p := range q.periodic {
		in.Periodic = append(in.Periodic, PeriodicInfo{ID: p.task.ID, Type: p.task.Type, NextRun: p.at})
		scheds = append(scheds, p.sched)
	}
	for _, r := range q.h {
		t := &r.task
		if r.reason == kindPeriodic {
			continue
		}
		reason := "delayed"
		switch r.reason {
		case kindRetry:
			reason = "retry"
		case kindHeld:
			reason = "rate limited"
		}
		in.Delayed = append(in.Delayed, TaskInfo{
			ID: t.ID, Type: t.Type, Priority: t.Priority,
			Attempt: max(t.Attempt, 1), NextRun: r.at, Reason: reason,
		})
	}
	q.mu.Unlock()
	for i, sched := range scheds {
		in.Periodic[i].Spec = scheduleSpec(sched)
	}
	slices.SortFunc(in.Delayed, func(a, b TaskInfo) int { return a.NextRun.Compare(b.NextRun) })
	slices.SortFunc(in.Periodic, func(a, b PeriodicInfo) int { return a.NextRun.Compare(b.NextRun) })
	s.e.Inspect(func(_ *local, j *job, tag uint64, _ []job) {
		if j == nil {
			return
		}
		ti := TaskInfo{Type: j.b.typ, Priority: j.b.prio, Attempt: 1, Reason: "running"}
		if r := j.rec; r != nil {
			q.mu.Lock() // a retry changes Attempt under it
			ti.ID, ti.Priority, ti.Attempt = r.task.ID, r.task.Priority, r.task.Attempt
			q.mu.Unlock()
		} else {
			ti.ID = formatID(s.prefix, widenTag(tag, s.ids.Load()))
		}
		in.Running = append(in.Running, ti)
	})
	slices.SortFunc(in.Running, func(a, b TaskInfo) int { return strings.Compare(a.ID, b.ID) })
	in.Dead = s.DeadLetters()
	return in
}

// scheduleSpec is sched as text, if it says it.
func scheduleSpec(sched Schedule) (spec string) {
	str, ok := sched.(fmt.Stringer)
	if !ok {
		return ""
	}
	defer func() {
		if recover() != nil {
			spec = "" // a String that panics says nothing
		}
	}()
	return str.String()
}

// widenTag is the ID number whose low engine.TagBits bits are tag, as a
// worker's Begin was given them: the highest such number that has been
// handed out (below ctr, the ID counter), which is the task's unless a
// further 2^TagBits IDs were handed out while it ran.
func widenTag(tag, ctr uint64) uint64 {
	const span = 1 << engine.TagBits
	n := ctr&^(span-1) | tag
	if n >= ctr && n >= span {
		n -= span
	}
	return n
}
