package taskpoolotel

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/taskpool/taskpool"
)

// Attribute keys of this package that the semantic conventions do not
// define.
const (
	// TaskTypeKey is the task's Type.
	TaskTypeKey = attribute.Key("taskpool.task.type")
	// TaskAttemptKey is the 1-based number of the run.
	TaskAttemptKey = attribute.Key("taskpool.task.attempt")
	// TaskPriorityKey is the task's priority: "high", "default" or "low".
	TaskPriorityKey = attribute.Key("taskpool.task.priority")
	// TaskOutcomeKey is a task's final outcome: "succeeded", "failed",
	// "not_run" or "canceled".
	TaskOutcomeKey = attribute.Key("taskpool.task.outcome")
)

var (
	attrSystem        = semconv.MessagingSystemKey.String(System)
	attrOperationName = semconv.MessagingOperationNameKey.String("process")
	attrOperationType = semconv.MessagingOperationTypeProcess
)

func destinationName(q string) attribute.KeyValue {
	return semconv.MessagingDestinationNameKey.String(q)
}

// Values of the error.type attribute that are not Go type names.
const (
	ErrorTypePanic     = "panic"
	ErrorTypeTimeout   = "timeout"
	ErrorTypeCanceled  = "canceled"
	ErrorTypeNoHandler = "no_handler"
	ErrorTypeNotRun    = "not_run"
)

// errorType classifies err for the error.type attribute: a few known
// kinds by name, anything else by its Go type, which has few values in a
// program. The SkipRetry wrapper is looked through. A handler that called
// runtime.Goexit is a "panic", as the middleware, which cannot tell the
// two apart without recovering the panic, records its run.
func errorType(err error) string {
	var pe *taskpool.PanicError
	switch {
	case errors.As(err, &pe), errors.Is(err, taskpool.ErrHandlerExited):
		return ErrorTypePanic
	case errors.Is(err, taskpool.ErrSchedulerClosed):
		return ErrorTypeNotRun
	case errors.Is(err, context.DeadlineExceeded):
		return ErrorTypeTimeout
	case errors.Is(err, taskpool.ErrCanceled), errors.Is(err, context.Canceled):
		return ErrorTypeCanceled
	case errors.Is(err, taskpool.ErrNoHandler):
		return ErrorTypeNoHandler
	case errors.Is(err, taskpool.ErrSkipRetry):
		if u, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range u.Unwrap() {
				if e != nil && e != taskpool.ErrSkipRetry {
					return errorType(e)
				}
			}
		}
	}
	return fmt.Sprintf("%T", err)
}
