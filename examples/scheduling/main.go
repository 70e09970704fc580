// Command scheduling shows taskpool's scheduling features in one program:
// a delayed task and its cancellation, a periodic task on a cron
// expression and one on a fixed interval, a flaky task retried with
// backoff, a task that gives up with SkipRetry and lands in the dead
// letters, prioritised tasks, a unique task, and a rate-limited type.
//
//	cd examples/scheduling && go run .
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/cron"
	"github.com/taskpool/taskpool/ratelimit"
)

func main() {
	start := time.Now()
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf("%6.3fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}

	reg := taskpool.NewRegistry()
	must(reg.HandleFunc("remind", func(ctx context.Context, t taskpool.Task) error {
		say("remind %s", t.ID)
		return nil
	}))
	must(reg.HandleFunc("tick", func(ctx context.Context, t taskpool.Task) error {
		say("tick %s", t.ID)
		return nil
	}))
	var flakyRuns atomic.Int32
	must(reg.HandleFunc("flaky", func(ctx context.Context, t taskpool.Task) error {
		if flakyRuns.Add(1) < 3 {
			say("flaky attempt %d fails", t.Attempt)
			return errors.New("upstream busy")
		}
		say("flaky attempt %d succeeds", t.Attempt)
		return nil
	}, taskpool.WithRetry(5, taskpool.ExponentialBackoff(50*time.Millisecond, time.Second))))
	must(reg.HandleFunc("parse", func(ctx context.Context, t taskpool.Task) error {
		say("parse %v: bad input, no retry", t.Params)
		return taskpool.SkipRetry(fmt.Errorf("cannot parse %v", t.Params))
	}))
	must(reg.HandleFunc("work", func(ctx context.Context, t taskpool.Task) error {
		say("work %-4s priority %s", t.ID, t.Priority)
		return nil
	}))
	limiter, err := ratelimit.Every(100*time.Millisecond, 1)
	must(err)
	must(reg.HandleFunc("call-api", func(ctx context.Context, t taskpool.Task) error {
		say("call-api %s (at most 10 a second)", t.ID)
		return nil
	}, taskpool.WithRateLimit(limiter)))

	s, err := taskpool.New(reg,
		taskpool.WithWorkers(1), // one worker makes the priority order easy to see
		taskpool.WithRetry(3, nil),
		taskpool.WithDeadLetters(100, func(o taskpool.Outcome) { say("dead letter %s: %v", o.Task.ID, o.Err) }),
		taskpool.WithDelayedOnStop(taskpool.DelayedReport),
	)
	must(err)
	must(s.Start())
	ctx := context.Background()

	// Priorities: with one busy worker, all of these queue up; high ones
	// are taken first, and low ones still get their share.
	block := make(chan struct{})
	must(reg.HandleFunc("block", func(context.Context, taskpool.Task) error { <-block; return nil }))
	must(s.Submit(ctx, taskpool.Task{Type: "block"}))
	for i := range 3 {
		must(s.Submit(ctx, taskpool.Task{ID: fmt.Sprintf("low%d", i), Type: "work", Priority: taskpool.PriorityLow}))
	}
	for i := range 3 {
		must(s.Submit(ctx, taskpool.Task{ID: fmt.Sprintf("hi%d", i), Type: "work", Priority: taskpool.PriorityHigh}))
	}
	close(block)

	// Delayed tasks, and cancelling one.
	must(s.SubmitAfter(ctx, taskpool.Task{ID: "in-300ms", Type: "remind"}, 300*time.Millisecond))
	must(s.SubmitAfter(ctx, taskpool.Task{ID: "never", Type: "remind"}, 400*time.Millisecond))
	must(s.Cancel("never"))

	// Periodic: a fixed interval, and a cron expression (every minute
	// would be too slow for a demo, so "@every 1s" in cron syntax).
	must(s.SchedulePeriodic("heartbeat", taskpool.Every(400*time.Millisecond), taskpool.Task{Type: "tick"}))
	sched, err := cron.Parse("@every 1s")
	must(err)
	must(s.SchedulePeriodic("cron", sched, taskpool.Task{Type: "tick"}))

	// Retries, and an error that is not retried.
	must(s.Submit(ctx, taskpool.Task{ID: "flaky", Type: "flaky"}))
	must(s.Submit(ctx, taskpool.Task{ID: "bad-input", Type: "parse", Params: "%%%"}))

	// Unique tasks: the second is refused while the first is pending.
	must(s.SubmitAfter(ctx, taskpool.Task{Type: "remind", ID: "report", UniqueKey: "daily-report"}, 200*time.Millisecond))
	err = s.Submit(ctx, taskpool.Task{Type: "remind", UniqueKey: "daily-report"})
	say("second daily-report: %v", err)

	// A rate-limited type: submitted at once, started 100ms apart.
	for i := range 3 {
		must(s.Submit(ctx, taskpool.Task{ID: fmt.Sprintf("api%d", i), Type: "call-api"}))
	}

	time.Sleep(1500 * time.Millisecond) // let the demo run; a real program runs until told to stop
	in := s.Inspect()
	for _, p := range in.Periodic {
		say("next %s at +%.3fs", p.ID, p.NextRun.Sub(start).Seconds())
	}
	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	must(s.Stop(stopCtx))
	st := s.Stats()
	say("stopped: %d submitted, %d succeeded, %d failed, %d retried, %d cancelled",
		st.Submitted, st.Succeeded, st.Failed, st.Retried, st.Canceled)
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
