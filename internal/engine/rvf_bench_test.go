package engine_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/taskpool/taskpool/internal/engine"
)

// tally counts the units run and signals done at want.
type tally struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func (c *tally) Run(w *engine.Worker[int, struct{}], _ *int) {
	if !w.Begin(0) {
		return
	}
	if c.n.Add(1) == c.want {
		close(c.done)
	}
}
func (c *tally) Drop(*struct{}, *int)         {}
func (c *tally) Exited(*struct{}, *int, bool) {}
func (c *tally) Retired(*struct{}, *struct{}) {}

// BenchmarkRvfPutRun measures the hot path end to end: Put by parallel
// submitters, the dispatcher's hand-off loop, the workers' loop, per unit.
func BenchmarkRvfPutRun(b *testing.B) {
	for _, workers := range []int{1, 2, 8} {
		for _, batch := range []int{1, 16} {
			b.Run(fmt.Sprintf("workers=%d/batch=%d", workers, batch), func(b *testing.B) {
				b.ReportAllocs()
				c := &tally{want: int64(b.N), done: make(chan struct{})}
				e := engine.New[int, struct{}](engine.Config{Workers: workers, BatchSize: batch, QueueSize: 1024, Weights: [engine.Lanes]int{1, 1, 1}}, c)
				e.Start()
				const submitters = 4
				b.ResetTimer()
				var wg sync.WaitGroup
				for s := range submitters {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := s; i < b.N; i += submitters {
							if err := e.Put(context.Background(), 0, i, true, false); err != nil {
								panic(err)
							}
						}
					}()
				}
				wg.Wait()
				<-c.done
				b.StopTimer()
				e.CloseAdmission()
				e.Close()
			})
		}
	}
}
