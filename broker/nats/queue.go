package natsbroker

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/taskpool/taskpool"
)

// Message headers written by the package. Nats-Msg-Id carries the task ID.
const (
	// HeaderNotBefore holds the earliest run time (RFC 3339, nanoseconds)
	// of a task delayed by the client-side fallback.
	HeaderNotBefore = "Taskpool-Not-Before"
	// HeaderFirstAttempt holds the Attempt a task was enqueued with, when
	// above 1 (a decimal number): its first delivery is that attempt, and
	// each redelivery one more, as the in-process scheduler counts the
	// runs of a task submitted with an Attempt. A consumer ignores a value
	// that is not a number above 1.
	HeaderFirstAttempt = "Taskpool-First-Attempt"
	// HeaderError is a dead letter's error message.
	HeaderError = "Taskpool-Error"
	// HeaderAttempts is a dead letter's attempt number: its delivery
	// count, counted from HeaderFirstAttempt.
	HeaderAttempts = "Taskpool-Attempts"
	// HeaderFailedAt is when a task was dead-lettered (RFC 3339).
	HeaderFailedAt = "Taskpool-Failed-At"
	// HeaderSubject is the subject a dead letter was delivered on.
	HeaderSubject = "Taskpool-Subject"
	// HeaderSequence is a dead letter's sequence in the task stream.
	HeaderSequence = "Taskpool-Sequence"
	// HeaderTaskID is a dead letter's task ID, when it could be decoded.
	HeaderTaskID = "Taskpool-Task-Id"
	// HeaderDropped is set on a dead letter stored without the original
	// payload and headers, because the copy with the dead-letter headers
	// was larger than the server's max payload; it gives their sizes.
	// HeaderSequence and HeaderTaskID still identify the task.
	HeaderDropped = "Taskpool-Dropped"

	hdrSchedule         = "Nats-Schedule"
	hdrScheduleTarget   = "Nats-Schedule-Target"
	hdrScheduleTimeZone = "Nats-Schedule-Time-Zone"
	hdrScheduler        = "Nats-Scheduler"
	hdrScheduleNext     = "Nats-Schedule-Next"
)

// Action is what a consumer did with a delivery once its outcome was known.
type Action int

// Actions.
const (
	// ActionAck acknowledged a task that succeeded: it is gone.
	ActionAck Action = iota + 1
	// ActionRetry put back a task that failed with a retryable error, to
	// be delivered again after its backoff.
	ActionRetry
	// ActionDeadLetter copied the message to the dead-letter stream and
	// terminated it: the task failed for good, or could not be decoded.
	ActionDeadLetter
	// ActionRelease put back a task that did not finish because its
	// consumer was stopping, for immediate redelivery. It is not counted
	// as a failure by the handler's logic, but the delivery count grows.
	ActionRelease
	// ActionDefer put back a task delayed by the client-side fallback that
	// is not due yet.
	ActionDefer
)

// String returns the action's name.
func (a Action) String() string {
	switch a {
	case ActionAck:
		return "ack"
	case ActionRetry:
		return "retry"
	case ActionDeadLetter:
		return "dead-letter"
	case ActionRelease:
		return "release"
	case ActionDefer:
		return "defer"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Priority levels map to separate subjects and consumers.
const (
	prioHigh = iota
	prioDefault
	prioLow
	numPriorities
)

var prioNames = [numPriorities]string{"high", "default", "low"}

// prioValues are the priorities of the subjects.
var prioValues = [numPriorities]taskpool.Priority{taskpool.PriorityHigh, taskpool.PriorityDefault, taskpool.PriorityLow}

func prioIndex(p taskpool.Priority) int {
	switch {
	case p > 0:
		return prioHigh
	case p < 0:
		return prioLow
	}
	return prioDefault
}

// names are the server-side resources of one queue.
type names struct {
	stream      string
	deadStream  string
	bucket      string
	results     string                // bucket
	slotsBucket string                // global limits: concurrency slots
	ratesBucket string                // and rate state
	task        [numPriorities]string // subjects
	consumer    [numPriorities]string
	schedPrefix string // + token: periodic schedules (and delayed tasks of earlier versions)
	delayPrefix string // + token: delayed tasks; under schedPrefix+">"
	dead        string
}

func newNames(queue string) names {
	n := names{
		stream:      "TASKPOOL_" + queue,
		deadStream:  "TASKPOOLDEAD_" + queue,
		bucket:      "taskpool_unique_" + queue,
		results:     "taskpool_results_" + queue,
		slotsBucket: "taskpool_slots_" + queue,
		ratesBucket: "taskpool_rates_" + queue,
		schedPrefix: "taskpool." + queue + ".sched.",
		delayPrefix: "taskpool." + queue + ".sched.at.",
		dead:        "taskpool." + queue + ".dead",
	}
	for i, p := range prioNames {
		n.task[i] = "taskpool." + queue + ".task." + p
		n.consumer[i] = "taskpool_" + p
	}
	return n
}

// schedSubject is the subject holding the periodic schedule id. IDs may
// hold characters that are not valid in a subject token, so the token is
// the ID in unpadded base64url.
//
// Earlier versions stored delayed tasks here too, where a delayed task and
// a schedule with the same ID replaced each other; such a delayed task is
// still found here (its Nats-Schedule is "@at") until it is due.
func (n names) schedSubject(id string) string {
	return n.schedPrefix + base64.RawURLEncoding.EncodeToString([]byte(id))
}

// delaySubject is the subject holding the delayed task id: a namespace of
// its own, as in process, where SubmitAt and SchedulePeriodic never
// replace each other. A base64url token has no '.', so no ID's subject
// here is a schedule's; and it is under the stream's schedPrefix+">", so
// that a queue created by an earlier version needs no change.
func (n names) delaySubject(id string) string {
	return n.delayPrefix + base64.RawURLEncoding.EncodeToString([]byte(id))
}

// isDelayed reports whether the stored schedule message with the
// Nats-Schedule spec is a delayed task: a one-shot "@at" schedule.
func isDelayed(spec string) bool { return strings.HasPrefix(spec, "@at ") }

// uniqueKey is the KV key for a task's UniqueKey; like subjects, KV keys
// allow only some characters.
func uniqueKey(k string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(k))
}

// queue is a provisioned queue: its streams and buckets exist.
type queue struct {
	names
	js        jetstream.JetStream
	tasks     jetstream.Stream // the work-queue stream
	dlq       jetstream.Stream // the dead-letter stream
	unique    jetstream.KeyValue
	results   jetstream.KeyValue // see results.go
	slots     jetstream.KeyValue // global concurrency slots, opened by consumers with global limits
	rates     jetstream.KeyValue // global rate state, likewise
	schedules bool               // the server runs per-message schedules
}

// openQueue validates js and the options and provisions the queue: what
// NewProducer and NewInspector do first.
func openQueue(ctx context.Context, js jetstream.JetStream, opts []Option, who role) (config, *queue, error) {
	if js == nil {
		return config{}, nil, invalid("jetstream", "nil")
	}
	cfg, err := newConfig(opts, who)
	if err != nil {
		return config{}, nil, err
	}
	q, err := provision(ctx, js, &cfg)
	if err != nil {
		return config{}, nil, err
	}
	return cfg, q, nil
}

// provision opens the queue's streams, unique-key and results buckets, creating the
// ones that are missing. Every producer, consumer and inspector calls it,
// and whichever process starts first creates the queue. It never changes
// an existing resource, except with WithReconfigure: a setting given as an
// option that differs from the queue's is ErrQueueMismatch.
func provision(ctx context.Context, js jetstream.JetStream, c *config) (*queue, error) {
	n := newNames(c.queue)
	q := &queue{names: n, js: js}
	want := jetstream.StreamConfig{
		Name:        n.stream,
		Description: "taskpool tasks of queue " + c.queue,
		Subjects:    []string{"taskpool." + c.queue + ".task.*", n.schedPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     c.storage,
		Replicas:    c.replicas,
		Duplicates:  c.dupWindow,
		// Per-message schedules (nats-server 2.12+) run delayed and
		// periodic tasks. Older servers ignore the field; the config they
		// return says so, and delays fall back to the client side.
		AllowMsgSchedules: !c.clientDelays,
		PersistMode:       persistMode(c),
		Placement:         c.placement,
	}
	st, err := ensureStream(ctx, js, c, want, taskSettings, func(have *jetstream.StreamConfig) {
		have.Description, have.Subjects = want.Description, want.Subjects
		if c.has(setAsyncPersist) {
			have.PersistMode = want.PersistMode
		}
	})
	if err != nil {
		return nil, fmt.Errorf("natsbroker: stream %s: %w", n.stream, err)
	}
	q.tasks = st
	q.schedules = !c.clientDelays && st.CachedInfo().Config.AllowMsgSchedules
	dwant := jetstream.StreamConfig{
		Name:        n.deadStream,
		Description: "taskpool dead letters of queue " + c.queue,
		Subjects:    []string{n.dead},
		Retention:   jetstream.LimitsPolicy,
		Storage:     c.storage,
		Replicas:    c.replicas,
		Duplicates:  c.dupWindow,
		Placement:   c.placement,
	}
	deadLimits(c, &dwant)
	q.dlq, err = ensureStream(ctx, js, c, dwant, taskSettings|setDeadLimits, func(have *jetstream.StreamConfig) {
		have.Description, have.Subjects = dwant.Description, dwant.Subjects
	})
	if err != nil {
		return nil, fmt.Errorf("natsbroker: stream %s: %w", n.deadStream, err)
	}
	q.unique, err = ensureBucket(ctx, js, c, setUniqueTTL, jetstream.KeyValueConfig{
		Bucket:      n.bucket,
		Description: "taskpool unique keys of queue " + c.queue,
		TTL:         c.uniqueTTL,
		Storage:     c.storage,
		Replicas:    c.replicas,
		Placement:   c.placement,
	})
	if err != nil {
		return nil, fmt.Errorf("natsbroker: bucket %s: %w", n.bucket, err)
	}
	q.results, err = ensureBucket(ctx, js, c, setResultTTL, jetstream.KeyValueConfig{
		Bucket:      n.results,
		Description: "taskpool task results of queue " + c.queue,
		TTL:         c.resultTTL,
		Storage:     c.storage,
		Replicas:    c.replicas,
		Placement:   c.placement,
	})
	if err != nil {
		return nil, fmt.Errorf("natsbroker: bucket %s: %w", n.results, err)
	}
	return q, nil
}

// mismatch lists the settings given as options that differ from the
// queue's, as "name have, requested want".
type mismatch []string

func (m *mismatch) check(name string, have, want any) {
	if have != want {
		*m = append(*m, fmt.Sprintf("%s %v, requested %v", name, have, want))
	}
}

func (m mismatch) err(resource string) error {
	return fmt.Errorf("%w: %s has %s (WithReconfigure applies the requested settings)",
		ErrQueueMismatch, resource, strings.Join(m, "; "))
}

// taskSettings are the queue settings that apply to both streams; the
// dead-letter stream also has its limits (setDeadLimits).
const taskSettings = setReplicas | setStorage | setDupWindow | setAsyncPersist | setPlacement

// streamMismatch compares the settings of a stream given as options, of
// those that apply to it.
func streamMismatch(c *config, applies setting, have, want jetstream.StreamConfig) mismatch {
	var m mismatch
	if c.has(setReplicas) {
		m.check("replicas", max(have.Replicas, 1), max(want.Replicas, 1))
	}
	if c.has(setStorage) {
		m.check("storage", have.Storage, want.Storage)
	}
	if c.has(setDupWindow) {
		wantDup := want.Duplicates
		if applies&setDeadLimits != 0 && !c.has(setDeadLimits) {
			wantDup = deadDuplicates(wantDup, have.MaxAge) // the limits it has
		}
		m.check("duplicate window", have.Duplicates, wantDup)
	}
	if c.has(setAsyncPersist) && want.PersistMode == jetstream.AsyncPersistMode {
		m.check("persist mode", have.PersistMode, want.PersistMode)
	}
	if c.has(setDeadLimits) && applies&setDeadLimits != 0 {
		deadLimitsMismatch(have, want, &m)
	}
	if c.has(setPlacement) && !samePlacement(have.Placement, want.Placement) {
		m.check("placement", placementText(have.Placement), placementText(want.Placement))
	}
	return m
}

// ensureStream opens the stream, or creates it with want when it does
// not exist. An existing stream is never updated unless the process asked
// for it (WithReconfigure): then the settings given as options and the
// package's own ones (set by own) are applied to it. Without that, a
// setting given as an option that differs is ErrQueueMismatch. applies
// is the set of queue settings that concern this stream.
func ensureStream(ctx context.Context, js jetstream.JetStream, c *config, want jetstream.StreamConfig, applies setting, own func(*jetstream.StreamConfig)) (jetstream.Stream, error) {
	for {
		st, err := request(ctx, c.logger, "stream info", func(ctx context.Context) (jetstream.Stream, error) {
			return js.Stream(ctx, want.Name)
		})
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st, err = request(ctx, c.logger, "stream create", func(ctx context.Context) (jetstream.Stream, error) {
				return js.CreateStream(ctx, want)
			})
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				continue // created meanwhile by another process, with other settings
			}
			return st, err
		}
		if err != nil {
			return nil, err
		}
		have := st.CachedInfo().Config
		m := streamMismatch(c, applies, have, want)
		upd := have
		own(&upd)
		if !c.reconfigure {
			if len(m) > 0 {
				return nil, m.err("stream " + want.Name)
			}
			if !sameStream(have, upd) {
				c.logger.Warn("natsbroker: stream has other settings than this version sets; WithReconfigure updates it",
					"queue", c.queue, "stream", want.Name, "subjects", have.Subjects)
			}
			return st, nil
		}
		if c.has(setReplicas) {
			upd.Replicas = want.Replicas
		}
		if c.has(setStorage) {
			upd.Storage = want.Storage
		}
		if c.has(setDupWindow) {
			upd.Duplicates = want.Duplicates
		}
		if c.has(setPlacement) {
			upd.Placement = want.Placement
		}
		if c.has(setDeadLimits) && applies&setDeadLimits != 0 {
			upd.MaxAge, upd.MaxBytes, upd.Discard = want.MaxAge, want.MaxBytes, want.Discard
		}
		if applies&setDeadLimits != 0 {
			upd.Duplicates = deadDuplicates(upd.Duplicates, upd.MaxAge)
		}
		if sameStream(have, upd) {
			return st, nil
		}
		return request(ctx, c.logger, "stream update", func(ctx context.Context) (jetstream.Stream, error) {
			return js.UpdateStream(ctx, upd)
		})
	}
}

// sameStream compares the settings provision sets.
func sameStream(have, want jetstream.StreamConfig) bool {
	return have.Description == want.Description &&
		slices.Equal(have.Subjects, want.Subjects) &&
		have.Retention == want.Retention &&
		have.Storage == want.Storage &&
		max(have.Replicas, 1) == max(want.Replicas, 1) &&
		have.Duplicates == want.Duplicates &&
		have.AllowMsgSchedules == want.AllowMsgSchedules &&
		have.PersistMode == want.PersistMode &&
		have.MaxAge == want.MaxAge &&
		unlimited(have.MaxBytes) == unlimited(want.MaxBytes) &&
		have.Discard == want.Discard &&
		samePlacement(have.Placement, want.Placement)
}

// ensureBucket opens the key-value bucket, or creates it with want when it
// does not exist; an existing one is treated as ensureStream treats
// streams (its TTL, storage and replicas are its stream's MaxAge, Storage
// and Replicas).
func ensureBucket(ctx context.Context, js jetstream.JetStream, c *config, ttl setting, want jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	for {
		kv, err := request(ctx, c.logger, "bucket info", func(ctx context.Context) (jetstream.KeyValue, error) {
			return js.KeyValue(ctx, want.Bucket)
		})
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = request(ctx, c.logger, "bucket create", func(ctx context.Context) (jetstream.KeyValue, error) {
				return js.CreateKeyValue(ctx, want)
			})
			if errors.Is(err, jetstream.ErrBucketExists) {
				continue
			}
			return kv, err
		}
		if err != nil {
			return nil, err
		}
		st, err := request(ctx, c.logger, "bucket stream info", func(ctx context.Context) (jetstream.Stream, error) {
			return js.Stream(ctx, "KV_"+want.Bucket)
		})
		if err != nil {
			return nil, err
		}
		have := st.CachedInfo().Config
		var m mismatch
		if c.has(setReplicas) {
			m.check("replicas", max(have.Replicas, 1), max(want.Replicas, 1))
		}
		if c.has(setStorage) {
			m.check("storage", have.Storage, want.Storage)
		}
		if c.has(ttl) {
			m.check("TTL", have.MaxAge, want.TTL)
		}
		if c.has(setPlacement) && !samePlacement(have.Placement, want.Placement) {
			m.check("placement", placementText(have.Placement), placementText(want.Placement))
		}
		if len(m) == 0 {
			return kv, nil
		}
		if !c.reconfigure {
			return nil, m.err("bucket " + want.Bucket)
		}
		upd := jetstream.KeyValueConfig{
			Bucket: want.Bucket, Description: want.Description,
			TTL: have.MaxAge, Storage: have.Storage, Replicas: have.Replicas,
			Placement: have.Placement, LimitMarkerTTL: have.SubjectDeleteMarkerTTL,
		}
		if c.has(setPlacement) {
			upd.Placement = want.Placement
		}
		if c.has(setReplicas) {
			upd.Replicas = want.Replicas
		}
		if c.has(setStorage) {
			upd.Storage = want.Storage
		}
		if c.has(ttl) {
			upd.TTL = want.TTL
		}
		return request(ctx, c.logger, "bucket update", func(ctx context.Context) (jetstream.KeyValue, error) {
			return js.UpdateKeyValue(ctx, upd)
		})
	}
}

// releaseUnique deletes the unique key k if the task id still holds it.
func (q *queue) releaseUnique(ctx context.Context, k, id string) error {
	key := uniqueKey(k)
	e, err := q.unique.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("natsbroker: release unique key %q: %w", k, err)
	}
	if string(e.Value()) != id {
		return nil // taken over by another task after a TTL expiry
	}
	err = q.unique.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		if isWrongLastSeq(err) {
			return nil // changed under us: not ours any more
		}
		return fmt.Errorf("natsbroker: release unique key %q: %w", k, err)
	}
	return nil
}

func persistMode(c *config) jetstream.PersistModeType {
	if c.asyncPersist && c.storage == jetstream.FileStorage {
		return jetstream.AsyncPersistMode
	}
	return jetstream.DefaultPersistMode
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
