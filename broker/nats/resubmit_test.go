package natsbroker_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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
	js, ctx := startJetStream(t)
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
	prod := newProducer(t, ctx, js)
	insp := newInspector(t, ctx, js)

	r := mustEnqueue(t, ctx, prod, taskpool.Task{ID: "kept", Type: "flaky"}, natsbroker.KeepResult())
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

// A dead-lettered tick of a periodic schedule keeps its ID, "<id>@<tick
// time>", in the dead letter and when resubmitted: the run, the receipt
// and any outcome are the tick's, not the schedule's bare ID.
func TestResubmitTickKeepsItsID(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	var fail atomic.Bool
	fail.Store(true)
	runs := make(chan string, 64)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("report", func(_ context.Context, task taskpool.Task) error {
		runs <- task.ID
		if fail.Load() {
			return taskpool.SkipRetry(errors.New("tick fails"))
		}
		return nil
	}))
	startConsumer(t, js, reg, natsbroker.WithMaxAttempts(1), natsbroker.WithPollWait(100*time.Millisecond))
	prod := newProducer(t, ctx, js)
	insp := newInspector(t, ctx, js)

	require.NoError(t, prod.Schedule(ctx, "report", "@every 1s", taskpool.Task{Type: "report"}))
	var tick string
	select {
	case tick = <-runs:
	case <-time.After(20 * time.Second):
		t.Fatal("no tick")
	}
	require.NoError(t, prod.Cancel(ctx, "report"))
	require.True(t, strings.HasPrefix(tick, "report@"), tick)

	// The tick's dead letter (later ticks, emitted before the Cancel, may
	// have been dead-lettered too).
	var dl natsbroker.DeadLetter
	require.Eventually(t, func() bool {
		dls, err := insp.DeadLetters(ctx, 0, 100)
		require.NoError(t, err)
		for _, d := range dls {
			if d.Header.Get(natsbroker.HeaderTaskID) == tick {
				dl = d
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "no dead letter for %s", tick)
	assert.Equal(t, tick, dl.Task.ID, "DeadLetter.Task.ID is the tick's")

	fail.Store(false)
	r, err := insp.Resubmit(ctx, dl.Sequence)
	require.NoError(t, err)
	assert.Equal(t, tick, r.ID, "Receipt.ID")
	deadline := time.After(20 * time.Second)
	for {
		select {
		case id := <-runs:
			if id == tick {
				return
			}
			require.Contains(t, id, "@", "the resubmitted tick %s ran as %s", tick, id)
		case <-deadline:
			t.Fatalf("the resubmitted tick %s never ran", tick)
		}
	}
}

// failDelete is a dead-letter stream whose next DeleteMsg fails.
type failDelete struct {
	jetstream.Stream
	fail atomic.Bool
}

func (s *failDelete) DeleteMsg(ctx context.Context, seq uint64) error {
	if s.fail.CompareAndSwap(true, false) {
		return errors.New("injected: delete failed")
	}
	return s.Stream.DeleteMsg(ctx, seq)
}

// A Resubmit repeated (after one that failed once it had published, or
// two at once from the dashboard and the command) stores the task once,
// as Resubmit's doc says, and does not delete the outcome of the run the
// first one started: here that run was dead-lettered again, and its
// outcome is what WaitResult returns. (The second Resubmit deleted it as
// the dead letter's own, though its publish was a duplicate: no run came
// to store another, and WaitResult waited for ever.)
func TestResubmitAgainKeepsTheOutcomeOfTheRunItStarted(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("resubagain")
	runs := make(chan struct{}, 4)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("doomed", func(context.Context, taskpool.Task) error {
		runs <- struct{}{}
		return taskpool.SkipRetry(errors.New("fails every time"))
	}))
	startConsumer(t, js, reg, q, natsbroker.WithMaxAttempts(1), natsbroker.WithPollWait(100*time.Millisecond))
	prod := newProducer(t, ctx, js, q)
	insp := newInspector(t, ctx, js, q)

	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "k", Type: "doomed"}, natsbroker.KeepResult())
	res, err := prod.WaitResult(ctx, "k")
	require.NoError(t, err)
	require.True(t, res.DeadLettered)
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	first := dls[0].Sequence

	// The first Resubmit publishes, then fails to delete the dead letter.
	dlq := &failDelete{}
	insp.WrapDeadLetters(func(s jetstream.Stream) jetstream.Stream { dlq.Stream = s; return dlq })
	dlq.fail.Store(true)
	_, err = insp.Resubmit(ctx, first)
	require.Error(t, err)
	// The run it started is dead-lettered again, its outcome stored.
	require.Eventually(t, func() bool {
		dls, err = insp.DeadLetters(ctx, first, 10)
		return err == nil && len(dls) == 1
	}, 10*time.Second, 10*time.Millisecond, "the resubmitted run dead-lettered")
	<-runs
	<-runs

	r, err := insp.Resubmit(ctx, first)
	require.NoError(t, err)
	assert.True(t, r.Duplicate, "stored once")
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res, err = prod.WaitResult(short, "k")
	require.NoError(t, err, "the outcome of the resubmitted run is kept")
	assert.True(t, res.DeadLettered)
	assert.Len(t, runs, 0, "no other run")
}

// unconfirmedPublish is a JetStream whose publishes are never confirmed:
// each times out, after it has been stored when store is set (the reply
// lost), before otherwise (the request lost).
type unconfirmedPublish struct {
	jetstream.JetStream
	store bool
}

func (j *unconfirmedPublish) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if j.store {
		if _, err := j.JetStream.PublishMsg(ctx, msg, opts...); err != nil {
			return nil, err
		}
	}
	return nil, nats.ErrTimeout
}

// kept is a task "k" enqueued with KeepResult and dead-lettered, as
// deadLetteredKept leaves it.
type kept struct {
	js   jetstream.JetStream
	cons *natsbroker.Consumer
	prod *natsbroker.Producer
	insp *natsbroker.Inspector
	seq  uint64 // the dead letter's
}

// deadLetteredKept enqueues the task "k" with KeepResult on queue q and has
// its first run dead-lettered. Runs after the first succeed, with the
// result "again", and are counted on runs.
func deadLetteredKept(t *testing.T, q string, runs chan struct{}) kept {
	t.Helper()
	js, ctx := startJetStream(t)
	var first atomic.Bool
	first.Store(true)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("once", func(_ context.Context, task taskpool.Task) error {
		if first.CompareAndSwap(true, false) {
			return taskpool.SkipRetry(errors.New("first run fails"))
		}
		runs <- struct{}{}
		task.SetResult("again")
		return nil
	}))
	opt := natsbroker.WithQueue(q)
	cons := startConsumer(t, js, reg, opt, natsbroker.WithMaxAttempts(1), natsbroker.WithPollWait(100*time.Millisecond))
	prod := newProducer(t, ctx, js, opt)
	insp := newInspector(t, ctx, js, opt)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "k", Type: "once"}, natsbroker.KeepResult())
	res, err := prod.WaitResult(ctx, "k")
	require.NoError(t, err)
	require.True(t, res.DeadLettered)
	// The outcome is stored before the dead letter.
	var dls []natsbroker.DeadLetter
	require.Eventually(t, func() bool {
		dls, err = insp.DeadLetters(ctx, 0, 10)
		return err == nil && len(dls) == 1
	}, 10*time.Second, 10*time.Millisecond, "dead-lettered")
	return kept{js, cons, prod, insp, dls[0].Sequence}
}

// A Resubmit whose publish is never confirmed, and was not stored, leaves
// the dead-lettered outcome stored, as it leaves the dead letter: no run
// comes to store another. (Resubmit deleted the outcome before the
// publish and did not put it back after an unconfirmed one: WaitResult
// waited for ever.)
func TestResubmitUnconfirmedNotStoredKeepsTheOutcome(t *testing.T) {
	t.Parallel()
	runs := make(chan struct{}, 4)
	k := deadLetteredKept(t, "resubunconf", runs)
	prod, insp, seq := k.prod, k.insp, k.seq
	ctx := ctxT(t)
	insp.WrapJetStream(func(js jetstream.JetStream) jetstream.JetStream { return &unconfirmedPublish{JetStream: js} })
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := insp.Resubmit(short, seq)
	cancel()
	require.ErrorIs(t, err, natsbroker.ErrNotConfirmed)

	short, cancel = context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res, err := prod.WaitResult(short, "k")
	require.NoError(t, err, "the dead-lettered outcome is gone, and no run will store another")
	assert.True(t, res.DeadLettered)
	dls, err := insp.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	assert.Len(t, dls, 1, "the dead letter is kept")
	assert.Len(t, runs, 0, "no run")
}

// A Resubmit whose publish was stored but never confirmed starts a run,
// whose outcome is stored; Resubmit again, as ErrNotConfirmed invites,
// is a duplicate and keeps that outcome.
func TestResubmitUnconfirmedStoredThenAgainKeepsTheNewOutcome(t *testing.T) {
	t.Parallel()
	runs := make(chan struct{}, 4)
	k := deadLetteredKept(t, "resubunconfstored", runs)
	prod, insp, seq := k.prod, k.insp, k.seq
	ctx := ctxT(t)
	var real jetstream.JetStream
	insp.WrapJetStream(func(js jetstream.JetStream) jetstream.JetStream {
		real = js
		return &unconfirmedPublish{JetStream: js, store: true}
	})
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := insp.Resubmit(short, seq)
	cancel()
	require.ErrorIs(t, err, natsbroker.ErrNotConfirmed)
	select {
	case <-runs:
	case <-ctx.Done():
		t.Fatal("the stored resubmit did not run")
	}
	require.Eventually(t, func() bool {
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		res, err := prod.WaitResult(short, "k")
		return err == nil && !res.DeadLettered
	}, 10*time.Second, 10*time.Millisecond, "the new run's outcome is stored")

	insp.WrapJetStream(func(jetstream.JetStream) jetstream.JetStream { return real })
	r, err := insp.Resubmit(ctx, seq)
	require.NoError(t, err)
	assert.True(t, r.Duplicate, "stored once")
	short, cancel = context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res, err := prod.WaitResult(short, "k")
	require.NoError(t, err, "the new run's outcome is kept")
	assert.False(t, res.DeadLettered)
	v, err := taskpool.ResultAs[string](res.Value)
	require.NoError(t, err)
	assert.Equal(t, "again", v)
	assert.Len(t, runs, 0, "no other run")
}

// olderConsumerRun is a JetStream whose publishes, once stored and
// confirmed, are followed by the outcome an earlier version of the
// consumer stores for the task id (no "seq" in the record) when it runs
// the message at once and dead-letters it: a rolling upgrade, the
// inspector new and a consumer old.
type olderConsumerRun struct {
	jetstream.JetStream
	results jetstream.KeyValue
	id      string
}

func (j *olderConsumerRun) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ack, err := j.JetStream.PublishMsg(ctx, msg, opts...)
	if err != nil {
		return nil, err
	}
	rec := `{"v":1,"error":{"message":"failed on an older consumer"},"attempts":1,"dead":true}`
	if _, err := j.results.Put(ctx, base64.RawURLEncoding.EncodeToString([]byte(j.id)), []byte(rec)); err != nil {
		return nil, err
	}
	return ack, nil
}

// A Resubmit whose task an earlier version of the consumer runs and
// dead-letters before Resubmit has cleared the outcome it replaces keeps
// that run's outcome: it was stored after the publish. (Resubmit read
// the outcome after the publish, took the earlier version's dead-lettered
// record, which has no sequence, for the one it replaces and deleted it:
// no run was left to store another, and WaitResult waited for ever.)
func TestResubmitKeepsAnOlderConsumersOutcomeOfTheNewRun(t *testing.T) {
	t.Parallel()
	const q = "resubolder"
	k := deadLetteredKept(t, q, make(chan struct{}, 4))
	js, prod, insp := k.js, k.prod, k.insp
	ctx := ctxT(t)
	require.NoError(t, k.cons.Stop(ctx)) // the older consumer below runs the resubmitted task

	kv, err := js.KeyValue(ctx, "taskpool_results_"+q)
	require.NoError(t, err)
	insp.WrapJetStream(func(js jetstream.JetStream) jetstream.JetStream {
		return &olderConsumerRun{JetStream: js, results: kv, id: "k"}
	})
	_, err = insp.Resubmit(ctx, k.seq)
	require.NoError(t, err)
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res, err := prod.WaitResult(short, "k")
	require.NoError(t, err, "the new run's outcome was deleted, and no run will store another")
	assert.True(t, res.DeadLettered)
	assert.EqualError(t, res.Err, "failed on an older consumer")
}
