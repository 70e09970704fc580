package taskpool

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"
)

// Task is a unit of work: a type that selects the handler, and the
// parameters the handler needs. Tasks are passed by value; the zero value is
// not a valid task because its Type is empty.
type Task struct {
	// ID identifies the task in outcomes, logs and inspection. When it is
	// empty, the scheduler assigns a unique one before the task runs.
	ID string

	// Type selects the handler in the [Registry]. It must not be empty.
	Type string

	// Params are the task's arguments. In process they reach the handler
	// untouched. Through a distributed broker they are encoded by the
	// broker's codec and arrive as raw bytes: use [ParamsAs] to read them
	// the same way in both cases.
	Params any

	// Timeout bounds one run of the handler: its context is cancelled when
	// it passes. Zero means the scheduler's default ([WithTaskTimeout]);
	// a negative value means no timeout even when a default is set.
	Timeout time.Duration

	// Priority orders tasks waiting in the queue. The zero value is
	// [PriorityDefault]; any value below zero is [PriorityLow] and any
	// above is [PriorityHigh], and handlers, hooks and outcomes see it
	// as one of the three.
	Priority Priority

	// UniqueKey, when not empty, makes the task unique: it is rejected
	// while another task with the same key is queued, delayed or running,
	// or being submitted (its Submit waits for room in a full queue).
	UniqueKey string

	// MaxAttempts is how many times the task may run when its handler
	// fails with a retryable error. Zero means the type's or the
	// scheduler's default; 1 means no retry.
	MaxAttempts int

	// Attempt is the 1-based number of the current run, as the handler
	// sees it. The scheduler sets it; a broker that redelivers a task sets
	// it from the delivery count before submitting it.
	Attempt int

	// Metadata is data about the task rather than for it: a trace
	// context, a tenant ID, a request ID. Handlers, middleware, the
	// completion and dead-letter hooks ([Outcome].Task) and dead letters
	// see it, on every attempt. In process the map is passed as it is,
	// not copied: do not change it once the task is submitted. Through a
	// broker each entry travels as a message header (the broker's
	// documentation says which keys and values it accepts).
	Metadata map[string]string

	// result points at the running worker's result slot.
	result *resultSlot
}

// SetResult records v as the task's result. The result reaches the task's
// [Future] and the completion hook's [Outcome]. SetResult must be called
// from the handler, before it returns: a call after that (from a
// goroutine the handler started, say) may set the result of the next task
// its worker runs. On a Task that no handler is running (one built by
// hand, an Outcome's) it does nothing.
func (t Task) SetResult(v any) {
	if t.result != nil {
		t.result.v = v
	}
}

// Priority is a task's place in the queue relative to other tasks.
type Priority int8

// Priorities, from lowest to highest.
const (
	PriorityLow     Priority = -1
	PriorityDefault Priority = 0
	PriorityHigh    Priority = 1
)

// String returns "low", "default" or "high".
func (p Priority) String() string {
	switch {
	case p < 0:
		return "low"
	case p > 0:
		return "high"
	}
	return "default"
}

// resultSlot holds the result of the task a worker is running. Each worker
// owns one, so recording a result costs no allocation.
type resultSlot struct{ v any }

// ParamsAs returns t.Params as a T. When Params already holds a T, it is
// returned as is; when it holds encoded bytes ([]byte, [json.RawMessage]
// or string, as a broker delivers them), they are decoded as JSON into a T.
// Any other mismatch, nil Params, or bytes that do not decode is an error
// wrapping [ErrInvalidParams], never a panic. A nil pointer, map or slice
// is no params, as on the wire, where it travels as JSON null.
func ParamsAs[T any](t Task) (T, error) {
	if p, ok := t.Params.(T); ok && !nilParams(t.Params) {
		return p, nil // no allocation: the rest, whose v escapes, is apart
	}
	return decodedParams[T](t)
}

// decodedParams is ParamsAs for params that are not a T, or a nil one.
func decodedParams[T any](t Task) (T, error) {
	var v T
	switch p := t.Params.(type) {
	case T:
		return v, fmt.Errorf("%w: task %s: no params (a nil %T)", ErrInvalidParams, t.Type, p)
	case json.RawMessage:
		return v, decodeParams(t, p, &v)
	case []byte:
		return v, decodeParams(t, p, &v)
	case string:
		return v, decodeParams(t, []byte(p), &v)
	case nil:
		return v, fmt.Errorf("%w: task %s: no params", ErrInvalidParams, t.Type)
	default:
		return v, fmt.Errorf("%w: task %s: params are %T, want %T", ErrInvalidParams, t.Type, t.Params, v)
	}
}

// nilParams reports whether v is a nil pointer, map or slice: what JSON
// encodes as null, which a broker delivers as no params.
func nilParams(v any) bool {
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice:
		return rv.IsNil()
	}
	return false
}

// alike returns v as a T where T is a *A and v an A (a pointer to a
// copy), or T is an A and v a non-nil *A (a copy of what it points to):
// the two encode alike, and the wire takes either for the other.
func alike[T any](v any) (T, bool) {
	var out T
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		return out, false
	}
	rt := reflect.TypeFor[T]()
	switch {
	case rt.Kind() == reflect.Pointer && rv.Type() == rt.Elem():
		p := reflect.New(rt.Elem())
		p.Elem().Set(rv)
		return p.Interface().(T), true
	case rv.Kind() == reflect.Pointer && rv.Type().Elem() == rt && !rv.IsNil():
		return rv.Elem().Interface().(T), true
	}
	return out, false
}

func decodeParams(t Task, b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: task %s: decode: %w", ErrInvalidParams, t.Type, err)
	}
	return nil
}

// job is what travels through the engine: only what every task needs.
// Everything else (an ID given by the caller, a timeout, a unique key,
// attempts, a Future) lives in a record, allocated only for the tasks that
// have one of them; a job without a record is owned by exactly one
// goroutine at a time (the submitter, the engine, a worker), so its state
// needs no synchronisation.
type job struct {
	params any
	b      *binding // type and priority, resolved at submit
	rec    *record  // nil for a plain task
}

// idGen makes task IDs for one worker: a prefix (the scheduler's, random)
// and a sequence number from a block the worker reserved. IDs are carved
// out of a byte slab so that an ID costs no allocation of its own; the
// slab is written only past the last ID handed out, so that no byte of an
// ID changes once it is, which makes the unsafe.String conversion sound.
// Whatever keeps an ID for long (the dead letters) clones it, so that it
// does not pin the slab.
type idGen struct {
	seq  uint64 // next number
	end  uint64 // end of the reserved block
	slab []byte
	size int          // of the last slab
	head [idHead]byte // the block's IDs but their last three digits
	n    int          // their length; 0: the block's IDs are formatted
}

// A worker's first slab is small and each next one twice as big, up to
// idSlabSize: with many workers, most run few tasks (a thousand workers
// that each took a 4 KiB slab for a handful of IDs cost the Sleep1ms
// benchmark 4 MB and a quarter of its CPU in zeroing and GC).
const (
	idSlabFirst = 256
	idSlabSize  = 4096
	idBlock     = 1 << 12 // three hex digits
	idHead      = 24      // the prefix (8), '-' and 15 hex digits at most
	idMaxLen    = 32      // the prefix (8), '-' and a uint64 in hex (16), rounded up
)

// next returns a new ID, reserving a block of numbers from ctr when the
// current one is used up; prefix must be the same at every call. A block
// is aligned on idBlock, so that beyond the first its IDs have the same
// length and differ in their last three digits only: each is a copy of
// the block's head with those three digits written in, a third of the
// cost of formatting the number.
func (g *idGen) next(prefix string, ctr *atomic.Uint64) string {
	if g.seq == g.end {
		g.reserve(prefix, ctr)
	}
	if cap(g.slab) < idMaxLen {
		g.size = min(max(2*g.size, idSlabFirst), idSlabSize)
		g.slab = make([]byte, 0, g.size)
	}
	var id []byte
	if n := g.n; n != 0 {
		// Written whole, then the digits: bytes past the ID's end are
		// the next ID's, which overwrites them before it is handed out.
		w := g.slab[:idHead]
		*(*[idHead]byte)(w) = g.head
		d := g.seq
		w[n-1] = hexDigit[d&0xf]
		w[n-2] = hexDigit[d>>4&0xf]
		w[n-3] = hexDigit[d>>8&0xf]
		id = w[:n]
	} else {
		id = append(g.slab, prefix...)
		id = append(id, '-')
		id = strconv.AppendUint(id, g.seq, 16)
	}
	g.seq++
	g.slab = id[len(id):]
	return unsafe.String(&id[0], len(id))
}

// reserve takes the next block of numbers from ctr and makes its head.
func (g *idGen) reserve(prefix string, ctr *atomic.Uint64) {
	g.end = ctr.Add(idBlock)
	g.seq = g.end - idBlock
	g.n = 0
	if g.seq < idBlock || g.seq%idBlock != 0 {
		return // the first block's numbers grow digits
	}
	h := append(g.head[:0], prefix...)
	h = append(h, '-')
	h = strconv.AppendUint(h, g.seq, 16)
	if len(h) <= idHead && &h[0] == &g.head[0] {
		g.n = len(h)
	}
}

const hexDigit = "0123456789abcdef"

// formatID formats the ID of number n, as next does.
func formatID(prefix string, n uint64) string {
	return prefix + "-" + strconv.FormatUint(n, 16)
}
