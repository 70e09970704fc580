package taskpool_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

type sum struct {
	Total int `json:"total"`
}

func TestSubmitWait(t *testing.T) {
	t.Parallel()
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("add", func(ctx context.Context, t taskpool.Task) error {
		t.SetResult(sum{Total: 3})
		return nil
	}))
	require.NoError(t, reg.HandleFunc("fail", func(ctx context.Context, t taskpool.Task) error {
		return taskpool.SkipRetry(errors.New("bad input"))
	}))
	block := make(chan struct{})
	require.NoError(t, reg.HandleFunc("block", func(ctx context.Context, t taskpool.Task) error {
		<-block
		return nil
	}))
	s, err := taskpool.New(reg)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	defer func() { assert.NoError(t, s.Stop(context.Background())) }()

	var c taskpool.Client = s
	v, err := c.SubmitWait(context.Background(), taskpool.Task{Type: "add"})
	require.NoError(t, err)
	got, err := taskpool.ResultAs[sum](v)
	require.NoError(t, err)
	assert.Equal(t, sum{Total: 3}, got)

	v, err = c.SubmitWait(context.Background(), taskpool.Task{Type: "fail"})
	assert.Nil(t, v)
	assert.ErrorIs(t, err, taskpool.ErrSkipRetry)
	assert.EqualError(t, err, "bad input")

	_, err = c.SubmitWait(context.Background(), taskpool.Task{Type: "nope"})
	assert.ErrorIs(t, err, taskpool.ErrNoHandler, "a refused submission returns Submit's error")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.SubmitWait(ctx, taskpool.Task{Type: "add"})
	assert.ErrorIs(t, err, context.Canceled)

	// The wait ends with ctx; the task goes on.
	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "block"})
	require.NoError(t, err)
	ctx, cancel = context.WithCancel(context.Background())
	go cancel()
	_, err = f.Wait(ctx)
	assert.ErrorIs(t, err, context.Canceled)
	close(block)
	_, err = f.Wait(context.Background())
	assert.NoError(t, err)
}

func TestResultAs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		give    any
		want    sum
		wantErr bool
	}{
		{name: "value", give: sum{Total: 1}, want: sum{Total: 1}},
		{name: "json", give: json.RawMessage(`{"total":2}`), want: sum{Total: 2}},
		{name: "bytes", give: []byte(`{"total":3}`), want: sum{Total: 3}},
		{name: "bad json", give: json.RawMessage(`{`), wantErr: true},
		{name: "nil", give: nil, wantErr: true},
		{name: "other type", give: 42, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := taskpool.ResultAs[sum](tt.give)
			assert.Equal(t, tt.wantErr, err != nil, "error: %v", err)
			if tt.wantErr {
				assert.ErrorIs(t, err, taskpool.ErrInvalidResult)
			}
			assert.Equal(t, tt.want, got)
		})
	}
}
