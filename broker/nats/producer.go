package natsbroker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/cron"
)

// Producer enqueues tasks onto a queue's stream. It is the distributed
// counterpart of [taskpool.Scheduler.Submit]: any process with a Producer
// can enqueue, and any process running a [Consumer] of the same queue may
// run the task.
//
// A Producer is safe for concurrent use and holds no goroutines: it needs
// no Stop. It does not own the NATS connection.
type Producer struct {
	cfg config
	q   *queue
}

// Receipt tells what the server stored for an enqueued task.
type Receipt struct {
	// ID is the task ID: the one given, or a generated one.
	ID string
	// Sequence is the message's sequence in the queue's stream.
	Sequence uint64
	// Duplicate is true when the server had already stored a task with
	// this ID within the duplicate window, and dropped this one. A unique
	// key the dropped task took is free again; one the stored task holds
	// stays taken.
	Duplicate bool
	// RunAt is when a delayed task becomes due; zero for other tasks.
	RunAt time.Time
}

// EnqueueOption changes how one task is enqueued.
type EnqueueOption interface {
	applyEnqueue(*enqueueOptions)
}

type enqueueOptions struct {
	at         time.Time
	keepResult bool // see KeepResult
}

type enqueueFunc func(*enqueueOptions)

func (f enqueueFunc) applyEnqueue(o *enqueueOptions) { f(o) }

// Delay makes the task due d from now. Zero or negative means now.
func Delay(d time.Duration) EnqueueOption {
	return enqueueFunc(func(o *enqueueOptions) {
		if d > 0 {
			o.at = time.Now().Add(d)
		}
	})
}

// At makes the task due at t. A time in the past means now.
func At(t time.Time) EnqueueOption {
	return enqueueFunc(func(o *enqueueOptions) {
		if time.Until(t) > 0 {
			o.at = t
		}
	})
}

// NewProducer returns a Producer for the queue chosen with [WithQueue]. It
// creates the queue's streams and bucket if they do not exist yet; ctx
// bounds that. It returns an error wrapping [ErrInvalidOption] or
// [ErrInvalidQueue] for bad options or a nil js,
// [taskpool.ErrNilContext] for a nil ctx, or the server's error.
func NewProducer(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Producer, error) {
	if err := checkCtx(ctx, "NewProducer"); err != nil {
		return nil, err
	}
	cfg, q, err := openQueue(ctx, js, opts, forProducer)
	if err != nil {
		return nil, err
	}
	return &Producer{cfg: cfg, q: q}, nil
}

// Enqueue stores t on the queue and returns once the server has confirmed
// it, so that a nil error means the task will run at least once. An empty
// t.ID is replaced by a generated one. The ID is the message's Nats-Msg-Id:
// enqueueing the same ID again within the duplicate window stores nothing
// and returns a Receipt with Duplicate set. So that they come back as
// they were sent, the ID, type and unique key must be valid UTF-8, an ID
// must hold no control character and not begin or end with a space, an
// ID or unique key must be at most [taskpool.MaxIDLength] bytes (a longer
// one, in a subject, could make the server close the connection), and
// metadata must travel as headers ([MetadataHeaderPrefix]): Enqueue
// refuses others with [taskpool.ErrInvalidTask], as the in-process Submit
// does (see [taskpool.Task.Validate]).
//
// A t.Attempt above 1 counts as in process: the first delivery runs as
// that attempt, and the runs before count against the retries (it is sent
// as [HeaderFirstAttempt]; the payload does not carry it).
//
// t.Priority picks the priority subject (any value below zero is low and
// any above is high, and the task is sent with -1, 0 or 1, so that
// handlers, hooks, dead letters and listings see one of the three, as in
// process), t.UniqueKey makes the task unique
// across all producers until it has completed or been dead-lettered, and
// [Delay] or [At] make it due later (a server-side schedule on
// nats-server 2.12+, see [WithClientSideDelays]). A delayed task may have
// the ID of a periodic schedule ([Producer.Schedule]): they are two
// namespaces, as in process, and neither replaces the other.
//
// Enqueue returns an error wrapping [taskpool.ErrInvalidType] for an empty
// type, [taskpool.ErrInvalidTask] for a task [taskpool.Task.Validate]
// refuses (a negative Attempt or MaxAttempts, and the strings above, as
// the in-process Submit), [ErrBadParams] for params the codec cannot
// encode, [ErrDuplicateTask] when another task holds t.UniqueKey,
// [taskpool.ErrNilContext] for a nil ctx (before anything else: no
// middleware runs), and an [*EnqueueError] when the task was not stored
// or not confirmed.
//
// Enqueue retries what may go away by itself (no answer in time, no
// stream leader during an election, the connection down) with the same
// message ID, so the server stores the task once, until ctx ends: give it
// a context with the deadline the caller can wait. If ctx ends first, the
// error wraps [ErrNotConfirmed]: the task may have been stored, and
// enqueueing it again with the same ID later is safe. A task too large
// for the server ([ErrMaxPayload]) or refused by it ([ErrRejected]) is
// returned at once: it was not stored, and sending it again would fail the
// same way. Receipt.Duplicate reports a task the server already had before
// this call; a retry that the server dropped as a duplicate of this call's
// own unconfirmed attempt is reported as stored.
func (p *Producer) Enqueue(ctx context.Context, t taskpool.Task, opts ...EnqueueOption) (Receipt, error) {
	if err := checkCtx(ctx, "Producer.Enqueue"); err != nil {
		return Receipt{}, err
	}
	var eo enqueueOptions
	for _, o := range opts {
		o.applyEnqueue(&eo)
	}
	if err := p.intercept(ctx, &t); err != nil {
		return Receipt{}, err
	}
	msg, err := p.message(t, eo.at)
	if err != nil {
		return Receipt{}, err
	}
	t.ID = msg.Header.Get(jetstream.MsgIDHeader)
	if eo.keepResult {
		msg.Header.Set(HeaderResult, "1")
	}
	var locked bool
	if t.UniqueKey != "" {
		if locked, err = p.lock(ctx, t); err != nil {
			return Receipt{}, err
		}
	}
	ack, attempts, err := publish(ctx, p.q.js, p.cfg.logger, msg)
	if err != nil {
		if locked && !errors.Is(err, ErrNotConfirmed) {
			// Not stored: the key this call took is free again. When not
			// confirmed, the task may have been stored, and the key
			// stays taken until it completes or the TTL passes; so does
			// one t.ID held already, for a task stored with this ID (or
			// by an unconfirmed call that may have stored it).
			p.unlockDropped(ctx, t)
		}
		return Receipt{}, &EnqueueError{ID: t.ID, Err: err}
	}
	// A retry that the server drops as a duplicate most likely found the
	// unconfirmed first attempt: report it as stored by this call.
	dup := ack.Duplicate && attempts == 1
	if dup && locked {
		p.unlockDropped(ctx, t)
	}
	return Receipt{ID: t.ID, Sequence: ack.Sequence, Duplicate: dup, RunAt: eo.at}, nil
}

// EnqueueBatch stores many tasks with asynchronous publishes, keeping at
// most the publish window ([WithPublishWindow]) unconfirmed at once, and
// returns once every task is confirmed or has failed. It is much faster
// than calling Enqueue in a loop. Receipts are index-aligned with tasks.
//
// Tasks are enqueued as by Enqueue with no options; a task with a
// UniqueKey takes its key with one round trip of its own, and frees it
// again when the task was not stored (refused for good, or dropped as a
// Duplicate), as Enqueue does. When some tasks
// failed, EnqueueBatch returns a [*BatchError] holding each task's error;
// the receipts of the others are valid. Tasks whose publish failed with a
// transient error are re-sent one by one, as Enqueue does, until ctx ends;
// each task's error is classified as Enqueue's ([ErrNotConfirmed],
// [ErrMaxPayload], [ErrRejected]). A nil ctx is refused with an error
// wrapping [taskpool.ErrNilContext] (not a BatchError, and no receipts):
// no task is enqueued.
func (p *Producer) EnqueueBatch(ctx context.Context, tasks []taskpool.Task) ([]Receipt, error) {
	if err := checkCtx(ctx, "Producer.EnqueueBatch"); err != nil {
		return nil, err
	}
	receipts := make([]Receipt, len(tasks))
	errs := make([]error, len(tasks))
	failed := false
	type pending struct {
		i   int
		fut jetstream.PubAckFuture
		msg *nats.Msg
	}
	var retry []pending                   // transient failures, re-sent one by one
	created := make([]string, len(tasks)) // the unique keys lock created
	window := make([]pending, 0, min(len(tasks), p.cfg.publishWindow))
	head := 0
	// unlock frees the key lock created for task i, which was not
	// stored: dropped as a duplicate, or refused for good.
	unlock := func(i int) {
		if created[i] != "" {
			p.unlockDropped(ctx, taskpool.Task{ID: receipts[i].ID, UniqueKey: created[i]})
		}
	}
	wait := func(pd pending) {
		select {
		case ack := <-pd.fut.Ok():
			receipts[pd.i].Sequence, receipts[pd.i].Duplicate = ack.Sequence, ack.Duplicate
			if ack.Duplicate {
				unlock(pd.i)
			}
			return
		case err := <-pd.fut.Err():
			if permanentPublishError(err) == nil && transient(err) {
				retry = append(retry, pd)
				return
			}
			errs[pd.i] = &EnqueueError{ID: receipts[pd.i].ID, Err: publishError(err)}
			unlock(pd.i)
		case <-ctx.Done():
			errs[pd.i] = &EnqueueError{ID: receipts[pd.i].ID, Err: fmt.Errorf("%w: %w", ErrNotConfirmed, ctx.Err())}
		}
		failed = true
	}
	for i, t := range tasks {
		if err := p.intercept(ctx, &t); err != nil {
			errs[i], failed = err, true
			continue
		}
		msg, err := p.message(t, time.Time{})
		if err != nil {
			errs[i], failed = err, true
			continue
		}
		t.ID = msg.Header.Get(jetstream.MsgIDHeader)
		receipts[i].ID = t.ID
		if t.UniqueKey != "" {
			locked, err := p.lock(ctx, t)
			if err != nil {
				errs[i], failed = err, true
				continue
			}
			if locked {
				created[i] = t.UniqueKey
			}
		}
		if len(window)-head >= p.cfg.publishWindow {
			wait(window[head])
			head++
		}
		if head > 0 && head == len(window) {
			window, head = window[:0], 0
		}
		fut, err := p.q.js.PublishMsgAsync(msg)
		if err != nil {
			if permanentPublishError(err) == nil && transient(err) {
				retry = append(retry, pending{i: i, msg: msg})
				continue
			}
			errs[i], failed = &EnqueueError{ID: t.ID, Err: publishError(err)}, true
			unlock(i)
			continue
		}
		window = append(window, pending{i, fut, msg})
	}
	for _, pd := range window[head:] {
		wait(pd)
	}
	for _, pd := range retry {
		// The failed attempt may have been stored: a duplicate here is
		// most likely that attempt, reported as stored by this call.
		ack, _, err := publish(ctx, p.q.js, p.cfg.logger, pd.msg)
		if err != nil {
			errs[pd.i], failed = &EnqueueError{ID: receipts[pd.i].ID, Err: err}, true
			if !errors.Is(err, ErrNotConfirmed) {
				unlock(pd.i) // not stored; unconfirmed, it may have been
			}
			continue
		}
		receipts[pd.i].Sequence = ack.Sequence
	}
	if failed {
		return receipts, &BatchError{Errs: errs}
	}
	return receipts, nil
}

// Schedule registers a periodic task under id: the server emits t on the
// schedule spec, once per tick whatever the number of producers and
// consumers, and keeps doing so across restarts until [Producer.Cancel].
// spec is parsed by the cron sub-module's Parse, which makes the
// in-process scheduler's schedules, so Schedule accepts exactly the specs
// Parse accepts: five fields (minute hour day-of-month month day-of-week),
// one of "@hourly", "@daily" (@midnight), "@weekly", "@monthly",
// "@yearly" (@annually), or "@every <duration>" (one space before the
// duration; sent as written, so that it runs every d on the server as
// taskpool.Every(d) and Parse's schedule run in process; the server runs
// only whole seconds, at least one: it rounds each tick to the second
// before it adds the interval, so "@every 1.5s" would run every 2s and
// "@every 1.4s" every second, and such an interval, which runs in
// process, is refused here with [ErrInvalidOption]), with an optional
// "CRON_TZ=Area/City " or "TZ=Area/City " prefix naming the zone the
// fields are read in ("Local", the zone of the machine that reads it,
// which would be the server's there, is refused with [ErrInvalidOption]).
// Without a prefix the server reads them in UTC (in process, in the
// clock's location). A spec
// Parse refuses (a six-field expression with seconds, a zero or negative
// interval, a zone time.LoadLocation does not know on this machine:
// import time/tzdata where the system has no zone database) is refused
// with an error wrapping [ErrInvalidOption] and cron.ErrInvalidExpr, and
// one with no activation (a date that never comes, such as February
// 30th) with an error wrapping ErrInvalidOption, as the in-process
// SchedulePeriodic refuses it; the server still refuses a spec it cannot
// run. Registering the same id
// with the same spec and task again changes nothing (an @every interval
// keeps running from the first registration), so every instance of a
// service may register its schedules at start-up; registering it with
// another spec or task replaces the schedule. A delayed task with the same
// ID is another namespace, as in process: Schedule leaves it, and it
// leaves the schedule. The one exception is a delayed task enqueued by an
// earlier version of this package, which stored delayed tasks where
// schedules are stored: until it is due or cancelled, Schedule of its ID
// returns an error wrapping [taskpool.ErrDuplicateTask] rather than
// replace it.
//
// Each emitted task gets the ID "<id>@<tick time>" (t.ID is not used, as
// in process), the time the server stored the tick, to the second, in UTC
// as RFC 3339 with nanoseconds: the format the in-process scheduler uses.
// (A schedule registered by an earlier version, which used t.ID when set,
// names its ticks "<t.ID>@<tick time>" until it is registered again; so
// registering it again here replaces it, an @every interval counting from
// then, as it does one whose Timeout a [JSONCodec] payload now also
// carries as timeout_ns.) t.UniqueKey is not supported on periodic
// tasks: Schedule refuses it, as it refuses an empty id or spec, with
// [ErrInvalidOption]. An id that Enqueue would refuse as a task ID (see
// [taskpool.Task.Validate]) or over [taskpool.MaxScheduleIDLength] bytes
// (a tick's ID adds its time to id) is refused with
// [taskpool.ErrInvalidTask], as in process, and so is a t that Enqueue
// would refuse. A schedule an earlier version registered with a longer id
// keeps ticking, and the consumer dead-letters each tick as an invalid
// task: remove it (Cancel, of that version for an id over MaxIDLength)
// and register it under a shorter id. Schedule returns
// [ErrSchedulesUnsupported] when the server cannot run schedules or the
// producer was given [WithClientSideDelays], and an error wrapping
// [taskpool.ErrNilContext] for a nil ctx.
func (p *Producer) Schedule(ctx context.Context, id, spec string, t taskpool.Task) error {
	if err := checkCtx(ctx, "Producer.Schedule"); err != nil {
		return err
	}
	if !p.q.schedules {
		return ErrSchedulesUnsupported
	}
	if id == "" || spec == "" {
		return invalid("schedule", fmt.Sprintf("id %q, spec %q", id, spec))
	}
	if t.UniqueKey != "" {
		return invalid("schedule", "UniqueKey on a periodic task")
	}
	if len(id) > taskpool.MaxScheduleIDLength {
		// A tick's ID adds its time to id (see Consumer): the consumer's
		// scheduler would refuse a longer one, and dead-letter every tick.
		return fmt.Errorf("%w: schedule id of %d bytes, at most %d", taskpool.ErrInvalidTask, len(id), taskpool.MaxScheduleIDLength)
	}
	pattern, zone, err := serverSchedule(spec)
	if err != nil {
		return err
	}
	t.ID = id // the ID of every tick
	// Checked as given, as in process: message checks it again once its
	// Attempt is set for a tick, which would hide a negative one.
	if err := t.Validate(); err != nil {
		return err
	}
	if err := p.intercept(ctx, &t); err != nil {
		return err
	}
	// Every tick is a first run, as every activation is in process.
	t.Attempt = 0
	msg, err := p.message(t, time.Time{})
	if err != nil {
		return err
	}
	msg.Header.Del(jetstream.MsgIDHeader)
	msg.Header.Set(hdrSchedule, pattern)
	if zone != "" {
		msg.Header.Set(hdrScheduleTimeZone, zone)
	}
	msg.Header.Set(hdrScheduleTarget, msg.Subject)
	msg.Subject = p.q.schedSubject(id)
	// Registering an unchanged schedule must change nothing: a new
	// schedule message would restart an @every interval, and instances
	// that restart more often than the interval would keep it from ever
	// running. The publish expects the subject's last sequence read here,
	// so that two processes registering at once cannot both rewrite it.
	for {
		var last uint64
		have, err := request(ctx, p.cfg.logger, "schedule lookup", func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
			return p.q.tasks.GetLastMsgForSubject(ctx, msg.Subject)
		})
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return &EnqueueError{ID: id, Err: err}
		case isDelayed(have.Header.Get(hdrSchedule)):
			// A delayed task stored by an earlier version, on the
			// subject schedules use: a schedule would replace it.
			return fmt.Errorf("%w: schedule %q: a delayed task enqueued by an earlier version has that ID until it is due (%s) or cancelled",
				taskpool.ErrDuplicateTask, id, strings.TrimPrefix(have.Header.Get(hdrSchedule), "@at "))
		case sameSchedule(have, msg):
			return nil
		default:
			last = have.Sequence
		}
		_, _, err = publish(ctx, p.q.js, p.cfg.logger, msg, jetstream.WithExpectLastSequencePerSubject(last))
		if err == nil {
			return nil
		}
		if !isWrongLastSeq(err) {
			return &EnqueueError{ID: id, Err: err}
		}
		// Registered meanwhile by another process: compare again.
	}
}

// serverSchedule turns spec, in the cron sub-module's dialect, into the
// server's schedule pattern and time zone: the server takes six fields
// (seconds first) and the zone as a header, for cron patterns and
// descriptors only. spec is parsed by cron.Parse, so that the producer
// accepts exactly what the in-process scheduler does; what is left here
// is the translation of a valid spec.
func serverSchedule(spec string) (pattern, zone string, err error) {
	sched, err := cron.Parse(spec)
	if err != nil {
		return "", "", fmt.Errorf("%w: schedule: %w", ErrInvalidOption, err)
	}
	if sched.Next(time.Now()).IsZero() {
		// A date that never comes (February 30th): the in-process
		// SchedulePeriodic refuses a schedule with no activation with
		// ErrInvalidOption, where the server would reject the message
		// (ErrRejected). Parse's schedules and the server's cron look as
		// far ahead, five years.
		return "", "", invalid("schedule", fmt.Sprintf("%q: no activation", spec))
	}
	expr := strings.TrimSpace(spec)
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		// Parse checked that a zone and a space follow the "=".
		_, rest, _ := strings.Cut(expr, "=")
		zone, expr, _ = strings.Cut(rest, " ")
		expr = strings.TrimSpace(expr)
		if zone == "Local" {
			// time.LoadLocation's name for the zone of the machine that
			// reads it: the server would run the schedule in its own
			// zone, not in the producer's, as the in-process scheduler
			// does.
			return "", "", invalid("schedule", fmt.Sprintf("%q: zone Local would be the server's there, not this machine's; name the zone", spec))
		}
	}
	switch {
	case strings.HasPrefix(expr, "@every "):
		// Sent as written: the server runs a whole number of seconds as
		// Every(d) runs in process. It runs no other: it refuses an
		// interval under a second as a rejected message, and it counts
		// each tick from the last one rounded to the second (next =
		// round(last) + d), so a fraction would change the pace: 1.5s
		// runs every 2s, 1.4s every second.
		if d, _ := time.ParseDuration(expr[len("@every "):]); d < time.Second || d%time.Second != 0 {
			return "", "", invalid("schedule", fmt.Sprintf("%q: interval %v; the server runs only whole seconds, at least one", spec, d))
		}
		// An interval is the same in every zone; the server takes none.
		return expr, "", nil
	case strings.HasPrefix(expr, "@"):
		return expr, zone, nil
	}
	return "0 " + strings.Join(strings.Fields(expr), " "), zone, nil
}

// sameSchedule reports whether the stored schedule message have is msg:
// same payload and same headers, except Nats-* headers that the publish
// or the server add (Nats-Expected-*, Nats-Rollup).
func sameSchedule(have *jetstream.RawStreamMsg, msg *nats.Msg) bool {
	if !bytes.Equal(have.Data, msg.Data) {
		return false
	}
	for k, v := range msg.Header {
		if !slices.Equal(v, have.Header.Values(k)) {
			return false
		}
	}
	for k := range have.Header {
		if _, ok := msg.Header[k]; !ok && !strings.HasPrefix(k, "Nats-") {
			return false
		}
	}
	return true
}

// Cancel removes what is scheduled under id and has not run: a delayed
// task that is not yet due, a periodic schedule, or both. Delayed tasks
// and periodic schedules are two namespaces, as in process: an ID may name
// one of each, and Cancel removes both. (The [Client] takes one kind, as
// the in-process scheduler does: its Cancel removes only a delayed task,
// its Unschedule only a periodic schedule.) It returns [ErrNotFound] when
// nothing is scheduled under id (a delayed task that has become due is an
// ordinary queued task and can no longer be cancelled; an id over
// [taskpool.MaxIDLength] bytes, which this version stores nothing under:
// a delayed task or schedule an earlier version stored under a longer one
// is left, for that version's Cancel or a purge of its subject), and
// [ErrSchedulesUnsupported] when delays use the client-side fallback,
// whose delayed tasks cannot be cancelled. A nil ctx is refused with an
// error wrapping [taskpool.ErrNilContext], and nothing is removed. As in
// process, a cancelled delayed task frees its unique key when Cancel
// returns nil, and one enqueued with [KeepResult] gets its outcome: an
// error wrapping [taskpool.ErrCanceled], with no attempt, which
// [Producer.WaitResult] returns.
func (p *Producer) Cancel(ctx context.Context, id string) error {
	if err := checkCtx(ctx, "Producer.Cancel"); err != nil {
		return err
	}
	return p.cancel(ctx, id, anyKind)
}

// scheduleKind says which kind of stored schedule cancel removes.
type scheduleKind uint8

const (
	anyKind      scheduleKind = iota // both: Producer.Cancel
	delayedKind                      // a delayed task not due yet: Client.Cancel
	periodicKind                     // a periodic schedule: Client.Unschedule
)

// cancel is Cancel of what is scheduled under id of kind want.
func (p *Producer) cancel(ctx context.Context, id string, want scheduleKind) error {
	if !p.q.schedules {
		return ErrSchedulesUnsupported
	}
	if len(id) > taskpool.MaxIDLength {
		// Refused at Enqueue and Schedule: nothing is stored under it.
		return fmt.Errorf("%w: %d-byte id", ErrNotFound, len(id))
	}
	removed := false
	if want != periodicKind {
		ok, _, err := p.remove(ctx, id, p.q.delaySubject(id), delayedKind)
		if err != nil || ok && want == delayedKind {
			return err
		}
		removed = ok
	}
	// The schedule subject holds a periodic schedule, or a delayed task
	// enqueued by an earlier version.
	ok, other, err := p.remove(ctx, id, p.q.schedSubject(id), want)
	switch {
	case err != nil:
		return err
	case ok || removed:
		return nil
	case other && want == delayedKind:
		return fmt.Errorf("%w: no delayed task %q (a periodic schedule has that ID: Unschedule removes it)", ErrNotFound, id)
	case other && want == periodicKind:
		return fmt.Errorf("%w: no periodic schedule %q (a delayed task has that ID: Cancel removes it)", ErrNotFound, id)
	}
	return fmt.Errorf("%w: nothing scheduled as %q", ErrNotFound, id)
}

// remove deletes the schedule stored on subj, the subject of id, if it is
// of kind want. It reports whether it removed one, and whether one of the
// other kind is stored there (and left).
func (p *Producer) remove(ctx context.Context, id, subj string, want scheduleKind) (removed, other bool, err error) {
	raw, err := p.q.tasks.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("natsbroker: cancel %s: %w", id, err)
	}
	// A delayed task is a one-shot "@at" schedule; anything else stored
	// under a schedule subject is a periodic schedule.
	delayed := isDelayed(raw.Header.Get(hdrSchedule))
	if want == delayedKind && !delayed || want == periodicKind && delayed {
		return false, true, nil
	}
	// Delete the very message read, so that a task that became due
	// meanwhile (the server removed its schedule) is not reported
	// cancelled, its key freed while it is queued.
	if err := p.q.tasks.DeleteMsg(ctx, raw.Sequence); err != nil {
		if _, gerr := p.q.tasks.GetMsg(ctx, raw.Sequence); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return false, false, nil
		}
		return false, false, fmt.Errorf("natsbroker: cancel %s: %w", id, err)
	}
	// Any older message of the subject, should one be left (the server
	// rolls a schedule's subject up to its last message): none is left
	// scheduled. Only older ones: a message stored since the read (a
	// delayed task enqueued again, or a schedule registered on the
	// subject of an earlier version's delayed task, which the delete has
	// just made free) is not this Cancel's to remove.
	if err := p.q.tasks.Purge(ctx, jetstream.WithPurgeSubject(subj), jetstream.WithPurgeSequence(raw.Sequence)); err != nil {
		return true, false, fmt.Errorf("natsbroker: cancel %s: %w", id, err)
	}
	if !delayed {
		return true, false, nil // a periodic schedule: no key, no outcome
	}
	t, err := p.cfg.codec.Decode(raw.Data)
	if err != nil {
		return true, false, nil // not a task this producer can read: nothing it holds
	}
	if raw.Header.Get(HeaderResult) != "" {
		rec := resultRecord{V: resultVersion, Error: encodeError(taskpool.ErrCanceled)}
		if err := p.q.putResult(ctx, p.cfg.logger, t.ID, rec); err != nil {
			return true, false, fmt.Errorf("natsbroker: cancel %s: cancelled, outcome not stored: %w", id, err)
		}
	}
	if t.UniqueKey != "" {
		if err := p.q.releaseUnique(ctx, t.UniqueKey, t.ID); err != nil {
			return true, false, fmt.Errorf("natsbroker: cancel %s: cancelled, %w", id, err)
		}
	}
	return true, false, nil
}

// encode encodes t with codec. A codec that panics (params whose
// MarshalJSON panics, say) gives an error wrapping ErrBadParams and the
// [*taskpool.PanicError], as the in-process scheduler's WithStrictCodec
// does, not a panic in the caller's Enqueue.
func encode(codec Codec, t taskpool.Task) (data []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			data, err = nil, fmt.Errorf("%w: task %s: the codec's Encode panicked: %w", ErrBadParams, t.Type, panicError(v))
		}
	}()
	return codec.Encode(t)
}

// message builds the message for t, due at at (zero for now).
func (p *Producer) message(t taskpool.Task, at time.Time) (*nats.Msg, error) {
	// The core's rules, which the in-process Submit applies too: the ID
	// travels as the Nats-Msg-Id header and the metadata as headers, which
	// would bring some strings back changed (" a" and "a" would be one
	// task to the duplicate window), and the envelope is JSON, which would
	// carry strings that are not UTF-8 with U+FFFD in place of the invalid
	// bytes (the consumer would see another type, ID and key than the
	// message ID and the key taken here, which it would never release).
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if p.cfg.known != nil && !p.cfg.known(t.Type) {
		return nil, fmt.Errorf("%w: %q", taskpool.ErrNoHandler, t.Type)
	}
	if t.ID == "" {
		t.ID = nuid.Next()
	}
	// The priority of the subject, as in process, where admit stores the
	// lane's: handlers, hooks, dead letters and listings see one of the
	// three, whatever the value submitted.
	prio := prioIndex(t.Priority)
	t.Priority = prioValues[prio]
	data, err := encode(p.cfg.codec, t)
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{
		Subject: p.q.task[prio],
		Data:    data,
		Header:  make(nats.Header, 1+len(t.Metadata)),
	}
	msg.Header.Set(jetstream.MsgIDHeader, t.ID)
	if t.Attempt > 1 {
		// The codec does not carry Attempt: the consumer counts the
		// deliveries from it.
		msg.Header.Set(HeaderFirstAttempt, strconv.Itoa(t.Attempt))
	}
	setMetadata(msg.Header, t)
	if !at.IsZero() {
		if p.q.schedules {
			// A one-shot server-side schedule: the server publishes the
			// message to the task subject at the given time and purges the
			// schedule. The subject is per task ID, so a re-sent enqueue
			// replaces rather than doubles it, and not a periodic
			// schedule's, which a delayed task with its ID would replace.
			msg.Header.Set(hdrSchedule, "@at "+formatTime(at))
			msg.Header.Set(hdrScheduleTarget, msg.Subject)
			msg.Subject = p.q.delaySubject(t.ID)
		} else {
			msg.Header.Set(HeaderNotBefore, formatTime(at))
		}
	}
	return msg, nil
}

// lock takes t's unique key for t.ID, and reports whether this call
// created it. Taking a key that t.ID already holds succeeds, so that a
// re-sent enqueue is not refused.
func (p *Producer) lock(ctx context.Context, t taskpool.Task) (created bool, err error) {
	key := uniqueKey(t.UniqueKey)
	_, err = request(ctx, p.cfg.logger, "unique key create", func(ctx context.Context) (uint64, error) {
		return p.q.unique.Create(ctx, key, []byte(t.ID))
	})
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		if transient(err) || ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", ErrNotConfirmed, err)
		}
		return false, &EnqueueError{ID: t.ID, Err: fmt.Errorf("unique key %q: %w", t.UniqueKey, err)}
	}
	e, gerr := request(ctx, p.cfg.logger, "unique key get", func(ctx context.Context) (jetstream.KeyValueEntry, error) {
		return p.q.unique.Get(ctx, key)
	})
	if gerr == nil && string(e.Value()) == t.ID {
		return false, nil
	}
	return false, fmt.Errorf("%w: %q", ErrDuplicateTask, t.UniqueKey)
}

// unlockDropped frees the unique key that lock created for t, which the
// server then did not store: dropped as a duplicate of a task stored
// before, or refused for good. No run of t will release it, and a stored
// task with its ID, which had not held the key (lock would not have
// created it), will not either. A key lock found held by t.ID is the
// stored task's, and stays.
func (p *Producer) unlockDropped(ctx context.Context, t taskpool.Task) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startupTimeout)
	_ = p.q.releaseUnique(rctx, t.UniqueKey, t.ID)
	cancel()
}

// publishError classifies an asynchronous publish's error that is not
// retried.
func publishError(err error) error {
	if perm := permanentPublishError(err); perm != nil {
		return perm
	}
	return err
}

// intercept runs the enqueue middleware ([WithEnqueueMiddleware]) on t, in
// the order given.
func (p *Producer) intercept(ctx context.Context, t *taskpool.Task) error {
	if len(p.cfg.enqueueMW) == 0 {
		return nil
	}
	t.Metadata = maps.Clone(t.Metadata) // the caller's map is not written
	for _, mw := range p.cfg.enqueueMW {
		if err := mw(ctx, t); err != nil {
			return fmt.Errorf("natsbroker: enqueue middleware: task %s: %w", t.Type, err)
		}
	}
	return nil
}
