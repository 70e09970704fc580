package taskpool

import (
	"context"
	"sync"
)

// Lending. A handler that waits for work of its own scheduler (a task it
// submitted, with [Future.Wait] or [Scheduler.SubmitWait]; room in a full
// queue, in [Scheduler.Submit]; anything else, between [Lend] and its
// release) holds its worker while it waits. With every worker waiting so,
// what they wait for would never run (the pool deadlocked, pond #56). So
// the wait lends its worker: while it lasts the scheduler runs one more
// worker, as if Resize had been given one more, and shrinks back once it
// returns (the extra worker is retired when it is next idle, as Resize
// retires). Only a wait given the handler's context, or one derived from
// it, is seen to come from a handler: the context is how the scheduler
// knows. A handler holds one worker, so it lends one, however many of its
// waits overlap (waits in goroutines of its own, errgroup style): the
// context each worker gives its handlers carries the worker's count of
// waits. (So a goroutine the handler started, waiting with its context
// after the handler has returned, counts as a wait of that worker.)

// Lend lends the worker running a handler to its scheduler while the
// handler blocks on work that the scheduler itself must do (tasks it
// submitted, a channel that other tasks feed): the scheduler runs one
// worker more until release is called, as if Resize had been given one
// more (up to [MaxWorkers] workers in all), and retires it once it is
// idle again. A handler has one worker to lend: while one of its Lends
// (or waits that lend) is unreleased, more of them, from goroutines of
// its own, lend nothing more. ctx is the handler's context, or one
// derived from it; with any other, Lend lends nothing and release does
// nothing. Call release once the handler no longer blocks, and defer it
// too: a release never called (the handler panicked or called
// runtime.Goexit before it) keeps the worker lent, for Lend cannot tell
// when the handler that called it returns. Later calls do nothing.
//
//	release := taskpool.Lend(ctx)
//	defer release() // given back even if the handler panics
//	v := <-results  // fed by tasks this handler submitted
//	release()
//
// [Scheduler.SubmitWait], [Future.Wait] and a [Scheduler.Submit] that
// waits for room lend by themselves, and so does the NATS broker's
// Client.SubmitWait on a consumer's worker. On a NATS consumer's worker,
// Lend (and that wait) also lends the consumer a message of capacity, so
// that it fetches the tasks waited for (see [WithLendHook]).
func Lend(ctx context.Context) (release func()) {
	l := handlerLender(ctx)
	if l == nil {
		return func() {}
	}
	l.lend()
	var once sync.Once
	return func() { once.Do(l.unlend) }
}

// handlerCtxKey is the key of the value, the worker's *lender, that marks
// the contexts a scheduler's worker gives its handlers.
type handlerCtxKey struct{}

// lender is a worker's lending state: its handler lends the worker once,
// however many of its waits (from goroutines of its own) overlap, so that
// a handler that fans out and waits from many goroutines grows the pool by
// one worker, not by one per wait.
type lender struct {
	s  *Scheduler
	mu sync.Mutex
	n  int // under mu: the waits lending the worker now
}

func (l *lender) lend() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n++; l.n == 1 {
		l.s.lend()
	}
}

func (l *lender) unlend() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n--; l.n == 0 {
		l.s.unlend()
	}
}

// handlerLender returns the lender of the worker whose handler was given
// ctx (or the context ctx derives from), nil if none.
func handlerLender(ctx context.Context) *lender {
	if ctx == nil {
		return nil
	}
	l, _ := ctx.Value(handlerCtxKey{}).(*lender)
	return l
}

// handlerCtx returns the context the worker l gives its handlers: the
// scheduler's base context, marked with the worker's lender (made once
// per worker, so that a task costs no allocation).
func (s *Scheduler) handlerCtx(l *local) context.Context {
	if l.ctx == nil {
		l.ctx = context.WithValue(s.baseCtx, handlerCtxKey{}, &lender{s: s})
	}
	return l.ctx
}

// lend adds a worker for a handler of s that waits; unlend takes it
// back. Before Start and after Stop has closed the engine, the
// engine's Resize does nothing.
func (s *Scheduler) lend() {
	s.sizeMu.Lock()
	s.lent++
	s.resizeLocked()
	s.sizeMu.Unlock()
	s.tellLend(1)
}

func (s *Scheduler) unlend() {
	s.sizeMu.Lock()
	s.lent--
	s.resizeLocked()
	s.sizeMu.Unlock()
	s.tellLend(-1)
}

// resizeLocked gives the engine the workers asked for and those lent.
// The caller holds s.sizeMu.
func (s *Scheduler) resizeLocked() {
	s.e.Resize(min(s.size+s.lent, MaxWorkers))
}

// tellLend tells the lend hooks (WithLendHook) of a loan (1) or its end
// (-1). A hook that panics is logged, as the other hooks are, and stops
// neither the others nor the loan: let through, the panic failed the
// wait and left the lender's count taken (the worker lent for good). The
// hook runs on a goroutine of its own, which tellLend waits for: one that
// calls runtime.Goexit ends only its own call, not the handler's wait
// (inside the engine's, a Submit waiting for room, it left a waiter
// queued whose Put had returned). A loan is rare (a wait that blocks), so
// the goroutines cost nothing on the hot paths.
func (s *Scheduler) tellLend(delta int) {
	for _, fn := range s.opts.onLend {
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.lendHook(fn, delta)
		}()
		<-done
	}
}

func (s *Scheduler) lendHook(fn func(delta int), delta int) {
	defer func() {
		if v := recover(); v != nil {
			s.logPanic("lend hook", v)
		}
	}()
	fn(delta)
}
