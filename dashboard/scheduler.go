package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/dashboard/internal/preview"
)

// SchedulerSource is the [Source] of an in-process scheduler. Its zero
// value is not usable: make one with [NewSchedulerSource].
type SchedulerSource struct {
	s   *taskpool.Scheduler
	rec *Recorder
}

var _ Source = (*SchedulerSource)(nil)

// NewSchedulerSource returns the source of s. rec, if not nil, is the
// Recorder whose middleware s runs, which gives the latency chart; without
// it only throughput is charted. Dead letters need [taskpool.WithDeadLetters].
func NewSchedulerSource(s *taskpool.Scheduler, rec *Recorder) *SchedulerSource {
	return &SchedulerSource{s: s, rec: rec}
}

// Name implements [Source].
func (src *SchedulerSource) Name() string { return "in-process scheduler" }

// Snapshot implements [Source] with [taskpool.Scheduler.Inspect] and
// [taskpool.Scheduler.Stats].
func (src *SchedulerSource) Snapshot(context.Context) (Snapshot, error) {
	in := src.s.Inspect()
	st := src.s.Stats()
	snap := Snapshot{
		WaitingForSlot: in.WaitingForSlot,
		Processed:      st.Succeeded + st.Failed,
		Failed:         st.Failed,
		Running:        []Task{},
		Delayed:        []Task{},
		Periodic:       []Periodic{},
		Dead:           []DeadLetter{},
		DeadTotal:      len(in.Dead),
	}
	if src.rec != nil {
		snap.RunTime, snap.Runs = src.rec.totals()
	}
	prios := []taskpool.Priority{taskpool.PriorityHigh, taskpool.PriorityDefault, taskpool.PriorityLow}
	for i, p := range prios {
		q := Queue{Priority: p.String(), Depth: in.Queued[i]}
		for _, r := range in.Running {
			if r.Priority == p {
				q.InFlight++
			}
		}
		snap.Queues = append(snap.Queues, q)
	}
	for _, r := range in.Running {
		snap.Running = append(snap.Running, taskOf(r))
	}
	for _, d := range in.Delayed {
		snap.Delayed = append(snap.Delayed, taskOf(d))
	}
	for _, p := range in.Periodic {
		snap.Periodic = append(snap.Periodic, Periodic{ID: p.ID, Type: p.Type, NextRun: p.NextRun, Spec: p.Spec})
	}
	for _, o := range in.Dead {
		dl := DeadLetter{ID: o.Task.ID, TaskID: o.Task.ID, Type: o.Task.Type, Attempts: o.Attempts, Payload: payload(o.Task.Params)}
		if o.Err != nil {
			dl.Error = o.Err.Error()
		}
		snap.Dead = append(snap.Dead, dl)
	}
	return snap, nil
}

// Requeue implements [Source] with [taskpool.Scheduler.Requeue].
func (src *SchedulerSource) Requeue(ctx context.Context, id string) error {
	return notFound(src.s.Requeue(ctx, id))
}

// DeleteDeadLetter implements [Source] with
// [taskpool.Scheduler.DeleteDeadLetter].
func (src *SchedulerSource) DeleteDeadLetter(_ context.Context, id string) error {
	return notFound(src.s.DeleteDeadLetter(id))
}

// PurgeDeadLetters implements [Source] with
// [taskpool.Scheduler.PurgeDeadLetters].
func (src *SchedulerSource) PurgeDeadLetters(context.Context) (int, error) {
	return src.s.PurgeDeadLetters(), nil
}

func notFound(err error) error {
	if errors.Is(err, taskpool.ErrTaskNotFound) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

func taskOf(ti taskpool.TaskInfo) Task {
	return Task{ID: ti.ID, Type: ti.Type, Priority: ti.Priority.String(), Attempt: ti.Attempt, NextRun: ti.NextRun, Reason: ti.Reason}
}

// payload renders params as JSON (raw bytes as text), cut by preview.Clip.
func payload(params any) string {
	var s string
	switch p := params.(type) {
	case nil:
		return ""
	case []byte:
		s = string(p)
	case json.RawMessage:
		s = string(p)
	case string:
		s = p
	default:
		b, err := json.Marshal(p)
		if err != nil {
			s = fmt.Sprintf("%v", p)
		} else {
			s = string(b)
		}
	}
	return preview.Clip(s)
}

// Recorder measures handler run times for the latency chart. Add its
// [Recorder.Middleware] to the scheduler. Its zero value is ready to use,
// and it is safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	total time.Duration
	runs  uint64
}

// Middleware returns the middleware that times each run of the handler.
func (r *Recorder) Middleware() taskpool.Middleware {
	return func(next taskpool.Handler) taskpool.Handler {
		return taskpool.HandlerFunc(func(ctx context.Context, t taskpool.Task) error {
			start := time.Now()
			defer func() { r.add(time.Since(start)) }()
			return next.HandleTask(ctx, t)
		})
	}
}

func (r *Recorder) add(d time.Duration) {
	r.mu.Lock()
	r.total += d
	r.runs++
	r.mu.Unlock()
}

func (r *Recorder) totals() (time.Duration, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total, r.runs
}
