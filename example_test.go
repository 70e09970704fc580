package taskpool_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/taskpool/taskpool"
)

// The article's scenario: two task types, several workers, a clean stop.
func Example() {
	reg := taskpool.NewRegistry()
	_ = reg.HandleFunc("email", func(ctx context.Context, t taskpool.Task) error {
		fmt.Println("email to", t.Params)
		return nil
	})
	_ = reg.HandleFunc("resize", func(ctx context.Context, t taskpool.Task) error {
		fmt.Println("resize", t.Params)
		return nil
	})

	s, err := taskpool.New(reg, taskpool.WithWorkers(4))
	if err != nil {
		panic(err)
	}
	if err := s.Start(); err != nil {
		panic(err)
	}
	ctx := context.Background()
	_ = s.Submit(ctx, taskpool.Task{Type: "email", Params: "ada@example.com"})
	_ = s.Submit(ctx, taskpool.Task{Type: "resize", Params: "cat.png"})

	// Stop runs every accepted task before it returns.
	if err := s.Stop(ctx); err != nil {
		panic(err)
	}
	// Unordered output:
	// email to ada@example.com
	// resize cat.png
}

func ExampleScheduler_Submit() {
	reg := taskpool.NewRegistry()
	_ = reg.HandleFunc("greet", func(ctx context.Context, t taskpool.Task) error {
		fmt.Println("hello,", t.Params)
		return nil
	})
	s, _ := taskpool.New(reg, taskpool.WithWorkers(1))
	_ = s.Start()
	defer s.Stop(context.Background())

	// Submit blocks while the queue is full; its context bounds the wait.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.Submit(ctx, taskpool.Task{Type: "greet", Params: "gopher"}); err != nil {
		fmt.Println(err)
	}
	// Unknown types are rejected at once.
	err := s.Submit(ctx, taskpool.Task{Type: "shout"})
	fmt.Println(errors.Is(err, taskpool.ErrNoHandler))
	// Unordered output:
	// true
	// hello, gopher
}

func ExampleScheduler_SubmitFuture() {
	reg := taskpool.NewRegistry()
	_ = reg.HandleFunc("square", func(ctx context.Context, t taskpool.Task) error {
		n := t.Params.(int)
		t.SetResult(n * n)
		return nil
	})
	s, _ := taskpool.New(reg)
	_ = s.Start()
	defer s.Stop(context.Background())

	f, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "square", Params: 7})
	if err != nil {
		panic(err)
	}
	res, err := f.Wait(context.Background())
	fmt.Println(res, err)
	// Output: 49 <nil>
}

func ExampleScheduler_SubmitWait() {
	type quote struct {
		Total int `json:"total"`
	}
	reg := taskpool.NewRegistry()
	_ = reg.HandleFunc("quote", func(ctx context.Context, t taskpool.Task) error {
		t.SetResult(quote{Total: 42})
		return nil
	})
	s, _ := taskpool.New(reg)
	_ = s.Start()
	defer s.Stop(context.Background())

	// Code written against Client runs the same on a broker's client.
	var c taskpool.Client = s
	v, err := c.SubmitWait(context.Background(), taskpool.Task{Type: "quote"})
	if err != nil {
		panic(err)
	}
	// ResultAs reads the value in process, and its JSON from a broker.
	q, err := taskpool.ResultAs[quote](v)
	fmt.Println(q.Total, err)
	// Output: 42 <nil>
}

// A handler fans out: it submits tasks to its own scheduler and waits for
// them. With the handler's ctx, each wait lends its worker, so this runs
// on a single worker.
func ExampleFuture_Wait_fanOut() {
	var s *taskpool.Scheduler
	reg := taskpool.NewRegistry()
	_ = reg.HandleFunc("square", func(ctx context.Context, t taskpool.Task) error {
		n := t.Params.(int)
		t.SetResult(n * n)
		return nil
	})
	_ = reg.HandleFunc("sum of squares", func(ctx context.Context, t taskpool.Task) error {
		var fs []*taskpool.Future
		for n := range t.Params.(int) {
			f, err := s.SubmitFuture(ctx, taskpool.Task{Type: "square", Params: n + 1})
			if err != nil {
				return err
			}
			fs = append(fs, f)
		}
		sum := 0
		for _, f := range fs {
			v, err := f.Wait(ctx) // the handler's ctx: the worker is lent
			if err != nil {
				return err
			}
			sum += v.(int)
		}
		t.SetResult(sum)
		return nil
	})
	s, _ = taskpool.New(reg, taskpool.WithWorkers(1))
	_ = s.Start()
	defer s.Stop(context.Background())

	v, err := s.SubmitWait(context.Background(), taskpool.Task{Type: "sum of squares", Params: 4})
	fmt.Println(v, err)
	// Output: 30 <nil>
}

// A handler waits on a channel that another task of its scheduler feeds:
// Lend lends its worker meanwhile, so this runs on a single worker.
func ExampleLend() {
	var s *taskpool.Scheduler
	fed := make(chan string)
	reg := taskpool.NewRegistry()
	_ = reg.HandleFunc("feed", func(ctx context.Context, t taskpool.Task) error {
		fed <- "fed"
		return nil
	})
	_ = reg.HandleFunc("consume", func(ctx context.Context, t taskpool.Task) error {
		if err := s.Submit(ctx, taskpool.Task{Type: "feed"}); err != nil {
			return err
		}
		release := taskpool.Lend(ctx)
		defer release()
		t.SetResult(<-fed)
		return nil
	})
	s, _ = taskpool.New(reg, taskpool.WithWorkers(1))
	_ = s.Start()
	defer s.Stop(context.Background())

	v, err := s.SubmitWait(context.Background(), taskpool.Task{Type: "consume"})
	fmt.Println(v, err)
	// Output: fed <nil>
}

func ExampleScheduler_Stop() {
	reg := taskpool.NewRegistry()
	_ = reg.HandleFunc("slow", func(ctx context.Context, t taskpool.Task) error {
		<-ctx.Done() // a handler that only ends when cancelled
		return ctx.Err()
	})
	s, _ := taskpool.New(reg, taskpool.WithWorkers(1),
		taskpool.WithCompletionHook(func(o taskpool.Outcome) {
			if errors.Is(o.Err, taskpool.ErrSchedulerClosed) {
				fmt.Println("not run:", o.Task.ID)
			}
		}))
	_ = s.Start()
	for _, id := range []string{"a", "b", "c"} {
		_ = s.Submit(context.Background(), taskpool.Task{ID: id, Type: "slow"})
	}

	// Give the tasks 10ms; then Stop cancels the running handler and
	// reports the tasks that never started.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	err := s.Stop(ctx)
	var stopErr *taskpool.StopError
	if errors.As(err, &stopErr) {
		fmt.Println(stopErr.NotRun, "tasks did not run")
	}
	// Output:
	// not run: b
	// not run: c
	// 2 tasks did not run
}

// Pause holds tasks back, for a maintenance window or while a dependency
// is down; the queue fills and Submit applies backpressure as usual.
func ExampleScheduler_Pause() {
	reg := taskpool.NewRegistry()
	_ = reg.HandleFunc("report", func(_ context.Context, t taskpool.Task) error {
		fmt.Println("report", t.Params)
		return nil
	})
	s, _ := taskpool.New(reg, taskpool.WithWorkers(1))
	_ = s.Start()
	_ = s.Pause()
	_ = s.Submit(context.Background(), taskpool.Task{Type: "report", Params: 1})
	fmt.Println("paused, queued:", s.Stats().Queued)
	_ = s.Resume()
	_ = s.Stop(context.Background())
	// Output:
	// paused, queued: 1
	// report 1
}

func ExampleRegistry_HandleFunc() {
	reg := taskpool.NewRegistry()
	err := reg.HandleFunc("report", func(ctx context.Context, t taskpool.Task) error { return nil })
	fmt.Println(err)
	err = reg.HandleFunc("report", func(ctx context.Context, t taskpool.Task) error { return nil })
	fmt.Println(errors.Is(err, taskpool.ErrDuplicateType))
	fmt.Println(reg.Types())
	// Output:
	// <nil>
	// true
	// [report]
}

func ExampleParamsAs() {
	type resize struct {
		Path  string `json:"path"`
		Width int    `json:"width"`
	}
	// In process, Params holds the value itself...
	p, _ := taskpool.ParamsAs[resize](taskpool.Task{Type: "resize", Params: resize{"cat.png", 64}})
	fmt.Println(p)
	// ...and through a broker, its JSON encoding.
	p, _ = taskpool.ParamsAs[resize](taskpool.Task{Type: "resize", Params: []byte(`{"path":"dog.png","width":32}`)})
	fmt.Println(p)
	// Output:
	// {cat.png 64}
	// {dog.png 32}
}

func ExampleWithRetry() {
	reg := taskpool.NewRegistry()
	_ = reg.HandleFunc("flaky", func(ctx context.Context, t taskpool.Task) error {
		if t.Attempt < 3 {
			fmt.Println("attempt", t.Attempt, "fails")
			return errors.New("busy")
		}
		fmt.Println("attempt", t.Attempt, "succeeds")
		return nil
	}, taskpool.WithRetry(5, taskpool.ConstantBackoff(time.Millisecond)))
	s, _ := taskpool.New(reg)
	_ = s.Start()
	defer s.Stop(context.Background())

	f, _ := s.SubmitFuture(context.Background(), taskpool.Task{Type: "flaky"})
	_, err := f.Wait(context.Background())
	out, _ := f.Outcome()
	fmt.Println(err, "after", out.Attempts, "attempts")
	// Output:
	// attempt 1 fails
	// attempt 2 fails
	// attempt 3 succeeds
	// <nil> after 3 attempts
}

func ExampleScheduler_SubmitAfter() {
	reg := taskpool.NewRegistry()
	done := make(chan struct{})
	_ = reg.HandleFunc("remind", func(ctx context.Context, t taskpool.Task) error {
		fmt.Println("reminder", t.ID)
		close(done)
		return nil
	})
	s, _ := taskpool.New(reg, taskpool.WithCompletionHook(func(o taskpool.Outcome) {
		if errors.Is(o.Err, taskpool.ErrCanceled) {
			fmt.Println("cancelled", o.Task.ID)
		}
	}))
	_ = s.Start()
	ctx := context.Background()
	_ = s.SubmitAfter(ctx, taskpool.Task{ID: "soon", Type: "remind"}, 10*time.Millisecond)
	_ = s.SubmitAfter(ctx, taskpool.Task{ID: "later", Type: "remind"}, time.Hour)
	_ = s.Cancel("later")

	<-done
	_ = s.Stop(ctx)
	// Output:
	// cancelled later
	// reminder soon
}

func ExampleScheduler_SchedulePeriodic() {
	reg := taskpool.NewRegistry()
	ticks := make(chan string, 10)
	_ = reg.HandleFunc("tick", func(ctx context.Context, t taskpool.Task) error {
		ticks <- t.Type
		return nil
	})
	s, _ := taskpool.New(reg)
	_ = s.Start()
	_ = s.SchedulePeriodic("heartbeat", taskpool.Every(5*time.Millisecond), taskpool.Task{Type: "tick"})
	for range 3 {
		fmt.Println(<-ticks)
	}
	_ = s.Unschedule("heartbeat")
	_ = s.Stop(context.Background())
	// Output:
	// tick
	// tick
	// tick
}

// WelcomeArgs are the typed params of a "welcome" task.
type WelcomeArgs struct{ Name string }

// Kind names the task type of WelcomeArgs.
func (WelcomeArgs) Kind() string { return "welcome" }

// Handle registers a handler that takes typed params, and TaskOf builds the
// task from them: the type name is written once, in Kind.
func ExampleHandle() {
	reg := taskpool.NewRegistry()
	_ = taskpool.Handle(reg, func(_ context.Context, a WelcomeArgs, _ taskpool.Task) error {
		fmt.Println("welcome,", a.Name)
		return nil
	})
	s, _ := taskpool.New(reg, taskpool.WithWorkers(1))
	_ = s.Start()
	_ = s.Submit(context.Background(), taskpool.TaskOf(WelcomeArgs{Name: "Ada"}))
	_ = s.Stop(context.Background())
	// Output: welcome, Ada
}
