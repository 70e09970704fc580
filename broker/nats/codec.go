package natsbroker

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/taskpool/taskpool"
)

// Codec turns tasks into message payloads and back. Producers and consumers
// of one queue must use the same codec. A Codec must be safe for concurrent
// use.
//
// Decode must return an error wrapping [ErrBadPayload] for data it cannot
// read; it must never panic on arbitrary input. The consumer dead-letters
// such messages at their first delivery, and so a task without an ID or
// without a type that Decode returns. A Decode that panics all the same, or calls
// runtime.Goexit, is taken as such an error: the message is dead-lettered
// with an error wrapping ErrBadPayload (and the [*taskpool.PanicError]
// for a panic), and the consumer goes on.
type Codec interface {
	// Encode returns the payload for t. It encodes ID, Type, Params,
	// Priority, UniqueKey, MaxAttempts and Timeout; Attempt is not in the
	// payload (the broker's delivery count is the attempt number, counted
	// from the [HeaderFirstAttempt] the producer sets).
	Encode(t taskpool.Task) ([]byte, error)
	// Decode returns the task encoded in data. Params come back as encoded
	// bytes ([json.RawMessage] for [JSONCodec]): read them with
	// [taskpool.ParamsAs].
	Decode(data []byte) (taskpool.Task, error)
}

// A Codec is also the core's [taskpool.Codec], so that the in-process
// scheduler can round-trip params through the wire codec
// ([taskpool.WithStrictCodec]).
var _ taskpool.Codec = Codec(nil)

// EnvelopeVersion is the version of the JSON envelope that [JSONCodec]
// writes. It reads this version only.
const EnvelopeVersion = 1

// JSONCodec is the default [Codec]: a JSON envelope with a version field.
// Version 1 is
//
//	{
//	  "v": 1,                     // envelope version, required
//	  "id": "…",                  // task ID, required
//	  "type": "email.send",       // task type, required
//	  "params": {…},              // task params as JSON, optional
//	  "priority": 1,              // -1 low, 0 default, 1 high; optional
//	  "unique_key": "…",          // optional
//	  "max_attempts": 5,          // optional; 0 means the consumer's default
//	  "timeout_ms": 30000,        // optional; -1 means no timeout
//	  "timeout_ns": 1500000       // optional; the timeout exactly
//	}
//
// A timeout travels in whole milliseconds, a fraction rounded up (1.5ms is
// sent as 2, 500µs as 1), so that a reader that knows only timeout_ms
// never runs a task with less time than it was given; a timeout that is
// not a whole number of milliseconds, or a negative one other than -1ns
// (the Timeout that timeout_ms -1 decodes to), also travels exactly as
// timeout_ns, which Decode prefers, so that handlers see the Timeout that
// was submitted, as in process.
//
// Unknown fields are ignored, so later minor additions stay readable by
// older consumers; an incompatible change bumps "v".
//
// Params are encoded with json.Marshal, except []byte and json.RawMessage,
// which must already hold JSON and are sent as they are (symmetrical with
// [taskpool.ParamsAs], which reads []byte as JSON). The zero value is ready
// to use.
type JSONCodec struct{}

var _ Codec = JSONCodec{}

type envelope struct {
	V           int             `json:"v"`
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Params      json.RawMessage `json:"params,omitempty"`
	Priority    int8            `json:"priority,omitempty"`
	UniqueKey   string          `json:"unique_key,omitempty"`
	MaxAttempts int             `json:"max_attempts,omitempty"`
	TimeoutMS   int64           `json:"timeout_ms,omitempty"`
	TimeoutNS   int64           `json:"timeout_ns,omitempty"`
}

// Encode returns t as a version 1 envelope. It returns an error wrapping
// [ErrBadParams] when t.Params cannot be encoded.
func (JSONCodec) Encode(t taskpool.Task) ([]byte, error) {
	params, err := encodeParams(t.Params)
	if err != nil {
		return nil, fmt.Errorf("%w: task %s: %w", ErrBadParams, t.Type, err)
	}
	// Written by hand rather than with json.Marshal on the envelope: this
	// runs for every task, and reflection was a tenth of a producer's CPU.
	b := make([]byte, 0, 64+len(t.ID)+len(t.Type)+len(t.UniqueKey)+len(params))
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, EnvelopeVersion, 10)
	b = append(b, `,"id":`...)
	b = appendString(b, t.ID)
	b = append(b, `,"type":`...)
	b = appendString(b, t.Type)
	if len(params) > 0 {
		b = append(b, `,"params":`...)
		b = append(b, params...)
	}
	if t.Priority != 0 {
		b = append(b, `,"priority":`...)
		b = strconv.AppendInt(b, int64(t.Priority), 10)
	}
	if t.UniqueKey != "" {
		b = append(b, `,"unique_key":`...)
		b = appendString(b, t.UniqueKey)
	}
	if t.MaxAttempts != 0 {
		b = append(b, `,"max_attempts":`...)
		b = strconv.AppendInt(b, int64(t.MaxAttempts), 10)
	}
	switch {
	case t.Timeout < 0:
		b = append(b, `,"timeout_ms":-1`...)
	case t.Timeout > 0:
		// Rounded up, so that a task never gets less time than it was
		// given (Decode reads a value past the longest Duration as the
		// longest).
		ms := t.Timeout.Milliseconds()
		if t.Timeout%time.Millisecond != 0 {
			ms++
		}
		b = append(b, `,"timeout_ms":`...)
		b = strconv.AppendInt(b, ms, 10)
	}
	if t.Timeout%time.Millisecond != 0 || (t.Timeout < 0 && t.Timeout != -1) {
		b = append(b, `,"timeout_ns":`...)
		b = strconv.AppendInt(b, int64(t.Timeout), 10)
	}
	return append(b, '}'), nil
}

// Decode reads a version 1 envelope. It returns an error wrapping
// [ErrBadPayload] for anything else, and also [ErrUnsupportedVersion] for
// an envelope of another version.
func (JSONCodec) Decode(data []byte) (taskpool.Task, error) {
	e, ok := decodeFast(data)
	if !ok {
		// Anything unusual (escapes, nulls, wrong types, invalid JSON)
		// goes through encoding/json, which defines the semantics; the
		// fast path must agree with it (see FuzzJSONCodecDecode).
		return decodeSlow(data)
	}
	return e.task()
}

// decodeSlow is Decode with encoding/json only: the reference semantics.
func decodeSlow(data []byte) (taskpool.Task, error) {
	var e envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return taskpool.Task{}, fmt.Errorf("%w: %w", ErrBadPayload, err)
	}
	return e.task()
}

func (e *envelope) task() (taskpool.Task, error) {
	switch {
	case e.V != EnvelopeVersion:
		return taskpool.Task{}, fmt.Errorf("%w: %w: %d", ErrBadPayload, ErrUnsupportedVersion, e.V)
	case e.ID == "":
		return taskpool.Task{}, fmt.Errorf("%w: no id", ErrBadPayload)
	case e.Type == "":
		return taskpool.Task{}, fmt.Errorf("%w: no type", ErrBadPayload)
	}
	t := taskpool.Task{
		ID:          e.ID,
		Type:        e.Type,
		Priority:    taskpool.Priority(e.Priority),
		UniqueKey:   e.UniqueKey,
		MaxAttempts: e.MaxAttempts,
	}
	if len(e.Params) > 0 && string(e.Params) != "null" {
		t.Params = e.Params
	}
	switch {
	case e.TimeoutNS != 0 && (e.TimeoutNS < 0) == (e.TimeoutMS < 0):
		// Exact, where the writer knew it; one that contradicts
		// timeout_ms (another writer's) is ignored.
		t.Timeout = time.Duration(e.TimeoutNS)
	case e.TimeoutMS < 0:
		t.Timeout = -1
	case e.TimeoutMS > math.MaxInt64/int64(time.Millisecond):
		t.Timeout = math.MaxInt64 // longer than a Duration can hold
	case e.TimeoutMS > 0:
		t.Timeout = time.Duration(e.TimeoutMS) * time.Millisecond
	}
	return t, nil
}

// decodeFast decodes the common shape of an envelope without reflection:
// valid JSON, an object, known keys spelled exactly, strings without
// escapes, integers. It reports false for anything else.
func decodeFast(data []byte) (envelope, bool) {
	var e envelope
	if !json.Valid(data) {
		return e, false
	}
	// Valid JSON from here on: the scanning below need not check syntax.
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return e, false
	}
	i++
	for {
		i = skipSpace(data, i)
		switch data[i] {
		case '}':
			return e, true
		case ',':
			i = skipSpace(data, i+1)
		}
		end := skipValue(data, i)
		key, ok := plainString(data[i:end])
		if !ok {
			return e, false
		}
		i = skipSpace(data, end)
		i = skipSpace(data, i+1) // ':'
		end = skipValue(data, i)
		val := data[i:end]
		i = end
		var n int64
		switch key {
		case "v":
			n, ok = plainInt(val, 64)
			e.V = int(n)
		case "id":
			e.ID, ok = plainString(val)
		case "type":
			e.Type, ok = plainString(val)
		case "params":
			e.Params = append(json.RawMessage(nil), val...)
		case "priority":
			n, ok = plainInt(val, 8)
			e.Priority = int8(n)
		case "unique_key":
			e.UniqueKey, ok = plainString(val)
		case "max_attempts":
			n, ok = plainInt(val, 64)
			e.MaxAttempts = int(n)
		case "timeout_ms":
			e.TimeoutMS, ok = plainInt(val, 64)
		case "timeout_ns":
			e.TimeoutNS, ok = plainInt(val, 64)
		default:
			// encoding/json matches keys case-insensitively.
			ok = !knownKeyFold(key)
		}
		if !ok {
			return e, false
		}
	}
}

var envelopeKeys = []string{"v", "id", "type", "params", "priority", "unique_key", "max_attempts", "timeout_ms", "timeout_ns"}

func knownKeyFold(k string) bool {
	for _, name := range envelopeKeys {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	// encoding/json also folds the Kelvin sign and long s; such keys are
	// not ASCII and go to the slow path.
	for i := 0; i < len(k); i++ {
		if k[i] >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// plainString returns the string a JSON string token holds when it has no
// escapes and is valid UTF-8 (encoding/json rewrites invalid UTF-8).
func plainString(tok []byte) (string, bool) {
	if len(tok) < 2 || tok[0] != '"' {
		return "", false
	}
	s := tok[1 : len(tok)-1]
	for _, c := range s {
		if c == '\\' {
			return "", false
		}
	}
	if !utf8.Valid(s) {
		return "", false
	}
	return string(s), true
}

// plainInt parses an integer token that fits in bits.
func plainInt(tok []byte, bits int) (int64, bool) {
	for i, c := range tok {
		if (c < '0' || c > '9') && !(i == 0 && c == '-') {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(tok), 10, bits)
	return n, err == nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipValue returns the end of the JSON value starting at data[i], which
// is known to be valid.
func skipValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		for i++; i < len(data); i++ {
			switch data[i] {
			case '\\':
				i++
			case '"':
				return i + 1
			}
		}
		return i
	case '{', '[':
		depth := 0
		for ; i < len(data); i++ {
			switch data[i] {
			case '"':
				i = skipValue(data, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	default: // number, true, false, null
		for i < len(data) {
			switch data[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			q, _ := json.Marshal(s) // escapes; never fails for a string
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func encodeParams(p any) (json.RawMessage, error) {
	switch v := p.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if !json.Valid(v) {
			return nil, fmt.Errorf("json.RawMessage is not valid JSON")
		}
		return v, nil
	case []byte:
		if !json.Valid(v) {
			return nil, fmt.Errorf("[]byte params are not valid JSON")
		}
		return v, nil
	default:
		return json.Marshal(v)
	}
}
