package natsbroker_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

func TestJSONCodecRoundTrip(t *testing.T) {
	t.Parallel()
	var c natsbroker.JSONCodec
	in := taskpool.Task{
		ID: "id-1", Type: "email.send", Params: emailParams{To: "a@b", Subject: "s"},
		Priority: taskpool.PriorityHigh, UniqueKey: "k", MaxAttempts: 4, Timeout: 1500 * time.Millisecond,
		Attempt: 3, // not in the payload: the broker's delivery count is the attempt
	}
	data, err := c.Encode(in)
	require.NoError(t, err)
	assert.JSONEq(t, `{"v":1,"id":"id-1","type":"email.send","params":{"to":"a@b","subject":"s"},
		"priority":1,"unique_key":"k","max_attempts":4,"timeout_ms":1500}`, string(data))
	out, err := c.Decode(data)
	require.NoError(t, err)
	p, err := taskpool.ParamsAs[emailParams](out)
	require.NoError(t, err)
	assert.Equal(t, emailParams{To: "a@b", Subject: "s"}, p)
	out.Params, in.Params, in.Attempt = nil, nil, 0
	assert.Equal(t, in, out)

	// Raw JSON params travel as they are; no timeout survives as -1.
	data, err = c.Encode(taskpool.Task{ID: "x", Type: "t", Params: json.RawMessage(`[1,2]`), Timeout: -1})
	require.NoError(t, err)
	out, err = c.Decode(data)
	require.NoError(t, err)
	assert.Equal(t, json.RawMessage(`[1,2]`), out.Params)
	assert.Equal(t, time.Duration(-1), out.Timeout)
}

// The envelope carries a timeout in whole milliseconds: Encode rounds a
// fraction up, so that a task never gets less time than it was given,
// and Decode reads one too large for a time.Duration as the longest.
func TestJSONCodecTimeoutRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give, want time.Duration
	}{
		{give: 1500 * time.Microsecond, want: 2 * time.Millisecond},
		{give: 500 * time.Microsecond, want: time.Millisecond},
		{give: time.Nanosecond, want: time.Millisecond},
		{give: time.Millisecond + time.Nanosecond, want: 2 * time.Millisecond},
		{give: 2 * time.Millisecond, want: 2 * time.Millisecond},
		{give: time.Hour, want: time.Hour},
		{give: math.MaxInt64, want: math.MaxInt64},
		{give: -1, want: -1},
		{give: 0, want: 0},
	}
	var c natsbroker.JSONCodec
	for _, tt := range tests {
		t.Run(tt.give.String(), func(t *testing.T) {
			data, err := c.Encode(taskpool.Task{ID: "a", Type: "t", Timeout: tt.give})
			require.NoError(t, err)
			out, err := c.Decode(data)
			require.NoError(t, err)
			assert.Equal(t, tt.want, out.Timeout, "%s", data)
		})
	}
	out, err := c.Decode([]byte(`{"v":1,"id":"a","type":"t","timeout_ms":9223372036854775807}`))
	require.NoError(t, err)
	assert.Equal(t, time.Duration(math.MaxInt64), out.Timeout, "a timeout too long for a Duration")
}

func TestJSONCodecRejectsBadPayloads(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		give     string
		wantVers bool
	}{
		{name: "garbage", give: "\x00\xffnot json"},
		{name: "empty", give: ""},
		{name: "array", give: `[1,2,3]`},
		{name: "no version", give: `{"id":"a","type":"t"}`, wantVers: true},
		{name: "future version", give: `{"v":2,"id":"a","type":"t"}`, wantVers: true},
		{name: "no id", give: `{"v":1,"type":"t"}`},
		{name: "no type", give: `{"v":1,"id":"a"}`},
		{name: "wrong field type", give: `{"v":1,"id":"a","type":"t","priority":"high"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := natsbroker.JSONCodec{}.Decode([]byte(tt.give))
			assert.ErrorIs(t, err, natsbroker.ErrBadPayload)
			assert.Equal(t, tt.wantVers, err != nil && errors.Is(err, natsbroker.ErrUnsupportedVersion))
		})
	}
}

// FuzzJSONCodecDecode checks that Decode never panics and that its fast
// path agrees with the encoding/json reference on every input.
func FuzzJSONCodecDecode(f *testing.F) {
	var c natsbroker.JSONCodec
	for _, task := range []taskpool.Task{
		{ID: "a", Type: "t"},
		{ID: "id-1", Type: "email.send", Params: emailParams{To: "a@b"}, Priority: -1, UniqueKey: "k", MaxAttempts: 3, Timeout: time.Second},
		{ID: "ünï\"code\\", Type: "t\n", Params: json.RawMessage(`{"a":[1,"}",{"b":null}]}`), Timeout: -1},
	} {
		data, err := c.Encode(task)
		require.NoError(f, err)
		f.Add(data)
	}
	for _, s := range []string{
		`{"v":1,"id":"a","type":"t","ID":"b"}`,
		`{"v":1,"id":"a","type":"t","priority":300}`,
		`{"v":1.0,"id":"a","type":"t"}`,
		`{"v":1,"id":null,"type":"t"}`,
		`{"v":1,"id":"a","type":"t","params":null}`,
		`{"v":1,"id":"a","id":"b","type":"t"}`,
		` { "v" : 1 , "id" : "a\u0041" , "type" : "t" , "x" : [ {"y":"\"}"} ] } `,
		"{\"v\":1,\"id\":\"\xff\",\"type\":\"t\"}",
		`{"v":1,"id":"a","type":"t"} trailing`,
		`[]`, `""`, `{}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := c.Decode(data)
		want, wantErr := natsbroker.ReferenceDecode(data)
		if wantErr != nil {
			require.Error(t, err)
			require.ErrorIs(t, err, natsbroker.ErrBadPayload)
			return
		}
		require.NoError(t, err)
		require.Equal(t, want, got)
	})
}

// FuzzJSONCodecRoundTrip checks that every task Encode accepts decodes to
// itself (strings as encoding/json would carry them).
func FuzzJSONCodecRoundTrip(f *testing.F) {
	f.Add("id", "type", "", int8(0), 0, int64(0))
	f.Add("ü\"\\<>&\x01", "t\u2028", "key\xff", int8(-1), 7, int64(-5))
	var c natsbroker.JSONCodec
	f.Fuzz(func(t *testing.T, id, typ, key string, prio int8, maxAttempts int, timeoutMS int64) {
		in := taskpool.Task{ID: id, Type: typ, UniqueKey: key, Priority: taskpool.Priority(prio),
			MaxAttempts: maxAttempts, Timeout: time.Duration(timeoutMS) * time.Millisecond}
		data, err := c.Encode(in)
		require.NoError(t, err)
		require.True(t, json.Valid(data))
		want, wantErr := natsbroker.ReferenceDecode(data)
		got, err := c.Decode(data)
		require.Equal(t, wantErr != nil, err != nil)
		require.Equal(t, want, got)
		if err == nil && utf8.ValidString(id+typ+key) {
			require.Equal(t, in.ID, got.ID)
			require.Equal(t, in.Type, got.Type)
			require.Equal(t, in.UniqueKey, got.UniqueKey)
			require.Equal(t, in.Priority, got.Priority)
			require.Equal(t, in.MaxAttempts, got.MaxAttempts)
		}
	})
}

// Params the wire cannot carry are refused with ErrInvalidTask by the
// producer and, with the wire codec as its strict codec, by the in-process
// scheduler alike.
func TestStrictCodecMatchesWire(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	p, err := natsbroker.NewProducer(ctxT(t), js)
	require.NoError(t, err)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("p", func(ctx context.Context, t taskpool.Task) error { return nil }))
	s, err := taskpool.New(reg, taskpool.WithStrictCodec(natsbroker.JSONCodec{}))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	defer func() { assert.NoError(t, s.Stop(context.Background())) }()
	for _, params := range []any{math.NaN(), []byte("not json"), make(chan int)} {
		task := taskpool.Task{Type: "p", Params: params}
		_, err := p.Enqueue(ctxT(t), task)
		assert.ErrorIs(t, err, taskpool.ErrInvalidTask, "wire: %T", params)
		assert.ErrorIs(t, s.Submit(context.Background(), task), taskpool.ErrInvalidTask, "strict in process: %T", params)
	}
}
