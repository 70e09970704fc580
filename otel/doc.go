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
// # Trace propagation
//
// The trace context travels with the task in [taskpool.Task.Metadata]
// (through the NATS broker, as message headers): [Inject] writes it, with
// the time the task starts to wait, before a submit; [EnqueueMiddleware]
// does the same in a NATS producer (natsbroker.WithEnqueueMiddleware); and
// [NewClient] wraps any [taskpool.Client] so that each submit also gets a
// span of kind producer ("send TYPE") whose context the task carries.
// [Middleware] extracts it: the span of each run is a child of the
// submitter's span and links to it, so one trace goes from the submit to
// the handler, across processes. The propagator is the global one, or W3C
// Trace Context while the global one is the default no-op; see
// [WithPropagator].
package taskpoolotel
