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

// The envelope carries a timeout in whole milliseconds, a fraction rounded
// up, so that a reader that knows only timeout_ms never gives a task less
// time than it was given; and exactly, as timeout_ns, when that is not the
// same, which Decode prefers: handlers see the Timeout submitted, as in
// process (TestConformanceDifferential). Decode reads a timeout_ms too
// large for a time.Duration as the longest.
func TestJSONCodecTimeoutRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give   time.Duration
		wantMS int64 // timeout_ms in the payload, 0 if absent
	}{
		{give: 1500 * time.Microsecond, wantMS: 2},
		{give: 500 * time.Microsecond, wantMS: 1},
		{give: time.Nanosecond, wantMS: 1},
		{give: time.Millisecond + time.Nanosecond, wantMS: 2},
		{give: 2 * time.Millisecond, wantMS: 2},
		{give: time.Hour, wantMS: 3600000},
		{give: math.MaxInt64, wantMS: math.MaxInt64/int64(time.Millisecond) + 1},
		{give: -1, wantMS: -1},
		{give: -time.Millisecond, wantMS: -1}, // exact as timeout_ns too: -1 is -1ns
		{give: -time.Second, wantMS: -1},
		{give: -1500 * time.Microsecond, wantMS: -1},
		{give: 0},
	}
	var c natsbroker.JSONCodec
	for _, tt := range tests {
		t.Run(tt.give.String(), func(t *testing.T) {
			data, err := c.Encode(taskpool.Task{ID: "a", Type: "t", Timeout: tt.give})
			require.NoError(t, err)
			out, err := c.Decode(data)
			require.NoError(t, err)
			assert.Equal(t, tt.give, out.Timeout, "%s", data)
			var env struct {
				MS *int64 `json:"timeout_ms"`
				NS *int64 `json:"timeout_ns"`
			}
			require.NoError(t, json.Unmarshal(data, &env))
			if tt.wantMS == 0 {
				assert.Nil(t, env.MS, "%s", data)
			} else if assert.NotNil(t, env.MS, "%s", data) {
				assert.Equal(t, tt.wantMS, *env.MS, "%s", data)
			}
			if exact := tt.give%time.Millisecond != 0 || (tt.give < 0 && tt.give != -1); exact {
				if assert.NotNil(t, env.NS, "%s", data) {
					assert.Equal(t, int64(tt.give), *env.NS, "%s", data)
				}
			} else {
				assert.Nil(t, env.NS, "%s: whole milliseconds travel as timeout_ms alone", data)
			}
		})
	}
	// A reader of timeout_ms alone: an earlier version's payload.
	out, err := c.Decode([]byte(`{"v":1,"id":"a","type":"t","timeout_ms":2}`))
	require.NoError(t, err)
	assert.Equal(t, 2*time.Millisecond, out.Timeout)
	// A timeout_ns whose sign contradicts timeout_ms is not this codec's: ignored.
	out, err = c.Decode([]byte(`{"v":1,"id":"a","type":"t","timeout_ms":5,"timeout_ns":-3}`))
	require.NoError(t, err)
	assert.Equal(t, 5*time.Millisecond, out.Timeout)
	out, err = c.Decode([]byte(`{"v":1,"id":"a","type":"t","timeout_ms":9223372036854775807}`))
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
	p := newProducer(t, ctxT(t), js)
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
