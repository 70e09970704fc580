package natsbroker_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
	"github.com/taskpool/taskpool/broker/nats/devserver"
)

type Email struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

// The same registry an in-process Scheduler uses runs distributed: a
// Consumer in each worker process instead of Scheduler.Start, and
// Producer.Enqueue instead of Scheduler.Submit.
func Example() {
	srv, err := devserver.Start(devserver.Options{}) // dev mode; production connects to a cluster
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()
	nc, js, err := natsbroker.Connect(srv.URL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()

	done := make(chan struct{})
	reg := taskpool.NewRegistry()
	_ = reg.HandleFunc("email.send", func(ctx context.Context, t taskpool.Task) error {
		e, err := taskpool.ParamsAs[Email](t)
		if err != nil {
			return taskpool.SkipRetry(err)
		}
		fmt.Printf("sending %q to %s, attempt %d\n", e.Subject, e.To, t.Attempt)
		close(done)
		return nil
	})

	// Worker process.
	c, err := natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithWorkers(8))
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = c.Stop(sctx)
	}()

	// Any process.
	p, err := natsbroker.NewProducer(ctx, js)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := p.Enqueue(ctx, taskpool.Task{Type: "email.send", Params: Email{To: "ada@example.com", Subject: "welcome"}}); err != nil {
		log.Fatal(err)
	}
	<-done
	// Output: sending "welcome" to ada@example.com, attempt 1
}

// Delayed and periodic tasks run on the server's schedules: a periodic
// task registered by every replica of a service still runs once per tick.
func ExampleProducer_Schedule() {
	srv, err := devserver.Start(devserver.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()
	nc, js, err := natsbroker.Connect(srv.URL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	p, err := natsbroker.NewProducer(ctx, js)
	if err != nil {
		log.Fatal(err)
	}
	// Due in an hour; cancellable until then.
	r, err := p.Enqueue(ctx, taskpool.Task{ID: "reminder-42", Type: "email.send"}, natsbroker.Delay(time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("scheduled", r.ID)
	// Every day at 03:00 Paris time: the cron sub-module's dialect.
	if err := p.Schedule(ctx, "nightly-cleanup", "CRON_TZ=Europe/Paris 0 3 * * *", taskpool.Task{Type: "cleanup"}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Cancel(ctx, "reminder-42"))
	// Output:
	// scheduled reminder-42
	// <nil>
}

// A type that calls a rate-limited API runs at most 2 at once and 50 times
// a second over every worker process of the queue, however many there
// are; other types are not held up.
func ExampleWithGlobalLimit() {
	srv, err := devserver.Start(devserver.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()
	nc, js, err := natsbroker.Connect(srv.URL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()

	done := make(chan string, 3)
	reg := taskpool.NewRegistry()
	_ = reg.HandleFunc("api.call", func(ctx context.Context, t taskpool.Task) error {
		done <- t.ID
		return nil
	})
	c, err := natsbroker.NewConsumer(ctx, js, reg, natsbroker.WithQueue("api"),
		natsbroker.WithGlobalLimit("api.call", natsbroker.Limit{Concurrency: 2, Rate: 50, Burst: 5}))
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Start(); err != nil {
		log.Fatal(err)
	}
	p, err := natsbroker.NewProducer(ctx, js, natsbroker.WithQueue("api"))
	if err != nil {
		log.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if _, err := p.Enqueue(ctx, taskpool.Task{ID: id, Type: "api.call"}); err != nil {
			log.Fatal(err)
		}
	}
	n := 0
	for range 3 {
		<-done
		n++
	}
	if err := c.Stop(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, "calls; waiting now:", c.Health().Waiting)
	// Output: 3 calls; waiting now: 0
}
