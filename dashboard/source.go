package dashboard

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is what a [Source] returns, wrapped, for a dead letter it
// does not hold. The dashboard answers it with 404 Not Found.
var ErrNotFound = errors.New("dashboard: not found")

// Source is what the dashboard shows and operates: an in-process
// scheduler ([SchedulerSource]) or a NATS queue (package natssource). Its
// methods are called from concurrent requests and must be safe for
// concurrent use. Errors that wrap [ErrNotFound] become 404 responses.
type Source interface {
	// Name describes the source in the page's title bar.
	Name() string
	// Snapshot returns what the source holds now.
	Snapshot(ctx context.Context) (Snapshot, error)
	// Requeue runs dead letter id again.
	Requeue(ctx context.Context, id string) error
	// DeleteDeadLetter deletes dead letter id.
	DeleteDeadLetter(ctx context.Context, id string) error
	// PurgeDeadLetters deletes every dead letter and returns how many
	// there were.
	PurgeDeadLetters(ctx context.Context) (int, error)
}

// Snapshot is a source's state at one moment, as the page shows it.
type Snapshot struct {
	// Queues has one entry per priority: high, default, low.
	Queues []Queue `json:"queues"`
	// WaitingForSlot counts tasks waiting for their type's concurrency
	// limit, by type.
	WaitingForSlot map[string]int `json:"waiting_for_slot,omitempty"`
	// Processed counts finished tasks (or, for a broker, deliveries)
	// since the source started; its growth is the throughput.
	Processed uint64 `json:"processed"`
	// Failed counts tasks whose final run failed.
	Failed uint64 `json:"failed"`
	// RunTime and Runs are the sum of handler run times and the number of
	// runs they cover, since the source started; both zero when the
	// source does not measure them (latency is then not charted).
	RunTime time.Duration `json:"-"`
	Runs    uint64        `json:"-"`
	// Running lists the tasks being run; nil when the source only counts
	// them (Queue.InFlight).
	Running []Task `json:"running"`
	// Delayed lists delayed tasks and retries, soonest first.
	Delayed []Task `json:"delayed"`
	// Periodic lists the periodic schedules, soonest first.
	Periodic []Periodic `json:"periodic"`
	// Dead lists dead letters, oldest first; DeadTotal counts them all
	// when the list is cut short.
	Dead      []DeadLetter `json:"dead"`
	DeadTotal int          `json:"dead_total"`
}

// Queue is the depth of one priority.
type Queue struct {
	Priority string `json:"priority"`
	// Depth counts due tasks that have not started.
	Depth int `json:"depth"`
	// InFlight counts tasks being run.
	InFlight int `json:"in_flight"`
	// Redelivered counts in-flight tasks delivered more than once
	// (brokers only).
	Redelivered int `json:"redelivered"`
}

// Task is a running, delayed or retrying task.
type Task struct {
	ID       string    `json:"id"`
	Type     string    `json:"type"`
	Priority string    `json:"priority"`
	Attempt  int       `json:"attempt"`
	NextRun  time.Time `json:"next_run,omitzero"`
	// Reason is "running", "delayed", "retry" or "rate limited".
	Reason string `json:"reason"`
}

// Periodic is a periodic schedule.
type Periodic struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	// Spec is the schedule's spec, when the source knows it.
	Spec string `json:"spec,omitempty"`
	// NextRun is zero when the source cannot tell.
	NextRun time.Time `json:"next_run,omitzero"`
}

// DeadLetter is a task that failed for good.
type DeadLetter struct {
	// ID is what Requeue and DeleteDeadLetter take.
	ID       string `json:"id"`
	TaskID   string `json:"task_id"`
	Type     string `json:"type"`
	Error    string `json:"error"`
	Attempts int    `json:"attempts"`
	// Payload is the task's payload as text. The sources of this module
	// cut one over 16 KiB before a character and end it with "…".
	Payload  string    `json:"payload"`
	FailedAt time.Time `json:"failed_at,omitzero"`
}
