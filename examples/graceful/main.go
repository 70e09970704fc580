// Command graceful is a long-running worker that stops gracefully on
// Ctrl-C (SIGINT) or SIGTERM: it stops accepting work, finishes what was
// accepted within a deadline, and reports what it could not run.
//
//	go run ./examples/graceful          # Ctrl-C to stop
//	go run ./examples/graceful -for 3s  # stops by itself after 3s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/taskpool/taskpool"
)

func main() {
	runFor := flag.Duration("for", 0, "stop by itself after this long (0: wait for a signal)")
	grace := flag.Duration("grace", 5*time.Second, "how long Stop may take")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	reg := taskpool.NewRegistry()
	if err := reg.HandleFunc("work", func(ctx context.Context, t taskpool.Task) error {
		select {
		case <-time.After(time.Duration(50+rand.IntN(200)) * time.Millisecond):
			return nil
		case <-ctx.Done(): // cancelled when Stop's deadline passes
			return ctx.Err()
		}
	}); err != nil {
		panic(err)
	}
	var notRun atomic.Int64 // the hook runs on many goroutines at once
	s, err := taskpool.New(reg,
		taskpool.WithWorkers(4),
		taskpool.WithQueueSize(64),
		taskpool.WithLogger(logger),
		taskpool.WithCompletionHook(func(o taskpool.Outcome) {
			if o.Status == taskpool.OutcomeNotRun {
				notRun.Add(1)
			}
		}),
	)
	if err != nil {
		panic(err)
	}
	if err := s.Start(); err != nil {
		panic(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *runFor)
		defer cancel()
	}
	logger.Info("running; press Ctrl-C to stop")

	// The producer: submit until told to stop. Submit blocks while the
	// queue is full, and gives up when ctx ends.
	n := 0
	for ctx.Err() == nil {
		if err := s.Submit(ctx, taskpool.Task{Type: "work"}); err != nil {
			break
		}
		n++
	}
	stop()
	logger.Info("stopping", "submitted", n, "grace", *grace)

	stopCtx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	err = s.Stop(stopCtx)
	var stopErr *taskpool.StopError
	switch {
	case errors.As(err, &stopErr):
		logger.Warn("stopped with tasks left", "not_run", stopErr.NotRun)
	case err != nil:
		logger.Error("stop", "error", err)
	}
	st := s.Stats()
	fmt.Printf("submitted %d, succeeded %d, failed %d, not run %d (hook saw %d)\n",
		st.Submitted, st.Succeeded, st.Failed, st.NotRun, notRun.Load())
}
