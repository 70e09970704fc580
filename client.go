package taskpool

import (
	"context"
	"time"
)

// Client is the front door application code submits through, so that the
// same code runs on the in-process [Scheduler] and on a distributed
// broker (the NATS broker's natsbroker.Client): only the construction
// differs. Both implementations return the core's sentinels (or errors
// that are errors.Is them) for the same cases: [ErrInvalidType],
// [ErrNoHandler] for a type the registry does not know (the broker's
// producer needs the registry for that), [ErrDuplicateTask],
// [ErrTaskNotFound].
//
// SubmitWait is the front door's [Scheduler.SubmitFuture]: the caller
// waits for the handler's result and final error. In process the result is
// the value the handler passed to [Task.SetResult]; through a broker it is
// that value encoded as JSON (a json.RawMessage). [ResultAs] reads either
// as a T, as [ParamsAs] does for params. Called from a handler with its
// ctx, the in-process scheduler's SubmitWait lends the handler's worker
// while it waits (see [Future.Wait]); the NATS broker's does too, from a
// consumer's handler.
type Client interface {
	// Submit enqueues t. A nil error means the task was accepted and
	// will run (at least once, distributed). A task with the ID of
	// another is accepted in process; a broker that keeps IDs unique
	// refuses it with an error wrapping [ErrDuplicateTask] (the NATS
	// broker, within its duplicate window).
	Submit(ctx context.Context, t Task) error
	// SubmitAt enqueues t to run at time at.
	SubmitAt(ctx context.Context, t Task, at time.Time) error
	// SubmitAfter enqueues t to run d from now.
	SubmitAfter(ctx context.Context, t Task, d time.Duration) error
	// Cancel removes a task that has not started, by its ID. What can
	// still be cancelled differs: the in-process scheduler cancels
	// queued and delayed tasks, a broker only delayed tasks that are not
	// due yet. Either returns an error wrapping [ErrTaskNotFound] when
	// there is nothing to cancel under id. A periodic schedule is not a
	// task: Cancel of its ID returns that error and leaves it
	// (Unschedule removes it), on both.
	Cancel(id string) error
	// SubmitWait enqueues t and waits for its outcome: it returns the
	// handler's result (nil if it set none) and the task's final error,
	// after any retries (nil on success). ctx bounds the submission and
	// the wait: when it ends first SubmitWait returns ctx's error, and
	// the task goes on if it was accepted by then (in process, one whose
	// ctx ended before it was admitted is not submitted). A submission
	// refused returns the same errors as Submit.
	SubmitWait(ctx context.Context, t Task) (any, error)
	// SchedulePeriodic submits a copy of t at every activation of sched
	// until Unschedule, each with the ID "<id>@<activation time>" (UTC,
	// RFC 3339 with nanoseconds). A broker runs the schedule on its
	// server, which needs it as an expression: [Every] and the cron
	// sub-module's Parse give one (their String method); a broker
	// returns an error wrapping [ErrInvalidOption] for another Schedule.
	// Delayed tasks (SubmitAt, SubmitAfter) and periodic schedules are
	// two namespaces, on both: a delayed task may have a schedule's ID,
	// and neither replaces the other.
	SchedulePeriodic(id string, sched Schedule, t Task) error
	// Unschedule removes the periodic schedule id; tasks it submitted are
	// not affected. It returns an error wrapping [ErrTaskNotFound] for an
	// unknown id, the ID of a delayed task among them (that task is left
	// as it is).
	Unschedule(id string) error
}

var _ Client = (*Scheduler)(nil)
