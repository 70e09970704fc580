package taskpool

import (
	"context"
	"fmt"
	"reflect"
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
// [ParamsAs]. As an A and a *A encode alike on the wire, they are taken
// alike in process: a handler of *A given an A gets a pointer to a copy,
// and a handler of A given a non-nil *A gets a copy of what it points to.
// A nil *A (or nil map or slice) is no params, for a handler of *A too, as
// on the wire, where it travels as JSON null.
// Params that are not a T and do not decode into one fail the task with an
// error wrapping [ErrSkipRetry]: they would fail every attempt, so the
// handler is not called and the task is not retried, whatever [WithRetry]
// says.
//
// Kind is called once, at registration, on the zero T, or for a pointer T
// on a pointer to the zero value (not on a nil pointer), so a Kind with a
// value receiver serves A and *A alike.
//
// Handle returns the errors of [Registry.Handle] (an empty Kind, or one
// that is not valid UTF-8, wraps [ErrInvalidType], a kind already
// registered [ErrDuplicateType], a nil h
// or a nil reg [ErrNilHandler]), and an error wrapping [ErrInvalidType]
// when Kind panics on the zero T (an interface T, say).
func Handle[T Args](reg *Registry, h func(ctx context.Context, args T, t Task) error, opts ...HandleOption) error {
	typ, err := kindOf[T]()
	if err != nil {
		return err
	}
	if h == nil || reg == nil {
		return fmt.Errorf("%w: type %q", ErrNilHandler, typ)
	}
	return reg.Handle(typ, HandlerFunc(func(ctx context.Context, t Task) error {
		args, err := argsOf[T](t)
		if err != nil {
			return SkipRetry(err)
		}
		return h(ctx, args, t)
	}), opts...)
}

// TaskOf returns the task of kind args.Kind() with args as its params,
// ready for Submit (of a [Scheduler] or any [Client]); set its other
// fields (ID, Priority, ...) on the result.
//
// TaskOf does not panic. When Kind panics on args (a nil pointer to a
// type whose Kind has a value receiver, say), the kind is taken as
// [Handle] takes it, from the zero T; when there is none (a nil interface
// T), the task's Type is empty, which Submit rejects with an error
// wrapping [ErrInvalidType].
func TaskOf[T Args](args T) Task {
	typ, ok := kindOfArgs(args)
	if !ok {
		typ, _ = kindOf[T]()
	}
	return Task{Type: typ, Params: args}
}

// kindOfArgs calls args.Kind, reporting false if it panics.
func kindOfArgs[T Args](args T) (typ string, ok bool) {
	defer func() {
		if recover() != nil {
			typ, ok = "", false
		}
	}()
	return args.Kind(), true
}

// kindOf calls Kind on the zero T, or for a pointer T on a pointer to the
// zero value. A Kind that panics there (on an interface T) is an error,
// not a crash.
func kindOf[T Args]() (typ string, err error) {
	rt := reflect.TypeFor[T]()
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: %v.Kind panics on the zero value: %v", ErrInvalidType, rt, v)
		}
	}()
	var zero T
	if rt.Kind() == reflect.Pointer {
		zero = reflect.New(rt.Elem()).Interface().(T)
	}
	return zero.Kind(), nil
}

// argsOf is [ParamsAs] that also takes an A for a *A and a non-nil *A for
// an A, as the wire does.
func argsOf[T Args](t Task) (T, error) {
	if v, ok := t.Params.(T); ok && !nilParams(t.Params) {
		return v, nil
	}
	if v, ok := alike[T](t.Params); ok {
		return v, nil
	}
	return ParamsAs[T](t)
}
