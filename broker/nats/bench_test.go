package natsbroker_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// BenchmarkEndToEnd measures enqueue → handled → acked throughput through
// an embedded server on loopback, with 1, 2 and 4 consumers (each on its
// own connection, as separate processes would be) sharing the queue, and
// one producer enqueueing with EnqueueBatch. The handler does nothing, so
// this is the broker's own cost. The tasks/s metric counts acked tasks
// over the wall time from the first enqueue to the last ack.
func BenchmarkEndToEnd(b *testing.B) {
	for _, storage := range []string{"file", "file-async", "memory"} {
		for _, consumers := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("storage=%s/consumers=%d", storage, consumers), func(b *testing.B) {
				benchEndToEnd(b, storage, consumers)
			})
		}
	}
}

// BenchmarkEndToEndDefaults is BenchmarkEndToEnd on file storage with the
// consumers' default options (workers, prefetch, fetch size): what a
// deployment that tunes nothing gets.
func BenchmarkEndToEndDefaults(b *testing.B) {
	for _, consumers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("consumers=%d", consumers), func(b *testing.B) {
			benchRun(b, "file", consumers, true, nil, nil)
		})
	}
}

// BenchmarkCodecEndToEnd is BenchmarkEndToEnd on memory storage (where
// the codec's share is largest) with one consumer and tasks that carry
// params, once with the default JSONCodec (a hand-written fast path for
// the envelope) and once with a codec that decodes with encoding/json
// only: whether the hand-written decoder wins end to end.
func BenchmarkCodecEndToEnd(b *testing.B) {
	params := benchParams{To: "ada@example.com", Subject: "Your order #1042 has shipped", Order: 1042, Items: []string{"tea", "cups"}}
	for _, c := range []struct {
		name  string
		codec natsbroker.Codec
	}{{"json-fast", natsbroker.JSONCodec{}}, {"encoding-json", referenceCodec{}}} {
		b.Run("codec="+c.name, func(b *testing.B) {
			benchRun(b, "memory", 1, false, natsbroker.WithCodec(c.codec), params)
		})
	}
}

// BenchmarkCodec measures one envelope's encode and decode, with the
// default JSONCodec's fast path and with encoding/json alone.
func BenchmarkCodec(b *testing.B) {
	t := taskpool.Task{ID: "order-1042-mail", Type: "email.send", Priority: taskpool.PriorityHigh, MaxAttempts: 5,
		Params: benchParams{To: "ada@example.com", Subject: "Your order #1042 has shipped", Order: 1042, Items: []string{"tea", "cups"}}}
	data, err := natsbroker.JSONCodec{}.Encode(t)
	require.NoError(b, err)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_, _ = natsbroker.JSONCodec{}.Encode(t)
		}
	})
	b.Run("decode=json-fast", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_, _ = natsbroker.JSONCodec{}.Decode(data)
		}
	})
	b.Run("decode=encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_, _ = natsbroker.ReferenceDecode(data)
		}
	})
}

// benchParams are an email task's params.
type benchParams struct {
	To      string   `json:"to"`
	Subject string   `json:"subject"`
	Order   int      `json:"order"`
	Items   []string `json:"items"`
}

// referenceCodec is JSONCodec decoding with encoding/json only.
type referenceCodec struct{ natsbroker.JSONCodec }

func (referenceCodec) Decode(data []byte) (taskpool.Task, error) {
	return natsbroker.ReferenceDecode(data)
}

func benchEndToEnd(b *testing.B, storage string, consumers int) {
	benchRun(b, storage, consumers, false, nil, nil)
}

func benchRun(b *testing.B, storage string, consumers int, defaults bool, codec natsbroker.Option, params any) {
	b.ReportAllocs()
	srv := startServer(b)
	opts := []natsbroker.Option{natsbroker.WithQueue("bench")}
	if codec != nil {
		opts = append(opts, codec)
	}
	switch storage {
	case "memory":
		opts = append(opts, natsbroker.WithMemoryStorage())
	case "file-async":
		opts = append(opts, natsbroker.WithAsyncPersist())
	}
	var acked atomic.Int64
	done := make(chan struct{})
	want := int64(b.N)
	reg := nopRegistry(b, "noop")
	copts := append(opts,
		natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) {
			if a == natsbroker.ActionAck && acked.Add(1) == want {
				close(done)
			}
		}))
	if !defaults {
		copts = append(copts,
			natsbroker.WithWorkers(8),
			natsbroker.WithPrefetch(512),
			natsbroker.WithMaxBatch(256))
	}
	var cs []*natsbroker.Consumer
	for range consumers {
		_, js := connect(b, srv.URL())
		cs = append(cs, startConsumer(b, js, reg, copts...))
	}
	defer func() {
		for _, c := range cs {
			run, rtt := c.Measured()
			b.Logf("prefetch %d run %v rtt %v", c.CurrentPrefetch(), time.Duration(run), time.Duration(rtt))
		}
	}()
	_, pjs := connect(b, srv.URL())
	ctx := ctxT(b)
	prod := newProducer(b, ctx, pjs, opts...)
	batch := make([]taskpool.Task, 10000)

	b.ResetTimer()
	start := time.Now()
	for sent := 0; sent < b.N; sent += len(batch) {
		k := min(len(batch), b.N-sent)
		for i := range k {
			batch[i] = taskpool.Task{ID: fmt.Sprint("t", sent+i), Type: "noop", Params: params}
		}
		if _, err := prod.EnqueueBatch(ctx, batch[:k]); err != nil {
			b.Fatal(err)
		}
	}
	enq := time.Since(start)
	select {
	case <-done:
	case <-ctx.Done():
		b.Fatalf("only %d of %d tasks acked", acked.Load(), b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
	b.ReportMetric(float64(b.N)/enq.Seconds(), "enqueued/s")
}

// BenchmarkRetryLatency measures how long a task that fails twice takes
// to succeed on its third attempt, with a backoff of 1ms, on a consumer of
// 2 or 4 workers and nothing else queued: one op enqueues one task and
// waits for its ack. What it shows beyond the two backoffs is how soon the
// consumer fetches a task put back for a retry.
func BenchmarkRetryLatency(b *testing.B) {
	for _, workers := range []int{2, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			srv := startServer(b)
			_, js := connect(b, srv.URL())
			q := natsbroker.WithQueue("benchretry")
			reg := taskpool.NewRegistry()
			require.NoError(b, reg.HandleFunc("flaky", func(_ context.Context, t taskpool.Task) error {
				if t.Attempt < 3 {
					return fmt.Errorf("attempt %d fails", t.Attempt)
				}
				return nil
			}, taskpool.WithRetry(3, taskpool.ConstantBackoff(time.Millisecond))))
			acked := make(chan struct{}, 1)
			startConsumer(b, js, reg, q, natsbroker.WithWorkers(workers),
				natsbroker.WithSettleHook(func(_ taskpool.Outcome, a natsbroker.Action) {
					if a == natsbroker.ActionAck {
						acked <- struct{}{}
					}
				}))
			prod := newProducer(b, context.Background(), js, q)
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				if _, err := prod.Enqueue(ctx, taskpool.Task{ID: fmt.Sprint("r", i), Type: "flaky"}); err != nil {
					b.Fatal(err)
				}
				select {
				case <-acked:
				case <-time.After(30 * time.Second):
					b.Fatal("no ack in 30s")
				}
			}
		})
	}
}
