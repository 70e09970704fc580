package natsbroker

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/taskpool/taskpool"
)

// Codec turns tasks into message payloads and back. Producers and consumers
// of one queue must use the same codec. A Codec must be safe for concurrent
// use.
//
// Decode must return an error wrapping [ErrBadPayload] for data it cannot
// read; it must never panic on arbitrary input. The consumer dead-letters
// such messages.
type Codec interface {
	// Encode returns the payload for t. It encodes ID, Type, Params,
	// Priority, UniqueKey, MaxAttempts and Timeout; Attempt is not sent
	// (the broker's delivery count is the attempt number).
	Encode(t taskpool.Task) ([]byte, error)
	// Decode returns the task encoded in data. Params come back as encoded
	// bytes ([json.RawMessage] for [JSONCodec]): read them with
	// [taskpool.ParamsAs].
	Decode(data []byte) (taskpool.Task, error)
}

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
//	  "timeout_ms": 30000         // optional; -1 means no timeout
//	}
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
}

// Encode returns t as a version 1 envelope. It returns an error wrapping
// [ErrBadParams] when t.Params cannot be encoded.
func (JSONCodec) Encode(t taskpool.Task) ([]byte, error) {
	params, err := encodeParams(t.Params)
	if err != nil {
		return nil, fmt.Errorf("%w: task %s: %w", ErrBadParams, t.Type, err)
	}
	e := envelope{
		V:           EnvelopeVersion,
		ID:          t.ID,
		Type:        t.Type,
		Params:      params,
		Priority:    int8(t.Priority),
		UniqueKey:   t.UniqueKey,
		MaxAttempts: t.MaxAttempts,
	}
	switch {
	case t.Timeout < 0:
		e.TimeoutMS = -1
	case t.Timeout > 0:
		e.TimeoutMS = max(1, t.Timeout.Milliseconds())
	}
	return json.Marshal(e)
}

// Decode reads a version 1 envelope. It returns an error wrapping
// [ErrBadPayload] for anything else, and also [ErrUnsupportedVersion] for
// an envelope of another version.
func (JSONCodec) Decode(data []byte) (taskpool.Task, error) {
	var e envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return taskpool.Task{}, fmt.Errorf("%w: %w", ErrBadPayload, err)
	}
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
	case e.TimeoutMS < 0:
		t.Timeout = -1
	case e.TimeoutMS > 0:
		t.Timeout = time.Duration(e.TimeoutMS) * time.Millisecond
	}
	return t, nil
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
