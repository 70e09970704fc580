// Package natssource adapts a taskpool queue on NATS JetStream to the
// dashboard: [New] returns a [dashboard.Source] over a
// [natsbroker.Inspector]. It lives in its own package so that the
// dashboard package, like the taskpool core, does not import NATS.
package natssource

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	natsbroker "github.com/taskpool/taskpool/broker/nats"
	"github.com/taskpool/taskpool/dashboard"
	"github.com/taskpool/taskpool/dashboard/internal/preview"
)

// MaxDeadLetters is how many dead letters, oldest first, a snapshot lists;
// their total is still counted.
const MaxDeadLetters = 200

// Source is the [dashboard.Source] of one queue. Dead letters are named by
// their sequence number in the dead-letter stream. Running tasks are only
// counted (per priority, as in flight), and retries waiting for their
// backoff are counted in the depths, not listed: the server does not keep
// them apart. It is safe for concurrent use.
type Source struct {
	in    *natsbroker.Inspector
	queue string
}

var _ dashboard.Source = (*Source)(nil)

// New returns the source of the queue in inspects; queue is its name, for
// the page's title.
func New(in *natsbroker.Inspector, queue string) *Source {
	return &Source{in: in, queue: queue}
}

// Name implements [dashboard.Source].
func (s *Source) Name() string { return "NATS queue " + s.queue }

// Snapshot implements [dashboard.Source] with
// [natsbroker.Inspector.Queue], Schedules and DeadLetters.
func (s *Source) Snapshot(ctx context.Context) (dashboard.Snapshot, error) {
	qi, err := s.in.Queue(ctx)
	if err != nil {
		return dashboard.Snapshot{}, err
	}
	snap := dashboard.Snapshot{
		Delayed: []dashboard.Task{}, Periodic: []dashboard.Periodic{}, Dead: []dashboard.DeadLetter{},
		DeadTotal: int(qi.DeadLetters),
	}
	for _, p := range qi.Priorities {
		snap.Queues = append(snap.Queues, dashboard.Queue{
			Priority: p.Priority.String(), Depth: int(p.Pending), InFlight: p.InFlight, Redelivered: p.Redelivered,
		})
		snap.Processed += p.Delivered
	}
	scheds, err := s.in.Schedules(ctx, true)
	if err != nil && !errors.Is(err, natsbroker.ErrSchedulesUnsupported) {
		return dashboard.Snapshot{}, err
	}
	for _, sc := range scheds {
		if sc.Periodic {
			snap.Periodic = append(snap.Periodic, dashboard.Periodic{ID: sc.ID, Type: sc.Task.Type, Spec: sc.Spec, NextRun: sc.NextRun})
			continue
		}
		snap.Delayed = append(snap.Delayed, dashboard.Task{
			ID: sc.ID, Type: sc.Task.Type, Priority: sc.Task.Priority.String(), Attempt: max(sc.Task.Attempt, 1), NextRun: sc.NextRun, Reason: "delayed",
		})
	}
	dead, err := s.in.DeadLetters(ctx, 0, MaxDeadLetters)
	if err != nil {
		return dashboard.Snapshot{}, err
	}
	for _, d := range dead {
		dl := dashboard.DeadLetter{
			ID: strconv.FormatUint(d.Sequence, 10), TaskID: d.Task.ID, Type: d.Task.Type,
			Error: d.Error, Attempts: d.Attempts, Payload: preview.Clip(string(d.Data)), FailedAt: d.FailedAt,
		}
		if d.DecodeErr != nil {
			dl.Error = d.DecodeErr.Error()
		}
		snap.Dead = append(snap.Dead, dl)
	}
	return snap, nil
}

// Requeue implements [dashboard.Source] with
// [natsbroker.Inspector.Resubmit].
func (s *Source) Requeue(ctx context.Context, id string) error {
	seq, err := parse(id)
	if err != nil {
		return err
	}
	_, err = s.in.Resubmit(ctx, seq)
	return notFound(err)
}

// DeleteDeadLetter implements [dashboard.Source] with
// [natsbroker.Inspector.DeleteDeadLetter].
func (s *Source) DeleteDeadLetter(ctx context.Context, id string) error {
	seq, err := parse(id)
	if err != nil {
		return err
	}
	return notFound(s.in.DeleteDeadLetter(ctx, seq))
}

// PurgeDeadLetters implements [dashboard.Source] with
// [natsbroker.Inspector.PurgeDeadLetters].
func (s *Source) PurgeDeadLetters(ctx context.Context) (int, error) {
	n, err := s.in.PurgeDeadLetters(ctx)
	return int(n), err
}

func parse(id string) (uint64, error) {
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: dead letter %q (want a sequence number)", dashboard.ErrNotFound, id)
	}
	return seq, nil
}

func notFound(err error) error {
	if errors.Is(err, natsbroker.ErrNotFound) {
		return fmt.Errorf("%w: %w", dashboard.ErrNotFound, err)
	}
	return err
}
