package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/taskpool/taskpool"
)

// Consumer runs the tasks of a queue on a local [taskpool.Scheduler].
//
// Every process that runs a Consumer of the same queue shares one durable
// pull consumer per priority: the server hands each task to one of them
// at a time. A Consumer fetches only as many tasks as it has room for
// (workers plus [WithPrefetch], and one more for each of its handlers
// that waits in [Producer.WaitResult] or lends with taskpool.Lend; a long poll of an idle priority
// that delivers while it is full adds one task per priority beyond that),
// submits each to its local scheduler, and settles the message when the
// task's outcome is known:
//
//   - success: Ack.
//   - a retryable error: NakWithDelay with the backoff for that attempt.
//   - an error wrapping [taskpool.ErrSkipRetry], or the last attempt
//     failed: the message is copied to the dead-letter stream and
//     terminated.
//
// Handlers see Task.Attempt set to the delivery count (counted from the
// Attempt the task was enqueued with, see [HeaderFirstAttempt]), so a task
// redelivered after a crash counts the crashed run. While a task waits or runs, one
// goroutine per Consumer extends the lease of every message held, every
// AckWait/2, so long tasks are not redelivered; a process that dies stops
// extending, and its tasks go to other workers after AckWait.
//
// A Consumer is safe for concurrent use. Create it with [NewConsumer],
// start it with [Consumer.Start] and stop it with [Consumer.Stop]. It does
// not own the NATS connection: close that after Stop.
type Consumer struct {
	cfg        config
	q          *queue
	cons       [numPriorities]jetstream.Consumer
	sched      *taskpool.Scheduler
	policy     taskpool.RetryPolicy                  // attempts and backoff, per type from the registry
	lookup     func(string) (taskpool.Handler, bool) // nil when the handler cannot look types up
	adaptive   bool                                  // prefetch follows the measured task and fetch times
	refillAt   atomic.Int64                          // held count at or below which a freed worker wakes the fetch loop
	runTime    ewma                                  // handler run time
	fetchRTT   ewma                                  // no-wait fetch round trip, messages dispatched
	prefetchN  atomic.Int64                          // current prefetch, for Health and tests
	fetchFails atomic.Int64                          // consecutive failed fetches
	lent       atomic.Int32                          // handlers lending their worker: one message more each (lendHook)
	leaseBeat  atomic.Int64                          // unix nanoseconds of the lease keeper's last round
	gates      map[string]*gate                      // by type: the global limits (globallimit.go)
	gatedN     atomic.Int64                          // tasks waiting in the gates
	due        [numPriorities]atomic.Int64           // per priority, unix ns when a task put back for a retry comes back; 0: none (retryDue)
	name       string                                // the connection's name, in slot leases

	mu      sync.Mutex
	flights map[string]*flight // by task ID: tasks submitted and not settled
	held    atomic.Int64       // len(flights), read by the fetch loop
	freed   chan struct{}      // capacity freed; buffered 1

	stateMu   sync.Mutex
	state     consumerState
	quit      chan struct{} // closed by Stop: fetch no more
	loopDone  chan struct{}
	tickQuit  chan struct{}
	tickDone  chan struct{}
	stopMu    sync.Mutex
	firstStop context.Context                 // under stopMu: the first Stop's ctx, which a later Stop's end cuts short too
	stopCut   context.CancelCauseFunc         // under stopMu: cuts firstStop short
	cutLater  bool                            // under stopMu: a later Stop cut the first one short, and returns its error
	stopCtx   atomic.Pointer[context.Context] // Stop's: once it ends, handlers are cut short
	stopped   chan struct{}
	stopErr   error
}

type consumerState int

const (
	consumerNew consumerState = iota
	consumerRunning
	consumerStopping
)

// flight is a delivered message whose task is with the local scheduler.
type flight struct {
	msg         jetstream.Msg
	seq         uint64
	attempt     int
	last        bool   // a failure of this attempt is final
	maxAttempts int    // the task's own: the local scheduler's copy has 1
	uniqueKey   string // the task's own: the local scheduler's copy has none
	gate        *gate  // with slot and lease: the global slot lease the task holds
	slot        int
	lease       uint64
}

// MaxDeliveries is the durable consumers' delivery cap (MaxDeliver): a
// message is delivered at most this many times, whatever the task's
// MaxAttempts, and a failure at the last allowed delivery dead-letters it.
// It ends any redelivery loop that the consumer's own attempt counting
// would not (a message whose every delivery crashes its worker stops
// being delivered after it, and stays in the stream: the server then
// publishes a max-deliveries advisory).
const MaxDeliveries = 100

// restore gives t back the fields the consumer changed in the copy it gave
// the local scheduler, which must neither retry it nor check its unique
// key (both are the broker's, across processes): handlers, middleware,
// hooks and dead letters see the task as it was enqueued, as in process.
func (f *flight) restore(t *taskpool.Task) {
	t.MaxAttempts, t.UniqueKey = f.maxAttempts, f.uniqueKey
}

// NewConsumer returns a Consumer that runs the queue's tasks with h,
// usually the same [*taskpool.Registry] an in-process scheduler would
// use. It creates the queue's streams and its durable consumers if they do
// not exist; ctx bounds that. It returns an error wrapping
// [ErrInvalidOption] or [ErrInvalidQueue] for bad options or a nil js,
// [taskpool.ErrNilHandler] for a nil h, [taskpool.ErrNilContext] for a
// nil ctx, or the server's error.
func NewConsumer(ctx context.Context, js jetstream.JetStream, h taskpool.Handler, opts ...Option) (*Consumer, error) {
	if err := checkCtx(ctx, "NewConsumer"); err != nil {
		return nil, err
	}
	if js == nil {
		return nil, invalid("jetstream", "nil")
	}
	cfg, err := newConfig(opts, forConsumer)
	if err != nil {
		return nil, err
	}
	c := &Consumer{
		cfg:      cfg,
		adaptive: cfg.prefetch == 0,
		flights:  make(map[string]*flight),
		freed:    make(chan struct{}, 1),
		quit:     make(chan struct{}),
		loopDone: make(chan struct{}),
		tickQuit: make(chan struct{}),
		tickDone: make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	// Outermost: the fields the local scheduler must not see at submit
	// are given back to the task before any middleware (flight.restore).
	sopts := append(append([]taskpool.Option{taskpool.WithMiddleware(c.taskBack)}, cfg.schedOpts...),
		taskpool.WithWorkers(cfg.workers),
		// Room for the largest capacity, and one message per priority
		// beyond it (see fetchLoop).
		taskpool.WithQueueSize(cfg.workers+max(cfg.prefetch, DefaultMaxPrefetch)+numPriorities),
		taskpool.WithCompletionHook(c.complete),
		taskpool.WithMiddleware(c.measure), // innermost: the handler's own run time
		// A handler that lends its worker (taskpool.Lend, WaitResult)
		// lends a message of capacity too.
		taskpool.WithLendHook(c.lendHook),
	)
	if c.sched, err = taskpool.New(h, sopts...); err != nil {
		return nil, err
	}
	// One policy: the registry's per-type settings, then the
	// scheduler-wide taskpool.WithRetry (through WithSchedulerOptions)
	// unless WithMaxAttempts or WithBackoff override it, then this
	// package's defaults.
	sp := c.sched.RetryPolicy()
	if !cfg.retrySet && sp.MaxAttempts > 0 {
		c.cfg.maxAttempts = sp.MaxAttempts
	}
	if !cfg.backoffSet && sp.Backoff != nil {
		c.cfg.backoff = sp.Backoff
	}
	c.policy = taskpool.RetryPolicy{Registry: sp.Registry, MaxAttempts: c.cfg.maxAttempts, Backoff: c.cfg.backoff}
	if l, ok := h.(interface {
		Lookup(string) (taskpool.Handler, bool)
	}); ok {
		c.lookup = l.Lookup
	}
	if c.q, err = provision(ctx, js, &cfg); err != nil {
		return nil, err
	}
	ackWait := time.Duration(0)
	for p := range numPriorities {
		c.cons[p], err = ensureConsumer(ctx, js, &cfg, c.q.stream, jetstream.ConsumerConfig{
			Durable:       c.q.consumer[p],
			Description:   "taskpool workers, " + prioNames[p] + " priority",
			FilterSubject: c.q.task[p],
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       cfg.ackWait,
			// The consumer counts attempts against each task's
			// MaxAttempts itself and dead-letters the task; the server's
			// cap is the backstop that ends any redelivery loop (the
			// consumer dead-letters at the last allowed delivery).
			MaxDeliver:    MaxDeliveries,
			MaxAckPending: -1,
		})
		if err != nil {
			return nil, fmt.Errorf("natsbroker: consumer %s: %w", c.q.consumer[p], err)
		}
		if aw := c.cons[p].CachedInfo().Config.AckWait; aw > 0 && (ackWait == 0 || aw < ackWait) {
			ackWait = aw
		}
	}
	// The lease keeper must extend leases within the ack wait the shared
	// consumers have, whatever this process asked for.
	if ackWait > 0 {
		c.cfg.ackWait = ackWait
	}
	c.name = js.Conn().Opts.Name
	if c.name == "" {
		c.name = ConnectionName()
	}
	if len(c.cfg.limits) > 0 {
		ttl, err := openLimits(ctx, js, &c.cfg, c.q)
		if err != nil {
			return nil, err
		}
		c.gates = make(map[string]*gate, len(c.cfg.limits))
		for typ, l := range c.cfg.limits {
			c.gates[typ] = newGate(c, typ, l, ttl)
		}
	}
	return c, nil
}

// ensureConsumer opens the durable consumer, or creates it with want when
// it does not exist. Like ensureStream, it never changes an existing
// consumer unless WithReconfigure was given: an ack wait given as an
// option that differs is ErrQueueMismatch, and package settings that
// differ (a consumer created by another version) are logged at Warn.
func ensureConsumer(ctx context.Context, js jetstream.JetStream, c *config, stream string, want jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	for {
		cons, err := request(ctx, c.logger, "consumer info", func(ctx context.Context) (jetstream.Consumer, error) {
			return js.Consumer(ctx, stream, want.Durable)
		})
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			cons, err = request(ctx, c.logger, "consumer create", func(ctx context.Context) (jetstream.Consumer, error) {
				return js.CreateConsumer(ctx, stream, want)
			})
			if errors.Is(err, jetstream.ErrConsumerExists) {
				continue // created meanwhile by another process, with other settings
			}
			return cons, err
		}
		if err != nil {
			return nil, err
		}
		have := cons.CachedInfo().Config
		var m mismatch
		if c.has(setAckWait) {
			m.check("ack wait", have.AckWait, want.AckWait)
		}
		own := have.Description == want.Description && have.FilterSubject == want.FilterSubject &&
			have.AckPolicy == want.AckPolicy && have.MaxDeliver == want.MaxDeliver &&
			have.MaxAckPending == want.MaxAckPending
		if !c.reconfigure {
			if len(m) > 0 {
				return nil, m.err("consumer " + want.Durable)
			}
			if !own {
				c.logger.Warn("natsbroker: consumer has other settings than this version sets; WithReconfigure updates it",
					"queue", c.queue, "consumer", want.Durable, "max_deliver", have.MaxDeliver, "want_max_deliver", want.MaxDeliver)
			}
			return cons, nil
		}
		if len(m) == 0 && own {
			return cons, nil
		}
		upd := have
		upd.Description, upd.FilterSubject, upd.AckPolicy = want.Description, want.FilterSubject, want.AckPolicy
		upd.MaxDeliver, upd.MaxAckPending = want.MaxDeliver, want.MaxAckPending
		if c.has(setAckWait) {
			upd.AckWait = want.AckWait
		}
		return request(ctx, c.logger, "consumer update", func(ctx context.Context) (jetstream.Consumer, error) {
			return js.UpdateConsumer(ctx, stream, upd)
		})
	}
}

// Start starts the local scheduler, the fetch loop and the lease keeper.
// It returns [ErrConsumerClosed] when called twice or after Stop.
func (c *Consumer) Start() error {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if c.state != consumerNew {
		return ErrConsumerClosed
	}
	if err := c.sched.Start(); err != nil {
		return err
	}
	c.state = consumerRunning
	c.leaseBeat.Store(time.Now().UnixNano())
	for _, g := range c.gates {
		go g.run()
	}
	go c.fetchLoop()
	go c.keepAlive()
	return nil
}

// Stop stops the Consumer gracefully: it stops fetching (it waits for its
// outstanding long polls to end, at most the poll wait, and keeps what
// they deliver with the held tasks), lets the
// tasks it holds run to completion and settles them as at any other time
// (a handler's own error, even one wrapping context.Canceled, is retried
// or dead-lettered, as in process), and returns nil once every goroutine
// has exited and the acks are flushed to the server. A handler that waits
// in [Producer.WaitResult] (or Client.SubmitWait) for a task this consumer
// has not fetched keeps waiting: for another consumer to run that task,
// or for ctx to end, which cancels the handler's context (unlike the
// in-process scheduler's graceful Stop, which runs every task accepted).
//
// If ctx ends first, the local scheduler cancels the running handlers'
// contexts; every task that did not finish is released (Nak, no delay) so
// that another worker runs it at once, and Stop returns a
// [*taskpool.StopError] (after the long polls have ended: up to the poll
// wait past ctx). Nothing is left unacknowledged and unreleased,
// except where the connection is down: then the server redelivers the
// tasks after AckWait.
//
// Stop is idempotent, as the in-process scheduler's: a later call waits
// for the same shutdown, and if its ctx ends first, while the shutdown is
// still graceful, it cuts it short as above and returns the
// [*taskpool.StopError] (the first call then returns nil); otherwise a
// later call returns nil. Stop before Start marks the Consumer closed.
//
// A nil ctx is refused with an error wrapping [taskpool.ErrNilContext],
// as in process: that Stop does nothing, and the Consumer runs on.
func (c *Consumer) Stop(ctx context.Context) error {
	if err := checkCtx(ctx, "Consumer.Stop"); err != nil {
		return err
	}
	c.stopMu.Lock()
	if c.firstStop != nil {
		c.stopMu.Unlock()
		return c.stopLater(ctx)
	}
	ctx, cut := context.WithCancelCause(ctx)
	defer cut(nil)
	c.firstStop, c.stopCut = ctx, cut
	c.stopMu.Unlock()
	func() {
		c.stateMu.Lock()
		started := c.state == consumerRunning
		c.state = consumerStopping
		c.stateMu.Unlock()
		c.stopCtx.Store(&ctx)
		close(c.quit)
		if len(c.gates) > 0 {
			// Past ctx, the global limits' requests (slots given back)
			// get a second's grace, as the flush below does: with the
			// server gone they would hold Stop up by a request timeout
			// per slot.
			cut := func() {
				for _, g := range c.gates {
					g.cut()
				}
			}
			over := make(chan struct{}) // closed as Stop returns: no cut after it
			stopGrace := context.AfterFunc(ctx, func() {
				t := time.NewTimer(time.Second)
				defer t.Stop()
				select {
				case <-t.C:
					cut()
				case <-over:
				}
			})
			defer func() {
				close(over)
				stopGrace()
				cut()
			}()
		}
		putBack := 0 // tasks put back from the gates at ctx's end
		if started {
			<-c.loopDone // the loop never blocks for long after quit
			for _, g := range c.gates {
				putBack += g.drain(ctx)
			}
		} else {
			close(c.loopDone)
			close(c.tickDone)
		}
		c.stopErr = c.sched.Stop(ctx)
		var se *taskpool.StopError
		if errors.As(c.stopErr, &se) {
			se.Err = c.stopCtxErr(ctx) // a later Stop's ctx's error, when it cut this one short
		}
		if putBack > 0 {
			// They did not run either: count them with the local
			// scheduler's, which may have had nothing left to give up.
			if se != nil {
				se.NotRun += putBack
			} else if c.stopErr == nil {
				c.stopErr = &taskpool.StopError{NotRun: putBack, Err: c.stopCtxErr(ctx)}
			}
		}
		if started {
			for _, g := range c.gates {
				g.close()
			}
			for _, g := range c.gates {
				<-g.done
			}
		}
		close(c.tickQuit)
		<-c.tickDone
		if nc := c.q.js.Conn(); started && nc.IsConnected() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = nc.FlushWithContext(fctx)
			cancel()
		}
		close(c.stopped)
	}()
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	if c.cutLater {
		return nil
	}
	return c.stopErr
}

// stopCtxErr is the error of the first Stop's ctx (ctx, as derived there)
// for its StopError: ctx.Err() of the Stop whose ctx ended, a later one's
// when it cut this one short (its cause), else this one's own (not its
// cause, which may be the caller's own error), as the local scheduler's
// StopError has it.
func (c *Consumer) stopCtxErr(ctx context.Context) error {
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	if c.cutLater {
		return context.Cause(ctx)
	}
	return ctx.Err()
}

// stopLater is a Stop called once another has begun: it waits for that
// one, and if its own ctx ends first, while that one is still graceful,
// it cuts it short and returns its error.
func (c *Consumer) stopLater(ctx context.Context) error {
	select {
	case <-c.stopped:
		return nil
	default:
	}
	select {
	case <-c.stopped:
		return nil
	case <-ctx.Done():
	}
	c.stopMu.Lock()
	cut := c.firstStop.Err() == nil
	if cut {
		c.cutLater = true
		c.stopCut(ctx.Err())
	}
	c.stopMu.Unlock()
	<-c.stopped
	if !cut {
		return nil
	}
	return c.stopErr
}

// Stats returns the local scheduler's counters. They count deliveries,
// not tasks: the local scheduler runs each delivery once, and the broker
// retries a task as a new delivery. So a task that fails once and then
// succeeds counts 2 in Submitted, 1 in Failed and 1 in Succeeded, where
// an in-process scheduler counts 1 submitted, 1 retried and 1 succeeded:
// Failed counts every failed delivery, retried by the broker or not,
// and Retried stays 0. The settle hook ([WithSettleHook]) tells what
// became of each delivery.
func (c *Consumer) Stats() taskpool.Stats { return c.sched.Stats() }

// Health is a Consumer's state for an orchestrator's liveness and
// readiness probes; see [Consumer.Health].
type Health struct {
	// Connected is true while the NATS connection is up.
	Connected bool
	// Consuming is true between Start and Stop while the fetch loop runs.
	Consuming bool
	// LeaseLoop is true while the lease keeper runs and has extended the
	// held tasks' leases within the last ack wait.
	LeaseLoop bool
	// FetchErrors counts consecutive fetches that failed with an error: 0
	// once a fetch succeeds. A long poll that expires while the
	// connection is down is not an error, so the count may stay 0 while
	// it is down: Connected says so.
	FetchErrors int
	// Held is the number of tasks held: running, or waiting for a worker
	// or a global limit.
	Held int
	// Waiting is the number of held tasks waiting for a global limit
	// (see [WithGlobalLimit]).
	Waiting int
	// Prefetch is the current prefetch (see [WithPrefetch]).
	Prefetch int
	// AckWait is the shared consumers' ack wait, which the lease loop
	// keeps within.
	AckWait time.Duration
}

// Live reports whether the consumer's goroutines are working: it is
// consuming and its lease loop is alive. A consumer whose connection is
// down is live (it resumes when the connection is back); one that is not
// live needs a restart (or was stopped).
func (h Health) Live() bool { return h.Consuming && h.LeaseLoop }

// Ready reports whether the consumer takes work now: live, connected, and
// its last fetch succeeded.
func (h Health) Ready() bool { return h.Live() && h.Connected && h.FetchErrors == 0 }

// Health returns the consumer's liveness and readiness: use Live for a
// liveness probe and Ready for a readiness probe. It is cheap (no request
// to the server) and safe to call at any time.
func (c *Consumer) Health() Health {
	h := Health{
		Connected:   c.q.js.Conn().IsConnected(),
		FetchErrors: int(c.fetchFails.Load()),
		Held:        int(c.held.Load()),
		Waiting:     int(c.gatedN.Load()),
		Prefetch:    int(c.prefetchN.Load()),
		AckWait:     c.cfg.ackWait,
	}
	c.stateMu.Lock()
	running := c.state == consumerRunning
	c.stateMu.Unlock()
	select {
	case <-c.loopDone:
	default:
		h.Consuming = running
	}
	select {
	case <-c.tickDone:
	default:
		h.LeaseLoop = running && time.Since(time.Unix(0, c.leaseBeat.Load())) <= c.cfg.ackWait
	}
	return h
}

// cutShort reports whether Stop's context has ended: past it, the local
// scheduler cancels the running handlers and leaves queued tasks unrun.
func (c *Consumer) cutShort() bool {
	ctx := c.stopCtx.Load()
	return ctx != nil && (*ctx).Err() != nil
}

func (c *Consumer) stopping() bool {
	select {
	case <-c.quit:
		return true
	default:
		return false
	}
}

// longPoll is an outstanding fetch of one message from a priority that was
// found empty. Its one message of capacity is reserved until it ends. It
// is never cancelled: it ends when its message arrives or the server
// expires the request. A fetch cancelled on the client while the server
// sends it a message loses that delivery, which the server still counts:
// the task would wait an ack wait and come back with a delivery count
// that no handler run accounts for (a phantom attempt).
type longPoll struct {
	batch jetstream.MessageBatch
	ch    <-chan jetstream.Msg
	got   bool
}

// fetchLoop is the only goroutine that fetches. A priority is hot while it
// has tasks: each round sends a no-wait fetch, sized to the free capacity,
// to every hot priority in a weighted random order, and a priority that
// returns nothing turns cold. A cold priority costs no request per round:
// it has a long poll for one message outstanding instead, which turns it
// hot again as soon as a task arrives. Rounds start only when at least
// the refill threshold of capacity is free, so that under load the
// requests are few and large.
func (c *Consumer) fetchLoop() {
	c.runLoop(&loopState{hot: [numPriorities]bool{true, true, true}})
}

// loopState is the fetch loop's state, which outlives the goroutine that
// runs the loop (see runLoop).
type loopState struct {
	polls    [numPriorities]longPoll
	hot      [numPriorities]bool
	reserved int                    // capacity held by outstanding long polls
	fails    int                    // consecutive fetch errors
	rot      int                    // priority whose long poll starts first
	batch    jetstream.MessageBatch // the no-wait fetch being dispatched (pollRound)
	draining bool                   // stopping: the long polls are drained
	dueTimer *time.Timer            // for the next retry due (dueRetries)
	dueNow   [numPriorities]bool    // a retry of the priority is due: long-poll it now (dueRetries)
}

// runLoop runs the fetch loop from st. The loop calls the user's code
// when it dispatches a delivery (the codec's Decode, the handler's Lookup,
// a middleware's constructor at a type's first submission); code that
// calls runtime.Goexit there (t.FailNow in a test) ends the goroutine,
// which nothing can prevent. Its deferred calls settle the delivery (see
// decode, known and submit), and runLoop's goes on from st on a new
// goroutine: first the rest of the fetch it was dispatching, then the
// loop. So the consumer fetches on, as the local scheduler's workers go on
// after a Goexit in a handler. A panic there is recovered where it is
// called, and settles the delivery the same way.
func (c *Consumer) runLoop(st *loopState) {
	ended := false
	defer func() {
		if !ended {
			// The log first (aside: a Logger's Goexit ends only the log),
			// then the new goroutine: started first, it could run to its
			// end and Stop return while this one is still in the Logger.
			c.logError("natsbroker: runtime.Goexit called on the fetch loop; it goes on on a new goroutine", "queue", c.cfg.queue)
			go c.runLoop(st)
		}
	}()
	if b := st.batch; b != nil {
		for m := range b.Messages() {
			c.dispatch(m)
		}
		st.batch = nil
	}
	if !st.draining {
		c.loop(st)
		st.draining = true
	}
	// When stopping, wait for the outstanding long polls to end (within
	// the poll wait) and run what they deliver with the tasks held: the
	// local scheduler stops after this loop, and lets them finish.
	for p := range st.polls {
		if st.polls[p].batch != nil {
			for m := range st.polls[p].ch {
				c.dispatch(m)
			}
			st.polls[p] = longPoll{}
		}
	}
	ended = true
	close(c.loopDone)
}

// loop is the fetch loop (see fetchLoop); it returns when the consumer
// stops.
func (c *Consumer) loop(st *loopState) {
	polls, hot := &st.polls, &st.hot
	for {
		if c.stopping() {
			return
		}
		dueC := c.dueRetries(st)
		capacity, threshold := c.limits()
		held := int(c.held.Load())
		free := capacity - held - st.reserved
		anyHot := hot[0] || hot[1] || hot[2]
		if anyHot && free < threshold && capacity-held >= threshold {
			// The long polls of cold priorities hold capacity that a hot
			// priority needs (a consumer with few workers): lend it to
			// the hot priorities rather than leave workers idle until the
			// polls end. The polls are not cancelled, so if they deliver,
			// the consumer holds up to one message per priority more
			// than its capacity for a moment.
			free = capacity - held
		}
		if free >= threshold && anyHot {
			n, err := c.pollRound(free, st)
			if err != nil {
				st.fails++
				c.fetchFails.Store(int64(st.fails))
				c.cfg.logger.Warn("natsbroker: fetch", "queue", c.cfg.queue, "error", err)
				if !c.pause(st.fails) {
					return
				}
				continue
			}
			st.fails = 0
			c.fetchFails.Store(0)
			if n > 0 {
				continue
			}
		}
		// Long-poll the cold priorities. When there is not capacity for
		// all of them (a consumer with few workers), the polls are short
		// and start from a rotating priority, so that none waits long.
		// Polls already out count too: a full-length poll started while
		// there was room for every cold priority held that room when a
		// retry came due on another (0.8 s per retry with 2 workers).
		cold, avail := 0, capacity-int(c.held.Load())
		for p := range polls {
			if !hot[p] {
				cold++
			}
		}
		wait := c.cfg.pollWait
		if cold > avail {
			wait = min(wait, shortPollWait)
		}
		first := st.rot
		st.rot = (st.rot + 1) % numPriorities
		for k := range numPriorities {
			p := (first + k) % numPriorities
			due := st.dueNow[p]
			st.dueNow[p] = false
			if hot[p] || polls[p].batch != nil {
				continue
			}
			// A retry that is due is polled for with capacity lent, as
			// hot priorities are (see above): its task was held here a
			// moment ago.
			if capacity-int(c.held.Load())-st.reserved <= 0 && !due {
				continue
			}
			if due {
				wait = min(wait, shortPollWait)
			}
			b, err := c.cons[p].Fetch(1, jetstream.FetchMaxWait(wait))
			if err != nil {
				st.fails++
				c.fetchFails.Store(int64(st.fails))
				c.cfg.logger.Warn("natsbroker: long poll", "queue", c.cfg.queue, "error", err)
				if !c.pause(st.fails) {
					return
				}
				break
			}
			polls[p] = longPoll{batch: b, ch: b.Messages()}
			st.reserved++
		}
		var (
			p  int
			m  jetstream.Msg
			ok bool
		)
		select {
		case m, ok = <-polls[prioHigh].ch:
			p = prioHigh
		case m, ok = <-polls[prioDefault].ch:
			p = prioDefault
		case m, ok = <-polls[prioLow].ch:
			p = prioLow
		case <-c.freed:
			continue
		case <-dueC:
			continue
		case <-c.quit:
			return
		}
		if ok {
			st.reserved--
			polls[p].got = true
			hot[p] = true
			st.fails = 0
			c.fetchFails.Store(0)
			c.dispatch(m)
			continue
		}
		if !polls[p].got {
			st.reserved--
		}
		err := polls[p].batch.Error()
		polls[p] = longPoll{}
		if err != nil && !isTimeout(err) {
			st.fails++
			c.fetchFails.Store(int64(st.fails))
			c.cfg.logger.Warn("natsbroker: long poll", "queue", c.cfg.queue, "error", err)
			if !c.pause(st.fails) {
				return
			}
		} else if c.q.js.Conn().IsConnected() {
			st.fails = 0 // the server answered, or expired the poll
			c.fetchFails.Store(0)
		}
	}
}

// retryDueSlack is how long after its backoff a task put back for a retry
// is fetched: the server makes it available again at about that time.
const retryDueSlack = 2 * time.Millisecond

// retryDue notes that the delivery on subject, put back for a retry, is
// due again after d, and wakes the fetch loop to plan for it (dueRetries). A
// priority with nothing to fetch turns cold, and while cold ones are
// long-polled in turn (a consumer with room for fewer polls than
// priorities) the retry waited for its priority's turn: 0.8 s per retry
// with 2 workers (BenchmarkRetryLatency).
func (c *Consumer) retryDue(subject string, d time.Duration) {
	for p := range c.q.task {
		if c.q.task[p] != subject {
			continue
		}
		at := time.Now().Add(d + retryDueSlack).UnixNano()
		for {
			old := c.due[p].Load()
			if (old != 0 && old <= at) || c.due[p].CompareAndSwap(old, at) {
				break
			}
		}
		c.wake()
		return
	}
}

// dueRetries notes the priorities whose retry is due (retryDue), which
// the loop long-polls at once, with capacity lent if it must, and returns
// a channel that fires when the next one is due (nil if none). A no-wait
// fetch as the retry comes due finds nothing yet (the server makes the
// message available a moment later); a poll waiting for it gets it.
func (c *Consumer) dueRetries(st *loopState) <-chan time.Time {
	now := time.Now().UnixNano()
	next := int64(0)
	for p := range c.due {
		at := c.due[p].Load()
		switch {
		case at == 0:
		case at <= now:
			if c.due[p].CompareAndSwap(at, 0) {
				st.dueNow[p] = true
			}
		case next == 0 || at < next:
			next = at
		}
	}
	if next == 0 {
		return nil
	}
	d := time.Duration(next - now)
	if st.dueTimer == nil {
		st.dueTimer = time.NewTimer(d)
	} else {
		st.dueTimer.Reset(d)
	}
	return st.dueTimer.C
}

// limits returns the most messages the consumer may hold now (workers
// plus prefetch) and the free capacity that starts a fetch round: as soon
// as a worker is free without prefetch, once half the prefetch is free
// with it, so that fetches are large.
func (c *Consumer) limits() (capacity, threshold int) {
	p := max(c.cfg.prefetch, 0) // NoPrefetch is -1
	if c.adaptive {
		p = c.adaptivePrefetch()
	}
	c.prefetchN.Store(int64(p))
	capacity, threshold = c.cfg.workers+int(c.lent.Load())+p, max(1, min(p, c.cfg.maxBatch)/2)
	c.refillAt.Store(int64(capacity - threshold))
	return capacity, threshold
}

// adaptivePrefetch is the default prefetch: enough tasks to keep the
// workers busy for four fetch round trips, by the measured handler run
// time and fetch time, and at most DefaultMaxPrefetch. Tasks that take
// long compared to a fetch get almost no prefetch, so a consumer never
// hoards slow tasks that idle workers elsewhere could run; tasks that take
// microseconds get the full prefetch, so workers never wait for a fetch.
// Before anything is measured it is 0.
func (c *Consumer) adaptivePrefetch() int {
	run, rtt := c.runTime.get(), c.fetchRTT.get()
	if run <= 0 || rtt <= 0 {
		return 0
	}
	want := 4 * float64(c.cfg.workers) * float64(rtt) / float64(run)
	return int(math.Ceil(min(want, DefaultMaxPrefetch)))
}

// measure is the innermost middleware of the local scheduler: it times
// the handler's runs.
func (c *Consumer) measure(next taskpool.Handler) taskpool.Handler {
	return taskpool.HandlerFunc(func(ctx context.Context, t taskpool.Task) error {
		start := time.Now()
		err := next.HandleTask(ctx, t)
		c.runTime.observe(time.Since(start))
		return err
	})
}

// ewma is an exponentially weighted moving average of durations, weight
// 1/8 for each new sample. Concurrent observations may lose one another's
// update, which only makes the average a little slower to follow.
type ewma struct{ v atomic.Int64 }

func (e *ewma) observe(d time.Duration) {
	n := max(int64(d), 1)
	old := e.v.Load()
	if old == 0 {
		e.v.Store(n)
		return
	}
	e.v.Store(max(old+(n-old)/8, 1))
}

func (e *ewma) get() time.Duration { return time.Duration(e.v.Load()) }

// shortPollWait bounds the long polls of a consumer that cannot poll every
// empty priority at once.
const shortPollWait = 100 * time.Millisecond

func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrNoMessages)
}

// pause waits before the next fetch after n consecutive errors (the
// connection is down, or the server restarting). It returns false when
// the consumer is stopping.
func (c *Consumer) pause(n int) bool {
	d := min(10*time.Millisecond<<min(n, 8), 2*time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.quit:
		return false
	}
}

// pollRound sends a no-wait fetch to each hot priority, in weighted random
// order, until the free capacity is used up; a priority that returns
// nothing turns cold. It returns how many messages it dispatched. The
// fetch it dispatches is st.batch meanwhile (see runLoop).
func (c *Consumer) pollRound(free int, st *loopState) (int, error) {
	total := 0
	for _, p := range c.order() {
		if free <= 0 {
			break
		}
		if !st.hot[p] {
			continue
		}
		start := time.Now()
		b, err := c.cons[p].FetchNoWait(min(free, c.cfg.maxBatch))
		if err != nil {
			return total, err
		}
		st.batch = b
		got := 0
		for m := range b.Messages() {
			c.dispatch(m)
			got++
		}
		st.batch = nil
		if got > 0 {
			c.fetchRTT.observe(time.Since(start))
		}
		free -= got
		total += got
		if got == 0 {
			st.hot[p] = false
		}
		if err := b.Error(); err != nil && !isTimeout(err) {
			return total, err
		}
	}
	return total, nil
}

// order returns the priorities in a random order drawn by weight: each
// position goes to one of the remaining priorities with probability
// proportional to its weight. Zero weights come last.
func (c *Consumer) order() [numPriorities]int {
	var out [numPriorities]int
	rest := [numPriorities]int{prioHigh, prioDefault, prioLow}
	n := numPriorities
	for i := range out {
		sum := 0
		for _, p := range rest[:n] {
			sum += c.cfg.weights[p]
		}
		pick := 0
		if sum > 0 {
			r := rand.IntN(sum)
			for j, p := range rest[:n] {
				if r < c.cfg.weights[p] {
					pick = j
					break
				}
				r -= c.cfg.weights[p]
			}
		}
		out[i] = rest[pick]
		copy(rest[pick:], rest[pick+1:n])
		n--
	}
	return out
}

// dispatch decodes a delivered message and submits its task to the local
// scheduler, or settles it at once when it cannot run.
func (c *Consumer) dispatch(m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		_ = m.Term() // not a JetStream delivery: nothing to redeliver
		return
	}
	// The attempt is the delivery count, counted from the Attempt the task
	// was enqueued with; deliveries is the count of this message's
	// deliveries that may have run it.
	deliveries := int(meta.NumDelivered)
	hdr := m.Headers()
	first := 1
	if n, err := strconv.Atoi(hdr.Get(HeaderFirstAttempt)); err == nil && n > 1 {
		first = n
	}
	attempt := attemptOf(first, deliveries)
	t, err := c.decode(m, meta, attempt)
	switch {
	case err != nil:
	case t.ID == "":
		// As JSONCodec says of an envelope without one (a custom codec
		// may not): a delivery is settled by its task's ID, and the local
		// scheduler would give the task an ID of its own.
		err = fmt.Errorf("%w: no id", ErrBadPayload)
	case t.Type == "":
		// As JSONCodec says too: no handler runs it, and the handler's
		// Lookup would take it for a type not registered yet.
		err = fmt.Errorf("%w: no type", ErrBadPayload)
	}
	if err != nil {
		if !errors.Is(err, ErrBadPayload) {
			err = fmt.Errorf("%w: %w", ErrBadPayload, err)
		}
		c.badPayload(m, meta, attempt, err)
		return
	}
	if md := metadataOf(hdr); md != nil {
		t.Metadata = md
	}
	if next := hdr.Get(hdrScheduleNext); next != "" && next != "purge" {
		// A tick of a periodic schedule: every tick carries the same
		// envelope, so give each its own ID, in the in-process format.
		// The server fires cron schedules, and @every intervals of
		// whole seconds (Producer.Schedule refuses others), at whole
		// seconds and stores the tick just after: its time to the
		// second is the activation, and no two ticks share a second.
		t.ID += "@" + meta.Timestamp.UTC().Truncate(time.Second).Format(time.RFC3339Nano)
	}
	if c.running(t.ID) {
		// The same task ID is held here already: a redelivery whose lease
		// lapsed while it ran (or raced a slow ack), or the ID enqueued
		// again past the duplicate window. The copy held here owns the
		// task: it alone settles it, releases its unique key and tells
		// the settle hook. So this delivery is put back for later,
		// before anything else would decide on it (a deferral, an
		// unknown type, attempts exhausted, the Lookup), and settles
		// nothing: the settle hook is not told. (A redelivery of the
		// message held here is settled by that copy's ack or nak, the
		// last one the server gets.)
		_ = m.NakWithDelay(c.cfg.ackWait)
		return
	}
	if nb := hdr.Get(HeaderNotBefore); nb != "" {
		if at, err := time.Parse(time.RFC3339Nano, nb); err == nil {
			if d := time.Until(at); d > 0 {
				_ = m.NakWithDelay(d)
				t.Attempt = attempt
				c.settledAside(taskpool.Outcome{Task: t, Attempts: ranBefore(attempt), Status: taskpool.OutcomeNotRun}, ActionDefer)
				return
			}
			if meta.Timestamp.Before(at) && deliveries > 1 {
				// The first delivery was a deferral, not a run.
				deliveries--
				attempt = attemptOf(first, deliveries)
			}
		}
	}
	// As the local scheduler's copy has it, for the settle hook of a
	// delivery failed before it gets there too.
	t.Attempt = attempt
	if c.lookup != nil {
		ok, err := c.known(m, meta, t, attempt)
		if err != nil {
			c.deadLetterNow(m, meta, t, attempt, err)
			return
		}
		if !ok {
			c.unknownType(m, meta, t, attempt)
			return
		}
	}
	maxAttempts := c.policy.Attempts(t)
	if attempt > maxAttempts && deliveries > 1 {
		// Every earlier delivery ended without an outcome: the worker
		// died or lost the lease. (A first delivery past MaxAttempts,
		// enqueued with a high Attempt, runs once, as in process.)
		err := fmt.Errorf("%w: delivered %d times, max %d", ErrAttemptsExhausted, attempt, maxAttempts)
		c.deadLetterNow(m, meta, t, attempt, err)
		return
	}
	f := &flight{msg: m, seq: meta.Sequence.Stream, attempt: attempt, uniqueKey: t.UniqueKey, maxAttempts: t.MaxAttempts,
		last: attempt >= maxAttempts || meta.NumDelivered >= MaxDeliveries}
	c.mu.Lock()
	// Not held since running said so: only the fetch loop adds flights.
	c.flights[t.ID] = f
	c.held.Add(1)
	c.mu.Unlock()

	t.MaxAttempts = 1 // the broker owns retries: the local scheduler must not retry
	t.UniqueKey = ""  // and uniqueness, across processes: no local check
	if g := c.gates[t.Type]; g != nil {
		g.add(f, t) // it submits the task when the global limits allow
		return
	}
	c.submit(f, t)
}

// running reports whether a task with the ID is held here: submitted to
// the local scheduler or waiting for a global limit, and not settled.
// Completion is keyed by ID, so one ID is held once.
func (c *Consumer) running(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.flights[id]
	return ok
}

// submit gives the task of flight f to the local scheduler; it reports
// whether the scheduler took it. A task it refuses is settled: put back
// when the scheduler is closing or full, dead-lettered at once when it is
// invalid (ErrInvalidTask, ErrInvalidType), failed through the retry
// policy for any other refusal.
//
// TrySubmit calls the user's code at a type's first submission: the
// middleware's constructors (whose panic the local scheduler turns into
// an error, a refusal) and the Lookup of a handler that is not a
// Registry. A panic there is a refusal too, with the
// [*taskpool.PanicError]; a runtime.Goexit, which ends the goroutine
// (the fetch loop's goes on on another, see runLoop; a global limit's
// calls submit aside), is a refusal with an error wrapping
// [taskpool.ErrHandlerExited], settled on its way out (the task was not
// taken: the user's code runs before the local scheduler takes a task),
// and dead-lettered, as the error is not retried (taskpool.Retryable), as
// a handler's Goexit is not.
func (c *Consumer) submit(f *flight, t taskpool.Task) (took bool) {
	exited := true // in TrySubmit
	defer func() {
		if !exited {
			return
		}
		if v := recover(); v != nil {
			c.logError("natsbroker: panic in the local scheduler's submit", "queue", c.cfg.queue, "type", t.Type, "panic", valueText(v))
			c.refused(f, t, panicked(nil, fmt.Sprintf("natsbroker: submit of a task of type %q panicked", t.Type), v))
			took = false
			return
		}
		c.logError("natsbroker: runtime.Goexit called in the local scheduler's submit", "queue", c.cfg.queue, "type", t.Type)
		c.refused(f, t, fmt.Errorf("natsbroker: submit of a task of type %q called runtime.Goexit (a middleware's constructor or the handler's Lookup): %w", t.Type, taskpool.ErrHandlerExited))
	}()
	err := c.sched.TrySubmit(t)
	exited = false
	if err == nil {
		return true
	}
	if errors.Is(err, taskpool.ErrSchedulerClosed) || errors.Is(err, taskpool.ErrQueueFull) {
		c.putBack(f, t, err)
		return false
	}
	c.refused(f, t, err)
	return false
}

// refused settles the delivery of flight f, whose task t the local
// scheduler refused with err (see submit).
func (c *Consumer) refused(f *flight, t taskpool.Task, err error) {
	c.mu.Lock()
	delete(c.flights, t.ID)
	c.mu.Unlock()
	c.unhold()
	// An invalid task (Task.Validate's rules, which a producer of this
	// version applies, but not another's, or a custom codec) is refused
	// by every delivery, as Submit refuses it in process: dead-lettered
	// now rather than retried. Any other refusal (a type a handler
	// without Lookup rejects) goes through the retry policy. Aside: the
	// Backoff and the settle hook may call runtime.Goexit.
	if errors.Is(err, taskpool.ErrInvalidTask) || errors.Is(err, taskpool.ErrInvalidType) {
		f.last = true
	}
	aside(func() {
		c.finish(f, taskpool.Outcome{Task: t, Err: err, Attempts: ranBefore(f.attempt), Status: taskpool.OutcomeFailed})
	})
}

// putBack releases the task of flight f, which did not start, to the
// server for any consumer to run.
func (c *Consumer) putBack(f *flight, t taskpool.Task, err error) {
	c.mu.Lock()
	delete(c.flights, t.ID)
	c.mu.Unlock()
	c.unhold()
	_ = f.msg.Nak()
	f.restore(&t)
	c.settledAside(taskpool.Outcome{Task: t, Err: err, Attempts: ranBefore(f.attempt), Status: taskpool.OutcomeNotRun}, ActionRelease)
}

// unknownType settles a delivery of a type the consumer has no handler
// for: it is put back until the grace, counted from when the task was
// stored, has passed and it was delivered at least twice, then
// dead-lettered with ErrNoHandler.
func (c *Consumer) unknownType(m jetstream.Msg, meta *jetstream.MsgMetadata, t taskpool.Task, attempt int) {
	grace := c.cfg.unknownGrace
	age := time.Since(meta.Timestamp)
	if (age < grace || meta.NumDelivered < 2) && meta.NumDelivered < MaxDeliveries {
		_ = m.NakWithDelay(min(max(grace-age, grace/4), grace))
		c.settledAside(taskpool.Outcome{Task: t, Err: fmt.Errorf("%w: %q", taskpool.ErrNoHandler, t.Type), Attempts: ranBefore(attempt), Status: taskpool.OutcomeNotRun}, ActionRetry)
		return
	}
	err := fmt.Errorf("%w: %q (after %v)", taskpool.ErrNoHandler, t.Type, age.Round(time.Millisecond))
	c.deadLetterNow(m, meta, t, attempt, err)
}

// deadLetterNow dead-letters a delivery of t that did not reach the local
// scheduler, with err, releases its unique key once it is dead-lettered,
// and tells the settle hook.
func (c *Consumer) deadLetterNow(m jetstream.Msg, meta *jetstream.MsgMetadata, t taskpool.Task, attempt int, err error) {
	a := c.deadLetter(m, meta.Sequence.Stream, t, attempt, nil, err)
	if a == ActionDeadLetter && t.UniqueKey != "" {
		c.release(t.UniqueKey, t.ID)
	}
	c.settledAside(taskpool.Outcome{Task: t, Err: err, Attempts: ranBefore(attempt), Status: taskpool.OutcomeFailed}, a)
}

// badPayload dead-letters a delivery the codec could not decode, with
// err, which wraps ErrBadPayload, and tells the settle hook.
func (c *Consumer) badPayload(m jetstream.Msg, meta *jetstream.MsgMetadata, attempt int, err error) {
	a := c.deadLetter(m, meta.Sequence.Stream, taskpool.Task{}, attempt, nil, err)
	c.settledAside(taskpool.Outcome{Err: err, Attempts: ranBefore(attempt), Status: taskpool.OutcomeFailed}, a)
}

// decode decodes the task of m with the codec. A Decode that panics
// makes the payload bad, as a Decode error does: the error wraps
// ErrBadPayload and the [*taskpool.PanicError]. One that calls
// runtime.Goexit ends the fetch loop's goroutine (runLoop goes on on
// another): on its way out, the delivery is dead-lettered with an error
// wrapping ErrBadPayload.
func (c *Consumer) decode(m jetstream.Msg, meta *jetstream.MsgMetadata, attempt int) (t taskpool.Task, err error) {
	exited := true
	defer func() {
		if v := recover(); v != nil {
			c.logError("natsbroker: panic in codec Decode", "queue", c.cfg.queue, "panic", valueText(v))
			t, err = taskpool.Task{}, panicked(ErrBadPayload, ErrBadPayload.Error()+": codec Decode panicked", v)
			return
		}
		if exited {
			c.logError("natsbroker: codec Decode called runtime.Goexit", "queue", c.cfg.queue)
			c.badPayload(m, meta, attempt, fmt.Errorf("%w: codec Decode called runtime.Goexit", ErrBadPayload))
		}
	}()
	t, err = c.cfg.codec.Decode(m.Data())
	exited = false
	return t, err
}

// known reports whether the handler has a handler for t's type (its
// Lookup method). A Lookup that panics gives an error wrapping the
// [*taskpool.PanicError], which dispatch dead-letters the task with at
// once, as a task the local scheduler refuses as invalid: every delivery
// would meet the same Lookup. One that calls runtime.Goexit ends the
// fetch loop's goroutine (runLoop goes on on another): on its way out,
// the task is dead-lettered with an error wrapping
// [taskpool.ErrHandlerExited].
func (c *Consumer) known(m jetstream.Msg, meta *jetstream.MsgMetadata, t taskpool.Task, attempt int) (ok bool, err error) {
	exited := true
	defer func() {
		if v := recover(); v != nil {
			c.logError("natsbroker: panic in the handler's Lookup", "queue", c.cfg.queue, "type", t.Type, "panic", valueText(v))
			ok, err = false, panicked(nil, fmt.Sprintf("natsbroker: the handler's Lookup(%q) panicked", t.Type), v)
			return
		}
		if exited {
			c.logError("natsbroker: the handler's Lookup called runtime.Goexit", "queue", c.cfg.queue, "type", t.Type)
			c.deadLetterNow(m, meta, t, attempt, fmt.Errorf("natsbroker: the handler's Lookup(%q) called runtime.Goexit: %w", t.Type, taskpool.ErrHandlerExited))
		}
	}()
	_, ok = c.lookup(t.Type)
	exited = false
	return ok, nil
}

// panicError is the error of a recovered panic of value v, with the
// stack where it was recovered.
func panicError(v any) *taskpool.PanicError {
	return &taskpool.PanicError{Value: v, Stack: debug.Stack()}
}

// panicked is the error of a panic of value v recovered in a guard of the
// fetch loop (or of submit, which a global limit's gate calls aside):
// text, ": " and the [*taskpool.PanicError]'s text, wrapping first (unless
// nil) and the PanicError. fmt.Errorf would format v at once, on the
// fetch loop, where a String or Error method of v that calls
// runtime.Goexit ended the guard before it settled the delivery: the text
// is made by errorText, on a goroutine of its own.
func panicked(first error, text string, v any) error {
	pe := panicError(v)
	e := &textError{text: text + ": " + errorText(pe), errs: []error{pe}}
	if first != nil {
		e.errs = []error{first, pe}
	}
	return e
}

// complete is the local scheduler's completion hook.
func (c *Consumer) complete(out taskpool.Outcome) {
	c.mu.Lock()
	f := c.flights[out.Task.ID]
	delete(c.flights, out.Task.ID)
	c.mu.Unlock()
	if f == nil {
		return
	}
	// Deferred: the capacity is given back even when finish does not
	// return, a Backoff (in retry) or the settle hook having panicked or
	// called runtime.Goexit after the delivery was settled. Without it
	// the consumer would count the task as held for as long as it runs,
	// and fetch one task fewer each time.
	defer c.unhold()
	if f.gate != nil {
		f.gate.giveBack(f.slot, f.lease) // the handler returned: no longer running
	}
	c.finish(f, out)
}

// unhold gives back the capacity of a task no longer held, and wakes the
// fetch loop when enough is free for a fetch. Every task that leaves
// flights does, on whichever goroutine it leaves: a task a global limit's
// loop submits and the local scheduler refuses leaves there, and a fetch
// loop that had no capacity left (no long poll outstanding) would
// otherwise wait for a completion that never comes.
func (c *Consumer) unhold() {
	if held := c.held.Add(-1); held <= c.refillAt.Load() {
		c.wake()
	}
}

// wake tells the fetch loop to look again, unless it has been told
// already: capacity was freed, or a retry will be due.
func (c *Consumer) wake() {
	select {
	case c.freed <- struct{}{}:
	default:
	}
}

// taskBack is the consumer's outermost middleware: it gives a task back
// the fields the consumer changed for the local scheduler, from its flight
// (flight.restore), so that middleware and handlers see the task as it was
// enqueued.
func (c *Consumer) taskBack(next taskpool.Handler) taskpool.Handler {
	return taskpool.HandlerFunc(func(ctx context.Context, t taskpool.Task) error {
		c.mu.Lock()
		if f := c.flights[t.ID]; f != nil {
			f.restore(&t)
		}
		c.mu.Unlock()
		return next.HandleTask(ctx, t)
	})
}

// lendHook is the local scheduler's lend hook: while a handler lends its
// worker (taskpool.Lend, or WaitResult), the local scheduler
// runs one worker more and the consumer holds one message more, so that
// handlers waiting for tasks of the queue never leave the consumer with
// no room to fetch and run those.
func (c *Consumer) lendHook(delta int) {
	c.lent.Add(int32(delta))
	if delta > 0 {
		c.wake()
	}
}

// finish settles a delivery from its task's outcome. out.Attempts is left
// as the local scheduler set it: the delivery count if the handler ran,
// one less if it did not (the task was submitted with Attempt set to the
// delivery count).
func (c *Consumer) finish(f *flight, out taskpool.Outcome) {
	f.restore(&out.Task)
	var a Action
	switch {
	case out.Err == nil:
		// The result is stored before the ack: a crash in between runs
		// the task again rather than losing its result.
		if err := c.storeResult(f.msg, f.seq, out.Task.ID, out.Result, nil, f.attempt, false); err != nil {
			c.nakAfterBackoff(f.msg, out.Task, f.attempt)
			a = ActionRetry
			break
		}
		_ = f.msg.Ack()
		a = ActionAck
	case c.cutShort() && (errors.Is(out.Err, taskpool.ErrSchedulerClosed) || errors.Is(out.Err, context.Canceled)):
		// Stop's context ended: the local scheduler cancelled the
		// handler's context, or left the task unrun. Before that, a
		// graceful Stop settles a handler's own error (even one wrapping
		// context.Canceled) as any other, as in process.
		_ = f.msg.Nak()
		a = ActionRelease
	case !taskpool.Retryable(out.Err) || f.last:
		a = c.deadLetter(f.msg, f.seq, out.Task, f.attempt, out.Result, out.Err)
	default:
		a = c.retry(f, out)
	}
	c.finished(f, out, a)
}

// finished is what follows a delivery's settlement: its unique key is
// released once the task is done for good, and the settle hook is told.
func (c *Consumer) finished(f *flight, out taskpool.Outcome, a Action) {
	if f.uniqueKey != "" && (a == ActionAck || a == ActionDeadLetter) {
		c.release(f.uniqueKey, out.Task.ID)
	}
	c.settled(out, a)
}

// retry naks a failed delivery for its next attempt, after its Backoff's
// wait. A Backoff that panics, or that calls runtime.Goexit, ends the
// retries, as in process: the delivery is dead-lettered with the run's
// error. Goexit cannot be stopped, but the deferred call settles the
// delivery on its way out (finish does not go on), so that the message is
// not held, its lease extended, for as long as the consumer runs.
func (c *Consumer) retry(f *flight, out taskpool.Outcome) (a Action) {
	t := out.Task // restored by finish: the task's own MaxAttempts
	exited := true
	defer func() {
		if exited {
			c.logError("natsbroker: Backoff called runtime.Goexit", "queue", c.cfg.queue, "type", t.Type)
			c.finished(f, out, c.deadLetter(f.msg, f.seq, out.Task, f.attempt, out.Result, out.Err))
		}
	}()
	d, err := c.policy.Wait(t, f.attempt)
	exited = false
	if err != nil {
		// A Backoff that panics: the task is not retried, as in process.
		c.logError("natsbroker: panic in Backoff", "queue", c.cfg.queue, "type", t.Type, "error", err)
		return c.deadLetter(f.msg, f.seq, out.Task, f.attempt, out.Result, errors.Join(out.Err, err))
	}
	_ = f.msg.NakWithDelay(d)
	c.retryDue(f.msg.Subject(), d)
	return ActionRetry
}

// nakAfterBackoff puts m, a delivery of t whose outcome could not be
// stored, back for a redelivery after the wait retry would give it: the
// retry policy's for attempt (t's type's backoff in the registry, else
// WithBackoff or the scheduler-wide one; for a bad payload, whose t is
// zero, the latter). A Backoff that panics or calls runtime.Goexit gives
// the built-in backoff's wait instead. It is called outside retry's
// guard, on a worker or the fetch loop, where a panic would leave the
// delivery unsettled (run again after the ack wait) or crash the
// process: Goexit is aside, so that the caller goes on and tells the
// settle hook.
func (c *Consumer) nakAfterBackoff(m jetstream.Msg, t taskpool.Task, attempt int) {
	var (
		d   time.Duration
		err error // a panic's, as a *taskpool.PanicError
	)
	exited := true
	aside(func() {
		d, err = c.policy.Wait(t, attempt) // recovers a panic
		exited = false
	})
	if exited || err != nil {
		c.logError("natsbroker: Backoff panicked or called runtime.Goexit; the built-in backoff is used",
			"queue", c.cfg.queue, "type", t.Type, "goexit", exited, "error", err)
		d = defaultBackoff(attempt)
	}
	_ = m.NakWithDelay(d)
}

// attemptOf is the attempt number of a task enqueued as attempt first at
// its deliveries-th delivery. It stops at math.MaxInt: a task enqueued
// with the largest Attempt would otherwise wrap at its redelivery to a
// negative attempt, which the local scheduler refuses, and go round until
// MaxDeliveries instead of being dead-lettered as exhausted.
func attemptOf(first, deliveries int) int {
	if first-1 > math.MaxInt-deliveries {
		return math.MaxInt
	}
	return first - 1 + deliveries
}

// ranBefore is Outcome.Attempts for a delivery whose handler did not run:
// as the core counts a task submitted with Attempt n that never runs, the
// n-1 runs before, every earlier delivery counted as a run.
func ranBefore(attempt int) int { return max(attempt-1, 0) }

// settled tells the settle hook. A panic in it is logged, as a completion
// hook's is in process: it runs on the fetch loop too, which a panic would
// take down with the process.
func (c *Consumer) settled(out taskpool.Outcome, a Action) {
	if c.cfg.settle == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			c.logError("natsbroker: panic in settle hook", "queue", c.cfg.queue, "id", out.Task.ID,
				"action", a.String(), "panic", valueText(v), "stack", string(debug.Stack()))
		}
	}()
	c.cfg.settle(out, a)
}

// settledAside tells the settle hook of a delivery settled on one of the
// consumer's own goroutines (the fetch loop, a global limit's, Stop's),
// as aside says.
func (c *Consumer) settledAside(out taskpool.Outcome, a Action) {
	if c.cfg.settle == nil {
		return
	}
	aside(func() { c.settled(out, a) })
}

// logError logs at Error, aside: every such log is on a path where the
// user's code panicked or called runtime.Goexit, often in a deferred call
// that has yet to settle the delivery or go on with the fetch loop, and
// a Logger that calls Goexit itself (a test's that fails the test on an
// Error: t.FailNow) would end that call there. Aside, it ends only the
// log.
func (c *Consumer) logError(msg string, args ...any) {
	aside(func() { c.cfg.logger.Error(msg, args...) })
}

// aside runs fn, which calls the user's settle hook or Backoff, on a
// goroutine of its own and waits for it. On a worker the local scheduler
// survives a runtime.Goexit there (it replaces the worker); on one of the
// consumer's own goroutines Goexit would end the fetch loop, a global
// limit's loop or Stop's caller, so that the consumer would fetch no
// more, or Stop not return: aside, it ends only fn, whose deferred calls
// still settle the delivery (see retry). Only deliveries that never reach
// a worker, and the submissions of a global limit's loop, pay for the
// goroutine. (The fetch loop's own calls to the user's code, which every
// delivery makes, are not aside: runLoop goes on after a Goexit there.)
func aside(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}

func (c *Consumer) release(key, id string) {
	if len(key) > taskpool.MaxIDLength {
		// Not one this version's producers take, and its KV key could
		// make the server close the connection: an earlier version's
		// producer's, it expires with the bucket TTL.
		c.cfg.logger.Warn("natsbroker: unique key over MaxIDLength not released; it expires with the bucket TTL",
			"queue", c.cfg.queue, "id", id, "bytes", len(key))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ackWait)
	defer cancel()
	if err := c.q.releaseUnique(ctx, key, id); err != nil {
		c.cfg.logger.Warn("natsbroker: unique key not released; it expires with the bucket TTL",
			"queue", c.cfg.queue, "id", id, "error", err)
	}
}

// deadLetter copies m to the dead-letter stream with the error and the
// delivery count, then terminates it. If the copy is not confirmed the
// message is put back instead, to be dead-lettered on its next delivery:
// a task is never dropped without a trace. t is the delivery's task (zero
// for a bad payload); result is what the last run set, stored with the
// error for a waiter as in process.
func (c *Consumer) deadLetter(m jetstream.Msg, seq uint64, t taskpool.Task, attempts int, result any, cause error) Action {
	id := t.ID
	// The result first, as for an ack: see storeResult.
	if err := c.storeResult(m, seq, id, result, cause, attempts, true); err != nil {
		c.nakAfterBackoff(m, t, attempts)
		return ActionRetry
	}
	dm := &nats.Msg{Subject: c.q.dead, Data: m.Data(), Header: make(nats.Header)}
	for k, v := range m.Headers() {
		if strings.HasPrefix(k, "Nats-") {
			continue // server headers: ID, schedule, rollup
		}
		dm.Header[k] = v
	}
	seqStr := strconv.FormatUint(seq, 10)
	reason := headerValue(errorText(cause)) // the error header and the termination reason
	dm.Header.Set(jetstream.MsgIDHeader, "dead-"+seqStr)
	dm.Header.Set(HeaderError, reason)
	dm.Header.Set(HeaderAttempts, strconv.Itoa(attempts))
	dm.Header.Set(HeaderFailedAt, formatTime(time.Now()))
	dm.Header.Set(HeaderSubject, m.Subject())
	dm.Header.Set(HeaderSequence, seqStr)
	if id != "" {
		dm.Header.Set(HeaderTaskID, id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ackWait)
	defer cancel()
	_, _, err := publish(ctx, c.q.js, c.cfg.logger, dm)
	if errors.Is(err, ErrMaxPayload) {
		// The task fitted, its copy with the dead-letter headers does
		// not: store the dead letter without the payload and the
		// original headers. HeaderSequence and HeaderTaskID refer to the
		// original, HeaderDropped says what was left out. Without this
		// the task would be put back and redelivered for ever.
		small := &nats.Msg{Subject: c.q.dead, Header: make(nats.Header)}
		for _, k := range []string{jetstream.MsgIDHeader, HeaderError, HeaderAttempts, HeaderFailedAt, HeaderSubject, HeaderSequence, HeaderTaskID} {
			if v := dm.Header.Get(k); v != "" {
				small.Header.Set(k, v)
			}
		}
		hdrSize := 0
		for k, vs := range m.Headers() {
			for _, v := range vs {
				hdrSize += len(k) + len(v) + 4
			}
		}
		small.Header.Set(HeaderDropped, fmt.Sprintf("payload %d bytes, headers %d bytes: larger than the server's max payload with the dead-letter headers", len(m.Data()), hdrSize))
		c.cfg.logger.Warn("natsbroker: dead letter too large; storing it without its payload and original headers",
			"queue", c.cfg.queue, "id", id, "seq", seq, "payload_bytes", len(m.Data()), "error", err)
		_, _, err = publish(ctx, c.q.js, c.cfg.logger, small)
	}
	if err != nil {
		c.cfg.logger.Warn("natsbroker: dead letter not stored; task put back",
			"queue", c.cfg.queue, "seq", seq, "error", err)
		c.nakAfterBackoff(m, t, attempts)
		return ActionRetry
	}
	_ = m.TermWithReason(reason)
	// The text, not cause: a logger would call its Error method, which
	// errorText guards.
	c.cfg.logger.Warn("natsbroker: dead-lettered", "queue", c.cfg.queue, "id", id, "attempts", attempts, "error", reason)
	return ActionDeadLetter
}

// keepAlive extends the lease of every held message every AckWait/2: one
// goroutine per consumer, not one per task.
func (c *Consumer) keepAlive() {
	defer close(c.tickDone)
	tick := time.NewTicker(c.cfg.ackWait / 2)
	defer tick.Stop()
	var msgs []jetstream.Msg
	for {
		select {
		case <-tick.C:
		case <-c.tickQuit:
			return
		}
		c.leaseBeat.Store(time.Now().UnixNano())
		c.mu.Lock()
		for _, f := range c.flights {
			msgs = append(msgs, f.msg)
		}
		c.mu.Unlock()
		for i, m := range msgs {
			_ = m.InProgress() // fails only for a message settled meanwhile
			msgs[i] = nil
		}
		msgs = msgs[:0]
	}
}

// headerValue makes s safe as a header value: one line, bounded length.
func headerValue(s string) string {
	s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	if len(s) > 1024 {
		s = s[:1024]
	}
	return s
}
