package natsbroker

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/taskpool/taskpool"
)

// Client is a [Producer] as a [taskpool.Client], so that application code
// written against taskpool.Client runs on NATS with only its construction
// changed. Submit, SubmitAt and SubmitAfter are [Producer.Enqueue] (with
// [At] or [Delay]); Cancel is [Producer.Cancel] of delayed tasks only,
// bounded by CancelTimeout; SchedulePeriodic and Unschedule are
// [Producer.Schedule] and Producer.Cancel of periodic schedules only,
// bounded the same way; SubmitWait is Enqueue with
// [KeepResult] and [Producer.WaitResult]. Give the producer
// [WithKnownTypes] for Submit to reject unknown types with
// [taskpool.ErrNoHandler] as the in-process scheduler does. As in
// process, Submit, SubmitAt, SubmitAfter and SubmitWait refuse a nil ctx
// with an error wrapping [taskpool.ErrNilContext], and do nothing else.
type Client struct {
	// Producer is the producer submitted through.
	Producer *Producer
	// CancelTimeout bounds Cancel, SchedulePeriodic and Unschedule, which
	// take no context: 0 means 10s.
	CancelTimeout time.Duration
}

var _ taskpool.Client = (*Client)(nil)

// NewClient returns p as a [taskpool.Client].
func NewClient(p *Producer) *Client { return &Client{Producer: p} }

// Submit enqueues t; see [Producer.Enqueue]. An ID the stream already
// holds within its duplicate window ([WithDuplicateWindow]) is refused
// with an error wrapping [taskpool.ErrDuplicateTask]: the server dropped
// the task, which will not run (where the in-process scheduler runs a
// second task with that ID). After an error wrapping [ErrNotConfirmed],
// a Submit again with the same ID that returns it means the first was
// stored.
func (c *Client) Submit(ctx context.Context, t taskpool.Task) error {
	_, err := c.enqueue(ctx, t)
	return err
}

// SubmitAt enqueues t to be due at at; see [At]. A duplicate ID is
// refused as by Submit.
func (c *Client) SubmitAt(ctx context.Context, t taskpool.Task, at time.Time) error {
	_, err := c.enqueue(ctx, t, At(at))
	return err
}

// SubmitAfter enqueues t to be due d from now; see [Delay]. A duplicate
// ID is refused as by Submit.
func (c *Client) SubmitAfter(ctx context.Context, t taskpool.Task, d time.Duration) error {
	_, err := c.enqueue(ctx, t, Delay(d))
	return err
}

// enqueue is Enqueue, with a task the server dropped as a duplicate
// refused: taskpool.Client promises that a nil error means the task will
// run.
func (c *Client) enqueue(ctx context.Context, t taskpool.Task, opts ...EnqueueOption) (Receipt, error) {
	r, err := c.Producer.Enqueue(ctx, t, opts...)
	if err == nil && r.Duplicate {
		return r, fmt.Errorf("natsbroker: task %q: the stream already holds this ID (duplicate window): %w", r.ID, taskpool.ErrDuplicateTask)
	}
	return r, err
}

// SubmitWait enqueues t with [KeepResult] and waits for its outcome with
// [Producer.WaitResult]: it returns the handler's result as JSON (a
// json.RawMessage, nil when it set none; [taskpool.ResultAs] decodes it)
// and the task's final error (see [RemoteError]). ctx bounds the enqueue
// and the wait; when it ends first the task goes on, and its outcome can
// still be waited for by ID. A duplicate ID is refused as by Submit: so a
// SubmitWait again after an error wrapping [ErrNotConfirmed] that returns
// ErrDuplicateTask means the first was stored, and its outcome is
// [Producer.WaitResult]'s for that ID. From a consumer's handler, with
// its ctx, the wait lends the handler's worker, as WaitResult says.
func (c *Client) SubmitWait(ctx context.Context, t taskpool.Task) (any, error) {
	r, err := c.enqueue(ctx, t, KeepResult())
	if err != nil {
		return nil, err
	}
	res, err := c.Producer.WaitResult(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	if res.Value == nil {
		return nil, res.Err
	}
	return res.Value, res.Err
}

// SchedulePeriodic registers sched as the periodic schedule id with
// [Producer.Schedule], bounded by CancelTimeout. sched must say its
// expression with a String method, as [taskpool.Every] and the cron
// sub-module's Parse do; another Schedule is refused with
// [ErrInvalidOption], since the server runs the schedule, and so is one
// whose String panics (the error wraps the [*taskpool.PanicError], as in
// process for a schedule whose first Next panics). Unlike the
// in-process scheduler, registering an id again replaces its schedule
// (or changes nothing when it is the same) rather than failing with
// ErrDuplicateTask: every instance of a service may register its
// schedules at start-up. As in process, a delayed task with the same ID
// is another namespace: neither replaces the other (see
// [Producer.Schedule]).
func (c *Client) SchedulePeriodic(id string, sched taskpool.Schedule, t taskpool.Task) error {
	s, ok := sched.(fmt.Stringer)
	if !ok || sched == nil {
		return invalid("schedule", fmt.Sprintf("%T has no expression (String method) the server can run", sched))
	}
	spec, err := specOf(s)
	if err != nil {
		return err
	}
	ctx, cancel := c.timeout()
	defer cancel()
	return c.Producer.Schedule(ctx, id, spec, t)
}

// specOf is s's String. A String that panics (a nil pointer, say) is
// refused with ErrInvalidOption wrapping the *taskpool.PanicError, as the
// in-process SchedulePeriodic refuses a schedule whose first Next panics.
func specOf(s fmt.Stringer) (spec string, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: schedule: %w", ErrInvalidOption, &taskpool.PanicError{Value: v, Stack: debug.Stack()})
		}
	}()
	return s.String(), nil
}

// Unschedule removes the periodic schedule id as [Producer.Cancel] does,
// bounded by CancelTimeout. Ticks already emitted are not affected. As in
// process, it removes only a periodic schedule: a delayed task with the
// same ID is left, and for an id with no periodic schedule (the ID of a
// delayed task among them) it returns an error wrapping [ErrNotFound]
// (which is [taskpool.ErrTaskNotFound]).
func (c *Client) Unschedule(id string) error {
	ctx, cancel := c.timeout()
	defer cancel()
	return c.Producer.cancel(ctx, id, periodicKind)
}

func (c *Client) timeout() (context.Context, context.CancelFunc) {
	d := c.CancelTimeout
	if d <= 0 {
		d = 10 * time.Second
	}
	return context.WithTimeout(context.Background(), d)
}

// Cancel removes a delayed task that is not due yet by its ID, as
// [Producer.Cancel] does. A task already due, queued or running cannot be
// cancelled: the error wraps [ErrNotFound], which is also
// [taskpool.ErrTaskNotFound]. As in process, a periodic schedule is not a
// task: Cancel of its ID returns that error too and leaves the schedule
// running ([Client.Unschedule] removes it), and when a delayed task has
// the ID of a schedule, Cancel removes the task and leaves the schedule;
// a tick is a queued task, which a broker cannot cancel.
func (c *Client) Cancel(id string) error {
	ctx, cancel := c.timeout()
	defer cancel()
	return c.Producer.cancel(ctx, id, delayedKind)
}
