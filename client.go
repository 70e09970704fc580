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
type Client interface {
	// Submit enqueues t. A nil error means the task was accepted and
	// will run (at least once, distributed).
	Submit(ctx context.Context, t Task) error
	// SubmitAt enqueues t to run at time at.
	SubmitAt(ctx context.Context, t Task, at time.Time) error
	// SubmitAfter enqueues t to run d from now.
	SubmitAfter(ctx context.Context, t Task, d time.Duration) error
	// Cancel removes a task that has not started, by its ID. What can
	// still be cancelled differs: the in-process scheduler cancels
	// queued and delayed tasks, a broker only delayed tasks that are not
	// due yet. Either returns an error wrapping [ErrTaskNotFound] when
	// there is nothing to cancel under id.
	Cancel(id string) error
}

var _ Client = (*Scheduler)(nil)
