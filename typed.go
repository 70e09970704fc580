package taskpool

import (
	"context"
	"fmt"
)

// Args are a task's typed parameters. Kind is the task type they go with:
// register a handler for them with [Handle] and build the task with
// [TaskOf], and the type name is written once, in Kind.
//
// Kind is called on the zero value of the type at registration, so it
// must not depend on the fields.
type Args interface {
	Kind() string
}

// Handle registers h for the tasks of kind T.Kind(). The handler gets the
// task's params as a T: as they were submitted in process, or decoded from
// JSON when they arrive encoded (through a broker), with the rules of
// [ParamsAs]. Params that are not a T and do not decode into one fail the
// task with an error wrapping [ErrSkipRetry]: they would fail every
// attempt, so the handler is not called and the task is not retried,
// whatever [WithRetry] says.
//
// Handle returns the errors of [Registry.Handle] (an empty Kind wraps
// [ErrInvalidType], a kind already registered [ErrDuplicateType], a nil h
// or a nil reg [ErrNilHandler]), and an error wrapping [ErrInvalidType]
// when Kind panics on the zero T (an interface T, or a value-receiver Kind
// reached through a nil pointer T).
func Handle[T Args](reg *Registry, h func(ctx context.Context, args T, t Task) error, opts ...HandleOption) error {
	typ, err := kindOf[T]()
	if err != nil {
		return err
	}
	if h == nil || reg == nil {
		return fmt.Errorf("%w: type %q", ErrNilHandler, typ)
	}
	return reg.Handle(typ, HandlerFunc(func(ctx context.Context, t Task) error {
		args, err := ParamsAs[T](t)
		if err != nil {
			return SkipRetry(err)
		}
		return h(ctx, args, t)
	}), opts...)
}

// TaskOf returns the task of kind args.Kind() with args as its params,
// ready for Submit (of a [Scheduler] or any [Client]); set its other
// fields (ID, Priority, ...) on the result.
func TaskOf[T Args](args T) Task {
	return Task{Type: args.Kind(), Params: args}
}

// kindOf calls Kind on the zero T. A Kind that panics there (a value
// method reached through a nil pointer T) is an error, not a crash.
func kindOf[T Args]() (typ string, err error) {
	defer func() {
		if v := recover(); v != nil {
			var zero T
			err = fmt.Errorf("%w: %T.Kind panics on the zero value: %v", ErrInvalidType, zero, v)
		}
	}()
	var zero T
	return zero.Kind(), nil
}
