package distributed_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
	"github.com/taskpool/taskpool/broker/nats/devserver"
)

// Servers for asynq and River. Unset means that engine is skipped.
const (
	redisEnv = "TASKPOOL_BENCH_REDIS" // host:port of a Redis server
	pgEnv    = "TASKPOOL_BENCH_PG"    // PostgreSQL URL, such as postgres://bench@127.0.0.1:5432/bench
)

// Settings that differ from an engine's defaults. Everything else is the
// engine's default; README.md lists both.
const (
	// natsPrefetch and natsMaxBatch are the NATS consumer's flow control:
	// it holds up to workers+prefetch tasks and fetches up to maxBatch at
	// a time (the settings of broker/nats's own BenchmarkEndToEnd).
	natsPrefetch = 512
	natsMaxBatch = 256
	// natsEnqueueBatch is the size of one EnqueueBatch call.
	natsEnqueueBatch = 10000
	// asynqEnqueuers is the number of goroutines enqueueing concurrently:
	// asynq has no batch enqueue.
	asynqEnqueuers = 16
	// asynqTaskCheckInterval replaces the 1s default: an idle asynq worker
	// sleeps about this long before it looks at an empty queue again, and
	// the workers are idle when a timed round starts.
	asynqTaskCheckInterval = 10 * time.Millisecond
	// riverInsertBatch is the size of one InsertManyFast call (COPY).
	riverInsertBatch = 1000
	// riverFetchCooldown replaces the 100ms default: a River producer
	// fetches at most once per cooldown and never holds more jobs than
	// its workers, so with 16 workers the default caps a process at 160
	// jobs/s.
	riverFetchCooldown = time.Millisecond
	// riverFetchPollInterval replaces the 1s default: the fallback poll
	// for new jobs when no insert notification arrives.
	riverFetchPollInterval = 10 * time.Millisecond
)

// An engine is one task queue under comparison.
type engine struct {
	name string
	// server is the address of the engine's server, or "" with the reason
	// it is not configured.
	server func() (addr, skip string)
	// open prepares an empty queue on the server at addr for one
	// sub-benchmark (starting the server first where the engine embeds
	// one).
	open func(ctx context.Context, addr string) (queue, error)
	// work runs in a worker process: a consumer of cfg.queue with
	// cfg.workers concurrent no-op handlers, each calling handled, until
	// ctx ends; it calls ready once consuming and stops gracefully.
	work func(ctx context.Context, cfg workerConfig, handled, ready func()) error
}

// queue is the parent's side of one engine's queue.
type queue interface {
	// addr and name are what worker processes connect to.
	addr() string
	name() string
	// enqueue enqueues n no-op tasks and returns when the server has
	// stored them all.
	enqueue(ctx context.Context, n int) error
	// remaining counts the tasks the server has not yet recorded as acked
	// or completed.
	remaining(ctx context.Context) (int64, error)
	close(ctx context.Context) error
}

var engines = []engine{
	{name: "taskpool-nats", server: natsServer, open: openNATS, work: workNATS},
	{name: "asynq", server: envServer(redisEnv, "Redis"), open: openAsynq, work: workAsynq},
	{name: "river", server: envServer(pgEnv, "PostgreSQL"), open: openRiver, work: workRiver},
}

func engineByName(name string) (engine, bool) {
	for _, e := range engines {
		if e.name == name {
			return e, true
		}
	}
	return engine{}, false
}

func envServer(env, what string) func() (string, string) {
	return func() (string, string) {
		if v := os.Getenv(env); v != "" {
			return v, ""
		}
		return "", fmt.Sprintf("%s is not set: no %s server to compare with (bench/distributed/run.sh starts one)", env, what)
	}
}

// queueSeq makes queue names unique within a process; with the pid they
// are unique on a shared server too.
var queueSeq atomic.Int64

func uniqueQueue(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), queueSeq.Add(1))
}

// --- taskpool on NATS JetStream ---

// natsServer: the server is embedded (devserver), so it always runs.
func natsServer() (string, string) { return "", "" }

type natsQueue struct {
	srv  *devserver.Server
	url  string
	q    string
	nc   *nats.Conn
	prod *natsbroker.Producer
	insp *natsbroker.Inspector
	buf  []taskpool.Task
}

// openNATS starts an embedded server on 127.0.0.1 with file storage in a
// fresh temporary directory, so every sub-benchmark starts from an empty
// store.
func openNATS(ctx context.Context, _ string) (queue, error) {
	srv, err := devserver.Start(devserver.Options{})
	if err != nil {
		return nil, err
	}
	nq := &natsQueue{srv: srv, url: srv.URL(), q: "bench"}
	nc, js, err := natsbroker.Connect(nq.url)
	if err != nil {
		srv.Shutdown()
		return nil, err
	}
	nq.nc = nc
	opt := natsbroker.WithQueue(nq.q)
	if nq.prod, err = natsbroker.NewProducer(ctx, js, opt); err == nil {
		nq.insp, err = natsbroker.NewInspector(ctx, js, opt)
	}
	if err != nil {
		nc.Close()
		srv.Shutdown()
		return nil, err
	}
	nq.buf = make([]taskpool.Task, natsEnqueueBatch)
	for i := range nq.buf {
		nq.buf[i] = taskpool.Task{Type: "noop"} // IDs are generated (NUID)
	}
	return nq, nil
}

func (q *natsQueue) addr() string { return q.url }
func (q *natsQueue) name() string { return q.q }

func (q *natsQueue) enqueue(ctx context.Context, n int) error {
	for sent := 0; sent < n; sent += len(q.buf) {
		if _, err := q.prod.EnqueueBatch(ctx, q.buf[:min(len(q.buf), n-sent)]); err != nil {
			return err
		}
	}
	return nil
}

// remaining counts the tasks pending or delivered and not yet acked; the
// stream (work-queue retention) deletes a task when its ack arrives.
func (q *natsQueue) remaining(ctx context.Context) (int64, error) {
	info, err := q.insp.Queue(ctx)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range info.Priorities {
		n += int64(p.Pending) + int64(p.InFlight)
	}
	return n, nil
}

func (q *natsQueue) close(context.Context) error {
	q.nc.Close()
	q.srv.Shutdown()
	return nil
}

func workNATS(ctx context.Context, cfg workerConfig, handled, ready func()) error {
	nc, js, err := natsbroker.Connect(cfg.addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := taskpool.NewRegistry()
	if err := reg.HandleFunc("noop", func(context.Context, taskpool.Task) error {
		handled()
		return nil
	}); err != nil {
		return err
	}
	c, err := natsbroker.NewConsumer(ctx, js, reg,
		natsbroker.WithQueue(cfg.queue),
		natsbroker.WithWorkers(cfg.workers),
		natsbroker.WithPrefetch(natsPrefetch),
		natsbroker.WithMaxBatch(natsMaxBatch))
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return err
	}
	ready()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Stop(sctx)
}

// --- asynq on Redis ---

type asynqQueue struct {
	redis  string
	q      string
	client *asynq.Client
	insp   *asynq.Inspector
}

// openAsynq uses a new queue name on the given Redis, deleted on close.
func openAsynq(ctx context.Context, addr string) (queue, error) {
	opt := asynq.RedisClientOpt{Addr: addr}
	aq := &asynqQueue{redis: addr, q: uniqueQueue("bench"), client: asynq.NewClient(opt), insp: asynq.NewInspector(opt)}
	if err := aq.client.Ping(); err != nil {
		_ = aq.client.Close()
		_ = aq.insp.Close()
		return nil, fmt.Errorf("redis at %s: %w", addr, err)
	}
	return aq, nil
}

func (q *asynqQueue) addr() string { return q.redis }
func (q *asynqQueue) name() string { return q.q }

// enqueue runs asynqEnqueuers goroutines, each enqueueing its share one
// task at a time (asynq has no batch enqueue).
func (q *asynqQueue) enqueue(ctx context.Context, n int) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for g := range asynqEnqueuers {
		share := n / asynqEnqueuers
		if g < n%asynqEnqueuers {
			share++
		}
		wg.Go(func() {
			for range share {
				if _, err := q.client.EnqueueContext(ctx, asynq.NewTask("noop", nil), asynq.Queue(q.q)); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// remaining is the queue's size: pending, active, scheduled, retry,
// aggregating and archived tasks. A successful task leaves the queue
// (no retention) in the same Redis script that counts it processed.
func (q *asynqQueue) remaining(context.Context) (int64, error) {
	info, err := q.insp.GetQueueInfo(q.q)
	if err != nil {
		return 0, err
	}
	return int64(info.Size), nil
}

func (q *asynqQueue) close(context.Context) error {
	err := q.insp.DeleteQueue(q.q, true)
	if errors.Is(err, asynq.ErrQueueNotFound) {
		err = nil
	}
	return errors.Join(err, q.client.Close(), q.insp.Close())
}

func workAsynq(ctx context.Context, cfg workerConfig, handled, ready func()) error {
	srv := asynq.NewServer(asynq.RedisClientOpt{Addr: cfg.addr}, asynq.Config{
		Concurrency:       cfg.workers,
		Queues:            map[string]int{cfg.queue: 1},
		TaskCheckInterval: asynqTaskCheckInterval,
		LogLevel:          asynq.WarnLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc("noop", func(context.Context, *asynq.Task) error {
		handled()
		return nil
	})
	if err := srv.Start(mux); err != nil {
		return err
	}
	ready()
	<-ctx.Done()
	srv.Shutdown()
	return nil
}

// --- River on PostgreSQL ---

type noopArgs struct{}

func (noopArgs) Kind() string { return "noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	handled func()
}

func (w *noopWorker) Work(context.Context, *river.Job[noopArgs]) error {
	w.handled()
	return nil
}

type riverQueue struct {
	dsn    string
	q      string
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
	params []river.InsertManyParams
}

// openRiver migrates the database to River's latest schema (idempotent)
// and uses a new queue name, whose jobs are deleted on close.
func openRiver(ctx context.Context, dsn string) (queue, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, err
	}
	rq := &riverQueue{dsn: dsn, q: uniqueQueue("bench"), pool: pool}
	if err := rq.setup(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return rq, nil
}

func (q *riverQueue) setup(ctx context.Context) error {
	if err := q.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgresql: %w", err)
	}
	m, err := rivermigrate.New(riverpgxv5.New(q.pool), nil)
	if err != nil {
		return err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	// An insert-only client: no queues, no workers.
	if q.client, err = river.NewClient(riverpgxv5.New(q.pool), &river.Config{Logger: quietLogger()}); err != nil {
		return err
	}
	q.params = make([]river.InsertManyParams, riverInsertBatch)
	for i := range q.params {
		q.params[i] = river.InsertManyParams{Args: noopArgs{}, InsertOpts: &river.InsertOpts{Queue: q.q}}
	}
	return nil
}

func (q *riverQueue) addr() string { return q.dsn }
func (q *riverQueue) name() string { return q.q }

func (q *riverQueue) enqueue(ctx context.Context, n int) error {
	for sent := 0; sent < n; sent += len(q.params) {
		if _, err := q.client.InsertManyFast(ctx, q.params[:min(len(q.params), n-sent)]); err != nil {
			return err
		}
	}
	return nil
}

// remaining counts the queue's jobs not in the completed state. River's
// completer records completions in batches, after the handler returned.
func (q *riverQueue) remaining(ctx context.Context) (int64, error) {
	var n int64
	err := q.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE queue = $1 AND state <> 'completed'`, q.q).Scan(&n)
	return n, err
}

// close deletes the queue's jobs and vacuums the table, so that the next
// sub-benchmark does not pay for this one's dead rows.
func (q *riverQueue) close(ctx context.Context) error {
	defer q.pool.Close()
	if _, err := q.pool.Exec(ctx, `DELETE FROM river_job WHERE queue = $1`, q.q); err != nil {
		return err
	}
	_, err := q.pool.Exec(ctx, `VACUUM river_job`)
	return err
}

func workRiver(ctx context.Context, cfg workerConfig, handled, ready func()) error {
	pool, err := pgxpool.New(ctx, cfg.addr)
	if err != nil {
		return err
	}
	defer pool.Close()
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &noopWorker{handled: handled}); err != nil {
		return err
	}
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues:            map[string]river.QueueConfig{cfg.queue: {MaxWorkers: cfg.workers}},
		Workers:           workers,
		FetchCooldown:     riverFetchCooldown,
		FetchPollInterval: riverFetchPollInterval,
		Logger:            quietLogger(),
	})
	if err != nil {
		return err
	}
	// Not ctx: River treats the end of Start's context as a hard stop.
	if err := client.Start(context.Background()); err != nil {
		return err
	}
	ready()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return client.Stop(sctx)
}

// quietLogger logs warnings and errors only, to stderr.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
