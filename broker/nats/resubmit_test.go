package natsbroker_test

import (
	"context"
	"encoding/base64"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// Resubmitting a dead letter of a task enqueued with KeepResult clears
// its stored outcome, so that WaitResult waits for the resubmitted run
// instead of returning the dead-lettered outcome at once.
func TestResubmitClearsStoredResult(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	ctx := ctxT(t)
	var fail atomic.Bool
	fail.Store(true)
	release := make(chan struct{})
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("flaky", func(ctx context.Context, task taskpool.Task) error {
		if fail.Load() {
			return taskpool.SkipRetry(errors.New("first run fails"))
		}
		// The resubmitted run ends only once the test lets it, so
		// that its outcome cannot be stored before WaitResult looks.
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		task.SetResult("second run")
		return nil
	}))
	startConsumer(t, js, reg, natsbroker.WithMaxAttempts(1), natsbroker.WithPollWait(100*time.Millisecond))
	prod, err := natsbroker.NewProducer(ctx, js)
	require.NoError(t, err)
	insp, err := natsbroker.NewInspector(ctx, js)
	require.NoError(t, err)

	r, err := prod.Enqueue(ctx, taskpool.Task{ID: "kept", Type: "flaky"}, natsbroker.KeepResult())
	require.NoError(t, err)
	res, err := prod.WaitResult(ctx, r.ID)
	require.NoError(t, err)
	require.True(t, res.DeadLettered, "the first run is dead-lettered")
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1)

	fail.Store(false)
	rr, err := insp.Resubmit(ctx, dls[0].Sequence)
	require.NoError(t, err)
	assert.Equal(t, "kept", rr.ID)
	// The resubmitted run cannot end before release: whatever the bucket
	// holds now is left from the first run.
	kv, err := js.KeyValue(ctx, "taskpool_results_"+natsbroker.DefaultQueue)
	require.NoError(t, err)
	_, err = kv.Get(ctx, base64.RawURLEncoding.EncodeToString([]byte("kept")))
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the dead-lettered outcome is still stored")
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	res, err = prod.WaitResult(short, "kept")
	cancel()
	assert.ErrorIs(t, err, context.DeadlineExceeded, "WaitResult returned %+v before the resubmitted run ended", res)
	got := make(chan natsbroker.Result, 1)
	go func() {
		res, err := prod.WaitResult(ctx, "kept")
		assert.NoError(t, err)
		got <- res
	}()
	close(release)
	select {
	case res = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("no outcome for the resubmitted run")
	}
	assert.False(t, res.DeadLettered, "WaitResult returned the dead-lettered outcome of the first run")
	require.NoError(t, res.Err)
	v, err := taskpool.ResultAs[string](res.Value)
	require.NoError(t, err)
	assert.Equal(t, "second run", v)
}
