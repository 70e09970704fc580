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
// knows. (So a goroutine the handler started, waiting with its context,
// lends a worker too, even after the handler has returned: one more
// worker than needed, for as long as it waits.)

// Lend lends the worker running a handler to its scheduler while the
// handler blocks on work that the scheduler itself must do (tasks it
// submitted, a channel that other tasks feed): the scheduler runs one
// worker more until release is called, as if Resize had been given one
// more (up to [MaxWorkers] workers in all), and retires it once it is
// idle again. ctx is the handler's context, or one derived from it; with
// any other, Lend lends nothing and release does nothing. Call release
// once the handler no longer blocks, and defer it too: a release never
// called (the handler panicked or called runtime.Goexit before it) keeps
// the worker lent, for Lend cannot tell when the handler that called it
// returns. Later calls do nothing.
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
	s := handlerScheduler(ctx)
	if s == nil {
		return func() {}
	}
	s.lend()
	var once sync.Once
	return func() { once.Do(s.unlend) }
}

// blocked is the engine's Config.Blocked: a Submit from a handler that
// waits for room lends the handler's worker until it returns.
func (s *Scheduler) blocked(ctx context.Context) func() {
	h := handlerScheduler(ctx)
	if h == nil {
		return nil
	}
	h.lend()
	return h.unlend
}

// handlerCtxKey is the key of the value, the *Scheduler, that marks the
// contexts a scheduler gives its handlers.
type handlerCtxKey struct{}

// handlerScheduler returns the scheduler whose handler was given ctx (or
// the context ctx derives from), nil if none.
func handlerScheduler(ctx context.Context) *Scheduler {
	s, _ := ctx.Value(handlerCtxKey{}).(*Scheduler)
	return s
}

// lend adds a worker for a handler of s that waits; unlend takes it
// back. Before Start and after Stop has closed the engine, the
// engine's Resize does nothing.
func (s *Scheduler) lend() {
	s.sizeMu.Lock()
	s.lent++
	s.e.Resize(min(s.size+s.lent, MaxWorkers))
	s.sizeMu.Unlock()
	for _, fn := range s.opts.onLend {
		fn(1)
	}
}

func (s *Scheduler) unlend() {
	s.sizeMu.Lock()
	s.lent--
	s.e.Resize(min(s.size+s.lent, MaxWorkers))
	s.sizeMu.Unlock()
	for _, fn := range s.opts.onLend {
		fn(-1)
	}
}
