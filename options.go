package taskpool

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"
)

// Option configures a [Scheduler]. Options are applied by [New] in order;
// a zero value passed to an option means "use the default".
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
}

// Defaults.
const (
	// DefaultQueueSize is the capacity of the task channel.
	DefaultQueueSize = 1024
	// DefaultBatchSize is the most tasks handed to a worker at once.
	DefaultBatchSize = 16
)

func defaultOptions() options {
	return options{
		workers:   runtime.GOMAXPROCS(0),
		queueSize: DefaultQueueSize,
		batchSize: DefaultBatchSize,
		logger:    slog.New(slog.DiscardHandler),
	}
}

func invalid(name string, v any) error {
	return fmt.Errorf("%w: %s = %v", ErrInvalidOption, name, v)
}

// WithWorkers sets the number of worker goroutines. The default, and the
// meaning of 0, is runtime.GOMAXPROCS(0). A negative n is invalid.
func WithWorkers(n int) Option {
	return optionFunc(func(o *options) error {
		if n < 0 {
			return invalid("workers", n)
		}
		if n > 0 {
			o.workers = n
		}
		return nil
	})
}

// WithQueueSize sets the capacity of the task channel: how many accepted
// tasks may wait for a worker before Submit blocks and TrySubmit returns
// [ErrQueueFull]. The default is [DefaultQueueSize]. A negative n is
// invalid.
func WithQueueSize(n int) Option {
	return optionFunc(func(o *options) error {
		if n < 0 {
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
// slow one. The dispatcher never hands a worker more than its fair share
// of the queue. The default is [DefaultBatchSize]; a negative n is invalid.
func WithBatchSize(n int) Option {
	return optionFunc(func(o *options) error {
		if n < 0 {
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
// with its final outcome: after it ran, or when it was dropped by a Stop
// whose deadline passed (with [ErrSchedulerClosed]). fn runs on a worker
// or dispatcher goroutine, must be safe for concurrent use and should
// return quickly. The default is no hook.
func WithCompletionHook(fn func(Outcome)) Option {
	return optionFunc(func(o *options) error {
		o.onComplete = fn
		return nil
	})
}

// WithMiddleware appends middleware around the handler. The first
// middleware given is the outermost. A nil middleware is invalid.
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

// WithoutPanicRecovery lets a panicking handler crash the process instead
// of turning the panic into a [*PanicError]. Use it where a panic must
// stop everything, such as in tests.
func WithoutPanicRecovery() Option {
	return optionFunc(func(o *options) error {
		o.noRecover = true
		return nil
	})
}
