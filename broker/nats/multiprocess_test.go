package natsbroker_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// Worker mode: TestMain runs runWorker instead of the tests when workerEnv
// is set, so the test binary doubles as a worker process.
const (
	workerEnv      = "TASKPOOL_NATS_TEST_WORKER"
	workerURLEnv   = "TASKPOOL_NATS_TEST_URL"
	workerQueueEnv = "TASKPOOL_NATS_TEST_QUEUE"
	eventStart     = "taskpool_test.events.start"
	eventDone      = "taskpool_test.events.done"
	eventLimited   = "taskpool_test.events.limited"
)

// runWorker connects to the test's server, runs a consumer whose handler
// reports each start and each completion as "pid id attempt" on core NATS
// subjects, and stops gracefully on SIGTERM.
func runWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	nc, js, err := natsbroker.Connect(os.Getenv(workerURLEnv), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	defer nc.Close()
	pid := os.Getpid()
	report := func(subj string, task taskpool.Task) {
		_ = nc.Publish(subj, fmt.Appendf(nil, "%d %s %d", pid, task.ID, task.Attempt))
	}
	reg := taskpool.NewRegistry()
	_ = reg.HandleFunc("work", func(ctx context.Context, task taskpool.Task) error {
		report(eventStart, task)
		_ = nc.Flush()
		select { // simulated work
		case <-time.After(25 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		// Report before the ack: if the process dies in between, the task
		// is redelivered and reported twice, never zero times.
		report(eventDone, task)
		return nil
	})
	// "result" blocks on its first attempt (the test kills the worker
	// then) and on a later one sets a result, or fails for good when its
	// ID ends in "-fail".
	_ = reg.HandleFunc("result", func(ctx context.Context, task taskpool.Task) error {
		report(eventStart, task)
		_ = nc.Flush()
		if task.Attempt == 1 {
			<-ctx.Done()
			return ctx.Err()
		}
		if strings.HasSuffix(task.ID, "-fail") {
			return taskpool.SkipRetry(errors.New("boom"))
		}
		task.SetResult(map[string]any{"id": task.ID, "attempt": task.Attempt})
		return nil
	})
	// "limited" runs at most two at once over every worker process; it
	// reports "pid id start|done unixnano".
	_ = reg.HandleFunc("limited", func(ctx context.Context, task taskpool.Task) error {
		_ = nc.Publish(eventLimited, fmt.Appendf(nil, "%d %s start %d", pid, task.ID, time.Now().UnixNano()))
		_ = nc.Flush()
		select { // simulated work
		case <-time.After(25 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		_ = nc.Publish(eventLimited, fmt.Appendf(nil, "%d %s done %d", pid, task.ID, time.Now().UnixNano()))
		return nil
	})
	c, err := natsbroker.NewConsumer(ctx, js, reg,
		natsbroker.WithQueue(os.Getenv(workerQueueEnv)),
		natsbroker.WithWorkers(4),
		natsbroker.WithGlobalLimit("limited", natsbroker.Limit{Concurrency: 2}),
		natsbroker.WithAckWait(time.Second),
		natsbroker.WithPollWait(200*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	if err := c.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Stop(sctx); err != nil {
		fmt.Fprintln(os.Stderr, "worker stop:", err)
		return 1
	}
	return 0
}

type workerProc struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's result, set before exited is closed
}

func spawnWorker(t *testing.T, url, queue string) *workerProc {
	t.Helper()
	w := &workerProc{exited: make(chan struct{})}
	w.cmd = exec.Command(os.Args[0], "-test.run=^$")
	w.cmd.Env = append(os.Environ(), workerEnv+"=1", workerURLEnv+"="+url, workerQueueEnv+"="+queue)
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
	require.NoError(t, w.cmd.Start())
	go func() {
		w.err = w.cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		_ = w.cmd.Process.Kill()
		<-w.exited
	})
	return w
}

// stop sends the worker SIGTERM and requires it to exit cleanly within
// 15s: a graceful stop.
func (w *workerProc) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-w.exited:
		assert.NoError(t, w.err, "worker output:\n%s", w.out.String())
	case <-time.After(15 * time.Second):
		t.Fatal("worker did not stop on SIGTERM")
	}
}

type event struct {
	pid     int
	id      string
	attempt int
}

func parseEvent(t *testing.T, m *nats.Msg) event {
	f := strings.Fields(string(m.Data))
	require.Len(t, f, 3)
	pid, _ := strconv.Atoi(f[0])
	attempt, _ := strconv.Atoi(f[2])
	return event{pid, f[1], attempt}
}

func TestMultiProcessSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	srv := startServer(t)
	nc, js := connect(t, srv.URL())
	ctx := ctxT(t)
	const queue, n = "multiproc", 300

	starts := make(chan *nats.Msg, 4*n)
	dones := make(chan *nats.Msg, 4*n)
	s1, err := nc.ChanSubscribe(eventStart, starts)
	require.NoError(t, err)
	s2, err := nc.ChanSubscribe(eventDone, dones)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s1.Unsubscribe(); _ = s2.Unsubscribe() })
	require.NoError(t, nc.Flush())

	prod := newProducer(t, ctx, js, natsbroker.WithQueue(queue))
	workers := make([]*workerProc, 3)
	for i := range workers {
		workers[i] = spawnWorker(t, srv.URL(), queue)
	}
	victim := workers[0]
	tasks := make([]taskpool.Task, n)
	for i := range tasks {
		tasks[i] = taskpool.Task{ID: fmt.Sprint("t", i), Type: "work"}
	}
	_, err = prod.EnqueueBatch(ctx, tasks)
	require.NoError(t, err)

	var (
		startedBy = map[int]map[string]bool{} // pid -> IDs started and not done there
		doneRuns  = map[string]int{}
		redeliv   = 0
		killed    = false
		heldAtKil = 0
		donePIDs  = map[int]int{}
	)
	deadline := time.After(60 * time.Second)
	for len(doneRuns) < n {
		select {
		case m := <-starts:
			e := parseEvent(t, m)
			if startedBy[e.pid] == nil {
				startedBy[e.pid] = map[string]bool{}
			}
			startedBy[e.pid][e.id] = true
			// Kill the victim once it holds a few tasks mid-run.
			if !killed && e.pid == victim.cmd.Process.Pid && donePIDs[e.pid] >= 10 && len(startedBy[e.pid]) >= 3 {
				heldAtKil = len(startedBy[e.pid])
				require.NoError(t, victim.cmd.Process.Signal(syscall.SIGKILL))
				killed = true
			}
		case m := <-dones:
			e := parseEvent(t, m)
			doneRuns[e.id]++
			donePIDs[e.pid]++
			delete(startedBy[e.pid], e.id)
			if e.attempt > 1 {
				redeliv++
			}
		case <-deadline:
			t.Fatalf("timed out: %d of %d tasks done; victim output:\n%s", len(doneRuns), n, victim.out.String())
		}
	}
	require.True(t, killed, "victim never held tasks")
	<-victim.exited
	assert.Error(t, victim.err, "victim was killed")

	dups := 0
	for _, c := range doneRuns {
		dups += c - 1
	}
	t.Logf("%d tasks done by %d processes %v; victim held %d tasks when killed, left %d unfinished; %d completions were redeliveries (Attempt > 1); %d duplicate completions",
		len(doneRuns), len(donePIDs), donePIDs, heldAtKil, len(startedBy[victim.cmd.Process.Pid]), redeliv, dups)
	assert.Len(t, doneRuns, n)
	assert.Positive(t, redeliv, "the victim's tasks were redelivered")

	for _, w := range workers[1:] {
		w.stop(t)
	}
	insp := newInspector(t, ctx, js, natsbroker.WithQueue(queue))
	info, err := insp.Queue(ctx)
	require.NoError(t, err)
	for _, p := range info.Priorities {
		assert.Zero(t, p.Pending, p.Priority)
		assert.Zero(t, p.InFlight, p.Priority)
	}
	assert.Zero(t, info.DeadLetters)
}

// A waiter gets the results of tasks whose first worker was killed with
// SIGKILL mid-run: the tasks are redelivered to another worker process,
// which stores their outcomes.
func TestResultSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	srv := startServer(t)
	nc, js := connect(t, srv.URL())
	ctx := ctxT(t)
	const queue = "resultkill"

	starts := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(eventStart, starts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.Flush())

	prod := newProducer(t, ctx, js, natsbroker.WithQueue(queue))
	victim := spawnWorker(t, srv.URL(), queue)
	ids := []string{"r-ok", "r-fail"}
	type waited struct {
		res natsbroker.Result
		err error
	}
	results := make(map[string]chan waited)
	for _, id := range ids {
		mustEnqueue(t, ctx, prod, taskpool.Task{ID: id, Type: "result"}, natsbroker.KeepResult())
		ch := make(chan waited, 1)
		results[id] = ch
		go func() {
			res, err := prod.WaitResult(ctx, id)
			ch <- waited{res, err}
		}()
	}
	running := map[string]bool{}
	for len(running) < len(ids) {
		select {
		case m := <-starts:
			e := parseEvent(t, m)
			require.Equal(t, victim.cmd.Process.Pid, e.pid)
			require.Equal(t, 1, e.attempt)
			running[e.id] = true
		case <-ctx.Done():
			t.Fatalf("tasks did not start; worker output:\n%s", victim.out.String())
		}
	}
	require.NoError(t, victim.cmd.Process.Signal(syscall.SIGKILL))
	<-victim.exited
	heir := spawnWorker(t, srv.URL(), queue)

	ok := <-results["r-ok"]
	require.NoError(t, ok.err)
	assert.NoError(t, ok.res.Err)
	assert.Equal(t, 2, ok.res.Attempts)
	assert.JSONEq(t, `{"id":"r-ok","attempt":2}`, string(ok.res.Value))

	failed := <-results["r-fail"]
	require.NoError(t, failed.err)
	assert.ErrorIs(t, failed.res.Err, taskpool.ErrSkipRetry)
	assert.EqualError(t, failed.res.Err, "boom")
	assert.True(t, failed.res.DeadLettered)
	assert.Nil(t, failed.res.Value)

	// Stored: a later waiter gets the same outcome at once.
	again, err := prod.WaitResult(ctx, "r-ok")
	require.NoError(t, err)
	assert.Equal(t, ok.res, again)

	require.NoError(t, heir.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-heir.exited:
		assert.NoError(t, heir.err, "worker output:\n%s", heir.out.String())
	case <-ctx.Done():
		t.Fatal("worker did not stop on SIGTERM")
	}
}

// Three worker processes never run more than two tasks of a type limited
// to two at once together, measured from the handlers' own start and end
// times; a process killed with SIGKILL while it holds a slot holds it no
// longer than the slot lease's TTL, and the others finish every task.
func TestGlobalLimitAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	srv := startServer(t)
	nc, js := connect(t, srv.URL())
	ctx := ctxT(t)
	const queue, n = "gprocs", 80

	events := make(chan *nats.Msg, 4*n)
	sub, err := nc.ChanSubscribe(eventLimited, events)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.Flush())
	prod := newProducer(t, ctx, js, natsbroker.WithQueue(queue))
	workers := make([]*workerProc, 3)
	for i := range workers {
		workers[i] = spawnWorker(t, srv.URL(), queue)
	}
	victim := workers[0].cmd.Process.Pid
	tasks := make([]taskpool.Task, n)
	for i := range tasks {
		tasks[i] = taskpool.Task{ID: fmt.Sprint("g", i), Type: "limited"}
	}
	_, err = prod.EnqueueBatch(ctx, tasks)
	require.NoError(t, err)

	type span struct{ start, end int64 }
	var (
		spans    []span
		open     = map[string]int64{} // "pid id" -> start
		done     = map[string]int{}
		donePIDs = map[int]int{}
		killedAt int64
	)
	deadline := time.After(60 * time.Second)
	for len(done) < n {
		select {
		case m := <-events:
			f := strings.Fields(string(m.Data))
			require.Len(t, f, 4)
			pid, _ := strconv.Atoi(f[0])
			at, _ := strconv.ParseInt(f[3], 10, 64)
			key := f[0] + " " + f[1]
			if f[2] == "start" {
				open[key] = at
				if killedAt == 0 && pid == victim && donePIDs[pid] >= 3 {
					// The victim holds a slot: its task runs.
					require.NoError(t, workers[0].cmd.Process.Signal(syscall.SIGKILL))
					killedAt = time.Now().UnixNano()
				}
				continue
			}
			spans = append(spans, span{open[key], at})
			delete(open, key)
			done[f[1]]++
			donePIDs[pid]++
		case <-deadline:
			t.Fatalf("timed out: %d of %d tasks done", len(done), n)
		}
	}
	require.NotZero(t, killedAt, "the victim never ran a task")
	for key, start := range open {
		// Started and never done: only the victim's, which ended when
		// it was killed.
		require.True(t, strings.HasPrefix(key, strconv.Itoa(victim)+" "), "unfinished run %s", key)
		spans = append(spans, span{start, killedAt})
	}
	// The most spans that overlap at any instant.
	type edge struct {
		at    int64
		delta int
	}
	var edges []edge
	for _, s := range spans {
		edges = append(edges, edge{s.start, 1}, edge{s.end, -1})
	}
	slices.SortFunc(edges, func(a, b edge) int {
		if a.at != b.at {
			return cmp.Compare(a.at, b.at)
		}
		return a.delta - b.delta // an end before a start at the same instant
	})
	peak, cur := 0, 0
	for _, e := range edges {
		cur += e.delta
		peak = max(peak, cur)
	}
	t.Logf("%d tasks done by %v; peak concurrency %d", len(done), donePIDs, peak)
	assert.LessOrEqual(t, peak, 2, "global concurrency exceeded across processes")
	assert.Len(t, done, n)
	for _, w := range workers[1:] {
		w.stop(t)
	}
}
