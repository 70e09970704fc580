package natsbroker_test

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// A task of a globally limited type that the local scheduler refuses
// when the gate submits it (here a middleware constructor that panics,
// the core's refusal, retried, or calls runtime.Goexit, dead-lettered)
// gives its capacity back on the gate's goroutine. A consumer with no
// capacity left (one worker, no prefetch: the fetch loop had no long
// poll outstanding) must be woken by it. (It was not: the fetch loop
// waited for a completion that never came, and the retried task, or the
// next one, was never fetched.)
func TestGateRefusalWakesTheFetchLoop(t *testing.T) {
	t.Parallel()
	for name, exit := range map[string]func(){
		"panic":  func() { panic("ctor boom") },
		"goexit": runtime.Goexit,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reg := taskpool.NewRegistry()
			ran := make(chan string, 8)
			require.NoError(t, reg.HandleFunc("ok", func(_ context.Context, t taskpool.Task) error {
				ran <- t.ID
				return nil
			}))
			var builds atomic.Int32
			mw := func(next taskpool.Handler) taskpool.Handler {
				if builds.Add(1) == 1 {
					exit()
				}
				return next
			}
			cons, p, _, told, _ := callbackExitConsumer(t, reg,
				natsbroker.WithSchedulerOptions(taskpool.WithMiddleware(mw)),
				natsbroker.WithGlobalLimit("ok", natsbroker.Limit{Concurrency: 1}),
				natsbroker.WithWorkers(1), natsbroker.WithPrefetch(natsbroker.NoPrefetch),
				natsbroker.WithBackoff(func(int) time.Duration { return 10 * time.Millisecond }))
			ctx := ctxT(t)
			_, err := p.Enqueue(ctx, taskpool.Task{ID: "first", Type: "ok"})
			require.NoError(t, err)
			s := nextSettled(t, told, "the refused task")
			assert.Equal(t, "first", s.out.Task.ID)
			want := "first" // retried
			if name == "goexit" {
				assert.Equal(t, natsbroker.ActionDeadLetter, s.a)
				want = "next"
				_, err = p.Enqueue(ctx, taskpool.Task{ID: "next", Type: "ok"})
				require.NoError(t, err)
			} else {
				assert.Equal(t, natsbroker.ActionRetry, s.a)
			}
			select {
			case id := <-ran:
				assert.Equal(t, want, id)
			case <-time.After(10 * time.Second):
				t.Fatal("the task never ran: the fetch loop was not woken")
			}
			s = nextSettled(t, told, want)
			assert.Equal(t, natsbroker.ActionAck, s.a)
			stopsClean(t, cons)
			assert.Empty(t, told, "no delivery settled twice")
		})
	}
}
