package natsbroker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// A consumer's handler that waits around taskpool.Lend(ctx) for a channel
// that other tasks of the queue feed (the README's use of Lend) lends its
// worker and a message of capacity, as WaitResult does: on a consumer of
// one worker with no prefetch, the part it waits for is fetched and run.
func TestTrialConsumerHandlerLendsAroundAChannel(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	p := newProducer(t, ctx, js)
	parts := make(chan int, 1)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("part", func(_ context.Context, t taskpool.Task) error {
		n, err := taskpool.ParamsAs[int](t)
		parts <- n
		return err
	}))
	got := make(chan any, 1)
	require.NoError(t, reg.HandleFunc("gather", func(ctx context.Context, _ taskpool.Task) error {
		release := taskpool.Lend(ctx)
		defer release()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		select {
		case n := <-parts:
			got <- n
		case <-wctx.Done():
			got <- wctx.Err()
		}
		return nil
	}))
	cons := startConsumer(t, js, reg, natsbroker.WithWorkers(1), natsbroker.WithPrefetch(natsbroker.NoPrefetch))
	mustEnqueue(t, ctx, p, taskpool.Task{ID: "gather", Type: "gather"})
	// The gather task is running (the consumer holds it) before the part
	// is enqueued, so the part must be fetched while gather waits.
	require.Eventually(t, func() bool { return cons.Health().Held == 1 }, 10*time.Second, 5*time.Millisecond)
	mustEnqueue(t, ctx, p, taskpool.Task{ID: "part", Type: "part", Params: 7})
	assert.Equal(t, any(7), recvT(t, got, 20*time.Second, "the gather handler"))
	stopsClean(t, cons)
}

type trialPtrArgs struct{ N int }

func (trialPtrArgs) Kind() string { return "trial-ptr-args" }

// A nil *A reaches a consumer as no params (it travels as JSON null): the
// typed handler is not called and the task fails with ErrInvalidParams,
// as in process.
func TestTrialNilPointerParamsAreNoParams(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	p := newProducer(t, ctx, js)
	client := natsbroker.NewClient(p)
	reg := taskpool.NewRegistry()
	called := make(chan struct{}, 1)
	require.NoError(t, taskpool.Handle(reg, func(_ context.Context, _ *trialPtrArgs, _ taskpool.Task) error {
		called <- struct{}{}
		return nil
	}))
	cons := startConsumer(t, js, reg)
	_, err := client.SubmitWait(ctx, taskpool.TaskOf((*trialPtrArgs)(nil)))
	assert.ErrorIs(t, err, taskpool.ErrInvalidParams)
	assert.Empty(t, called)
	stopsClean(t, cons)
}

// A later Stop whose ctx ends while the first, graceful one still waits
// cuts it short, as the in-process scheduler's later Stop does: the
// running handler's ctx is cancelled, the later call returns the
// *taskpool.StopError with its ctx's error, and the first returns nil.
// (The later call waited for the first whatever its ctx said: with a
// handler that waits for its ctx, for ever.)
func TestTrialLaterStopWithADeadlineCutsTheFirstShort(t *testing.T) {
	t.Parallel()
	cons := hangingConsumer(t)
	first := make(chan error, 1)
	go func() { first <- cons.Stop(context.Background()) }()
	require.Eventually(t, func() bool { return !cons.Health().Consuming }, 10*time.Second, time.Millisecond)
	sctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	second := make(chan error, 1)
	go func() { second <- cons.Stop(sctx) }()
	err := recvT(t, second, 10*time.Second, "the later Stop")
	var se *taskpool.StopError
	require.ErrorAs(t, err, &se)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NoError(t, recvT(t, first, 10*time.Second, "the first Stop"))
	assert.NoError(t, cons.Stop(context.Background()), "a Stop after the shutdown")
}

// hangingConsumer starts a consumer of one worker (which the test must
// stop) and returns once its handler runs a task that returns only when
// its context ends.
func hangingConsumer(t *testing.T) *natsbroker.Consumer {
	t.Helper()
	js, ctx := startJetStream(t)
	reg := taskpool.NewRegistry()
	started := make(chan struct{}, 1)
	require.NoError(t, reg.HandleFunc("hang", func(ctx context.Context, _ taskpool.Task) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}))
	cons, err := natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithWorkers(1))
	require.NoError(t, err)
	require.NoError(t, cons.Start())
	mustEnqueue(t, ctx, newProducer(t, ctx, js), taskpool.Task{ID: "h", Type: "hang"})
	recvT(t, started, 10*time.Second, "the handler")
	return cons
}

// The two WithUniqueTTL options differ, as the README's "What differs"
// says: in process a finished task's key stays taken for the TTL; on NATS
// the TTL only bounds how long a key is held, and a key is released as
// its task succeeds, so a duplicate arriving after it is accepted.
func TestTrialUniqueTTLDiffers(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	reg, ran := idRegistry(t, "u", 4)

	s, err := taskpool.New(reg, taskpool.WithUniqueTTL(time.Hour))
	require.NoError(t, err)
	s.Start()
	_, err = s.SubmitWait(ctx, taskpool.Task{ID: "a", Type: "u", UniqueKey: "k"})
	require.NoError(t, err)
	assert.Equal(t, "a", <-ran)
	assert.ErrorIs(t, s.Submit(ctx, taskpool.Task{ID: "b", Type: "u", UniqueKey: "k"}), taskpool.ErrDuplicateTask)
	require.NoError(t, s.Stop(ctx))

	js, _ := startJetStream(t)
	p := newProducer(t, ctx, js, natsbroker.WithUniqueTTL(time.Hour))
	client := natsbroker.NewClient(p)
	cons := startConsumer(t, js, reg, natsbroker.WithUniqueTTL(time.Hour))
	_, err = client.SubmitWait(ctx, taskpool.Task{ID: "a", Type: "u", UniqueKey: "k"})
	require.NoError(t, err)
	assert.Equal(t, "a", recvT(t, ran, 10*time.Second, "the first task"))
	// The consumer releases the key after it stores the result that
	// SubmitWait returned: a Submit in between may still find it taken.
	require.Eventually(t, func() bool {
		return client.Submit(ctx, taskpool.Task{ID: "b", Type: "u", UniqueKey: "k"}) == nil
	}, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, "b", recvT(t, ran, 10*time.Second, "the second task"))
	stopsClean(t, cons)
}

// Sending a dead letter back differs for its unique key, as the README's
// "What differs" says: in process Requeue takes the key again (a
// duplicate is refused while the task waits to run); on NATS Resubmit
// does not (a duplicate is accepted).
func TestTrialRequeueTakesTheUniqueKeyResubmitDoesNot(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	fail := make(chan bool, 4)
	fail <- true
	ran := make(chan string, 4)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("u", func(_ context.Context, task taskpool.Task) error {
		ran <- task.ID
		if len(fail) > 0 && <-fail {
			return taskpool.SkipRetry(errors.New("fails once"))
		}
		return nil
	}))

	s, err := taskpool.New(reg, taskpool.WithDeadLetters(4, nil))
	require.NoError(t, err)
	s.Start()
	_, err = s.SubmitWait(ctx, taskpool.Task{ID: "a", Type: "u", UniqueKey: "k"})
	require.Error(t, err)
	assert.Equal(t, "a", <-ran)
	require.NoError(t, s.Pause())
	require.NoError(t, s.Requeue(ctx, "a"))
	assert.ErrorIs(t, s.Submit(ctx, taskpool.Task{ID: "b", Type: "u", UniqueKey: "k"}), taskpool.ErrDuplicateTask)
	require.NoError(t, s.Stop(ctx))
	assert.Equal(t, "a", <-ran)

	fail <- true
	js, _ := startJetStream(t)
	p := newProducer(t, ctx, js)
	client := natsbroker.NewClient(p)
	insp := newInspector(t, ctx, js)
	cons := startConsumer(t, js, reg)
	_, err = client.SubmitWait(ctx, taskpool.Task{ID: "a", Type: "u", UniqueKey: "k"})
	require.Error(t, err)
	assert.Equal(t, "a", recvT(t, ran, 10*time.Second, "the first run"))
	var dls []natsbroker.DeadLetter
	require.Eventually(t, func() bool {
		dls, err = insp.DeadLetters(ctx, 0, 10)
		return err == nil && len(dls) == 1
	}, 10*time.Second, 5*time.Millisecond)
	stopsClean(t, cons) // nothing runs the resubmitted task meanwhile
	_, err = insp.Resubmit(ctx, dls[0].Sequence)
	require.NoError(t, err)
	assert.NoError(t, client.Submit(ctx, taskpool.Task{ID: "b", Type: "u", UniqueKey: "k"}))
}

// A consumer's handler that fans out and waits for its tasks from
// goroutines of its own lends its worker once: on a consumer of one
// worker with no prefetch, the children are fetched through that one
// message of capacity, one after the other, and all finish.
func TestTrialConsumerFanOutLendsOnce(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	p := newProducer(t, ctx, js)
	client := natsbroker.NewClient(p)
	reg := taskpool.NewRegistry()
	var cons *natsbroker.Consumer
	workers := make(chan int, 8)
	require.NoError(t, reg.HandleFunc("child", func(_ context.Context, t taskpool.Task) error {
		workers <- cons.Stats().Workers
		t.SetResult(t.Params)
		return nil
	}))
	require.NoError(t, reg.HandleFunc("parent", func(ctx context.Context, t taskpool.Task) error {
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := client.SubmitWait(ctx, taskpool.Task{Type: "child", Params: i})
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}))
	cons = startConsumer(t, js, reg, natsbroker.WithWorkers(1), natsbroker.WithPrefetch(natsbroker.NoPrefetch))
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err := client.SubmitWait(wctx, taskpool.Task{Type: "parent"})
	require.NoError(t, err)
	close(workers)
	for n := range workers {
		assert.Equal(t, 2, n, "the consumer's worker and the parent's, lent once")
	}
	stopsClean(t, cons)
}

// A consumer's Stats count deliveries, as its doc says: a task that fails
// once and then succeeds counts as two submitted, one failed, one
// succeeded and none retried, where the in-process scheduler counts one
// submitted, one retried, one succeeded.
func TestTrialConsumerStatsCountDeliveries(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	client := natsbroker.NewClient(newProducer(t, ctx, js))
	var runs atomic.Int32
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("f", func(context.Context, taskpool.Task) error {
		if runs.Add(1) == 1 {
			return errors.New("first run fails")
		}
		return nil
	}, taskpool.WithRetry(3, taskpool.ConstantBackoff(10*time.Millisecond))))

	s, err := taskpool.New(reg)
	require.NoError(t, err)
	s.Start()
	_, err = s.SubmitWait(ctx, taskpool.Task{Type: "f"})
	require.NoError(t, err)
	require.NoError(t, s.Stop(ctx))
	st := s.Stats()
	assert.Equal(t, [4]uint64{1, 1, 0, 1}, [4]uint64{st.Submitted, st.Succeeded, st.Failed, st.Retried})

	runs.Store(0)
	cons := startConsumer(t, js, reg)
	_, err = client.SubmitWait(ctx, taskpool.Task{Type: "f"})
	require.NoError(t, err)
	stopsClean(t, cons)
	st = cons.Stats()
	assert.Equal(t, [4]uint64{2, 1, 1, 0}, [4]uint64{st.Submitted, st.Succeeded, st.Failed, st.Retried})
}
