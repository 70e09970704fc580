package taskpool

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/taskpool/taskpool/internal/engine"
)

// binding is a task type as one scheduler runs it at one priority: the
// registry entry, the handler with the scheduler's middleware around it,
// and the type's limits. Jobs point at their binding, so a worker finds
// everything it needs without a lookup.
type binding struct {
	typ   string
	prio  Priority
	lane  int
	h     Handler       // middleware(handler of the type)
	fn    HandlerFunc   // h, when it is a HandlerFunc: called without HandleTask's frame
	ent   *handlerEntry // nil without a Registry
	limit *typeLimit    // nil without a concurrency limit
	rate  RateLimiter   // nil without a rate limit
	slow  bool          // limit or rate: the worker takes the slow path
}

// Submit enqueues t. When the queue of t's priority is full it blocks until
// there is room or ctx is done; blocked calls are admitted in the order
// they arrived. ctx bounds only that wait, not the task's run.
//
// Submit returns an error wrapping [ErrInvalidType] for an empty type,
// [ErrNoHandler] for a type the registry does not know, [ErrInvalidTask]
// for a task that [Task.Validate] refuses (a negative Attempt or
// MaxAttempts; an ID, type or unique key that is not valid UTF-8; an ID or
// metadata a header cannot carry: the NATS broker's rules, applied here
// too), [ErrDuplicateTask] when t.UniqueKey is taken,
// [ErrNotStarted] before Start, [ErrSchedulerClosed] once Stop has begun,
// [ErrNilContext] for a nil ctx, or ctx's error. A nil error means the
// task was accepted: it gets exactly one outcome, delivered to the
// completion hook and to its Future.
//
// A handler may submit to its own scheduler, and wait: called with the
// handler's ctx (or one derived from it), a Submit that waits for room
// lends the handler's worker until it returns, as [Future.Wait] does, so
// that handlers blocked on a full queue never leave it with no worker to
// drain it.
func (s *Scheduler) Submit(ctx context.Context, t Task) error {
	return s.submit(ctx, &t, nil, true)
}

// TrySubmit enqueues t if its queue has room, without blocking. It returns
// [ErrQueueFull] when it has none, and otherwise the same errors as
// [Scheduler.Submit].
func (s *Scheduler) TrySubmit(t Task) error {
	return s.submit(context.Background(), &t, nil, false)
}

// SubmitFuture enqueues t like [Scheduler.Submit] and returns a [Future]
// for its outcome. It returns the same errors as Submit.
func (s *Scheduler) SubmitFuture(ctx context.Context, t Task) (*Future, error) {
	r := new(record)
	r.hasFuture = true
	r.future.init(&r.task)
	if err := s.submit(ctx, &t, r, true); err != nil {
		return nil, err
	}
	return &r.future, nil
}

// SubmitWait enqueues t like [Scheduler.SubmitFuture] and waits for its
// outcome: it returns the handler's result (set with [Task.SetResult], nil
// if none) and the task's final error, after any retries. ctx bounds the
// wait for admission and for the outcome: when it ends first, SubmitWait
// returns ctx's error; a task accepted by then goes on, and one that was
// not (ctx had ended, or ended while Submit waited for room) is not
// submitted. It returns the same errors as Submit for a task that is not
// accepted. Called from a handler with the handler's ctx, it lends the
// handler's worker while it waits, as [Future.Wait] says. It is
// [Client.SubmitWait].
func (s *Scheduler) SubmitWait(ctx context.Context, t Task) (any, error) {
	f, err := s.SubmitFuture(ctx, t)
	if err != nil {
		return nil, err
	}
	return f.Wait(ctx)
}

// submit admits t into the engine. r is the task's record when the caller
// already needs one (SubmitFuture), or nil.
func (s *Scheduler) submit(ctx context.Context, t *Task, r *record, block bool) error {
	if ctx == nil {
		return ErrNilContext
	}
	b, err := s.check(t)
	if err != nil {
		return err
	}
	if done := ctx.Done(); done != nil {
		select {
		case <-done:
			return ctx.Err()
		default:
		}
	}
	if !s.running() {
		return s.closedErr()
	}
	j := job{params: t.Params, b: b}
	if r != nil || needsRecord(t) {
		if r == nil {
			r = new(record)
		}
		if err := s.admit(r, t, b); err != nil {
			return err
		}
		j.rec = r // stAdmitting: out of Cancel's reach until accepted
	}
	err = s.e.Put(ctx, b.lane, j, block, false)
	if err == nil {
		if r != nil {
			r.cas(stAdmitting, stQueued) // unless a worker has it already
		}
		return nil
	}
	if r != nil {
		s.unadmit(r)
	}
	switch {
	case errors.Is(err, engine.ErrFull):
		return ErrQueueFull
	case errors.Is(err, engine.ErrClosed):
		return s.closedErr()
	}
	return err
}

// needsRecord reports whether t carries anything beyond type, params and
// priority.
func needsRecord(t *Task) bool {
	return t.ID != "" || t.UniqueKey != "" || t.Timeout != 0 || t.MaxAttempts != 0 || t.Attempt != 0 || len(t.Metadata) > 0
}

// admit fills in r for t and takes what the task holds while it is
// pending: its unique key and its entry in the Cancel index.
func (s *Scheduler) admit(r *record, t *Task, b *binding) error {
	r.task = *t
	// As a plain task's, whose job keeps only its lane: handlers and
	// outcomes see -1, 0 or 1 whatever the value submitted.
	r.task.Priority = b.prio
	r.b = b
	r.heapIndex = -1
	named := r.task.ID != ""
	if !named {
		r.task.ID = s.newID()
	}
	r.task.Attempt = max(r.task.Attempt, 1)
	if k := t.UniqueKey; k != "" {
		if err := s.uniq.acquire(k, s.now()); err != nil {
			return err
		}
	}
	if named {
		s.index.add(r)
	}
	return nil
}

// unadmit undoes admit for a task that was not accepted after all.
func (s *Scheduler) unadmit(r *record) {
	if r.indexed {
		s.index.remove(r)
	}
	if k := r.task.UniqueKey; k != "" {
		s.uniq.release(k, time.Time{})
	}
}

// check validates t and resolves its binding; with WithStrictCodec it
// also round-trips t.Params through the codec.
func (s *Scheduler) check(t *Task) (*binding, error) {
	if err := t.validateHead(); err != nil {
		return nil, err
	}
	if t.ID != "" || t.UniqueKey != "" || len(t.Metadata) > 0 {
		// Task.Validate's rules, which the NATS producer applies too: a
		// task is accepted by both transports or by neither. The type is
		// checked once, when it is bound.
		if err := t.validateFields(); err != nil {
			return nil, err
		}
	}
	a := s.lastBind.Load()
	if a == nil || a[0].typ != t.Type {
		if bs := s.binds.Load(); bs != nil {
			a = (*bs)[t.Type]
		}
		if a == nil {
			var err error
			if a, err = s.bind(t.Type); err != nil {
				return nil, err
			}
		}
		s.lastBind.Store(a)
	}
	b := &a[prioIndex(t.Priority)]
	if s.opts.codec != nil {
		if err := s.roundTrip(t); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// bind makes the bindings of a type on its first use. The map is copied
// on write, so that the task path reads it without a lock.
func (s *Scheduler) bind(typ string) (*[numPriorities]binding, error) {
	if !utf8.ValidString(typ) {
		// Here, not in check: a type that is bound is valid, so only its
		// first use pays. ErrInvalidTask, as the NATS broker says, and
		// before the lookup, which would say ErrNoHandler: no registry
		// holds such a type.
		return nil, fmt.Errorf("%w: type %q must be valid UTF-8", ErrInvalidTask, typ)
	}
	var ent *handlerEntry
	h := s.handler
	if s.reg != nil {
		if ent = s.reg.entry(typ); ent == nil {
			return nil, fmt.Errorf("%w: %q", ErrNoHandler, typ)
		}
		var err error
		if h, err = buildChain(typ, func() Handler { return s.reg.wrap(ent.h) }); err != nil {
			return nil, err
		}
	} else if s.lookup != nil {
		if _, ok := s.lookup(typ); !ok {
			return nil, fmt.Errorf("%w: %q", ErrNoHandler, typ)
		}
	}
	s.bindsMu.Lock()
	defer s.bindsMu.Unlock()
	old := s.binds.Load()
	if old != nil {
		if a := (*old)[typ]; a != nil {
			return a, nil
		}
	}
	a := new([numPriorities]binding)
	h, err := buildChain(typ, func() Handler { return s.chain(h) })
	if err != nil {
		return nil, err
	}
	var lim *typeLimit
	var rate RateLimiter
	if ent != nil {
		if ent.concurrency > 0 {
			lim = s.limits[ent]
			if lim == nil {
				lim = &typeLimit{max: ent.concurrency, typ: typ}
				s.limits[ent] = lim
			}
		}
		rate = ent.rate
	}
	fn, _ := h.(HandlerFunc)
	for i := range a {
		a[i] = binding{
			typ: typ, prio: lanePriority(i), lane: i, h: h, fn: fn, ent: ent,
			limit: lim, rate: rate, slow: lim != nil || rate != nil,
		}
	}
	m := make(map[string]*[numPriorities]binding, 1)
	if old != nil {
		m = make(map[string]*[numPriorities]binding, len(*old)+1)
		for k, v := range *old {
			m[k] = v
		}
	}
	m[typ] = a
	s.binds.Store(&m)
	return a, nil
}

// buildChain calls build, which applies middleware to a type's handler,
// turning a panic in a middleware into an error wrapping
// [ErrInvalidOption] and the [*PanicError]: Submit returns it instead of
// panicking, and tries again at the next submission of the type.
func buildChain(typ string, build func() Handler) (h Handler, err error) {
	defer func() {
		if v := recover(); v != nil {
			h, err = nil, fmt.Errorf("%w: a middleware panicked wrapping the handler of %q: %w", ErrInvalidOption, typ, newPanicError(v))
		}
	}()
	return build(), nil
}

// prioIndex maps a Priority to its lane: high first.
func prioIndex(p Priority) int {
	switch {
	case p > 0:
		return 0
	case p < 0:
		return 2
	}
	return 1
}

// lanePriority is the Priority a lane stands for.
func lanePriority(lane int) Priority {
	switch lane {
	case 0:
		return PriorityHigh
	case 2:
		return PriorityLow
	}
	return PriorityDefault
}
