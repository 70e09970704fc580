// Package taskpoolotel instruments taskpool with OpenTelemetry: a span and
// metrics per handler run ([Middleware]), gauges and counters read from a
// scheduler's Stats ([Observe]), and final outcomes by task type
// ([CompletionHook]). It works the same for an in-process
// [taskpool.Scheduler] and for a NATS consumer, whose handler is wrapped the
// same way (natsbroker.WithSchedulerOptions(taskpool.WithMiddleware(...)))
// and which has a Stats method too.
//
// Names follow the OpenTelemetry semantic conventions for messaging where
// they apply: spans are of kind consumer, named "process TYPE", with
// messaging.system = "taskpool", messaging.operation.name and
// messaging.operation.type = "process", messaging.message.id = the task ID
// and, when [WithQueue] names one, messaging.destination.name. Run time is
// the semantic-convention histogram messaging.process.duration. What has no
// convention is under taskpool.*.
//
// Without options everything goes to the global providers (otel.SetTracerProvider,
// otel.SetMeterProvider), which do nothing until an SDK is installed.
//
// The span of a run is a root span (or a child of a span in the scheduler's
// base context): linking it to the span that submitted the task needs the
// trace context to travel with the task, which waits for task metadata in
// the core (see the README).
package taskpoolotel
