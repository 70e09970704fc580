// Package taskpool is an embeddable, in-process task scheduler: a bounded
// worker pool that runs typed tasks through a handler registry, with
// retries, delayed and periodic tasks, priorities, uniqueness, per-type
// limits and a graceful stop. The broker/nats module runs the same
// handlers across processes and machines on NATS JetStream.
//
// # Handlers
//
// A [Task] has a Type, and a [Registry] maps each type to a [Handler]:
//
//	reg := taskpool.NewRegistry()
//	err := reg.HandleFunc("email", func(ctx context.Context, t taskpool.Task) error {
//		return send(ctx, t.Params)
//	})
//
// The registry is itself a Handler, so [Middleware] (logging, metrics,
// tracing) wraps it like an http.Handler. A handler reports success by
// returning nil, may record a value with [Task.SetResult], and should return
// once its context is done.
//
// # Submitting
//
// [Scheduler.Submit] enqueues a task and blocks while the queue is full;
// [Scheduler.TrySubmit] returns [ErrQueueFull] instead; and
// [Scheduler.SubmitFuture] returns a [Future] for the task's outcome.
// [Scheduler.SubmitAt] and [Scheduler.SubmitAfter] delay a task, and
// [Scheduler.SchedulePeriodic] repeats one. Bad input is an error, never a
// panic: an unknown type is refused at once with [ErrNoHandler].
//
// [Client] is the front door for code that must also run on a broker:
// submit, delay, cancel, schedule periodic tasks, and [Client.SubmitWait]
// for the handler's result and error ([ResultAs] reads the result on
// either transport). [WithStrictCodec] round-trips params through the
// wire codec at submit, so that in-process tests see params as a broker
// delivers them.
//
// # Backpressure
//
// The queue is bounded per priority ([WithQueueSize]); submitters put
// tasks on a task channel in batches, a single dispatcher hands them, in
// batches, to workers that register their own channels when they have
// room, so there is never a goroutine per task and memory stays bounded
// under load. Blocked Submit calls are admitted in the order they came.
//
// A handler may submit to its own scheduler and wait for what it
// submitted: given the handler's context, [Future.Wait],
// [Scheduler.SubmitWait] and a Submit that waits for room lend the
// handler's worker (the scheduler runs one more meanwhile), and [Lend]
// does so around any other such wait, so that fan-out inside handlers
// cannot deadlock the pool.
//
// # Shutdown
//
// [Scheduler.Stop] stops accepting at once, runs every accepted task and
// returns when every goroutine has exited. If its context ends first, the
// running handlers' contexts are cancelled and each task that did not run is
// reported to the completion hook ([WithCompletionHook]) with
// [ErrSchedulerClosed] and the status [OutcomeNotRun]: no accepted task is
// dropped silently. A handler that returns its context's cause,
// ErrSchedulerClosed, ran: its status is [OutcomeFailed].
//
// # Panics
//
// A panicking handler does not kill its worker: the panic becomes the
// task's error, a [*PanicError] with the stack, and so does a panic of the
// returned error's Unwrap, Is or As methods (a typed nil pointer, say),
// which the scheduler calls to classify it. A handler that calls
// runtime.Goexit fails with [ErrHandlerExited] and its worker is replaced.
//
// # Retries
//
// [WithRetry] sets how many times a failing task runs, for the scheduler or
// for one type; a handler stops the retries by returning [SkipRetry](err).
// Retries wait in the timer heap, not in a worker. Tasks that fail for good
// can be kept as dead letters ([WithDeadLetters]) and re-submitted.
package taskpool
