package distributed_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// BenchmarkDistributed measures end-to-end throughput, enqueue → handled
// → acked (or completed), of taskpool on NATS JetStream, asynq on Redis
// and River on PostgreSQL, with 1, 2 and 4 consumer processes on this
// machine. One benchmark op is one task.
//
// Every consumer is a separate process (this test binary, re-executed)
// running workersPerProcess no-op handlers. The benchmark process is the
// producer (and, for NATS, hosts the embedded server). The clock starts
// at the first enqueue and stops when the server confirms that every task
// is acked or completed: the consumers report their handled counts, and
// once these add up to b.N the benchmark polls the server until nothing
// is left. tasks/s is b.N over that time; enqueued/s is b.N over the time
// the producer took to have every task stored.
//
// Server start, process start and a warm-up of warmupTasks are outside
// the clock. asynq and River are skipped unless TASKPOOL_BENCH_REDIS and
// TASKPOOL_BENCH_PG name their servers; run.sh starts both.
//
// Allocations are the benchmark process's only (the producer, and for
// NATS the embedded server); the consumers' are not counted.
func BenchmarkDistributed(b *testing.B) {
	for _, e := range engines {
		for _, consumers := range []int{1, 2, 4} {
			var fx *fixture
			b.Run(fmt.Sprintf("engine=%s/consumers=%d", e.name, consumers), func(b *testing.B) {
				b.ReportAllocs()
				// The testing package calls this function more than once
				// (b.N = 1 first): the servers and processes outlive each
				// call and are stopped after the last.
				if fx == nil {
					addr, skip := e.server()
					if skip != "" {
						b.Skip(skip)
					}
					var err error
					if fx, err = newFixture(e, addr, consumers); err != nil {
						b.Fatal(err)
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), roundTimeout)
				defer cancel()
				b.ResetTimer()
				r, err := fx.round(ctx, b.N)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/r.done.Seconds(), "tasks/s")
				b.ReportMetric(float64(b.N)/r.enqueued.Seconds(), "enqueued/s")
			})
			if fx != nil {
				if err := fx.close(); err != nil {
					b.Error(err)
				}
			}
		}
	}
}

// TestDistributed runs every configured engine through the benchmark's
// machinery once, with two consumer processes, and checks the counts.
func TestDistributed(t *testing.T) {
	const n = 500
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			addr, skip := e.server()
			if skip != "" {
				t.Skip(skip)
			}
			fx, err := newFixture(e, addr, 2)
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err = fx.round(ctx, n)
			assert.NoError(t, err)
			assert.EqualValues(t, warmupTasks+n, fx.fleet.handled(), "each task handled once")
			left, err := fx.q.remaining(ctx)
			assert.NoError(t, err)
			assert.Zero(t, left)
			assert.NoError(t, fx.close())
		})
	}
}

const (
	// warmupTasks run through every fresh fixture before any timed round.
	warmupTasks = 1000
	// roundTimeout bounds one round, warm-up or timed.
	roundTimeout = 5 * time.Minute
	// pollEvery is how often the server is asked what is left, once the
	// consumers have handled every task.
	pollEvery = time.Millisecond
)

// fixture is one engine's queue and consumer processes, warmed up.
type fixture struct {
	q     queue
	fleet *fleet
	total int64 // tasks enqueued so far
}

func newFixture(e engine, addr string, consumers int) (*fixture, error) {
	ctx, cancel := context.WithTimeout(context.Background(), roundTimeout)
	defer cancel()
	q, err := e.open(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.name, err)
	}
	fl, err := startFleet(ctx, e.name, consumers, q.addr(), q.name())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%s: %w", e.name, err), q.close(ctx))
	}
	fx := &fixture{q: q, fleet: fl}
	if _, err := fx.round(ctx, warmupTasks); err != nil {
		return nil, errors.Join(fmt.Errorf("%s: warm-up: %w", e.name, err), fx.close())
	}
	return fx, nil
}

type roundTimes struct {
	enqueued time.Duration // until the server stored the last task
	done     time.Duration // until the server recorded the last ack
}

// round enqueues n tasks and waits until the consumers handled them and
// the server has none left.
func (fx *fixture) round(ctx context.Context, n int) (roundTimes, error) {
	var r roundTimes
	start := time.Now()
	fx.total += int64(n)
	if err := fx.q.enqueue(ctx, n); err != nil {
		return r, fmt.Errorf("enqueue: %w", err)
	}
	r.enqueued = time.Since(start)
	if err := fx.fleet.waitHandled(ctx, fx.total); err != nil {
		return r, err
	}
	// The handlers ran; the acks or completions may still be on their
	// way. The server is polled only now, so that polling does not load
	// it during the run.
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	done := ctx.Done()
	for {
		left, err := fx.q.remaining(ctx)
		if err != nil {
			return r, fmt.Errorf("remaining: %w", err)
		}
		if left == 0 {
			break
		}
		select {
		case <-tick.C:
		case <-done:
			return r, fmt.Errorf("%d tasks not acked: %w", left, ctx.Err())
		}
	}
	r.done = time.Since(start)
	if h := fx.fleet.handled(); h != fx.total {
		return r, fmt.Errorf("%d tasks handled, %d enqueued", h, fx.total)
	}
	return r, nil
}

// close stops the consumer processes gracefully, then the queue.
func (fx *fixture) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return errors.Join(fx.fleet.stop(ctx), fx.q.close(ctx))
}
