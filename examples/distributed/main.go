// Command distributed shows taskpool tasks spread across worker processes
// through NATS JetStream, and surviving a worker killed with SIGKILL.
//
// Run it from the repository root with
//
//	cd examples/distributed && go run .
//
// It starts an embedded NATS server (dev mode, 127.0.0.1 only), starts
// three worker processes (this same binary, re-executed with -worker),
// enqueues 60 tasks, kills one worker with SIGKILL while it holds tasks,
// waits until every task has completed, prints who ran what, and exits.
// Nothing to install, nothing left running.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
	"github.com/taskpool/taskpool/broker/nats/devserver"
)

const (
	queue     = "demo"
	doneSubj  = "demo.events.done"
	startSubj = "demo.events.start"
	numTasks  = 60
	ackWait   = 2 * time.Second
)

type resizeParams struct {
	Image string `json:"image"`
	Width int    `json:"width"`
}

func main() {
	worker := flag.String("worker", "", "run as the worker process with this name")
	url := flag.String("url", "", "NATS server URL (worker mode)")
	flag.Parse()
	log.SetFlags(0)
	if *worker != "" {
		if err := runWorker(*worker, *url); err != nil {
			log.Fatalf("%s: %v", *worker, err)
		}
		return
	}
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

// registry is what any taskpool program has: the same handlers run in
// process or, as here, distributed.
func registry(name string) *taskpool.Registry {
	reg := taskpool.NewRegistry()
	_ = reg.HandleFunc("image.resize", func(ctx context.Context, t taskpool.Task) error {
		p, err := taskpool.ParamsAs[resizeParams](t)
		if err != nil {
			return taskpool.SkipRetry(err)
		}
		select { // pretend to work
		case <-time.After(150 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		if p.Width <= 0 {
			return taskpool.SkipRetry(fmt.Errorf("width %d: must be positive", p.Width))
		}
		return nil
	})
	return reg
}

// runWorker is one worker process: a Consumer feeding a local scheduler.
func runWorker(name, url string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	nc, js, err := natsbroker.Connect(url, nats.Name(name))
	if err != nil {
		return err
	}
	defer nc.Close()
	pid := os.Getpid()
	reg := registry(name)
	c, err := natsbroker.NewConsumer(ctx, js, reg,
		natsbroker.WithQueue(queue),
		natsbroker.WithWorkers(4),
		natsbroker.WithAckWait(ackWait),
		natsbroker.WithSchedulerOptions(taskpool.WithMiddleware(func(next taskpool.Handler) taskpool.Handler {
			return taskpool.HandlerFunc(func(ctx context.Context, t taskpool.Task) error {
				_ = nc.Publish(startSubj, []byte(name))
				return next.HandleTask(ctx, t)
			})
		})),
		natsbroker.WithSettleHook(func(out taskpool.Outcome, a natsbroker.Action) {
			fmt.Printf("  [%s pid %d] %-8s %-11s attempt %d %v\n", name, pid, out.Task.ID, a, out.Attempts, errOrEmpty(out.Err))
			_ = nc.Publish(doneSubj, fmt.Appendf(nil, "%s %s %d %s", name, out.Task.ID, out.Attempts, a))
		}))
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Stop(sctx)
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return "(" + err.Error() + ")"
}

type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	srv, err := devserver.Start(devserver.Options{})
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	fmt.Println("embedded NATS server at", srv.URL())

	nc, js, err := natsbroker.Connect(srv.URL())
	if err != nil {
		return err
	}
	defer nc.Close()
	events := make(chan *nats.Msg, 4*numTasks)
	starts := make(chan *nats.Msg, 4*numTasks)
	if _, err := nc.ChanSubscribe(doneSubj, events); err != nil {
		return err
	}
	if _, err := nc.ChanSubscribe(startSubj, starts); err != nil {
		return err
	}
	prod, err := natsbroker.NewProducer(ctx, js, natsbroker.WithQueue(queue))
	if err != nil {
		return err
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	procs := map[string]*proc{}
	for _, name := range []string{"worker-1", "worker-2", "worker-3"} {
		p := &proc{name: name, exited: make(chan struct{})}
		p.cmd = exec.Command(self, "-worker", name, "-url", srv.URL())
		p.cmd.Stdout, p.cmd.Stderr = os.Stdout, os.Stderr
		if err := p.cmd.Start(); err != nil {
			return err
		}
		go func() { _ = p.cmd.Wait(); close(p.exited) }()
		defer func() { _ = p.cmd.Process.Kill(); <-p.exited }()
		procs[name] = p
		fmt.Printf("started %s (pid %d)\n", name, p.cmd.Process.Pid)
	}

	tasks := make([]taskpool.Task, numTasks)
	for i := range tasks {
		tasks[i] = taskpool.Task{ID: fmt.Sprintf("img-%02d", i), Type: "image.resize",
			Params: resizeParams{Image: fmt.Sprintf("photo-%02d.jpg", i), Width: 640}}
	}
	tasks[13].Params = resizeParams{Image: "broken.jpg", Width: -1} // fails for good: dead-lettered
	if _, err := prod.EnqueueBatch(ctx, tasks); err != nil {
		return err
	}
	fmt.Printf("enqueued %d tasks\n", numTasks)

	var (
		mu       sync.Mutex
		settled  = map[string]string{} // task -> worker that settled it
		perProc  = map[string]int{}
		redeliv  = 0
		started  = map[string]int{}
		killed   = false
		victim   = procs["worker-1"]
		deadline = time.After(60 * time.Second)
	)
	for len(settled) < numTasks {
		select {
		case m := <-starts:
			started[string(m.Data)]++
			// Kill worker-1 once it has started a handful of tasks: it
			// dies holding in-flight work.
			if !killed && started[victim.name] >= 8 {
				fmt.Printf(">>> SIGKILL %s (pid %d) mid-task\n", victim.name, victim.cmd.Process.Pid)
				_ = victim.cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
		case m := <-events:
			f := strings.Fields(string(m.Data))
			if len(f) != 4 || f[3] == natsbroker.ActionRetry.String() {
				continue
			}
			attempt, _ := strconv.Atoi(f[2])
			mu.Lock()
			if _, dup := settled[f[1]]; !dup {
				settled[f[1]] = f[0]
				perProc[f[0]]++
				if attempt > 1 {
					redeliv++
				}
			}
			mu.Unlock()
		case <-deadline:
			return fmt.Errorf("timed out with %d of %d tasks settled", len(settled), numTasks)
		}
	}
	<-victim.exited

	fmt.Println()
	fmt.Printf("all %d tasks settled; %d of them redelivered after %s was killed (ack wait %v)\n",
		numTasks, redeliv, victim.name, ackWait)
	names := make([]string, 0, len(perProc))
	for n := range perProc {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("  %s settled %d tasks\n", n, perProc[n])
	}

	insp, err := natsbroker.NewInspector(ctx, js, natsbroker.WithQueue(queue))
	if err != nil {
		return err
	}
	dls, err := insp.DeadLetters(ctx, 0, 10)
	if err != nil {
		return err
	}
	for _, dl := range dls {
		fmt.Printf("dead letter #%d: task %s after %d attempt(s): %s\n", dl.Sequence, dl.Task.ID, dl.Attempts, dl.Error)
	}
	info, err := insp.Queue(ctx)
	if err != nil {
		return err
	}
	for _, p := range info.Priorities {
		if p.Pending+uint64(p.InFlight) > 0 {
			return fmt.Errorf("queue not empty: %+v", p)
		}
	}

	// Graceful stop of the survivors.
	for _, p := range procs {
		if p != victim {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range procs {
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			return errors.New(p.name + " did not stop")
		}
	}
	fmt.Println("workers stopped; done")
	return nil
}
