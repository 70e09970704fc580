package taskpool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
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

// closedBit marks the admission gate closed; the bits below it count the
// Submit calls in flight.
const closedBit = uint64(1) << 63

// numPriorities is the number of task channels, one per [Priority].
const numPriorities = 3

// Scheduler runs tasks on a set of worker goroutines.
//
// Submitted tasks go into a bounded task channel, one per priority. A
// single dispatcher goroutine takes them from there and hands them, in
// small batches, to idle workers: each worker registers its private task
// channel on the scheduler's channel of worker channels whenever it has
// room for work. A worker runs each task through the [Handler] (usually a
// [Registry], which picks the handler by task type). No goroutine is
// started per task. Delayed tasks and retries wait in one timer heap,
// driven by one timer goroutine, until they are due.
//
// A Scheduler is safe for concurrent use. Create one with [New], start it
// with [Scheduler.Start] and stop it with [Scheduler.Stop]; it cannot be
// restarted.
type Scheduler struct {
	opts    options
	handler Handler                      // root handler, middleware applied at Start
	reg     *Registry                    // h as a Registry, for per-type settings; may be nil
	lookup  func(string) (Handler, bool) // submit-time type check; nil if the handler has none

	// queues are the task channels, high priority first. The default one
	// is made by New; the others when first used, so that a large
	// WithQueueSize costs memory only for the priorities in use.
	queues     [numPriorities]atomic.Pointer[chan envelope]
	queueMu    sync.Mutex
	queueAdded chan struct{}     // tells the dispatcher a queue was made
	idle       chan registration // the channel of worker channels: workers with room for work
	procs      int32             // GOMAXPROCS at Start: workers spin before parking only up to this many

	mu      sync.Mutex // serialises Start, Stop and Resize; guards workers
	state   atomic.Int32
	workers map[*worker]struct{}
	retired counts // folded in from workers that exited

	// gate admits Submit calls: closedBit once Stop has begun, plus the
	// number of Submit calls between admission and their send. Stop waits
	// for the count to reach zero before the final drain, so no accepted
	// task can arrive after the dispatcher has looked for the last time.
	// The timer goroutine holds one admission while it runs. Every Submit
	// writes the gate and submitted: they have a cache line of their own.
	_         [64]byte
	gate      atomic.Uint64
	submitted atomic.Uint64
	_         [48]byte

	quiesced chan struct{} // closed when the gate is closed and empty
	quiesce  sync.Once

	roomMu  sync.Mutex
	room    [numPriorities]chan struct{} // closed and replaced when a queue drains to half
	waiting [numPriorities]atomic.Int32  // Submit calls waiting for room

	quit      chan struct{} // closed by Stop: no more submissions
	done      chan struct{} // closed when every goroutine of the scheduler has exited
	abandon   atomic.Bool   // set when Stop's deadline passes: run nothing more
	baseCtx   context.Context
	cancel    context.CancelCauseFunc
	workersWG sync.WaitGroup
	timerDone chan struct{}

	timers  timerQueue
	uniq    uniqueKeys
	pending pendingIDs
	dead    deadLetters
	limits  sync.Map // *handlerEntry -> *typeLimit

	notRun   atomic.Uint64 // accepted tasks dropped by Stop
	canceled atomic.Uint64 // tasks removed by Cancel

	pause pauseGate

	target  atomic.Int32 // worker count asked for by Resize
	live    atomic.Int32 // workers started and not yet retired
	resized chan struct{}

	_     [64]byte // the dispatcher's fields below are written per batch
	ids   idGen    // dispatcher only
	cycle []int    // dispatcher only: weighted order of the queues
	next  int      // dispatcher only: position in cycle
	// held is a task per queue that a blocking select received before the
	// dispatcher chose by priority (dispatcher only).
	held    [numPriorities]envelope
	holding [numPriorities]bool
}

// registration is a worker's offer of work: its private task channel, and
// an empty batch buffer for the dispatcher to fill next. Buffers circulate
// between the dispatcher and the workers, so a hand-off allocates nothing.
type registration struct {
	ch    chan<- []envelope
	spare []envelope
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
		idle:      make(chan registration, o.workers),
		workers:   make(map[*worker]struct{}, o.workers),
		quiesced:  make(chan struct{}),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
		timerDone: make(chan struct{}),
		resized:   make(chan struct{}, 1),
		cycle:     weightedCycle(o.weights),
	}
	for i := range s.room {
		s.room[i] = make(chan struct{})
	}
	s.queueAdded = make(chan struct{}, 1)
	s.queue(prioIndex(PriorityDefault))
	s.timers.init()
	s.dead.capacity = o.deadCap
	if r, ok := h.(*Registry); ok {
		s.reg = r
	}
	if l, ok := h.(interface{ Lookup(string) (Handler, bool) }); ok {
		s.lookup = l.Lookup
	}
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
	for i := len(s.opts.middleware) - 1; i >= 0; i-- {
		s.handler = s.opts.middleware[i](s.handler)
	}
	parent := s.opts.baseContext
	if parent == nil {
		parent = context.Background()
	}
	s.baseCtx, s.cancel = context.WithCancelCause(parent)
	s.ids.prefix = randomPrefix()
	s.timers.prefix = s.ids.prefix
	s.target.Store(int32(s.opts.workers))
	s.procs = int32(runtime.GOMAXPROCS(0))
	for range s.opts.workers {
		s.startWorker()
	}
	s.gate.Add(1) // the timer goroutine's admission, given back when it exits
	s.state.Store(int32(stateRunning))
	go s.runTimers()
	go s.dispatch()
	s.opts.logger.Debug("taskpool: started", "workers", s.opts.workers, "queue", s.opts.queueSize)
	return nil
}

// Submit enqueues t. When the queue of t's priority is full it blocks until
// there is room or ctx is done; ctx bounds only that wait, not the task's
// run.
//
// Submit returns an error wrapping [ErrInvalidType] for an empty type,
// [ErrNoHandler] for a type the registry does not know, [ErrDuplicateTask]
// when t.UniqueKey is taken, [ErrNotStarted] before Start,
// [ErrSchedulerClosed] once Stop has begun, or ctx's error. A nil error
// means the task was accepted: it will run, or be reported to the
// completion hook as not run.
//
// A handler may submit to its own scheduler, but a handler blocked in
// Submit holds its worker: if every worker does that on a full queue,
// nothing drains the queue until Stop, which releases them with
// [ErrSchedulerClosed]. Handlers that fan out should use
// [Scheduler.TrySubmit] or pass their own ctx with a deadline, and should
// not wait on the [Future] of a task queued behind them unless there are
// more workers than such waits.
func (s *Scheduler) Submit(ctx context.Context, t Task) error {
	return s.submit(ctx, envelope{task: t}, true)
}

// TrySubmit enqueues t if its queue has room, without blocking. It returns
// [ErrQueueFull] when it has none, and otherwise the same errors as
// [Scheduler.Submit].
func (s *Scheduler) TrySubmit(t Task) error {
	return s.submit(context.Background(), envelope{task: t}, false)
}

// SubmitFuture enqueues t like [Scheduler.Submit] and returns a [Future]
// for its outcome. It returns the same errors as Submit.
func (s *Scheduler) SubmitFuture(ctx context.Context, t Task) (*Future, error) {
	f := newFuture()
	if err := s.submit(ctx, envelope{task: t, future: f}, true); err != nil {
		return nil, err
	}
	return f, nil
}

func (s *Scheduler) submit(ctx context.Context, e envelope, block bool) error {
	if err := s.check(&e); err != nil {
		return err
	}
	done := ctx.Done()
	if done != nil {
		select {
		case <-done:
			return ctx.Err()
		default:
		}
	}
	if !s.enter() {
		return s.closedErr()
	}
	defer s.leave()
	if err := s.admit(&e); err != nil {
		return err
	}
	q := prioIndex(e.task.Priority)
	select {
	case s.queue(q) <- e:
		s.submitted.Add(1)
		return nil
	default:
	}
	err := ErrQueueFull
	if block {
		err = s.waitForRoom(ctx, q, e)
	}
	if err != nil {
		s.unadmit(e)
		return err
	}
	s.submitted.Add(1)
	return nil
}

// admit takes the task's unique key and tracks its ID for Cancel: the
// slow-path bookkeeping of tasks that ask for it.
func (s *Scheduler) admit(e *envelope) error {
	if e.task.UniqueKey != "" {
		if err := s.uniq.acquire(e.task.UniqueKey, s.opts.clock.Now()); err != nil {
			return err
		}
	}
	if e.task.ID != "" {
		s.pending.add(e.task.ID)
		e.tracked = true
	}
	return nil
}

// unadmit undoes admit for a task that was not accepted after all.
func (s *Scheduler) unadmit(e envelope) {
	if e.tracked {
		s.pending.remove(e.task.ID)
	}
	if e.task.UniqueKey != "" {
		s.uniq.release(e.task.UniqueKey, time.Time{})
	}
}

// waitForRoom is Submit's slow path, taken when the queue is full.
//
// It first yields a few times: a parked submitter is woken onto the
// dispatcher's processor, where it competes with the dispatcher while
// another processor may sit idle; a yielding one stays runnable on the
// global queue, where any idle processor picks it up. Then, rather than
// parking on the channel send, which the dispatcher would wake for every
// single slot it frees (one park and wake-up per task while the queue stays
// full), it waits for the queue to drain to half before trying again.
func (s *Scheduler) waitForRoom(ctx context.Context, q int, e envelope) error {
	for range spinYields {
		runtime.Gosched()
		select {
		case s.queue(q) <- e:
			return nil
		default:
		}
	}
	for {
		s.roomMu.Lock()
		room := s.room[q]
		s.waiting[q].Add(1)
		s.roomMu.Unlock()
		// Try again now that the dispatcher knows we wait: room freed
		// before it looked at waiting would otherwise go unannounced.
		select {
		case s.queue(q) <- e:
			s.waiting[q].Add(-1)
			return nil
		default:
		}
		select {
		case <-room:
			s.waiting[q].Add(-1)
		case <-ctx.Done():
			s.waiting[q].Add(-1)
			return ctx.Err()
		case <-s.quit:
			s.waiting[q].Add(-1)
			return ErrSchedulerClosed
		}
		select {
		case s.queue(q) <- e:
			return nil
		default:
		}
	}
}

// queue returns the task channel of queue index q, making it on first use.
func (s *Scheduler) queue(q int) chan envelope {
	if ch := s.queues[q].Load(); ch != nil {
		return *ch
	}
	s.queueMu.Lock()
	defer s.queueMu.Unlock()
	if ch := s.queues[q].Load(); ch != nil {
		return *ch
	}
	ch := make(chan envelope, s.opts.queueSize)
	s.queues[q].Store(&ch)
	select {
	case s.queueAdded <- struct{}{}:
	default:
	}
	return ch
}

// loaded returns the task channel of queue index q, or nil if it has not
// been made: a nil channel is never ready in a select.
func (s *Scheduler) loaded(q int) chan envelope {
	if ch := s.queues[q].Load(); ch != nil {
		return *ch
	}
	return nil
}

// spinYields is how many times a goroutine yields before it parks.
const spinYields = 4

// check validates t and resolves its type's registry entry.
func (s *Scheduler) check(e *envelope) error {
	t := &e.task
	if t.Type == "" {
		return fmt.Errorf("%w: empty", ErrInvalidType)
	}
	if s.reg != nil {
		if e.entry = s.reg.entry(t.Type); e.entry == nil {
			return fmt.Errorf("%w: %q", ErrNoHandler, t.Type)
		}
		return nil
	}
	if s.lookup != nil {
		if _, ok := s.lookup(t.Type); !ok {
			return fmt.Errorf("%w: %q", ErrNoHandler, t.Type)
		}
	}
	return nil
}

// enter admits a Submit call, or reports false once Stop has begun.
func (s *Scheduler) enter() bool {
	if state(s.state.Load()) != stateRunning {
		return false
	}
	if s.gate.Add(1)&closedBit != 0 {
		s.leave()
		return false
	}
	return true
}

func (s *Scheduler) leave() {
	if s.gate.Add(^uint64(0)) == closedBit {
		s.quiesce.Do(func() { close(s.quiesced) })
	}
}

func (s *Scheduler) closedErr() error {
	if state(s.state.Load()) == stateNew {
		return ErrNotStarted
	}
	return ErrSchedulerClosed
}

// Stop stops the scheduler gracefully. It stops accepting tasks at once,
// removes the periodic schedules, runs every task already accepted
// (delayed tasks that are not due are run early or reported, as
// [WithDelayedOnStop] says), waits for the running handlers and returns nil
// once every goroutine of the scheduler has exited.
//
// If ctx ends first, Stop cancels the contexts of the running handlers
// (with cause [ErrSchedulerClosed]), reports every accepted task that has
// not started to the completion hook (and its Future) with
// [ErrSchedulerClosed], waits for the handlers to return, and returns a
// [*StopError] with the number of tasks that did not run. A handler that
// ignores its context delays Stop until it returns.
//
// Stop is idempotent: a later call waits for the same shutdown and returns
// nil. Stop before Start marks the scheduler closed.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	switch state(s.state.Load()) {
	case stateNew:
		s.state.Store(int32(stateStopped))
		close(s.done)
		s.mu.Unlock()
		return nil
	case stateRunning:
		s.state.Store(int32(stateStopping))
		if s.gate.Or(closedBit) == 0 {
			s.quiesce.Do(func() { close(s.quiesced) })
		}
		close(s.quit)
		s.resumeLocked()
		s.opts.logger.Debug("taskpool: stopping")
	}
	s.mu.Unlock()

	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
	}
	first := !s.abandon.Swap(true)
	s.cancel(ErrSchedulerClosed)
	<-s.done
	if !first {
		return nil
	}
	n := s.notRun.Load()
	s.opts.logger.Warn("taskpool: stop deadline passed", "not_run", n)
	return &StopError{NotRun: int(n), Err: ctx.Err()}
}

// Resize sets the number of workers to n while the scheduler runs. Growing
// starts workers at once. Shrinking retires workers as they become idle:
// a running task is never interrupted and no task is lost. It returns an
// error wrapping [ErrInvalidOption] for n < 1, and [ErrNotStarted] or
// [ErrSchedulerClosed] when the scheduler is not running.
func (s *Scheduler) Resize(n int) error {
	if n < 1 {
		return invalid("workers", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := state(s.state.Load()); st != stateRunning {
		return s.closedErr()
	}
	s.target.Store(int32(n))
	for int(s.live.Load()) < n {
		s.startWorker()
	}
	select {
	case s.resized <- struct{}{}:
	default:
	}
	return nil
}

// Stats is a snapshot of a Scheduler's counters. The counters are read one
// by one while tasks run, so they are each exact but not taken at a single
// instant.
type Stats struct {
	// Submitted counts accepted tasks, periodic activations included.
	Submitted uint64
	// Queued counts accepted tasks that are due and have not started.
	Queued uint64
	// Delayed counts tasks waiting in the timer heap: delayed tasks,
	// retries and rate-limited tasks.
	Delayed int
	// Running counts handlers running now; never more than Workers.
	Running int
	// Succeeded counts tasks whose final run returned nil.
	Succeeded uint64
	// Failed counts tasks whose final run failed (panics included).
	Failed uint64
	// Retried counts failed runs that were followed by another attempt.
	Retried uint64
	// Panicked counts runs that panicked, retried or not.
	Panicked uint64
	// NotRun counts accepted tasks that Stop reported without running.
	NotRun uint64
	// Canceled counts tasks removed by [Scheduler.Cancel].
	Canceled uint64
	// Workers is the number of worker goroutines.
	Workers int
	// Paused reports whether [Scheduler.Pause] holds tasks back.
	Paused bool
}

// Stats returns a snapshot of the scheduler's counters. It is cheap: it
// sums a few counters per worker and takes no lock on the task path.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	st := Stats{Workers: len(s.workers)}
	c := s.retired
	for w := range s.workers {
		wc := w.counters.snapshot()
		c.add(wc)
		if wc.ticks&1 == 1 {
			st.Running++
		}
	}
	s.mu.Unlock()
	st.Submitted = s.submitted.Load()
	st.Paused = s.pause.paused()
	st.Delayed = s.timers.pendingTasks()
	st.Failed, st.Panicked, st.Retried = c.fails, c.panics, c.retries
	st.NotRun, st.Canceled = s.notRun.Load(), s.canceled.Load()
	finished := c.ticks / 2
	st.Succeeded = sub(finished, c.fails+c.retries)
	final := st.Succeeded + st.Failed + st.NotRun + st.Canceled
	st.Queued = sub(st.Submitted, final+uint64(st.Running)+uint64(st.Delayed))
	return st
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// dropped reports an accepted task that will never run.
func (s *Scheduler) dropped(e envelope) {
	s.notRun.Add(1)
	s.complete(e, Outcome{Task: e.task, Err: ErrSchedulerClosed, Attempts: max(e.task.Attempt-1, 0)})
}

// complete delivers a task's final outcome: to the dead letters when it
// failed, to the hook, and to its Future; then it frees the unique key.
func (s *Scheduler) complete(e envelope, out Outcome) {
	out.Task.result = nil
	if out.Err != nil && isFailure(out.Err) {
		s.dead.add(out)
		if s.opts.onDead != nil {
			s.opts.onDead(out)
		}
	}
	if s.opts.onComplete != nil {
		s.opts.onComplete(out)
	}
	if e.future != nil {
		e.future.complete(out)
	}
	if e.task.UniqueKey != "" {
		var until time.Time
		if s.opts.uniqueTTL > 0 {
			until = s.opts.clock.Now().Add(s.opts.uniqueTTL)
		}
		s.uniq.release(e.task.UniqueKey, until)
	}
}

// isFailure tells a handler's failure from a task that was not run.
func isFailure(err error) bool {
	return !errors.Is(err, ErrSchedulerClosed) && !errors.Is(err, ErrCanceled)
}

func (s *Scheduler) logFailure(t Task, err error, retry time.Duration) {
	l := s.opts.logger
	if !l.Enabled(s.baseCtx, slog.LevelWarn) {
		return
	}
	attrs := []slog.Attr{
		slog.String("id", t.ID),
		slog.String("type", t.Type),
		slog.Int("attempt", t.Attempt),
		slog.Any("error", err),
	}
	if retry >= 0 {
		attrs = append(attrs, slog.Duration("retry_in", retry))
	}
	var pe *PanicError
	if errors.As(err, &pe) {
		attrs = append(attrs, slog.String("stack", string(pe.Stack)))
		l.LogAttrs(s.baseCtx, slog.LevelError, "taskpool: handler panic", attrs...)
		return
	}
	l.LogAttrs(s.baseCtx, slog.LevelWarn, "taskpool: task failed", attrs...)
}

func randomPrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return hex.EncodeToString(b[:])
}
