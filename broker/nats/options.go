package natsbroker

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/taskpool/taskpool"
)

// Option configures a [Producer], a [Consumer] or an [Inspector]. The
// queue's options (its name, codec, storage, replicas, windows, TTLs,
// logger) go to all three; an option whose doc says "Consumer only" or
// "Producer only" means nothing to the others, which refuse it with an
// error wrapping [ErrInvalidOption] rather than ignore it. A zero count or
// duration given to an option means "use the default"; a nil codec,
// backoff, registry, middleware or option, priority weights that are all
// zero and a placement with neither cluster nor tags are refused with
// [ErrInvalidOption].
type Option interface {
	apply(*config) error
	// role is who the option is for: forQueue (everyone), forConsumer
	// or forProducer.
	role() (role, string)
}

// role is what an option configures.
type role uint8

const (
	forQueue role = iota
	forConsumer
	forProducer
	forInspector // only as the constructor's role: takes queue options
)

func (r role) String() string {
	switch r {
	case forConsumer:
		return "consumer"
	case forProducer:
		return "producer"
	case forInspector:
		return "inspector"
	}
	return "queue"
}

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }
func (optionFunc) role() (role, string)    { return forQueue, "" }

// roleOption is an option for consumers or for producers only.
type roleOption struct {
	f    func(*config) error
	who  role
	name string
}

func (o roleOption) apply(c *config) error { return o.f(c) }
func (o roleOption) role() (role, string)  { return o.who, o.name }

func consumerOption(name string, f func(*config) error) Option {
	return roleOption{f: f, who: forConsumer, name: name}
}

func producerOption(name string, f func(*config) error) Option {
	return roleOption{f: f, who: forProducer, name: name}
}

// Defaults.
const (
	// DefaultQueue is the queue used when no [WithQueue] is given.
	DefaultQueue = "default"
	// DefaultAckWait is how long the server waits for an ack before it
	// redelivers a message to another worker.
	DefaultAckWait = 30 * time.Second
	// DefaultMaxAttempts is how many times a task runs when it keeps
	// failing and neither the task, its type, the scheduler-wide
	// taskpool.WithRetry nor [WithMaxAttempts] says otherwise. It is not
	// the in-process default of 1 because a delivery whose worker crashed
	// counts as an attempt here: with 1, every task a killed process held
	// would be dead-lettered instead of run elsewhere.
	DefaultMaxAttempts = 10
	// DefaultMaxPrefetch is the most tasks a consumer holds beyond those
	// it runs with the default, adaptive prefetch (see [WithPrefetch]).
	DefaultMaxPrefetch = 256
	// DefaultMaxBatch is the largest fetch request a consumer sends.
	DefaultMaxBatch = 256
	// DefaultPollWait is how long an idle consumer's long poll waits.
	DefaultPollWait = time.Second
	// DefaultDuplicateWindow is how long the server remembers task IDs to
	// drop a re-sent enqueue.
	DefaultDuplicateWindow = 2 * time.Minute
	// DefaultUniqueTTL is the longest a unique key is held.
	DefaultUniqueTTL = 24 * time.Hour
	// DefaultPublishWindow is how many unconfirmed publishes
	// [Producer.EnqueueBatch] keeps in flight. It stays below the
	// JetStream context's own limit (jetstream.WithPublishAsyncMaxPending,
	// 4000 by default), past which its async publishes stall.
	DefaultPublishWindow = 2048
	// DefaultUnknownTypeGrace is how long a consumer keeps a task of a
	// type it has no handler for before dead-lettering it (see
	// [WithUnknownTypeGrace]).
	DefaultUnknownTypeGrace = time.Minute
)

type config struct {
	queue         string
	codec         Codec
	storage       jetstream.StorageType
	replicas      int
	dupWindow     time.Duration
	uniqueTTL     time.Duration
	resultTTL     time.Duration
	publishWindow int
	clientDelays  bool
	asyncPersist  bool
	logger        *slog.Logger
	deadMaxAge    time.Duration
	deadMaxBytes  int64
	placement     *jetstream.Placement
	explicit      setting // queue settings given as options
	reconfigure   bool

	// Consumer only.
	workers     int
	prefetch    int
	maxBatch    int
	ackWait     time.Duration
	pollWait    time.Duration
	maxAttempts int
	backoff     taskpool.Backoff
	retrySet    bool // WithMaxAttempts given
	backoffSet  bool // WithBackoff given
	weights     [numPriorities]int
	schedOpts   []taskpool.Option
	settle      func(taskpool.Outcome, Action)

	unknownGrace time.Duration
	limits       map[string]Limit // by type: WithGlobalLimit

	// Producer only.
	enqueueMW []func(context.Context, *taskpool.Task) error
	known     func(typ string) bool
}

func defaultConfig() config {
	return config{
		queue:         DefaultQueue,
		codec:         JSONCodec{},
		storage:       jetstream.FileStorage,
		replicas:      1,
		dupWindow:     DefaultDuplicateWindow,
		uniqueTTL:     DefaultUniqueTTL,
		resultTTL:     DefaultResultTTL,
		publishWindow: DefaultPublishWindow,
		logger:        slog.New(slog.DiscardHandler),
		workers:       runtime.GOMAXPROCS(0),
		maxBatch:      DefaultMaxBatch,
		ackWait:       DefaultAckWait,
		pollWait:      DefaultPollWait,
		maxAttempts:   DefaultMaxAttempts,
		backoff:       defaultBackoff,
		weights:       [numPriorities]int{6, 3, 1},
		unknownGrace:  DefaultUnknownTypeGrace,
	}
}

// setting is a bit set of the queue settings an option was given for:
// only those are compared with (and, with [WithReconfigure], applied to)
// an existing queue.
type setting uint

const (
	setReplicas setting = 1 << iota
	setStorage
	setDupWindow
	setUniqueTTL
	setAsyncPersist
	setAckWait
	setResultTTL
	setDeadLimits
	setPlacement
)

func (c *config) has(s setting) bool { return c.explicit&s != 0 }

// newConfig applies the options given to a constructor for who, refusing
// those meant for someone else.
func newConfig(opts []Option, who role) (config, error) {
	c := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return c, invalid("option", "nil")
		}
		if r, name := o.role(); r != forQueue && r != who {
			return c, fmt.Errorf("%w: %s is a %s option, given to a %s", ErrInvalidOption, name, r, who)
		}
		if err := o.apply(&c); err != nil {
			return c, err
		}
	}
	return c, nil
}

func invalid(name string, v any) error {
	return fmt.Errorf("%w: %s = %v", ErrInvalidOption, name, v)
}

// WithQueue selects the queue: the streams, consumers and buckets that
// producers and consumers of the same name share. The default is
// [DefaultQueue]. A name must be made of 1 to 64 letters, digits, '-'
// and '_'; anything else is [ErrInvalidQueue].
func WithQueue(name string) Option {
	return optionFunc(func(c *config) error {
		if err := ValidateQueueName(name); err != nil {
			return err
		}
		c.queue = name
		return nil
	})
}

// ValidateQueueName returns nil if name can name a queue, and otherwise an
// error wrapping [ErrInvalidQueue]: the check [WithQueue] makes, for a tool
// that takes a queue name from its user and refuses a bad one before it
// connects (the taskpool command's --queue).
func ValidateQueueName(name string) error {
	if !validQueue(name) {
		return fmt.Errorf("%w: %q", ErrInvalidQueue, name)
	}
	return nil
}

// WithCodec sets the payload codec. The default is [JSONCodec]. Every
// producer and consumer of a queue must use the same codec.
func WithCodec(cd Codec) Option {
	return optionFunc(func(c *config) error {
		if cd == nil {
			return invalid("codec", "nil")
		}
		c.codec = cd
		return nil
	})
}

// WithMemoryStorage keeps the queue's streams in memory instead of on disk:
// faster, but a server restart loses every queued task. The default is
// file storage. It applies when the streams are created (see
// [WithReplicas] for an existing queue).
func WithMemoryStorage() Option {
	return optionFunc(func(c *config) error {
		c.storage = jetstream.MemoryStorage
		c.explicit |= setStorage
		return nil
	})
}

// WithAsyncPersist makes the file-stored task stream write to disk in the
// background instead of on every message (nats-server 2.12+ async persist
// mode): much cheaper per task, but tasks stored in the last moments
// before the server process crashes may be lost (a clean shutdown loses
// nothing). It needs file storage and one replica. The default is off. It
// applies when the task stream is created (see [WithReplicas] for an
// existing queue); older servers ignore it.
func WithAsyncPersist() Option {
	return optionFunc(func(c *config) error {
		c.asyncPersist = true
		c.explicit |= setAsyncPersist
		return nil
	})
}

// WithReplicas sets the number of replicas of the queue's streams and
// bucket in a JetStream cluster. The default is 1. It applies when they
// are created; opening an existing queue with a different count is
// [ErrQueueMismatch] unless [WithReconfigure] is given. Opening without
// this option keeps whatever the queue has.
func WithReplicas(n int) Option {
	return optionFunc(func(c *config) error {
		if n < 0 || n > 5 {
			return invalid("replicas", n)
		}
		if n > 0 {
			c.replicas = n
			c.explicit |= setReplicas
		}
		return nil
	})
}

// WithDuplicateWindow sets how long the server remembers task IDs, so that
// enqueueing a task again with the same ID within the window stores it
// only once. The default is [DefaultDuplicateWindow]. It applies when the
// streams are created (see [WithReplicas] for an existing queue).
func WithDuplicateWindow(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d < 0 || (d > 0 && d < 100*time.Millisecond) {
			return invalid("duplicate window", d)
		}
		if d > 0 {
			c.dupWindow = d
			c.explicit |= setDupWindow
		}
		return nil
	})
}

// WithUniqueTTL sets the longest time a unique key is held, counted from
// the enqueue that took it: a key whose task is lost for good (its dead
// letter purged by hand, say) is released after it, and so is the key of a
// task still delayed or queued by then. The default is [DefaultUniqueTTL].
// It applies when the bucket is created (see [WithReplicas] for an
// existing queue). It is not the in-process taskpool.WithUniqueTTL, which
// keeps a key taken for a while after its task finished: here a key is
// released as its task succeeds or is dead-lettered, and nothing keeps it
// longer.
func WithUniqueTTL(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d < 0 {
			return invalid("unique TTL", d)
		}
		if d > 0 {
			c.uniqueTTL = d
			c.explicit |= setUniqueTTL
		}
		return nil
	})
}

// WithPublishWindow sets how many publishes [Producer.EnqueueBatch] keeps
// unconfirmed at once. The default is [DefaultPublishWindow]. Keep it
// below the JetStream context's jetstream.WithPublishAsyncMaxPending.
// Producer only.
func WithPublishWindow(n int) Option {
	return producerOption("WithPublishWindow", func(c *config) error {
		if n < 0 {
			return invalid("publish window", n)
		}
		if n > 0 {
			c.publishWindow = n
		}
		return nil
	})
}

// WithReconfigure makes opening the queue (NewProducer, NewConsumer,
// NewInspector) apply the settings given as options (replicas, storage,
// duplicate window, async persist, unique TTL, ack wait) and the
// package's own settings (subjects, delivery cap) to a queue that exists
// with other ones, instead of returning [ErrQueueMismatch]. Settings not
// given as options are left as they are. Use it in the one process (or
// deployment step) that is meant to change a queue; the server refuses
// some changes (storage type), which then fail. Without it, opening a
// queue never changes it.
func WithReconfigure() Option {
	return optionFunc(func(c *config) error {
		c.reconfigure = true
		return nil
	})
}

// WithClientSideDelays makes delayed tasks use the client-side fallback
// even when the server supports message schedules: the task is stored at
// once with a Taskpool-Not-Before header, and consumers put it back with
// NakWithDelay until it is due. Use it when some servers of a cluster are
// older than 2.12. The fallback is chosen by itself on such servers.
func WithClientSideDelays() Option {
	return optionFunc(func(c *config) error {
		c.clientDelays = true
		return nil
	})
}

// WithLogger sets the logger for fetch and long-poll errors, dead letters,
// lost global slots and unique keys, results not stored, and settings that
// differ from what this version sets (requests retried across a reconnect
// log at Debug), and at Error the user's code that panicked or called
// runtime.Goexit outside a handler. A consumer makes those Error calls on
// a goroutine of its own, waited for, so that a Logger that calls Goexit
// there (a test's that fails the test on an Error) ends only that call:
// the delivery is settled and the fetch loop goes on. The default
// discards everything.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) error {
		if l != nil {
			c.logger = l
		}
		return nil
	})
}

// WithWorkers sets the number of tasks a consumer runs at once: the local
// scheduler's worker count, and one more for each handler that waits in
// [Producer.WaitResult] (or lends with taskpool.Lend) meanwhile. The default is runtime.GOMAXPROCS(0); a
// negative n or one above [taskpool.MaxWorkers] is refused with
// [ErrInvalidOption]. Consumer only.
func WithWorkers(n int) Option {
	return consumerOption("WithWorkers", func(c *config) error {
		if n < 0 || n > taskpool.MaxWorkers {
			return invalid("workers", n)
		}
		if n > 0 {
			c.workers = n
		}
		return nil
	})
}

// WithPrefetch lets a consumer hold n tasks beyond those it is running, so
// that workers never wait for a fetch round trip. Held tasks keep their
// lease alive like running ones. n = [NoPrefetch] holds none: no more
// tasks in flight than workers (and those lent by handlers waiting in
// [Producer.WaitResult] or lending with taskpool.Lend) but for the long polls of idle priorities:
// one that delivers while the workers are busy adds its task, so up to one
// per priority more (whatever n, the consumer may hold that many beyond
// workers plus prefetch). The default (n = 0) adapts: enough tasks
// to keep the workers busy for four fetch round trips, by the measured
// handler and fetch times, at most [DefaultMaxPrefetch]: short tasks get
// the full prefetch and slow tasks almost none, so that one consumer does
// not hold tasks that idle workers elsewhere could run. An n below
// NoPrefetch, or one above [taskpool.MaxQueueSize] - [taskpool.MaxWorkers]
// - 3 (what the local scheduler's queue can hold), is refused with
// [ErrInvalidOption]. Consumer only.
func WithPrefetch(n int) Option {
	return consumerOption("WithPrefetch", func(c *config) error {
		if n < NoPrefetch || n > maxPrefetch {
			return invalid("prefetch", n)
		}
		c.prefetch = n
		return nil
	})
}

// NoPrefetch, given to [WithPrefetch], makes a consumer hold no task beyond
// those its workers run.
const NoPrefetch = -1

// maxPrefetch bounds WithPrefetch so that the local scheduler's queue
// (workers, prefetch and one task per priority) fits taskpool.MaxQueueSize.
const maxPrefetch = taskpool.MaxQueueSize - taskpool.MaxWorkers - numPriorities

// WithMaxBatch caps the size of one fetch request. The default is
// [DefaultMaxBatch]. Consumer only.
func WithMaxBatch(n int) Option {
	return consumerOption("WithMaxBatch", func(c *config) error {
		if n < 0 {
			return invalid("max batch", n)
		}
		if n > 0 {
			c.maxBatch = n
		}
		return nil
	})
}

// WithAckWait sets the lease of a delivered task: when its consumer has
// neither acknowledged nor extended it for this long (its process died),
// the server redelivers it. Running tasks are extended every AckWait/2, so
// it bounds crash recovery, not task duration. The default is
// [DefaultAckWait]; the minimum is 100ms. It is a property of the shared
// durable consumers, set when they are created: a consumer started with a
// different ack wait gets [ErrQueueMismatch] unless [WithReconfigure] is
// given, and one started without this option uses the consumers' ack wait
// as it is. Consumer only.
func WithAckWait(d time.Duration) Option {
	return consumerOption("WithAckWait", func(c *config) error {
		if d < 0 || (d > 0 && d < 100*time.Millisecond) {
			return invalid("ack wait", d)
		}
		if d > 0 {
			c.ackWait = d
			c.explicit |= setAckWait
		}
		return nil
	})
}

// WithPollWait sets how long an idle consumer's long poll waits before it
// polls again. Shorter means a faster Stop, longer means fewer requests
// while idle. The default is [DefaultPollWait]. Consumer only.
func WithPollWait(d time.Duration) Option {
	return consumerOption("WithPollWait", func(c *config) error {
		if d < 0 || (d > 0 && d < 10*time.Millisecond) {
			return invalid("poll wait", d)
		}
		if d > 0 {
			c.pollWait = d
		}
		return nil
	})
}

// WithMaxAttempts sets how many times a task runs when it keeps failing
// and neither its own MaxAttempts nor its type's [taskpool.WithRetry] (in
// the consumer's registry) says otherwise. Without it the consumer takes
// the scheduler-wide taskpool.WithRetry given through
// [WithSchedulerOptions], as the in-process scheduler does, and without
// that [DefaultMaxAttempts]. Consumer only.
func WithMaxAttempts(n int) Option {
	return consumerOption("WithMaxAttempts", func(c *config) error {
		if n < 0 {
			return invalid("max attempts", n)
		}
		if n > 0 {
			c.maxAttempts, c.retrySet = n, true
		}
		return nil
	})
}

// WithBackoff sets the wait before a failed task is delivered again, for
// types without their own backoff ([taskpool.WithRetry] in the consumer's
// registry). Without it the consumer takes the backoff of the
// scheduler-wide taskpool.WithRetry given through [WithSchedulerOptions],
// and without that taskpool.ExponentialBackoff(time.Second,
// 10*time.Minute). Consumer only.
func WithBackoff(b taskpool.Backoff) Option {
	return consumerOption("WithBackoff", func(c *config) error {
		if b == nil {
			return invalid("backoff", "nil")
		}
		c.backoff, c.backoffSet = b, true
		return nil
	})
}

// WithPriorityWeights sets how a consumer shares its capacity between
// priorities when all have tasks waiting. Each fetch round polls the
// priorities in a random order drawn with these weights, and the first
// one polled may take all the free capacity: with the default 6, 3, 1,
// high-priority tasks are served first six times in ten, and low ones are
// never starved. A zero weight is polled last, only when the others are
// empty. Negative weights, all zero, or one above 1,000,000 (their sum
// must not overflow) are refused with [ErrInvalidOption]. Consumer only.
func WithPriorityWeights(high, normal, low int) Option {
	const maxWeight = 1_000_000
	return consumerOption("WithPriorityWeights", func(c *config) error {
		if high < 0 || normal < 0 || low < 0 || high+normal+low == 0 ||
			high > maxWeight || normal > maxWeight || low > maxWeight {
			return invalid("priority weights", fmt.Sprint(high, normal, low))
		}
		c.weights = [numPriorities]int{high, normal, low}
		return nil
	})
}

// WithSchedulerOptions passes options to the consumer's local
// [taskpool.Scheduler]: middleware, logger, task timeout and so on.
// The consumer sets the workers, the queue size and the completion hook
// itself, after these options: use [WithWorkers] and [WithSettleHook]
// instead. A scheduler-wide taskpool.WithRetry given here is the
// consumer's retry default, as it is in process (see [WithMaxAttempts]).
// Consumer only.
//
// taskpool.WithDeadLetters (but for WithDeadLetters(0, nil), which keeps
// none) is refused (an error wrapping
// [ErrInvalidOption] from [NewConsumer]): the local scheduler runs each
// delivery once, as a copy of the task without its MaxAttempts and
// UniqueKey (the broker's), so its dead letters would be every failed
// delivery, retried by the broker or not, as that copy. The broker's dead
// letters are the dead-letter stream ([Inspector.DeadLetters]) and
// [ActionDeadLetter] in the [WithSettleHook] hook, which sees the task as
// it was enqueued.
func WithSchedulerOptions(opts ...taskpool.Option) Option {
	return consumerOption("WithSchedulerOptions", func(c *config) error {
		for _, o := range opts {
			if isDeadLetters(o) {
				return invalid("WithSchedulerOptions", "taskpool.WithDeadLetters (use the dead-letter stream and WithSettleHook)")
			}
		}
		c.schedOpts = append(c.schedOpts, opts...)
		return nil
	})
}

// isDeadLetters reports whether o is a taskpool.WithDeadLetters that
// keeps dead letters or calls a function with them (the core's option
// says so; WithDeadLetters(0, nil), the default, does neither).
func isDeadLetters(o taskpool.Option) bool {
	d, ok := o.(interface{ KeepsDeadLetters() bool })
	return ok && d.KeepsDeadLetters()
}

// WithSettleHook sets fn to be called after the consumer has settled a
// delivery: acknowledged it, put it back for a retry, dead-lettered it or
// released it to another worker. A delivery of a task whose ID the
// consumer holds already (a redelivery after the held copy's lease
// lapsed, or the ID enqueued again past the duplicate window) is put back
// for the ack wait before anything else decides on it, and fn is not
// called for it: that put-back settles nothing, the held copy alone
// settles the task and fn is told of that (and of the other message's
// delivery when it comes back). fn gets the local outcome (for a message
// that never ran, such as a bad payload, Task may be incomplete) and what
// was done. Outcome.Attempts counts runs, as the core's Outcome doc says:
// the delivery count (Task.Attempt) when the handler ran on this delivery,
// one less when it did not (a bad payload, a deferral, an unknown type,
// attempts exhausted, a task put back), every earlier delivery counted as
// a run; [Result].Attempts and [DeadLetter].Attempts are the delivery
// count. Outcome.Status says how the delivery ended, with the core's
// meaning: for a task the local scheduler settled, the status it gave
// (and counted in [Consumer.Stats]); for a delivery that never reached
// it, [taskpool.OutcomeFailed] when the consumer failed it (a bad
// payload, attempts exhausted, an unknown type past its grace, a task the
// scheduler refused as invalid, a handler's Lookup that panicked) and [taskpool.OutcomeNotRun] when it put
// it back unrun (a deferral, an unknown type within its grace, a
// scheduler closing or full, a task waiting for a global limit at Stop's
// deadline). So [ActionAck] always comes with OutcomeSucceeded and
// [ActionDeadLetter] with OutcomeFailed; after [ActionRetry] and
// [ActionRelease] the task is not over, and the status is this
// delivery's. fn runs on a worker
// goroutine for a task that ran, and on the consumer's own goroutines (its
// fetch loop, a global limit's, or Stop's) for a delivery that never
// reached a worker (a bad payload, an unknown type, a deferral, attempts
// exhausted, a task put back); it must be safe for concurrent use and
// return quickly. A panic in fn is logged at Error and changes nothing
// else: the delivery stays settled and the consumer goes on. A
// runtime.Goexit in fn (t.FailNow in a test) ends only that call, as a
// completion hook's in process: the delivery stays settled, once, the
// consumer goes on fetching and Stop returns (on a worker the local
// scheduler replaces the worker; elsewhere fn is called on a goroutine
// of its own, waited for). Stop waits for the goroutines fn runs on, so
// fn that wants the consumer stopped calls go c.Stop(ctx), as a core
// hook does. Consumer only.
func WithSettleHook(fn func(out taskpool.Outcome, a Action)) Option {
	return consumerOption("WithSettleHook", func(c *config) error {
		c.settle = fn
		return nil
	})
}

// WithEnqueueMiddleware adds fn to what a producer runs on every task
// before encoding it, in Enqueue, EnqueueBatch and Schedule (once, at
// registration: every tick of a periodic task carries what it set then).
// fn may change the task, typically to put a trace context or a tenant ID
// into Task.Metadata, which travels as headers (see
// [MetadataHeaderPrefix]) to the consumer's handlers and middleware. A
// non-nil error rejects the task: it is not stored, and Enqueue returns an
// error wrapping it. Several middleware run in the order given. Producer
// only.
func WithEnqueueMiddleware(fn ...func(ctx context.Context, t *taskpool.Task) error) Option {
	return producerOption("WithEnqueueMiddleware", func(c *config) error {
		for i, f := range fn {
			if f == nil {
				return invalid(fmt.Sprintf("enqueue middleware[%d]", i), "nil")
			}
		}
		c.enqueueMW = append(c.enqueueMW, fn...)
		return nil
	})
}

// WithKnownTypes makes a producer reject a task whose type reg has no
// handler for, with an error wrapping [taskpool.ErrNoHandler], as
// [taskpool.Scheduler.Submit] does, instead of storing a task no consumer
// can run. Give it the registry the consumers use (a producer-only process
// can register its types with any handler); it is read at each enqueue,
// so types registered later are known from then on. The default accepts
// every type. Producer only.
func WithKnownTypes(reg *taskpool.Registry) Option {
	return producerOption("WithKnownTypes", func(c *config) error {
		if reg == nil {
			return invalid("known types", "nil registry")
		}
		c.known = func(typ string) bool { _, ok := reg.Lookup(typ); return ok }
		return nil
	})
}

// WithUnknownTypeGrace sets how long a consumer whose handler has no
// handler for a task's type (a [*taskpool.Registry], or any handler with
// a Lookup method) keeps the task before dead-lettering it with an error
// wrapping [taskpool.ErrNoHandler]: a rolling deploy may bring the
// handler meanwhile. The task is put back (NakWithDelay, until the grace
// has passed, or for a quarter of it if that is longer) until the grace,
// counted from when the task was stored, has passed and it was delivered
// at least twice; a consumer that has the handler and is delivered the
// task meanwhile, or when it comes back, runs it (the deliveries before
// count as attempts). The default is [DefaultUnknownTypeGrace]; the
// minimum is 10ms. Consumer only.
func WithUnknownTypeGrace(d time.Duration) Option {
	return consumerOption("WithUnknownTypeGrace", func(c *config) error {
		if d < 0 || (d > 0 && d < 10*time.Millisecond) {
			return invalid("unknown type grace", d)
		}
		if d > 0 {
			c.unknownGrace = d
		}
		return nil
	})
}

func validQueue(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		default:
			return false
		}
	}
	return true
}

// defaultBackoff is the consumers' built-in backoff.
var defaultBackoff = taskpool.ExponentialBackoff(time.Second, 10*time.Minute)
