package taskpool_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

type withHidden struct {
	Name   string
	secret int
}

type inner struct {
	A int `json:"a"`
}

// strictRun submits one task with params p to a scheduler made with opts
// and returns the params its handler saw and the submission's error.
func strictRun(t *testing.T, p any, opts ...taskpool.Option) (any, error) {
	t.Helper()
	reg := taskpool.NewRegistry()
	seen := make(chan any, 1)
	require.NoError(t, reg.HandleFunc("p", func(ctx context.Context, t taskpool.Task) error {
		seen <- t.Params
		return nil
	}))
	s, err := taskpool.New(reg, opts...)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	defer func() { assert.NoError(t, s.Stop(context.Background())) }()
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "p", Params: p})
	if err != nil {
		return nil, err
	}
	_, err = f.Wait(context.Background())
	require.NoError(t, err)
	return <-seen, nil
}

// TestStrictCodec: with WithStrictCodec the handler sees the params the
// wire would deliver, so what breaks on the wire breaks in process too;
// without it, they pass as they are.
func TestStrictCodec(t *testing.T) {
	t.Parallel()
	paris, err := time.LoadLocation("Europe/Paris")
	require.NoError(t, err)
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, paris)

	t.Run("ints in map[string]any come back float64", func(t *testing.T) {
		p := map[string]any{"n": 1}
		got, err := strictRun(t, p)
		require.NoError(t, err)
		m, err := taskpool.ParamsAs[map[string]any](taskpool.Task{Params: got})
		require.NoError(t, err)
		assert.Equal(t, 1, m["n"], "in process as given")

		got, err = strictRun(t, p, taskpool.WithStrictCodec(nil))
		require.NoError(t, err)
		m, err = taskpool.ParamsAs[map[string]any](taskpool.Task{Params: got})
		require.NoError(t, err)
		assert.Equal(t, float64(1), m["n"], "strict: as the wire returns it")
	})
	t.Run("time loses its zone name", func(t *testing.T) {
		got, err := strictRun(t, at, taskpool.WithStrictCodec(nil))
		require.NoError(t, err)
		back, err := taskpool.ParamsAs[time.Time](taskpool.Task{Params: got})
		require.NoError(t, err)
		assert.True(t, back.Equal(at))
		assert.NotEqual(t, "Europe/Paris", back.Location().String())
	})
	t.Run("unexported fields are zeroed", func(t *testing.T) {
		got, err := strictRun(t, withHidden{Name: "a", secret: 7}, taskpool.WithStrictCodec(nil))
		require.NoError(t, err)
		back, err := taskpool.ParamsAs[withHidden](taskpool.Task{Params: got})
		require.NoError(t, err)
		assert.Equal(t, withHidden{Name: "a"}, back)
	})
	t.Run("a string holding JSON stays a string", func(t *testing.T) {
		got, err := strictRun(t, `{"a":1}`)
		require.NoError(t, err)
		_, err = taskpool.ParamsAs[inner](taskpool.Task{Params: got})
		assert.NoError(t, err, "in process the string is read as JSON")

		got, err = strictRun(t, `{"a":1}`, taskpool.WithStrictCodec(nil))
		require.NoError(t, err)
		_, err = taskpool.ParamsAs[inner](taskpool.Task{Params: got})
		assert.Error(t, err, "on the wire it is a JSON string")
	})
	t.Run("NaN is refused at submit", func(t *testing.T) {
		_, err := strictRun(t, math.NaN(), taskpool.WithStrictCodec(nil))
		assert.ErrorIs(t, err, taskpool.ErrInvalidTask)
	})
	t.Run("bytes must be JSON", func(t *testing.T) {
		_, err := strictRun(t, []byte("not json"), taskpool.WithStrictCodec(nil))
		assert.ErrorIs(t, err, taskpool.ErrInvalidTask)
		got, err := strictRun(t, json.RawMessage(`{"a":2}`), taskpool.WithStrictCodec(nil))
		require.NoError(t, err)
		assert.Equal(t, json.RawMessage(`{"a":2}`), got)
	})
	t.Run("nil params stay nil", func(t *testing.T) {
		got, err := strictRun(t, nil, taskpool.WithStrictCodec(nil))
		require.NoError(t, err)
		assert.Nil(t, got)
		got, err = strictRun(t, (*inner)(nil), taskpool.WithStrictCodec(nil))
		require.NoError(t, err)
		assert.Nil(t, got, "JSON null is no params")
	})
	t.Run("params whose MarshalJSON panics are refused, not a panic", func(t *testing.T) {
		var err error
		require.NotPanics(t, func() { _, err = strictRun(t, panicMarshal{}, taskpool.WithStrictCodec(nil)) })
		assert.ErrorIs(t, err, taskpool.ErrInvalidTask)
		var pe *taskpool.PanicError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, "marshal boom", pe.Value)
	})
	t.Run("a typed task decodes as on the wire", func(t *testing.T) {
		got, err := strictRun(t, inner{A: 3}, taskpool.WithStrictCodec(nil))
		require.NoError(t, err)
		assert.Equal(t, json.RawMessage(`{"a":3}`), got)
	})
}

// panicMarshal is params whose MarshalJSON panics.
type panicMarshal struct{}

func (panicMarshal) MarshalJSON() ([]byte, error) { panic("marshal boom") }

// failingCodec is a custom codec that fails to encode or to decode when
// told to.
type failingCodec struct{ encodeErr, decodeErr error }

func (c failingCodec) Encode(t taskpool.Task) ([]byte, error) {
	if c.encodeErr != nil {
		return nil, c.encodeErr
	}
	return json.Marshal(t.Params)
}

func (c failingCodec) Decode(data []byte) (taskpool.Task, error) {
	if c.decodeErr != nil {
		return taskpool.Task{}, c.decodeErr
	}
	return taskpool.Task{Params: json.RawMessage(data)}, nil
}

// A custom codec is used as given, and its errors are the submission's,
// on every way of submitting.
func TestStrictCodecCustom(t *testing.T) {
	t.Parallel()
	errEnc, errDec := errors.New("enc"), errors.New("dec")
	got, err := strictRun(t, inner{A: 1}, taskpool.WithStrictCodec(failingCodec{}))
	require.NoError(t, err)
	assert.Equal(t, json.RawMessage(`{"a":1}`), got)

	for _, c := range []failingCodec{{encodeErr: errEnc}, {decodeErr: errDec}} {
		reg := taskpool.NewRegistry()
		require.NoError(t, reg.HandleFunc("p", func(ctx context.Context, t taskpool.Task) error { return nil }))
		s, err := taskpool.New(reg, taskpool.WithStrictCodec(c))
		require.NoError(t, err)
		require.NoError(t, s.Start())
		ctx := context.Background()
		task := taskpool.Task{Type: "p", Params: 1}
		want := c.encodeErr
		if want == nil {
			want = c.decodeErr
		}
		for name, err := range map[string]error{
			"Submit":           s.Submit(ctx, task),
			"TrySubmit":        s.TrySubmit(task),
			"SubmitAfter":      s.SubmitAfter(ctx, task, time.Hour),
			"SchedulePeriodic": s.SchedulePeriodic("per", taskpool.Every(time.Hour), task),
		} {
			assert.ErrorIs(t, err, taskpool.ErrInvalidTask, name)
			assert.ErrorIs(t, err, want, name)
		}
		_, err = s.SubmitWait(ctx, task)
		assert.ErrorIs(t, err, want)
		assert.ErrorIs(t, s.Submit(ctx, taskpool.Task{Type: "nope"}), taskpool.ErrNoHandler, "the type is checked first")
		require.NoError(t, s.Stop(ctx))
	}
}
