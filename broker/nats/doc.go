// Package natsbroker runs taskpool tasks across processes on NATS
// JetStream. Its import path is github.com/taskpool/taskpool/broker/nats;
// the package name is natsbroker.
//
// The same handlers, [taskpool.Registry], [taskpool.Task] and middleware
// run in process and distributed. Going distributed is two changes: enqueue
// with a [Producer] instead of [taskpool.Scheduler.Submit], and run a
// [Consumer] (which owns a local taskpool.Scheduler) in every worker
// process:
//
//	p, _ := natsbroker.NewProducer(ctx, js)
//	p.Enqueue(ctx, taskpool.Task{Type: "email.send", Params: msg})
//
//	c, _ := natsbroker.NewConsumer(ctx, js, registry, natsbroker.WithWorkers(16))
//	c.Start()
//	defer c.Stop(ctx)
//
// Every function and method of the package that takes a context refuses
// a nil one, as the core does: it returns an error wrapping
// [taskpool.ErrNilContext] and does nothing else (no request to the
// server, nothing enqueued, nothing stopped).
//
// # Queues
//
// A queue (see [WithQueue]) is a work-queue stream TASKPOOL_<queue> with
// one subject per priority, taskpool.<queue>.task.{high,default,low}, one
// durable pull consumer per priority shared by all worker processes, a
// dead-letter stream TASKPOOLDEAD_<queue> on taskpool.<queue>.dead, and a
// key-value bucket taskpool_unique_<queue> for unique keys. Producers,
// consumers and inspectors create them when missing, and never change an
// existing queue unless opened with [WithReconfigure]: a setting given as an
// option that differs from the queue's is [ErrQueueMismatch].
//
// # Guarantees
//
// Delivery is at least once. Enqueue returns only once the server has
// stored the task. A task is removed only when its consumer acknowledges
// it after the handler succeeded, or terminates it after copying it to the
// dead-letter stream. A worker killed mid-task stops extending its lease,
// and the server redelivers the task to another worker after the ack wait
// ([WithAckWait]). So a handler may run more than once for one task
// (after a crash, a lost ack, or a lease lost during a network partition):
// make handlers idempotent, keyed by Task.ID.
//
// # Retries
//
// The broker owns retries: the local scheduler runs each delivery once,
// and a retryable failure is put back with NakWithDelay for the backoff
// of that attempt ([WithBackoff]). Task.Attempt is the delivery count,
// counted from the Attempt the task was enqueued with, as in process.
// An error wrapping [taskpool.ErrSkipRetry], or a failure on the last of
// Task.MaxAttempts (default [WithMaxAttempts]), dead-letters the task; so
// does a delivery count past MaxAttempts, which happens when every attempt
// crashed its worker. See [Inspector] for listing, resubmitting and
// purging dead letters, and [WithSettleHook] for acting on each; the local
// scheduler keeps none (taskpool.WithDeadLetters given through
// [WithSchedulerOptions] is [ErrInvalidOption]).
//
// User code that panics or calls runtime.Goexit outside a handler does
// not stop the consumer nor leave a delivery held: a [Codec]'s Decode
// makes the message a bad payload ([ErrBadPayload]), the handler's Lookup
// dead-letters the task (with the [*taskpool.PanicError], or
// [taskpool.ErrHandlerExited] for Goexit), and so does a middleware's
// constructor that calls Goexit (one that panics is the core's refusal,
// retried), a result's MarshalJSON makes the result bad ([ErrBadResult]),
// a handler's error whose Error method does is written as a text saying
// so (the task settled as its error says), a settle hook ends only its
// own call, and a Backoff ends the task's retries (dead-lettered with the
// run's error, as in process) or, where a delivery is put back because
// its outcome could not be stored, gives the built-in backoff's wait.
//
// # Results
//
// A task enqueued with [KeepResult] has its outcome (the handler's result
// as JSON and its final error) written by the consumer to the queue's
// results bucket before the message is acked or dead-lettered, so it
// survives a consumer killed mid-task; [Producer.WaitResult] and
// [Client.SubmitWait] wait for it. See [Result] and [RemoteError].
//
// # Health
//
// [Consumer.Health] reports liveness (fetch loop and lease keeper running)
// and readiness (also connected, last fetch succeeded) for an
// orchestrator's probes.
//
// # Delays and periodic tasks
//
// On nats-server 2.12 and later, [Delay] and [At] use per-message
// schedules: the server stores the task under a schedule subject and
// moves it to its task subject when due. [Producer.Schedule] registers a
// periodic task that the server emits once per tick, however many
// processes run; it takes the cron sub-module's dialect (five fields,
// descriptors, @every, a CRON_TZ= prefix) and gives each tick the ID
// "<id>@<tick time>" as the in-process scheduler does. Delayed tasks and
// periodic schedules are two namespaces, as in process: a delayed task and
// a schedule may share an ID, and neither replaces the other. On older
// servers delays fall back to a Taskpool-Not-Before header that consumers
// honour with NakWithDelay.
//
// # Wire format
//
// A task message is the [Codec]'s payload ([JSONCodec] by default, a
// versioned JSON envelope) with the header Nats-Msg-Id (the task ID, for
// publish deduplication) and one header per metadata entry
// ([MetadataHeaderPrefix]); the type travels in the payload only. A task's
// Timeout travels in whole milliseconds, a fraction rounded up, and
// exactly beside them when that is not the same (see [JSONCodec]). See
// README.md for the full specification.
//
// # Development
//
// Package devserver starts an embedded nats-server in process, for
// examples and tests.
package natsbroker
