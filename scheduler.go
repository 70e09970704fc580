package taskpool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskpool/taskpool/internal/engine"
)

// state is the lifecycle of a Scheduler.
type state int32

const (
	stateNew state = iota
	stateRunning
	stateStopping
	stateStopped
)

func (s state) String() string {
	switch s {
	case stateNew:
		return "new"
	case stateRunning:
		return "running"
	case stateStopping:
		return "stopping"
	case stateStopped:
		return "stopped"
	}
	return fmt.Sprintf("state(%d)", int32(s))
}

// numPriorities is the number of priority lanes.
const numPriorities = engine.Lanes

// Scheduler runs tasks on a set of worker goroutines.
//
// Submitted tasks go into a bounded task channel per priority, in batches.
// A single dispatcher goroutine takes them from there and hands them, in
// batches, to idle workers: each worker registers its private task channel
// on the scheduler's channel of worker channels whenever it has room for
// work. A worker runs each task through the [Handler] (usually a
// [Registry], which picks the handler by task type). No goroutine is
// started per task. Delayed tasks, retries and rate-limited tasks wait in
// one timer heap, driven by one timer goroutine, until they are due.
//
// That engine knows nothing else. Every policy (delays, retries, dead
// letters, limits, unique keys, pause, cancel, statistics) is a layer on
// it, and every accepted task gets exactly one outcome, through one path.
//
// A Scheduler is safe for concurrent use. Create one with [New], start it
// with [Scheduler.Start] and stop it with [Scheduler.Stop]; it cannot be
// restarted.
type Scheduler struct {
	opts    options
	handler Handler                      // the handler as given
	reg     *Registry                    // handler as a Registry, for per-type settings; may be nil
	lookup  func(string) (Handler, bool) // submit-time type check; nil if the handler has none
	chain   func(Handler) Handler        // the middleware, applied once per type

	e *engine.Engine[job, local]

	mu    sync.Mutex // serialises Start, Stop, Resize, Pause and Resume
	state atomic.Int32
	// sizeMu keeps the pool from growing while Stats reads Workers and
	// then counts the running tasks: Start and Resize write it, Stats
	// reads it.
	// (Shrinking retires only idle workers, so it needs no lock.) It is
	// not s.mu, which is held while the logger is called.
	sizeMu sync.RWMutex
	size   int // under sizeMu: the workers asked for (New, Resize)
	lent   int // under sizeMu: the workers added for waiting handlers (lend.go)

	binds    atomic.Pointer[map[string]*[numPriorities]binding]
	lastBind atomic.Pointer[[numPriorities]binding] // the bindings of the type submitted last: most submitters repeat a type
	bindsMu  sync.Mutex
	limits   map[*handlerEntry]*typeLimit // under bindsMu

	prefix string        // random per scheduler, at the head of generated IDs
	ids    atomic.Uint64 // blocks of ID numbers are reserved from it
	idsMu  sync.Mutex
	idGen  idGen // under idsMu: IDs for records made off the workers

	baseCtx context.Context
	cancel  context.CancelCauseFunc
	quit    chan struct{} // closed when Stop begins
	done    chan struct{} // closed when every goroutine of the scheduler has exited
	stopped atomic.Bool   // the shutdown has begun waiting for the last outcomes
	abandon sync.Once
	gaveUp  atomic.Bool // Stop's deadline passed: nothing more starts

	// shared counts the outcomes settled off the workers (Cancel, the
	// timer goroutine, a Stop that ran out of time).
	shared counters
	// tombs counts, per priority, canceled tasks still in a lane: the
	// worker that meets one skips it.
	tombs [numPriorities]atomic.Int64

	timers    timerQueue
	timerDone chan struct{}
	uniq      uniqueKeys
	index     cancelIndex
	dead      deadLetters
}

// New returns a Scheduler that runs tasks with h, usually a [*Registry].
// When h can look up task types (it has a method
// Lookup(string) (Handler, bool), as Registry does), Submit rejects tasks of
// an unknown type at once. Per-type settings apply when h is a *Registry.
//
// New returns an error wrapping [ErrNilHandler] for a nil h, or
// [ErrInvalidOption] for an out-of-range option.
func New(h Handler, opts ...Option) (*Scheduler, error) {
	if isNil(h) {
		return nil, ErrNilHandler
	}
	o := defaultOptions()
	for _, opt := range opts {
		if opt == nil {
			return nil, invalid("option", "nil")
		}
		if err := opt.apply(&o); err != nil {
			return nil, err
		}
	}
	s := &Scheduler{
		opts:      o,
		handler:   h,
		limits:    make(map[*handlerEntry]*typeLimit),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
		timerDone: make(chan struct{}),
		prefix:    randomPrefix(),
	}
	if r, ok := h.(*Registry); ok {
		s.reg = r
		r.use()
	}
	if l, ok := h.(interface{ Lookup(string) (Handler, bool) }); ok {
		s.lookup = l.Lookup
	}
	mws := o.middleware
	s.chain = func(h Handler) Handler {
		for i := len(mws) - 1; i >= 0; i-- {
			h = mws[i](h)
		}
		return h
	}
	s.e = engine.New(engine.Config{
		Workers:   o.workers,
		BatchSize: o.batchSize,
		BatchWork: batchWork,
		QueueSize: o.queueSize,
		Weights:   o.weights,
		Strict:    o.strict,
		Blocked:   Lend, // a Submit from a handler that waits for room lends its worker
	}, runner{s})
	s.size = o.workers
	s.timers.init()
	s.dead.capacity = o.deadCap
	return s, nil
}

// Start starts the dispatcher, the timer goroutine and the workers. It
// returns [ErrAlreadyStarted] when called twice and [ErrSchedulerClosed]
// after Stop.
func (s *Scheduler) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state(s.state.Load()) {
	case stateNew:
	case stateRunning:
		return ErrAlreadyStarted
	default:
		return ErrSchedulerClosed
	}
	parent := s.opts.baseContext
	if parent == nil {
		parent = context.Background()
	}
	s.baseCtx, s.cancel = context.WithCancelCause(parent)
	s.sizeMu.Lock()
	s.e.Start()
	s.sizeMu.Unlock()
	s.state.Store(int32(stateRunning))
	go s.runTimers(false)
	s.opts.logger.Debug("taskpool: started", "workers", s.opts.workers, "queue", s.opts.queueSize)
	return nil
}

// Stop stops the scheduler gracefully. It stops accepting tasks at once,
// removes the periodic schedules, runs every task already accepted
// (delayed tasks and retries that are not due are run early or reported,
// as [WithDelayedOnStop] says; anything due when Stop begins, or held back
// only by a rate limit or a concurrency limit, runs), waits for the
// running handlers and returns nil once every accepted task has its
// outcome and every goroutine of the scheduler has exited.
//
// If ctx ends while an accepted task has no outcome yet (its handler
// runs, or it waits), Stop cancels the contexts of the running handlers
// (with cause [ErrSchedulerClosed]), reports every accepted task that has
// not started to the completion hook (and its Future) with
// [ErrSchedulerClosed], waits for the handlers to return, and returns a
// [*StopError] with the number of tasks that did not run. A handler that
// ignores its context delays Stop until it returns; one that fails, with
// attempts left, is not retried: its next attempt is reported not run the
// same way, with an error wrapping ErrSchedulerClosed and the run's error.
// A ctx that has ended when Stop is called gives up at once: a paused
// scheduler is not resumed first, and starts no task. If ctx ends once
// every accepted task has its outcome, nothing is left to give up: Stop
// waits for the goroutines to exit and returns nil.
//
// Stop with a nil ctx returns [ErrNilContext] and stops nothing.
//
// Stop is idempotent: a later call waits for the same shutdown. The first
// call whose ctx ends while a task has no outcome gives it up as above and
// returns the *StopError; every other call returns nil once the shutdown
// is over, whether its own ctx ended or not. Stop before Start marks the
// scheduler closed.
//
// Stop waits for the scheduler's goroutines to exit, so it must not be
// called on one of them: from a handler, a Backoff, a RateLimiter, a
// Schedule, or a completion or dead-letter hook (but for one that Cancel
// runs on its caller's goroutine), it would wait for its own caller and
// never return, whatever ctx says. Call it there in a goroutine of its
// own (go s.Stop(ctx)).
func (s *Scheduler) Stop(ctx context.Context) error {
	if ctx == nil {
		return ErrNilContext
	}
	s.mu.Lock()
	switch state(s.state.Load()) {
	case stateNew:
		s.state.Store(int32(stateStopped))
		close(s.done)
		s.mu.Unlock()
		return nil
	case stateRunning:
		s.state.Store(int32(stateStopping))
		s.e.CloseAdmission()
		s.timers.closeAdmission()
		s.e.Drain()
		if ctx.Err() == nil {
			s.e.Unhold() // a graceful stop runs what was accepted
		}
		// A ctx that has ended already gives up below, before a paused
		// scheduler starts anything (Abandon ends the hold), or, with
		// nothing left to give up, lifts the hold there.
		close(s.quit)
		s.opts.logger.Debug("taskpool: stopping")
		go s.shutdown()
	}
	s.mu.Unlock()

	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		select {
		case <-s.done:
			return nil // the shutdown had completed: nothing to give up
		default:
		}
		if s.settled() {
			// Every accepted task has its outcome (admission is closed,
			// so none can come): nothing is left to give up, and only
			// the goroutines' exit remains, which giving up would not
			// hasten. The hold is lifted now (the engine's Close, which
			// the shutdown calls, would lift it too).
			s.e.Unhold()
			<-s.done
			return nil
		}
	}
	first := s.giveUp()
	<-s.done
	if !first {
		return nil
	}
	n := s.Stats().NotRun
	s.opts.logger.Warn("taskpool: stop deadline passed", "not_run", n)
	return &StopError{NotRun: int(n), Err: ctx.Err()}
}

// giveUp makes the scheduler start nothing more: every accepted task that
// has not started is reported not run. It reports whether this call did it.
func (s *Scheduler) giveUp() bool {
	first := false
	s.abandon.Do(func() {
		first = true
		s.gaveUp.Store(true)
		// Abandon before cancelling: once a running handler sees its
		// context cancelled by Stop, no task the engine has not begun
		// starts any more (one a Goexit in a RateLimiter put back
		// meanwhile ran, TestReview25dReserveGoexitAfterTheDeadline).
		s.e.Abandon()
		s.cancel(ErrSchedulerClosed)
		s.timers.wakeUp() // it reports what waits not run
		s.e.Notify()
	})
	return first
}

// shutdown waits until every accepted task has its outcome, then stops the
// engine and the timer goroutine.
func (s *Scheduler) shutdown() {
	s.stopped.Store(true)
	for !s.settled() {
		<-s.e.Progress()
	}
	s.timers.stop()
	<-s.timerDone
	s.e.Close()
	s.mu.Lock()
	s.state.Store(int32(stateStopped))
	s.mu.Unlock()
	s.cancel(ErrSchedulerClosed)
	close(s.done)
	s.opts.logger.Debug("taskpool: stopped")
}

// settled reports whether every accepted task has its outcome. It is
// exact once admission is closed: nothing is accepted any more, and every
// outcome is counted before the path that settles it signals progress.
func (s *Scheduler) settled() bool {
	var c counts
	s.e.Each(func(l *local) { c.add(l.c.snapshot()) })
	c.add(s.shared.snapshot())
	return c.outcomes() == s.accepted()
}

// accepted is the number of tasks accepted: by the engine's admission
// (Submit, due periodic activations) and by the timer heap's (SubmitAt).
func (s *Scheduler) accepted() uint64 {
	return s.e.Accepted() + s.timers.accepted.Load()
}

// Resize sets the number of workers to n while the scheduler runs. Growing
// starts workers at once. Shrinking retires workers as they become idle:
// a running task is never interrupted and no task is lost. A worker lent
// by a handler that waits (see [Lend]) comes on top of n until its wait
// returns. It returns an error wrapping [ErrInvalidOption] for n < 1 or
// n > [MaxWorkers], and [ErrNotStarted] or [ErrSchedulerClosed] when the
// scheduler is not running.
func (s *Scheduler) Resize(n int) error {
	if n < 1 || n > MaxWorkers {
		return invalid("workers", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := state(s.state.Load()); st != stateRunning {
		return s.closedErr()
	}
	s.sizeMu.Lock()
	s.size = n
	s.resizeLocked()
	s.sizeMu.Unlock()
	return nil
}

func (s *Scheduler) closedErr() error {
	if state(s.state.Load()) == stateNew {
		return ErrNotStarted
	}
	return ErrSchedulerClosed
}

func (s *Scheduler) running() bool { return state(s.state.Load()) == stateRunning }

// newID returns a generated ID for a task that is not on a worker.
func (s *Scheduler) newID() string {
	s.idsMu.Lock()
	defer s.idsMu.Unlock()
	return s.idGen.next(s.prefix, &s.ids)
}

func (s *Scheduler) now() time.Time { return s.opts.clock.Now() }

func randomPrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return hex.EncodeToString(b[:])
}
