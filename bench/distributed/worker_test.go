package distributed_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Worker processes. The parent starts each one as this test binary with
// workerEnv set; TestMain then calls runWorker instead of the tests. The
// protocol is line-based and needs no server of its own:
//
//   - stdout: "ready" once the consumer runs, then "handled <n>" with the
//     process's running count of handled tasks whenever it changed, at
//     most every reportEvery;
//   - stdin: the parent closes it to stop the worker, which stops its
//     consumer gracefully and exits 0;
//   - stderr: diagnostics, shown when the worker fails.
const (
	workerEnv      = "TASKPOOL_BENCH_WORKER"       // engine name
	workerAddrEnv  = "TASKPOOL_BENCH_WORKER_ADDR"  // server address or URL
	workerQueueEnv = "TASKPOOL_BENCH_WORKER_QUEUE" // queue name
	// profileEnv, when set on the parent, names a directory where every
	// worker process writes a CPU profile, <engine>-<pid>.pprof.
	profileEnv = "TASKPOOL_BENCH_CPUPROFILE"

	// workersPerProcess is the handler concurrency of every consumer
	// process, the same for every engine.
	workersPerProcess = 16
	// reportEvery bounds how often a worker writes its count: a line per
	// task would cost the consumer a write system call per task.
	reportEvery = time.Millisecond
)

// workerConfig is what a worker process gets from its parent.
type workerConfig struct {
	addr    string
	queue   string
	workers int
}

// runWorker runs the consumer of the named engine until stdin is closed
// and returns the process's exit status.
func runWorker(name string) int {
	e, ok := engineByName(name)
	if !ok {
		fmt.Fprintf(os.Stderr, "worker: unknown engine %q\n", name)
		return 2
	}
	if dir := os.Getenv(profileEnv); dir != "" {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", name, os.Getpid())))
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// EOF or an error: the parent wants us to stop, or is gone.
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()

	var handled atomic.Int64
	out := bufio.NewWriter(os.Stdout)
	var outMu sync.Mutex
	say := func(line string) {
		outMu.Lock()
		defer outMu.Unlock()
		_, _ = out.WriteString(line + "\n")
		_ = out.Flush()
	}
	reporterDone := make(chan struct{})
	stopReporter := make(chan struct{})
	go func() {
		defer close(reporterDone)
		tick := time.NewTicker(reportEvery)
		defer tick.Stop()
		var last int64
		for {
			select {
			case <-tick.C:
			case <-stopReporter:
				say("handled " + strconv.FormatInt(handled.Load(), 10))
				return
			}
			if n := handled.Load(); n != last {
				say("handled " + strconv.FormatInt(n, 10))
				last = n
			}
		}
	}()

	cfg := workerConfig{
		addr:    os.Getenv(workerAddrEnv),
		queue:   os.Getenv(workerQueueEnv),
		workers: workersPerProcess,
	}
	err := e.work(ctx, cfg, func() { handled.Add(1) }, func() { say("ready") })
	close(stopReporter)
	<-reporterDone
	if err != nil {
		fmt.Fprintf(os.Stderr, "worker %s: %v\n", name, err)
		return 1
	}
	return 0
}

// fleet is the parent's view of its worker processes.
type fleet struct {
	procs []*proc
	// kick gets a value whenever a count changes or a process exits.
	kick chan struct{}
}

type proc struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stderr  bytes.Buffer // written by cmd until it exits
	handled atomic.Int64
	ready   chan struct{} // closed on "ready"
	exited  chan struct{} // closed when the process has exited
	err     error         // cmd.Wait's result, set before exited is closed
}

// startFleet starts n worker processes of engine name and waits until
// every one is consuming. On error it stops the processes it started.
func startFleet(ctx context.Context, name string, n int, addr, queue string) (*fleet, error) {
	f := &fleet{kick: make(chan struct{}, 1)}
	for range n {
		p, err := f.spawn(name, addr, queue)
		if err != nil {
			f.kill()
			return nil, err
		}
		f.procs = append(f.procs, p)
	}
	for _, p := range f.procs {
		select {
		case <-p.ready:
		case <-p.exited:
			f.kill()
			return nil, fmt.Errorf("worker exited before it was ready: %v\n%s", p.err, p.stderr.String())
		case <-ctx.Done():
			f.kill()
			return nil, fmt.Errorf("waiting for workers: %w", ctx.Err())
		}
	}
	return f, nil
}

func (f *fleet) spawn(name, addr, queue string) (*proc, error) {
	p := &proc{ready: make(chan struct{}), exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	p.cmd.Env = append(os.Environ(), workerEnv+"="+name, workerAddrEnv+"="+addr, workerQueueEnv+"="+queue)
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		readyOnce := sync.OnceFunc(func() { close(p.ready) })
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "ready":
				readyOnce()
			case strings.HasPrefix(line, "handled "):
				if n, err := strconv.ParseInt(strings.TrimPrefix(line, "handled "), 10, 64); err == nil {
					p.handled.Store(n)
					f.notify()
				}
			}
		}
		// Wait closes stdout, so it comes after the last read.
		p.err = p.cmd.Wait()
		close(p.exited)
		f.notify()
	}()
	return p, nil
}

func (f *fleet) notify() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// handled is the number of tasks the workers have reported handled.
func (f *fleet) handled() int64 {
	var n int64
	for _, p := range f.procs {
		n += p.handled.Load()
	}
	return n
}

// waitHandled waits until the workers have handled target tasks in all.
// It fails at once if a worker exits.
func (f *fleet) waitHandled(ctx context.Context, target int64) error {
	done := ctx.Done()
	for {
		if f.handled() >= target {
			return nil
		}
		for _, p := range f.procs {
			select {
			case <-p.exited:
				return fmt.Errorf("worker %d exited: %v\n%s", p.cmd.Process.Pid, p.err, p.stderr.String())
			default:
			}
		}
		select {
		case <-f.kick:
		case <-done:
			return fmt.Errorf("%d of %d tasks handled: %w", f.handled(), target, ctx.Err())
		}
	}
}

// stop asks every worker to stop and waits for them; past ctx it kills
// them. It returns the first failure.
func (f *fleet) stop(ctx context.Context) error {
	for _, p := range f.procs {
		_ = p.stdin.Close()
	}
	var errs []error
	for _, p := range f.procs {
		select {
		case <-p.exited:
			if p.err != nil {
				errs = append(errs, fmt.Errorf("worker %d: %v\n%s", p.cmd.Process.Pid, p.err, p.stderr.String()))
			}
		case <-ctx.Done():
			_ = p.cmd.Process.Kill()
			<-p.exited
			errs = append(errs, fmt.Errorf("worker %d killed: did not stop in time\n%s", p.cmd.Process.Pid, p.stderr.String()))
		}
	}
	return errors.Join(errs...)
}

// kill ends every process at once, for error paths.
func (f *fleet) kill() {
	for _, p := range f.procs {
		_ = p.stdin.Close()
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
