package natsbroker

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/taskpool/taskpool"
)

// Inspector reads a queue's state and manages its dead letters. It is safe
// for concurrent use and holds no goroutines.
type Inspector struct {
	cfg config
	q   *queue
}

// QueueInfo is a snapshot of a queue, read from the server.
type QueueInfo struct {
	// Queue is the queue's name.
	Queue string
	// Priorities has one entry per priority: high, default, low.
	Priorities []PriorityInfo
	// Scheduled counts the schedules the server holds: periodic
	// schedules, and delayed tasks not yet due. A task delayed on the
	// client side ([WithClientSideDelays], or a server without message
	// schedules) is not among them: it is stored as a queued task,
	// counted in its priority's Pending until a consumer first puts it
	// back, then in its InFlight, until it runs.
	Scheduled uint64
	// DeadLetters counts messages in the dead-letter stream.
	DeadLetters uint64
}

// PriorityInfo describes the tasks of one priority.
type PriorityInfo struct {
	Priority taskpool.Priority
	// Pending counts tasks not delivered yet; tasks delayed on the
	// client side among them, due or not, until a consumer first puts
	// them back.
	Pending uint64
	// InFlight counts tasks delivered and not settled for good: held or
	// running, and those a consumer put back for a retry or a client-side
	// delay, which the server counts as delivered until their delay ends.
	InFlight int
	// Redelivered counts in-flight tasks delivered more than once.
	Redelivered int
	// Waiting counts workers' fetch requests waiting for tasks.
	Waiting int
	// Delivered counts deliveries to workers, redeliveries included,
	// since the priority's consumer was created: its growth is the
	// queue's throughput.
	Delivered uint64
}

// DeadLetter is a task that failed for good, or a message that could not
// be decoded, as kept in the dead-letter stream.
type DeadLetter struct {
	// Sequence identifies the dead letter in the dead-letter stream.
	Sequence uint64
	// Task is the decoded task; zero when DecodeErr is set. Its ID is
	// the one the task ran under: for a tick of a periodic schedule,
	// "<id>@<tick time>" (see [Producer.Schedule]), which Resubmit keeps.
	Task taskpool.Task
	// DecodeErr is the codec's error for a payload that is not a task.
	DecodeErr error
	// Error is the task's last error.
	Error string
	// Attempts is the attempt number of the last delivery: the delivery
	// count, counted from the Attempt the task was enqueued with.
	Attempts int
	// FailedAt is when the task was dead-lettered.
	FailedAt time.Time
	// Subject is the subject the task was delivered on.
	Subject string
	// Header holds the original headers but the server's Nats-* ones,
	// and the Taskpool-* dead-letter headers. Its Nats-Msg-Id is
	// "dead-<HeaderSequence>", not the task ID, so that a dead-lettering
	// repeated after a crash stores one dead letter.
	Header nats.Header
	// Data is the original payload.
	Data []byte
}

// NewInspector returns an Inspector for the queue chosen with [WithQueue],
// creating the queue if it does not exist; ctx bounds that. It returns an
// error wrapping [ErrInvalidOption] or [ErrInvalidQueue] for bad options
// or a nil js, [taskpool.ErrNilContext] for a nil ctx, or the server's
// error.
func NewInspector(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Inspector, error) {
	if err := checkCtx(ctx, "NewInspector"); err != nil {
		return nil, err
	}
	cfg, q, err := openQueue(ctx, js, opts, forInspector)
	if err != nil {
		return nil, err
	}
	return &Inspector{cfg: cfg, q: q}, nil
}

// Queue returns the queue's depths and counts.
func (i *Inspector) Queue(ctx context.Context) (QueueInfo, error) {
	if err := checkCtx(ctx, "Inspector.Queue"); err != nil {
		return QueueInfo{}, err
	}
	info := QueueInfo{Queue: i.cfg.queue}
	// Count per literal subject: a wildcard filter would list every
	// schedule subject (one per delayed task) in the reply.
	st, err := i.q.tasks.Info(ctx)
	if err != nil {
		return info, fmt.Errorf("natsbroker: queue %s: %w", i.cfg.queue, err)
	}
	var stored [numPriorities]uint64
	info.Scheduled = st.State.Msgs
	for p := range stored {
		ps, err := i.q.tasks.Info(ctx, jetstream.WithSubjectFilter(i.q.task[p]))
		if err != nil {
			return info, fmt.Errorf("natsbroker: queue %s: %w", i.cfg.queue, err)
		}
		stored[p] = ps.State.Subjects[i.q.task[p]]
		info.Scheduled -= min(info.Scheduled, stored[p])
	}
	for p, prio := range []taskpool.Priority{taskpool.PriorityHigh, taskpool.PriorityDefault, taskpool.PriorityLow} {
		pi := PriorityInfo{Priority: prio}
		ci, err := i.q.js.Consumer(ctx, i.q.stream, i.q.consumer[p])
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			// No worker has started yet: everything stored is pending.
			pi.Pending = stored[p]
		case err != nil:
			return info, fmt.Errorf("natsbroker: queue %s: %w", i.cfg.queue, err)
		default:
			c, err := ci.Info(ctx)
			if err != nil {
				return info, fmt.Errorf("natsbroker: queue %s: %w", i.cfg.queue, err)
			}
			pi.Pending = c.NumPending
			pi.InFlight = c.NumAckPending
			pi.Redelivered = c.NumRedelivered
			pi.Waiting = c.NumWaiting
			pi.Delivered = c.Delivered.Consumer
			// Tasks put back with a delay are neither pending nor ack
			// pending in the consumer's counts; the stream still holds
			// them. Count them as pending.
			if stored[p] > c.NumPending+uint64(c.NumAckPending) {
				pi.Pending = stored[p] - uint64(c.NumAckPending)
			}
		}
		info.Priorities = append(info.Priorities, pi)
	}
	dl, err := i.q.dlq.Info(ctx)
	if err != nil {
		return info, fmt.Errorf("natsbroker: dead letters %s: %w", i.cfg.queue, err)
	}
	info.DeadLetters = dl.State.Msgs
	return info, nil
}

// DeadLetters returns up to limit dead letters with a sequence greater than
// after, oldest first. Pass the last Sequence seen as after to page.
func (i *Inspector) DeadLetters(ctx context.Context, after uint64, limit int) ([]DeadLetter, error) {
	if err := checkCtx(ctx, "Inspector.DeadLetters"); err != nil {
		return nil, err
	}
	st, err := i.q.dlq.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: dead letters %s: %w", i.cfg.queue, err)
	}
	var out []DeadLetter
	for seq := max(after+1, st.State.FirstSeq); seq <= st.State.LastSeq && len(out) < limit; seq++ {
		dl, err := i.deadLetter(ctx, seq)
		if errors.Is(err, ErrNotFound) {
			continue // deleted
		}
		if err != nil {
			return out, err
		}
		out = append(out, dl)
	}
	return out, nil
}

// Resubmit puts dead letter seq back on the queue, on the subject it was
// delivered on, as a new delivery with a fresh attempt count, and deletes
// the dead letter. The task keeps its ID (DeadLetter.Task.ID), a
// periodic schedule's tick included. Resubmitting the same dead letter
// twice within the duplicate window stores it once. A unique key released
// when the task was dead-lettered is not taken again. For a task enqueued
// with [KeepResult], Resubmit deletes its stored dead-lettered outcome
// once the server has confirmed the task published, so that
// [Producer.WaitResult] called after Resubmit returns waits for the new
// run's. A Resubmit whose publish fails leaves that outcome, as it leaves
// the dead letter: when the publish was not confirmed ([ErrNotConfirmed])
// the task may not have been stored, and then no run would store
// another; if it was, its run's outcome replaces it, and Resubmit again
// (a duplicate) keeps that. One that fails after its publish was
// confirmed (the outcome or the dead letter not deleted) may have cleared
// the outcome: the task is stored, and its run stores the next. It
// returns [ErrNotFound] for an unknown seq, [ErrPayloadDropped] for a
// dead letter stored without its payload (see [HeaderDropped]), and an
// error wrapping [taskpool.ErrNilContext] for a nil ctx.
func (i *Inspector) Resubmit(ctx context.Context, seq uint64) (Receipt, error) {
	if err := checkCtx(ctx, "Inspector.Resubmit"); err != nil {
		return Receipt{}, err
	}
	dl, err := i.deadLetter(ctx, seq)
	if err != nil {
		return Receipt{}, err
	}
	if dl.Header.Get(HeaderDropped) != "" {
		return Receipt{}, fmt.Errorf("%w: dead letter %d has no payload (%s)", ErrPayloadDropped, seq, dl.Header.Get(HeaderDropped))
	}
	subj := dl.Subject
	if !strings.HasPrefix(subj, "taskpool."+i.cfg.queue+".task.") {
		subj = i.q.task[prioDefault]
	}
	data := dl.Data
	if dl.DecodeErr == nil {
		if t, err := i.cfg.codec.Decode(data); err == nil && t.ID != dl.Task.ID {
			// A periodic schedule's tick: the payload holds the
			// schedule's task ID, and the consumer named the tick from
			// the server's schedule header and the time the server
			// stored it, which a resubmitted message has neither of.
			// Send the tick's ID in the payload so that it runs, and
			// stores any outcome, as the tick it was.
			t.ID = dl.Task.ID
			if data, err = i.cfg.codec.Encode(t); err != nil {
				return Receipt{}, &EnqueueError{ID: dl.Task.ID, Err: err}
			}
		}
	}
	msg := &nats.Msg{Subject: subj, Data: data, Header: make(nats.Header)}
	for k, v := range dl.Header {
		if strings.HasPrefix(k, "Nats-") || isDeadHeader(k) || k == HeaderFirstAttempt {
			// HeaderFirstAttempt too: the attempts count from 1 again,
			// as a Requeue's do in process.
			continue
		}
		msg.Header[k] = v
	}
	msg.Header.Set(jetstream.MsgIDHeader, "resubmit-"+i.cfg.queue+"-"+strconv.FormatUint(seq, 10))
	// A task enqueued with KeepResult has its dead-lettered outcome
	// stored: it is deleted after the publish, or WaitResult would return
	// it rather than wait for the new run. Read before the publish, so
	// that an outcome stored after it, by the new run, is never the one
	// deleted, whatever version of the consumer stored it (an earlier
	// one stores no sequence; the delete expects the revision read here).
	var stored jetstream.KeyValueEntry
	// Nothing is stored for an ID over MaxIDLength (an earlier version's
	// producer's; see storeResult), whose key could make the server close
	// the connection.
	if dl.Task.ID != "" && len(dl.Task.ID) <= taskpool.MaxIDLength && msg.Header.Get(HeaderResult) != "" {
		if stored, err = i.q.storedResult(ctx, i.cfg.logger, dl.Task.ID); err != nil {
			return Receipt{}, &EnqueueError{ID: dl.Task.ID, Err: fmt.Errorf("stored outcome not read: %w", err)}
		}
	}
	ack, _, err := publish(ctx, i.q.js, i.cfg.logger, msg)
	if err != nil {
		// The dead-lettered outcome is kept, as the dead letter is:
		// the task may not have been stored, and then no run would
		// store another. Stored but unconfirmed, its run overwrites it.
		return Receipt{}, &EnqueueError{ID: dl.Task.ID, Err: err}
	}
	// Deleted after the publish, so that a publish that fails, or is
	// never confirmed, leaves it; and only an outcome of a message older
	// than the one published (a repeated Resubmit's ack is that of the
	// first one's message), so that the outcome of the run an earlier
	// Resubmit of this dead letter started is kept.
	if stored != nil {
		if err := i.q.clearResult(ctx, i.cfg.logger, stored, ack.Sequence); err != nil {
			return Receipt{}, &EnqueueError{ID: dl.Task.ID, Err: fmt.Errorf("resubmitted, stored outcome not cleared: %w", err)}
		}
	}
	if err := i.q.dlq.DeleteMsg(ctx, seq); err != nil && !i.missing(ctx, seq) {
		return Receipt{}, fmt.Errorf("natsbroker: resubmitted dead letter %d not deleted: %w", seq, err)
	}
	return Receipt{ID: dl.Task.ID, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// DeleteDeadLetter deletes dead letter seq. It returns [ErrNotFound] for
// an unknown seq, and an error wrapping [taskpool.ErrNilContext] for a
// nil ctx.
func (i *Inspector) DeleteDeadLetter(ctx context.Context, seq uint64) error {
	if err := checkCtx(ctx, "Inspector.DeleteDeadLetter"); err != nil {
		return err
	}
	err := i.q.dlq.DeleteMsg(ctx, seq)
	if err != nil && i.missing(ctx, seq) {
		return fmt.Errorf("%w: dead letter %d", ErrNotFound, seq)
	}
	if err != nil {
		return fmt.Errorf("natsbroker: delete dead letter %d: %w", seq, err)
	}
	return nil
}

// PurgeDeadLetters deletes every dead letter and returns how many there
// were.
func (i *Inspector) PurgeDeadLetters(ctx context.Context) (uint64, error) {
	if err := checkCtx(ctx, "Inspector.PurgeDeadLetters"); err != nil {
		return 0, err
	}
	st, err := i.q.dlq.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("natsbroker: purge dead letters: %w", err)
	}
	if err := i.q.dlq.Purge(ctx); err != nil {
		return 0, fmt.Errorf("natsbroker: purge dead letters: %w", err)
	}
	return st.State.Msgs, nil
}

func (i *Inspector) deadLetter(ctx context.Context, seq uint64) (DeadLetter, error) {
	raw, err := i.q.dlq.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, fmt.Errorf("%w: dead letter %d", ErrNotFound, seq)
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("natsbroker: dead letter %d: %w", seq, err)
	}
	dl := DeadLetter{
		Sequence: raw.Sequence,
		Error:    raw.Header.Get(HeaderError),
		Subject:  raw.Header.Get(HeaderSubject),
		Header:   raw.Header,
		Data:     raw.Data,
	}
	dl.Attempts, _ = strconv.Atoi(raw.Header.Get(HeaderAttempts))
	dl.FailedAt, _ = time.Parse(time.RFC3339Nano, raw.Header.Get(HeaderFailedAt))
	dl.Task, dl.DecodeErr = i.cfg.codec.Decode(raw.Data)
	if dl.DecodeErr == nil {
		dl.Task.Metadata = metadataOf(raw.Header)
		if id := raw.Header.Get(HeaderTaskID); strings.HasPrefix(id, dl.Task.ID+"@") {
			// A periodic schedule's tick, which ran as "<id>@<tick
			// time>" (see Consumer.dispatch); its payload has the
			// schedule's task ID.
			dl.Task.ID = id
		}
	}
	return dl, nil
}

// missing reports whether dead letter seq is known not to exist; the
// server answers a delete of a missing message with a generic error.
func (i *Inspector) missing(ctx context.Context, seq uint64) bool {
	_, err := i.q.dlq.GetMsg(ctx, seq)
	return errors.Is(err, jetstream.ErrMsgNotFound)
}

func isDeadHeader(k string) bool {
	switch k {
	case HeaderError, HeaderAttempts, HeaderFailedAt, HeaderSubject, HeaderSequence, HeaderTaskID, HeaderDropped:
		return true
	}
	return false
}

// GlobalSlot is a global concurrency slot held by a task of a type with a
// [WithGlobalLimit]: the task runs, or is about to.
type GlobalSlot struct {
	// Type is the task type, Slot the slot's number (0 to the limit - 1).
	Type string
	Slot int
	// TaskID is the task holding the slot, Holder the connection name of
	// its consumer process (see [ConnectionName]).
	TaskID string
	Holder string
	// Renewed is when the lease was taken or last renewed: it expires
	// a TTL (the bucket's) after that unless renewed again.
	Renewed time.Time
}

// GlobalSlots lists the global concurrency slots held now, by type and
// slot. A queue that no consumer with a global limit has opened has none.
func (i *Inspector) GlobalSlots(ctx context.Context) ([]GlobalSlot, error) {
	if err := checkCtx(ctx, "Inspector.GlobalSlots"); err != nil {
		return nil, err
	}
	kv, err := i.q.js.KeyValue(ctx, i.q.slotsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("natsbroker: global slots %s: %w", i.cfg.queue, err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: global slots %s: %w", i.cfg.queue, err)
	}
	var out []GlobalSlot
	for k := range keys.Keys() {
		typ, slot, ok := parseSlotKey(k)
		if !ok {
			continue // not ours
		}
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // given back meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("natsbroker: global slots %s: %w", i.cfg.queue, err)
		}
		var h slotHolder
		_ = json.Unmarshal(e.Value(), &h) // a foreign value: holder unknown
		out = append(out, GlobalSlot{Type: typ, Slot: slot, TaskID: h.Task, Holder: h.Holder, Renewed: e.Created()})
	}
	slices.SortFunc(out, func(a, b GlobalSlot) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Slot, b.Slot))
	})
	return out, nil
}

// parseSlotKey splits a slot key, <type in base64url>.<slot>.
func parseSlotKey(k string) (typ string, slot int, ok bool) {
	t, s, found := strings.Cut(k, ".")
	if !found {
		return "", 0, false
	}
	b, err := base64.RawURLEncoding.DecodeString(t)
	n, err2 := strconv.Atoi(s)
	if err != nil || err2 != nil || n < 0 {
		return "", 0, false
	}
	return string(b), n, true
}
