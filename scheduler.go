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

// Scheduler runs tasks on a fixed set of worker goroutines.
//
// Submitted tasks go into a bounded task channel. A single dispatcher
// goroutine takes them from it and hands them, in small batches, to idle
// workers: each worker registers its private task channel on the
// scheduler's channel of worker channels whenever it has room for work. A
// worker runs each task through the [Handler] (usually a [Registry], which
// picks the handler by task type). No goroutine is started per task.
//
// A Scheduler is safe for concurrent use. Create one with [New], start it
// with [Scheduler.Start] and stop it with [Scheduler.Stop]; it cannot be
// restarted.
type Scheduler struct {
	opts    options
	handler Handler                      // root handler, middleware applied at Start
	lookup  func(string) (Handler, bool) // submit-time type check; nil if the handler has none

	tasks chan envelope     // the task channel: accepted tasks waiting for a worker
	idle  chan registration // the channel of worker channels: workers with room for work

	mu      sync.Mutex // serialises Start and Stop, guards workers
	state   atomic.Int32
	workers map[*worker]struct{}
	retired counts // folded in from workers that exited

	// gate admits Submit calls: closedBit once Stop has begun, plus the
	// number of Submit calls between admission and their send. Stop waits
	// for the count to reach zero before the final drain, so no accepted
	// task can arrive after the dispatcher has looked for the last time.
	// Every Submit writes it: it has a cache line of its own.
	_    [64]byte
	gate atomic.Uint64
	_    [56]byte

	quiesced chan struct{} // closed when the gate is closed and empty
	quiesce  sync.Once

	roomMu  sync.Mutex
	room    chan struct{} // closed and replaced when the queue drains to half
	waiting atomic.Int32  // Submit calls waiting for room

	quit      chan struct{} // closed by Stop: no more submissions
	done      chan struct{} // closed when the dispatcher and every worker have exited
	abandon   atomic.Bool   // set when Stop's deadline passes: run nothing more
	baseCtx   context.Context
	cancel    context.CancelCauseFunc
	workersWG sync.WaitGroup

	_        [64]byte      // the dispatcher's fields below are written per batch
	received atomic.Uint64 // tasks taken from the task channel (dispatcher only)
	notRun   atomic.Uint64 // accepted tasks dropped by an expired Stop
	nworkers int           // workers alive; dispatcher only once started
	ids      idGen         // dispatcher only
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
// an unknown type at once.
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
		opts:     o,
		handler:  h,
		tasks:    make(chan envelope, o.queueSize),
		idle:     make(chan registration, o.workers),
		workers:  make(map[*worker]struct{}, o.workers),
		quiesced: make(chan struct{}),
		room:     make(chan struct{}),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if l, ok := h.(interface{ Lookup(string) (Handler, bool) }); ok {
		s.lookup = l.Lookup
	}
	return s, nil
}

// Start starts the dispatcher and the workers. It returns
// [ErrAlreadyStarted] when called twice and [ErrSchedulerClosed] after Stop.
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
	for range s.opts.workers {
		s.startWorker()
	}
	s.nworkers = s.opts.workers
	s.state.Store(int32(stateRunning))
	go s.dispatch()
	s.opts.logger.Debug("taskpool: started", "workers", s.opts.workers, "queue", s.opts.queueSize)
	return nil
}

// Submit enqueues t. When the queue is full it blocks until there is room
// or ctx is done; ctx bounds only that wait, not the task's run.
//
// Submit returns an error wrapping [ErrInvalidType] for an empty type,
// [ErrNoHandler] for a type the registry does not know, [ErrNotStarted]
// before Start, [ErrSchedulerClosed] once Stop has begun, or ctx's error.
// A nil error means the task was accepted: it will run, or be reported to
// the completion hook as not run.
func (s *Scheduler) Submit(ctx context.Context, t Task) error {
	return s.submit(ctx, envelope{task: t}, true)
}

// TrySubmit enqueues t if the queue has room, without blocking. It returns
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
	if err := s.check(e.task); err != nil {
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
	select {
	case s.tasks <- e:
		return nil
	default:
	}
	if !block {
		return ErrQueueFull
	}
	// Yield a few times before parking. A parked submitter is woken onto
	// the dispatcher's processor, where it competes with the dispatcher
	// while another processor may sit idle; a yielding one stays runnable
	// on the global queue, where any idle processor picks it up.
	for range spinYields {
		runtime.Gosched()
		select {
		case s.tasks <- e:
			return nil
		default:
		}
	}
	return s.waitForRoom(done, ctx, e)
}

// waitForRoom is Submit's slow path, taken when the queue is full. Rather
// than parking on the channel send, which the dispatcher would wake for
// every single slot it frees (one park and wake-up per task while the
// queue stays full), a submitter waits for the queue to drain to half
// before trying again. The dispatcher closes the room channel then.
func (s *Scheduler) waitForRoom(done <-chan struct{}, ctx context.Context, e envelope) error {
	for {
		s.roomMu.Lock()
		room := s.room
		s.waiting.Add(1)
		s.roomMu.Unlock()
		// Try again now that the dispatcher knows we wait: room freed
		// before it looked at waiting would otherwise go unannounced.
		select {
		case s.tasks <- e:
			s.waiting.Add(-1)
			return nil
		default:
		}
		select {
		case <-room:
			s.waiting.Add(-1)
		case <-done:
			s.waiting.Add(-1)
			return ctx.Err()
		case <-s.quit:
			s.waiting.Add(-1)
			return ErrSchedulerClosed
		}
		select {
		case s.tasks <- e:
			return nil
		default:
		}
	}
}

// announceRoom wakes the submitters waiting for room once the queue has
// drained to half. Only the dispatcher calls it.
func (s *Scheduler) announceRoom() {
	if s.waiting.Load() == 0 || len(s.tasks) > cap(s.tasks)/2 {
		return
	}
	s.roomMu.Lock()
	close(s.room)
	s.room = make(chan struct{})
	s.roomMu.Unlock()
}

func (s *Scheduler) check(t Task) error {
	if t.Type == "" {
		return fmt.Errorf("%w: empty", ErrInvalidType)
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
// runs every task already accepted, waits for the running handlers and
// returns nil once every goroutine of the scheduler has exited.
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

// Stats is a snapshot of a Scheduler's counters. The counters are read one
// by one while tasks run, so they are each exact but not taken at a single
// instant.
type Stats struct {
	// Submitted counts accepted tasks.
	Submitted uint64
	// Queued counts accepted tasks that have not started.
	Queued uint64
	// Running counts handlers running now; never more than Workers.
	Running int
	// Succeeded counts tasks whose handler returned nil.
	Succeeded uint64
	// Failed counts tasks whose handler returned an error.
	Failed uint64
	// Panicked counts tasks whose handler panicked.
	Panicked uint64
	// NotRun counts accepted tasks dropped by a Stop whose deadline passed.
	NotRun uint64
	// Workers is the number of worker goroutines.
	Workers int
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
	// Read the queue before the received count: a task moving from one to
	// the other between the reads is then counted at most once.
	queued := uint64(len(s.tasks))
	st.Submitted = s.received.Load() + queued
	st.Failed, st.Panicked = c.failed, c.panicked
	st.NotRun = s.notRun.Load()
	finished := c.ticks / 2
	st.Succeeded = sub(finished, c.failed+c.panicked)
	st.Queued = sub(st.Submitted, finished+uint64(st.Running)+st.NotRun)
	return st
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// dispatch is the dispatcher: the only goroutine that receives from the
// task channel and the only one that sends to workers.
func (s *Scheduler) dispatch() {
	buf := make([]envelope, 0, s.opts.batchSize)
	for {
		e, ok := s.poll()
		if !ok {
			select {
			case e = <-s.tasks:
			case <-s.quit:
				s.drain(buf)
				return
			}
		}
		buf = append(buf, e)
		// Wait for a worker with room, then top the batch up with whatever
		// queued meanwhile: the deeper the queue, the bigger the batch.
		reg := <-s.idle
		buf = s.handoff(reg, s.fill(buf))
		s.announceRoom()
	}
}

// poll tries to receive a task, yielding between tries, before the
// dispatcher parks on an empty queue (see Submit for why yielding first).
func (s *Scheduler) poll() (envelope, bool) {
	for range spinYields {
		select {
		case e := <-s.tasks:
			return e, true
		default:
			runtime.Gosched()
		}
	}
	return envelope{}, false
}

// fill tops buf up from the task channel without blocking, to at most the
// batch size and at most a fair share of the queue per worker.
func (s *Scheduler) fill(buf []envelope) []envelope {
	limit := s.opts.batchSize
	if share := 1 + len(s.tasks)/s.nworkers; share < limit {
		limit = share
	}
	return s.take(buf, limit)
}

// take receives from the task channel without blocking until buf holds
// limit tasks or the channel is empty.
func (s *Scheduler) take(buf []envelope, limit int) []envelope {
	for len(buf) < limit {
		select {
		case e := <-s.tasks:
			buf = append(buf, e)
		default:
			return buf
		}
	}
	return buf
}

// handoff gives the batch to the registered worker and returns the
// worker's spare buffer, empty, for the next batch.
func (s *Scheduler) handoff(reg registration, batch []envelope) []envelope {
	for i := range batch {
		if batch[i].task.ID == "" {
			batch[i].task.ID = s.ids.next()
		}
	}
	s.received.Add(uint64(len(batch)))
	reg.ch <- batch // buffered, and the worker is waiting: never blocks
	return reg.spare
}

// drain runs once Stop has begun: it waits until no Submit is in flight,
// hands every task left in the channel to the workers (or, once Stop's
// deadline has passed, reports them not run), then closes the worker
// channels and waits for the workers to exit.
func (s *Scheduler) drain(buf []envelope) {
	<-s.quiesced
	for {
		buf = s.take(buf, s.opts.batchSize)
		if len(buf) == 0 {
			break
		}
		if s.abandon.Load() {
			for i := range buf {
				if buf[i].task.ID == "" {
					buf[i].task.ID = s.ids.next()
				}
				s.received.Add(1)
				s.dropped(buf[i])
				buf[i] = envelope{}
			}
			buf = buf[:0]
			continue
		}
		buf = s.handoff(<-s.idle, buf)
	}
	for ; s.nworkers > 0; s.nworkers-- {
		close((<-s.idle).ch)
	}
	s.workersWG.Wait()
	s.mu.Lock()
	s.state.Store(int32(stateStopped))
	s.mu.Unlock()
	s.cancel(ErrSchedulerClosed)
	close(s.done)
	s.opts.logger.Debug("taskpool: stopped")
}

// dropped reports an accepted task that will never run.
func (s *Scheduler) dropped(e envelope) {
	s.notRun.Add(1)
	s.complete(e.future, Outcome{Task: e.task, Err: ErrSchedulerClosed})
}

// complete delivers a task's final outcome to the hook and its Future.
func (s *Scheduler) complete(f *Future, out Outcome) {
	if s.opts.onComplete != nil {
		s.opts.onComplete(out)
	}
	if f != nil {
		f.complete(out)
	}
}

func (s *Scheduler) logFailure(t Task, err error) {
	l := s.opts.logger
	if !l.Enabled(s.baseCtx, slog.LevelWarn) {
		return
	}
	attrs := []slog.Attr{
		slog.String("id", t.ID),
		slog.String("type", t.Type),
		slog.Any("error", err),
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
