package taskpool

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"
)

// Option configures a [Scheduler]. Options are applied by [New] in order.
// A zero size or duration passed to an option means "use the default"
// where its doc says so; a value out of range (and a nil [Clock] or base
// context) makes New return an error wrapping [ErrInvalidOption].
type Option interface {
	apply(*options) error
}

type optionFunc func(*options) error

func (f optionFunc) apply(o *options) error { return f(o) }

type options struct {
	workers     int
	queueSize   int
	batchSize   int
	timeout     time.Duration
	onComplete  func(Outcome)
	middleware  []Middleware
	logger      *slog.Logger
	baseContext context.Context
	noRecover   bool

	hooks         bool // onComplete is set: the fast path must build an Outcome
	clock         Clock
	retry         typeConfig // maxAttempts and backoff defaults
	retryGiven    typeConfig // what WithRetry set, zero where nothing: for RetryPolicy
	weights       [numPriorities]int
	strict        bool
	codec         Codec // WithStrictCodec; nil: params are passed as they are
	delayedOnStop DelayedPolicy
	uniqueTTL     time.Duration
	deadCap       int
	onDead        func(Outcome)
	onLend        []func(delta int) // WithLendHook
}

// Defaults and bounds.
const (
	// MaxWorkers is the most workers a scheduler may have.
	MaxWorkers = 1 << 20
	// MaxQueueSize is the largest queue a priority may have. Queue memory
	// is allocated as tasks arrive, not up front.
	MaxQueueSize = 1 << 40
	// MaxBatchSize is the largest batch size.
	MaxBatchSize = 1 << 12
	// MaxPriorityWeight is the largest weight of a priority.
	MaxPriorityWeight = 1000

	// DefaultQueueSize is the bound of each priority's queue.
	DefaultQueueSize = 1024
	// DefaultBatchSize is the most tasks handed to a worker at once (see
	// [WithBatchSize] for how many it gets).
	DefaultBatchSize = 128
)

// batchWork is the work the dispatcher aims to hand a worker at once.
const batchWork = 50 * time.Microsecond

func defaultOptions() options {
	return options{
		workers:   runtime.GOMAXPROCS(0),
		queueSize: DefaultQueueSize,
		batchSize: DefaultBatchSize,
		logger:    slog.New(slog.DiscardHandler),
		clock:     SystemClock{},
		retry:     typeConfig{maxAttempts: 1, backoff: defaultBackoff},
		weights:   [numPriorities]int{6, 3, 1},
	}
}

func invalid(name string, v any) error {
	return fmt.Errorf("%w: %s = %v", ErrInvalidOption, name, v)
}

// WithWorkers sets the number of worker goroutines. The default, and the
// meaning of 0, is runtime.GOMAXPROCS(0). A negative n is invalid.
func WithWorkers(n int) Option {
	return optionFunc(func(o *options) error {
		if n < 0 || n > MaxWorkers {
			return invalid("workers", n)
		}
		if n > 0 {
			o.workers = n
		}
		return nil
	})
}

// WithQueueSize sets the bound of each priority's queue: exactly how many
// accepted tasks of that priority may wait (in the queue, or held by the
// dispatcher) before Submit blocks and TrySubmit returns [ErrQueueFull].
// Tasks handed to a worker in a batch no longer count; a task removed by
// [Scheduler.Cancel] keeps its place, and counts, until it is handed out
// (its worker passes over it), which a paused scheduler does not do until
// Resume. Memory is taken as
// tasks arrive, in batches, not up front. Delayed tasks, retries and
// tasks woken from a concurrency limit that become due go to their queue
// past the bound: they were accepted already. The default is
// [DefaultQueueSize]; a negative n or one above [MaxQueueSize] is
// invalid.
func WithQueueSize(n int) Option {
	return optionFunc(func(o *options) error {
		if n < 0 || n > MaxQueueSize {
			return invalid("queue size", n)
		}
		if n > 0 {
			o.queueSize = n
		}
		return nil
	})
}

// WithBatchSize sets the most tasks the dispatcher hands to one worker at
// once. Larger batches cost less per task under load; a batch runs on one
// worker in order, so 1 gives the lowest latency to tasks queued behind a
// slow one. Below n, the dispatcher sizes each batch to the worker's last
// one: about 50µs of work at the time that batch took per task (at most 16
// tasks to a worker that has not run a batch yet), so that short tasks
// travel in large batches and long ones one by one. It never hands a worker
// more than its fair share of the queue (the queue divided among the
// workers, rounded up). A batch is no promise to its worker: once the
// dispatcher has had nothing to hand out for a millisecond while a worker
// waits, it takes back the tasks that busy workers have not started and
// hands them out again, so a task that blocks (even one waiting for a task
// behind it) does not hold the rest of its batch. With more workers than
// processors, a worker of long tasks may also be handed its next task
// while it runs one, whatever n is; that task is taken back the same way.
// The default is
// [DefaultBatchSize]; a negative n or one above [MaxBatchSize] is invalid.
func WithBatchSize(n int) Option {
	return optionFunc(func(o *options) error {
		if n < 0 || n > MaxBatchSize {
			return invalid("batch size", n)
		}
		if n > 0 {
			o.batchSize = n
		}
		return nil
	})
}

// WithTaskTimeout sets the default timeout of one handler run; a task's own
// Timeout overrides it. The default, and the meaning of 0, is no timeout.
// A negative d is invalid.
func WithTaskTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) error {
		if d < 0 {
			return invalid("task timeout", d)
		}
		o.timeout = d
		return nil
	})
}

// WithCompletionHook sets fn to be called once for every accepted task,
// with its final outcome: after its last run, when it was cancelled
// ([ErrCanceled]), or when Stop left it unrun ([ErrSchedulerClosed]). By
// the time fn runs, the outcome is counted in Stats and the task's unique
// key is free (or, under [WithUniqueTTL], kept for the TTL from then);
// its Future is completed after fn returns. fn runs on a
// worker goroutine, the timer goroutine, or the goroutine that called
// Cancel; it must be safe for concurrent use and should return quickly. A
// panic in fn is logged; a runtime.Goexit in fn ends only that call on the
// scheduler's goroutines, but on the goroutine that called Cancel it ends
// that goroutine, as it would in any function called there: Cancel does
// not return, though the task's outcome is counted and its Future
// completed all the same. The default is no hook.
func WithCompletionHook(fn func(Outcome)) Option {
	return optionFunc(func(o *options) error {
		o.onComplete = fn
		o.hooks = fn != nil
		return nil
	})
}

// WithMiddleware appends middleware around the handler. The first
// middleware given is the outermost; it wraps a registry's own
// ([Registry.Use]). A nil middleware is invalid. A middleware (this one or
// a registry's) that panics when it wraps a type's handler, the first time
// a task of that type is submitted, makes that submission return an error
// wrapping [ErrInvalidOption] and the [*PanicError], not panic.
func WithMiddleware(mw ...Middleware) Option {
	return optionFunc(func(o *options) error {
		for i, m := range mw {
			if m == nil {
				return invalid(fmt.Sprintf("middleware[%d]", i), "nil")
			}
		}
		o.middleware = append(o.middleware, mw...)
		return nil
	})
}

// WithLogger sets the logger for task failures, panics and lifecycle
// events. The default discards everything: the library is silent unless
// asked.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) error {
		if l != nil {
			o.logger = l
		}
		return nil
	})
}

// WithBaseContext sets the parent of every handler's context, so handlers
// can read its values. Cancelling ctx cancels running handlers but does not
// stop the scheduler. The default is [context.Background].
func WithBaseContext(ctx context.Context) Option {
	return optionFunc(func(o *options) error {
		if ctx == nil {
			return invalid("base context", "nil")
		}
		o.baseContext = ctx
		return nil
	})
}

// WithLendHook adds fn to the functions told when a handler lends its
// worker ([Lend], and the waits that lend by themselves) and when it gives
// it back: fn(1) once the scheduler has grown by the lent worker, fn(-1)
// once its size is set back (the extra worker retires when next idle). A broker's consumer that runs its tasks on a
// scheduler uses it to hold one message more per lent worker. fn runs on
// a goroutine of its own, which the lending handler waits for; it must be
// safe for concurrent use, return quickly and not lend itself. A panic in
// fn is logged, and neither a panic nor a runtime.Goexit in fn stops the
// other hooks or the loan. A nil fn is invalid.
func WithLendHook(fn func(delta int)) Option {
	return optionFunc(func(o *options) error {
		if fn == nil {
			return invalid("lend hook", "nil")
		}
		o.onLend = append(o.onLend, fn)
		return nil
	})
}

// WithoutPanicRecovery lets a panicking handler crash the process instead
// of turning the panic into a [*PanicError]. Use it where a panic must
// stop everything, such as in tests. The task gets no outcome: its Future
// and the hooks are not told before the crash. (The panic is recovered
// and raised again with the same value, the only way to tell it from a
// runtime.Goexit, which still fails the task with [ErrHandlerExited]: the
// crash prints the value, "[recovered, repanicked]", and the handler's
// frames.)
func WithoutPanicRecovery() Option {
	return optionFunc(func(o *options) error {
		o.noRecover = true
		return nil
	})
}

// SharedOption configures either a [Scheduler], as the default for every
// task type, or one type in [Registry.Handle].
type SharedOption interface {
	Option
	HandleOption
}

type retryOption struct {
	maxAttempts int
	backoff     Backoff
}

func (r retryOption) applyType(c *typeConfig) error {
	if r.maxAttempts < 0 {
		return invalid("max attempts", r.maxAttempts)
	}
	if r.maxAttempts > 0 {
		c.maxAttempts = r.maxAttempts
	}
	if r.backoff != nil {
		c.backoff = r.backoff
	}
	return nil
}

func (r retryOption) apply(o *options) error {
	if err := r.applyType(&o.retry); err != nil {
		return err
	}
	return r.applyType(&o.retryGiven)
}

// WithRetry sets how many times a task may run (maxAttempts, counting the
// first run) when its handler fails, and the wait between runs. Given to
// [New] it is the default for every type; given to [Registry.Handle] it
// applies to one type; a task's own MaxAttempts overrides both. A zero
// maxAttempts or a nil backoff keeps the current value. The scheduler's
// default is 1 attempt (no retry) and [ExponentialBackoff] from 100ms to
// 1m. A negative maxAttempts is invalid.
//
// Errors wrapped with [SkipRetry], [ErrNoHandler] and a task cancelled
// with [Scheduler.Cancel] are never retried; panics and timeouts are.
func WithRetry(maxAttempts int, backoff Backoff) SharedOption {
	return retryOption{maxAttempts: maxAttempts, backoff: backoff}
}

// WithClock sets the clock for delayed, retried and periodic tasks and
// uniqueness TTLs. The default is [SystemClock]; tests pass a fake one.
func WithClock(c Clock) Option {
	return optionFunc(func(o *options) error {
		if c == nil {
			return invalid("clock", "nil")
		}
		o.clock = c
		return nil
	})
}

// WithPriorityWeights sets how the dispatcher shares workers between the
// priorities when all have tasks waiting: out of high+normal+low tasks
// handed out, high go to high-priority tasks, and so on, so low priority
// always progresses. The default is 6, 3, 1. Each weight must be at least
// 1. Given after [WithStrictPriority], it turns strict order off: the later
// of the two wins.
func WithPriorityWeights(high, normal, low int) Option {
	return optionFunc(func(o *options) error {
		if high < 1 || normal < 1 || low < 1 ||
			high > MaxPriorityWeight || normal > MaxPriorityWeight || low > MaxPriorityWeight {
			return invalid("priority weights", fmt.Sprint(high, normal, low))
		}
		o.weights = [numPriorities]int{high, normal, low}
		o.strict = false
		return nil
	})
}

// WithStrictPriority makes the dispatcher always take a higher-priority
// task first. Under a steady flood of high-priority tasks, lower ones then
// wait indefinitely: prefer the weighted default unless that is wanted.
// The later of it and [WithPriorityWeights] wins.
func WithStrictPriority() Option {
	return optionFunc(func(o *options) error {
		o.strict = true
		return nil
	})
}

// DelayedPolicy says what a graceful [Scheduler.Stop] does with delayed
// tasks and retries that are not due yet.
type DelayedPolicy int

const (
	// DelayedReport reports pending delayed tasks to the completion hook
	// and their Futures with [ErrSchedulerClosed], without running them.
	// It is the default.
	DelayedReport DelayedPolicy = iota
	// DelayedRunEarly runs pending delayed tasks at once, before Stop
	// returns.
	DelayedRunEarly
)

// WithDelayedOnStop sets what Stop does with delayed tasks that are not due
// yet. Periodic schedules are always removed. The default is
// [DelayedReport].
func WithDelayedOnStop(p DelayedPolicy) Option {
	return optionFunc(func(o *options) error {
		if p != DelayedReport && p != DelayedRunEarly {
			return invalid("delayed policy", int(p))
		}
		o.delayedOnStop = p
		return nil
	})
}

// WithUniqueTTL keeps a finished task's UniqueKey taken for d after the
// task's final outcome, so that a duplicate submitted within d is still
// rejected. The key of a task removed by [Scheduler.Cancel] (whose next
// run never came: it may be a retry) is free when Cancel returns,
// whatever d is. The default, and 0, releases the key at once. A negative
// d is invalid.
func WithUniqueTTL(d time.Duration) Option {
	return optionFunc(func(o *options) error {
		if d < 0 {
			return invalid("unique TTL", d)
		}
		o.uniqueTTL = d
		return nil
	})
}

// WithDeadLetters keeps the last capacity tasks whose final outcome is a
// failure (retries exhausted, [SkipRetry], panic) in an in-memory list, read
// with [Scheduler.DeadLetters] and re-submitted with
// [Scheduler.Requeue]; fn, if not nil, is called with each such outcome as
// well. The default keeps none. A negative capacity is invalid.
func WithDeadLetters(capacity int, fn func(Outcome)) Option {
	return deadLettersOption{capacity, fn}
}

// deadLettersOption is WithDeadLetters's option.
type deadLettersOption struct {
	capacity int
	fn       func(Outcome)
}

func (d deadLettersOption) apply(o *options) error {
	if d.capacity < 0 {
		return invalid("dead letter capacity", d.capacity)
	}
	o.deadCap, o.onDead = d.capacity, d.fn
	return nil
}

// KeepsDeadLetters reports whether the option keeps dead letters or calls
// a function with them. The NATS broker asks it of the options given to
// its consumer's local scheduler, which refuses them: that scheduler runs
// each delivery once, as a copy of the task.
func (d deadLettersOption) KeepsDeadLetters() bool { return d.capacity > 0 || d.fn != nil }
