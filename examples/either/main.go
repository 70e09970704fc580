// Command either runs the same handlers and the same submitting code in
// process or on NATS JetStream, chosen by a flag: only the construction
// of the taskpool.Client differs.
//
//	go run . -transport inprocess
//	go run . -transport nats          # an embedded NATS server on 127.0.0.1
//	go run . -transport nats -url nats://127.0.0.1:4222
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
	"github.com/taskpool/taskpool/broker/nats/devserver"
)

// Square is a typed task: its kind is written once, here.
type Square struct{ N int }

func (Square) Kind() string { return "square" }

// Greet is another.
type Greet struct{ Name string }

func (Greet) Kind() string { return "greet" }

// handlers registers the program's handlers: the same for both transports.
func handlers() (*taskpool.Registry, error) {
	reg := taskpool.NewRegistry()
	err := errors.Join(
		taskpool.Handle(reg, func(_ context.Context, a Square, t taskpool.Task) error {
			t.SetResult(a.N * a.N)
			return nil
		}),
		taskpool.Handle(reg, func(_ context.Context, a Greet, t taskpool.Task) error {
			if a.Name == "" {
				return taskpool.SkipRetry(errors.New("greet: no name"))
			}
			t.SetResult("hello, " + a.Name)
			return nil
		}),
	)
	return reg, err
}

// work is the application: it knows only taskpool.Client.
func work(ctx context.Context, c taskpool.Client, w io.Writer) error {
	for _, n := range []int{3, 7} {
		v, err := c.SubmitWait(ctx, taskpool.TaskOf(Square{N: n}))
		if err != nil {
			return err
		}
		sq, err := taskpool.ResultAs[int](v)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "square(%d) = %d\n", n, sq)
	}
	v, err := c.SubmitWait(ctx, taskpool.TaskOf(Greet{Name: "Ada"}))
	if err != nil {
		return err
	}
	msg, err := taskpool.ResultAs[string](v)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, msg)
	// A failure comes back as the task's error, sentinels included.
	_, err = c.SubmitWait(ctx, taskpool.TaskOf(Greet{}))
	fmt.Fprintf(w, "greet without a name: skip retry: %v (%v)\n", errors.Is(err, taskpool.ErrSkipRetry), err)
	return nil
}

func main() {
	transport := flag.String("transport", "inprocess", "inprocess or nats")
	url := flag.String("url", "", "NATS server URL (nats; empty: start an embedded server)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, *transport, *url, os.Stdout); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(ctx context.Context, transport, url string, w io.Writer) error {
	reg, err := handlers()
	if err != nil {
		return err
	}
	switch transport {
	case "inprocess":
		s, err := taskpool.New(reg)
		if err != nil {
			return err
		}
		if err := s.Start(); err != nil {
			return err
		}
		defer s.Stop(context.Background())
		return work(ctx, s, w)
	case "nats":
		if url == "" {
			srv, err := devserver.Start(devserver.Options{})
			if err != nil {
				return err
			}
			defer srv.Shutdown()
			url = srv.URL()
		}
		nc, js, err := natsbroker.Connect(url)
		if err != nil {
			return err
		}
		defer nc.Close()
		// A worker process runs a Consumer over the same registry ...
		cons, err := natsbroker.NewConsumer(ctx, js, reg)
		if err != nil {
			return err
		}
		if err := cons.Start(); err != nil {
			return err
		}
		defer cons.Stop(context.Background())
		// ... and any process submits through a Producer.
		p, err := natsbroker.NewProducer(ctx, js, natsbroker.WithKnownTypes(reg))
		if err != nil {
			return err
		}
		return work(ctx, natsbroker.NewClient(p), w)
	default:
		return fmt.Errorf("unknown transport %q: want inprocess or nats", transport)
	}
}
