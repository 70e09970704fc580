package natsbroker_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

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
		Attempt: 3, // not sent: the broker's delivery count is the attempt
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
