package taskpool

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Codec is how a transport turns a task into bytes and back: a broker's
// wire codec (the NATS broker's natsbroker.Codec, natsbroker.JSONCodec by
// default, has this method set). The in-process scheduler uses one only
// with [WithStrictCodec].
type Codec interface {
	// Encode returns the payload for t.
	Encode(t Task) ([]byte, error)
	// Decode returns the task encoded in data; params come back encoded
	// (a [json.RawMessage] for a JSON codec).
	Decode(data []byte) (Task, error)
}

// WithStrictCodec makes the scheduler round-trip every submitted task's
// params through c, the wire codec, at submission: handlers then see the
// params a broker would deliver (encoded bytes, read with [ParamsAs]), and
// params that would not survive the wire fail where they would. So an
// in-process test catches what only the distributed deployment would show:
// ints inside a map[string]any that come back as float64, a time.Time that
// loses its zone name, unexported fields that are zeroed, a string holding
// JSON, NaN. A nil c is encoding/json as the NATS broker's default codec
// uses it: params are json.Marshal'ed, []byte and json.RawMessage must
// already be JSON, and handlers get a json.RawMessage (JSON null is no
// params). Give natsbroker.JSONCodec{} (or a custom codec) to test with
// exactly the codec the broker uses.
//
// Submit, SubmitAt, SubmitAfter, SubmitFuture, TrySubmit and
// SchedulePeriodic then return an error wrapping [ErrInvalidTask] for
// params the codec cannot encode or decode. It costs an encode and a
// decode per task: it is meant for tests and development.
func WithStrictCodec(c Codec) Option {
	return optionFunc(func(o *options) error {
		if c == nil {
			c = jsonParams{}
		}
		o.codec = c
		return nil
	})
}

// roundTrip replaces t.Params by what they become through the codec.
func (s *Scheduler) roundTrip(t *Task) (err error) {
	c := s.opts.codec
	if c == nil {
		return nil
	}
	defer func() {
		// A codec, or params' MarshalJSON, that panics: the params do not
		// survive it either, an error for the caller (the NATS producer
		// says the same), not a panic in Submit.
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: task %s: params do not survive the codec: %w", ErrInvalidTask, t.Type, newPanicError(v))
		}
	}()
	enc := *t
	if enc.ID == "" {
		enc.ID = "strict" // a codec may require an ID; the task keeps its own
	}
	data, err := c.Encode(enc)
	if err == nil {
		var dec Task
		if dec, err = c.Decode(data); err == nil {
			t.Params = dec.Params
			return nil
		}
	}
	return fmt.Errorf("%w: task %s: params do not survive the codec: %w", ErrInvalidTask, t.Type, err)
}

// jsonParams is WithStrictCodec's default: the params as the NATS broker's
// JSON codec encodes and decodes them, the rest of the task left out.
type jsonParams struct{}

func (jsonParams) Encode(t Task) ([]byte, error) {
	switch p := t.Params.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		return validJSON(p)
	case []byte:
		return validJSON(p)
	default:
		return json.Marshal(p)
	}
}

func (jsonParams) Decode(data []byte) (Task, error) {
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		return Task{}, nil
	}
	return Task{Params: json.RawMessage(data)}, nil
}

func validJSON(b []byte) ([]byte, error) {
	if !json.Valid(b) {
		return nil, fmt.Errorf("params bytes are not valid JSON")
	}
	return bytes.Clone(b), nil
}
