package natsbroker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/taskpool/taskpool"
)

// Limit bounds the tasks of one type across every consumer of a queue; see
// [WithGlobalLimit]. A zero field sets no limit.
type Limit struct {
	// Concurrency is the most tasks of the type that run at once, counted
	// over every consumer process of the queue.
	Concurrency int
	// Rate is the most starts per second of the type's tasks, counted
	// over every consumer process of the queue.
	Rate float64
	// Burst is how many starts may follow each other without the Rate's
	// spacing after a quiet spell. The default, and 0, is 1: starts are
	// at least 1/Rate apart. It needs Rate.
	Burst int
}

// MaxGlobalConcurrency is the largest [Limit.Concurrency].
const MaxGlobalConcurrency = 10_000

// maxRateSpan bounds Burst/Rate, the time a Limit's rate state reaches
// ahead: beyond it the start interval (or Burst of them) overflows a
// time.Duration or the stored time's Unix nanoseconds.
const maxRateSpan = 10 * 365 * 24 * time.Hour

// WithGlobalLimit bounds the tasks of type typ over every consumer
// process of the queue together, where [taskpool.WithConcurrencyLimit] and
// [taskpool.WithRateLimit] in a consumer's registry bound one process.
// Give the same limit to every consumer of the queue that runs typ.
//
// It is built on two key-value buckets of the queue. A task takes one of
// Concurrency slots, a key in bucket taskpool_slots_<queue>, before it
// starts and gives it back when its handler returns; the key is a lease
// that the consumer renews while the task runs and that the server
// expires after the bucket's TTL (the ack wait of the consumer that
// created it) when the process dies, so a crashed process holds its slots
// no longer than it holds its tasks. Starts are paced with a generic cell
// rate algorithm whose state is a key in bucket taskpool_rates_<queue>,
// updated by compare-and-set, so starts over all processes are at least
// 1/Rate apart after the first Burst; the processes' clocks are assumed
// to agree (NTP), and a skew between them shifts the spacing by as much.
// A start is when the consumer hands the task to its workers: a task
// that then waits for a busy worker runs that much later.
//
// A task waiting for a slot or a start is held by its consumer, its lease
// kept alive, without a worker: the consumer's workers go on with tasks of
// other types. It does count towards the consumer's capacity (workers
// plus prefetch), so a consumer whose queue is mostly of one limited type
// holds about its capacity of them; run such a type on a queue of its own
// when that matters. A consumer that is stopped gracefully runs the tasks
// it holds, waiting ones included, within Stop's context; when the
// context ends first the waiting ones are put back (that delivery then
// counts as an attempt, as for any task a Stop past its deadline
// interrupts). Give every consumer the same limit: consumers that give
// different ones enforce the larger concurrency, and share one rate
// state that each moves on by its own interval.
//
// It returns an error wrapping [ErrInvalidOption] for an empty typ or one
// over [taskpool.MaxIDLength] bytes (a key of the limits' buckets), a
// Limit with no limit, a negative field, a Concurrency above
// [MaxGlobalConcurrency], a Rate that is not finite or above 1e9, a Burst
// without a Rate, a Burst/Rate above ten years (fewer than one start per
// ten years), or typ given twice. Consumer only.
func WithGlobalLimit(typ string, l Limit) Option {
	return consumerOption("WithGlobalLimit", func(c *config) error {
		switch {
		case typ == "":
			return invalid("global limit type", `""`)
		case len(typ) > taskpool.MaxIDLength:
			// A key of the limits' buckets: as long as an ID may be.
			return invalid("global limit type", fmt.Sprintf("of %d bytes, at most %d", len(typ), taskpool.MaxIDLength))
		case l.Concurrency < 0 || l.Concurrency > MaxGlobalConcurrency:
			return invalid("global concurrency of "+typ, l.Concurrency)
		case l.Rate < 0 || l.Rate > 1e9 || math.IsNaN(l.Rate) || math.IsInf(l.Rate, 0):
			return invalid("global rate of "+typ, l.Rate)
		case l.Burst < 0 || (l.Burst > 0 && l.Rate == 0):
			return invalid("global burst of "+typ, l.Burst)
		case l.Rate > 0 && float64(max(l.Burst, 1))/l.Rate > maxRateSpan.Seconds():
			return invalid("global rate and burst of "+typ, fmt.Sprintf("%d/%g per second", max(l.Burst, 1), l.Rate))
		case l.Concurrency == 0 && l.Rate == 0:
			return invalid("global limit of "+typ, "none")
		}
		if _, dup := c.limits[typ]; dup {
			return invalid("global limit type given twice", typ)
		}
		if c.limits == nil {
			c.limits = make(map[string]Limit)
		}
		c.limits[typ] = l
		return nil
	})
}

// limitOpTimeout bounds one key-value request of a gate.
const limitOpTimeout = 5 * time.Second

// limitRetry is how long a gate waits after a failed request.
const limitRetry = 500 * time.Millisecond

// openLimits opens the buckets of the global limits, creating them when
// they do not exist, and returns the slot leases' TTL.
func openLimits(ctx context.Context, js jetstream.JetStream, c *config, q *queue) (time.Duration, error) {
	ttl := c.ackWait
	want := jetstream.KeyValueConfig{
		Bucket:      q.slotsBucket,
		Description: "taskpool global concurrency slots of queue " + c.queue,
		TTL:         ttl,
		// Markers make a lease that expires visible to the watchers, so
		// a slot freed by a crash is taken at once.
		LimitMarkerTTL: max(ttl, time.Second),
		Storage:        c.storage,
		Replicas:       c.replicas,
		Placement:      c.placement,
	}
	var err error
	q.slots, err = ensureBucket(ctx, js, c, 0, want)
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		// An older server: the gates find expired leases by polling.
		want.LimitMarkerTTL = 0
		q.slots, err = ensureBucket(ctx, js, c, 0, want)
	}
	if err != nil {
		return 0, fmt.Errorf("natsbroker: bucket %s: %w", want.Bucket, err)
	}
	st, err := request(ctx, c.logger, "bucket status", func(ctx context.Context) (jetstream.KeyValueStatus, error) {
		return q.slots.Status(ctx)
	})
	if err != nil {
		return 0, fmt.Errorf("natsbroker: bucket %s: %w", want.Bucket, err)
	}
	if t := st.TTL(); t > 0 {
		ttl = t // the bucket's, whoever created it
	}
	rates := jetstream.KeyValueConfig{
		Bucket:      q.ratesBucket,
		Description: "taskpool global rate limits of queue " + c.queue,
		Storage:     c.storage,
		Replicas:    c.replicas,
		Placement:   c.placement,
	}
	if q.rates, err = ensureBucket(ctx, js, c, 0, rates); err != nil {
		return 0, fmt.Errorf("natsbroker: bucket %s: %w", rates.Bucket, err)
	}
	return ttl, nil
}

// gate holds the delivered tasks of one globally limited type until each
// has a slot and a start, then submits it to the local scheduler. Its
// goroutine (run) is the one owner of the type's slots and rate state in
// this process: it takes, renews and gives back the slot leases, and it
// decides every waiting task's fate, so no two goroutines race for a
// lease or a task.
type gate struct {
	c        *Consumer
	typ      string
	lim      Limit
	prefix   string        // slot keys: prefix.<slot>
	rateKey  string        // in the rates bucket
	interval time.Duration // between starts at Rate
	slack    time.Duration // (Burst-1) intervals: how far ahead the rate may be booked
	ttl      time.Duration // of a slot lease

	// ops is the parent of the gate's requests: Stop cuts it a moment
	// after its context ended, so that requests to a server that does not
	// answer (a slot given back per interrupted task) do not hold Stop up
	// by a request timeout each.
	ops context.Context
	cut context.CancelFunc

	mu      sync.Mutex
	waiting []gated       // oldest first
	n       int           // waiting, and the head that run is admitting
	freed   []slotRef     // leases given back by finished tasks
	empty   chan struct{} // closed by run when n is 0: Stop waits for it
	wake    chan struct{} // buffered 1
	abandon chan struct{} // closed by Stop when its context ended
	putBack int           // tasks put back after abandon
	quit    chan struct{} // closed by Stop once the local scheduler stopped
	done    chan struct{} // closed when run returns

	// Owned by run.
	head     gated
	headSlot int                // -1 while the head has none
	headID   uint64             // the lease of headSlot (its creation revision)
	taken    map[int]bool       // slots seen held, by anyone
	mine     map[int]slotLease  // slots held here
	unsure   map[int]unsureSlot // slots whose Create got no answer: they may be held here
	rateRev  uint64             // the rate key's revision last seen
	rateTAT  time.Time          // and its theoretical arrival time
	failing  bool               // the last request failed: logged once
	waitingN *atomic.Int64      // the consumer's count, for Health
	updates  <-chan jetstream.KeyValueEntry
}

type gated struct {
	f *flight
	t taskpool.Task
}

// slotHolder is the value of a slot's key: who holds it.
type slotHolder struct {
	Task   string `json:"task"`
	Holder string `json:"holder"`
	// Lease tells this lease's value from any other's, so that a request
	// applied by the server whose answer was lost is recognised.
	Lease uint64 `json:"lease,omitempty"`
}

type slotLease struct {
	id  uint64 // the revision that created it: tells one lease of a slot from the next
	rev uint64
	val []byte
}

// unsureSlot is a Create of a slot's key that got no answer (a request
// timeout, a lost connection): the server may have applied it, and then
// the slot is held with val, for task, by no one who knows it, until the
// TTL.
type unsureSlot struct {
	val  []byte
	task string
}

// slotRef names one lease of a slot: a slot number alone may name a later
// lease of the same slot, taken after this one was lost.
type slotRef struct {
	slot int
	id   uint64
}

func newGate(c *Consumer, typ string, l Limit, ttl time.Duration) *gate {
	g := &gate{
		c: c, typ: typ, lim: l, ttl: ttl,
		prefix:   uniqueKey(typ),
		rateKey:  uniqueKey(typ),
		headSlot: -1,
		wake:     make(chan struct{}, 1),
		abandon:  make(chan struct{}),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		taken:    make(map[int]bool),
		mine:     make(map[int]slotLease),
		unsure:   make(map[int]unsureSlot),
		waitingN: &c.gatedN,
	}
	g.ops, g.cut = context.WithCancel(context.Background())
	if l.Rate > 0 {
		// WithGlobalLimit bounds Burst/Rate, so neither overflows.
		g.interval = time.Duration(float64(time.Second) / l.Rate)
		g.slack = time.Duration(max(l.Burst, 1)-1) * g.interval
	}
	return g
}

// add files a delivered task to wait for its slot and start.
func (g *gate) add(f *flight, t taskpool.Task) {
	g.mu.Lock()
	g.waiting = append(g.waiting, gated{f, t})
	g.n++
	g.mu.Unlock()
	g.waitingN.Add(1)
	g.poke()
}

// giveBack returns the slot lease of a task whose handler returned.
func (g *gate) giveBack(slot int, id uint64) {
	g.mu.Lock()
	g.freed = append(g.freed, slotRef{slot, id})
	g.mu.Unlock()
	g.poke()
}

// opCtx bounds one request of the gate.
func (g *gate) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(g.ops, limitOpTimeout)
}

func (g *gate) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// drain waits until every task the gate holds was submitted to the local
// scheduler. When ctx ends first, the gate puts them back; drain returns
// how many.
func (g *gate) drain(ctx context.Context) int {
	g.mu.Lock()
	if g.n == 0 {
		g.mu.Unlock()
		return 0
	}
	ch := make(chan struct{})
	g.empty = ch
	g.mu.Unlock()
	g.poke()
	select {
	case <-ch:
	case <-ctx.Done():
		close(g.abandon)
		<-ch
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.putBack
}

// close tells run to give back the slots still held and return (done is
// closed then); the local scheduler has stopped, so no task of the gate
// runs any more. Stop closes every gate before it waits for any, so that
// gates that cannot reach the server wait out their requests together.
func (g *gate) close() {
	close(g.quit)
}

func (g *gate) run() {
	defer close(g.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if g.lim.Concurrency > 0 {
		w, err := g.c.q.slots.Watch(ctx, g.prefix+".*")
		if err != nil {
			g.warn("watch slots", err)
		} else {
			defer func() { _ = w.Stop() }()
			g.updates = w.Updates()
		}
	}
	renew := time.NewTicker(max(g.ttl/3, 10*time.Millisecond))
	defer renew.Stop()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	abandon := g.abandon
	for {
		select {
		case e, ok := <-g.updates:
			if !ok {
				g.updates = nil
			} else if e != nil {
				g.seen(e)
			}
		case <-g.wake:
		case <-timer.C:
		case <-renew.C:
			g.renew()
			// A lease that expired unseen (a server without limit
			// markers, a watcher that missed it) frees its slot: look
			// again at every slot not held here.
			for s := range g.taken {
				if _, ok := g.mine[s]; !ok {
					delete(g.taken, s)
				}
			}
			if len(g.unsure) > 0 && (g.head.f == nil || g.headSlot >= 0) {
				// No task waits for a slot to settle them: a Create
				// applied without an answer, for a task that has gone on
				// with another slot, is given back now, not at the TTL.
				g.settleUnsure("")
			}
		case <-abandon:
			abandon = nil
			g.putBackAll()
		case <-g.quit:
			g.giveBackFreed()
			for s, l := range g.mine {
				g.release(s, l.id)
			}
			g.settleUnsure("")
			return
		}
		g.giveBackFreed()
		if abandon == nil {
			continue
		}
		if d := g.admit(); d > 0 {
			timer.Reset(d)
		}
	}
}

// admit submits waiting tasks, oldest first, while slots and the rate
// allow. It returns how long until it should try again, or 0 to wait for
// an event (a slot freed, a new task).
func (g *gate) admit() time.Duration {
	for {
		if g.head.f == nil {
			g.mu.Lock()
			if len(g.waiting) == 0 {
				g.mu.Unlock()
				return 0
			}
			g.head = g.waiting[0]
			g.waiting[0] = gated{}
			g.waiting = g.waiting[1:]
			g.mu.Unlock()
		}
		if g.lim.Concurrency > 0 && g.headSlot < 0 {
			s, err := g.takeSlot()
			if err != nil {
				g.warn("take a slot", err)
				return limitRetry
			}
			if s < 0 {
				if g.updates == nil || len(g.unsure) > 0 {
					return limitRetry // no watcher, or a slot to look up: poll
				}
				return 0
			}
			g.headSlot, g.headID = s, g.mine[s].id
		}
		if g.lim.Rate > 0 {
			d, err := g.takeStart()
			if err != nil {
				g.warn("take a start", err)
				return limitRetry
			}
			if d > 0 {
				return d
			}
		}
		if s := g.headSlot; s >= 0 {
			if l, ok := g.mine[s]; !ok || l.id != g.headID {
				// The head's lease was lost while it waited for its
				// start: it needs a slot again.
				g.headSlot = -1
				continue
			}
		}
		g.failing = false
		h, s, id := g.head, g.headSlot, g.headID
		g.head, g.headSlot, g.headID = gated{}, -1, 0
		if s >= 0 {
			h.f.gate, h.f.slot, h.f.lease = g, s, id
		}
		// Aside: the user's code that submit may call (a middleware's
		// constructor) may call runtime.Goexit, which would end this
		// loop; submit settles the task on its way out, untaken.
		took := false
		aside(func() { took = g.c.submit(h.f, h.t) })
		if !took && s >= 0 {
			g.release(s, id)
		}
		g.settledOne()
	}
}

// settledOne counts out a task that left the gate.
func (g *gate) settledOne() {
	g.waitingN.Add(-1)
	g.mu.Lock()
	g.n--
	if g.n == 0 && g.empty != nil {
		close(g.empty)
		g.empty = nil
	}
	g.mu.Unlock()
}

// putBackAll releases every waiting task to the server: Stop's context
// ended before they could start.
func (g *gate) putBackAll() {
	g.mu.Lock()
	rest := g.waiting
	g.waiting = nil
	g.mu.Unlock()
	if g.head.f != nil {
		rest = append([]gated{g.head}, rest...)
		g.head = gated{}
		if g.headSlot >= 0 {
			g.release(g.headSlot, g.headID)
			g.headSlot, g.headID = -1, 0
		}
	}
	g.mu.Lock()
	g.putBack += len(rest)
	g.mu.Unlock()
	for _, w := range rest {
		g.c.putBack(w.f, w.t, taskpool.ErrSchedulerClosed)
		g.settledOne()
	}
}

func (g *gate) key(s int) string { return g.prefix + "." + strconv.Itoa(s) }

// takeSlot creates the key of a slot not seen held, starting at a random
// one. It returns -1 when every slot is held.
func (g *gate) takeSlot() (int, error) {
	n := g.lim.Concurrency
	first := rand.IntN(n)
	val, err := json.Marshal(slotHolder{Task: g.head.t.ID, Holder: g.c.name, Lease: rand.Uint64() | 1})
	if err != nil {
		return -1, err
	}
	if s := g.settleUnsure(g.head.t.ID); s >= 0 {
		return s, nil
	}
	for k := range n {
		s := (first + k) % n
		if _, ok := g.unsure[s]; ok || g.taken[s] {
			// An unsure slot is looked up, not created again: a second
			// Create without an answer would hide the first's value.
			continue
		}
		ctx, cancel := g.opCtx()
		rev, err := g.c.q.slots.Create(ctx, g.key(s), val)
		cancel()
		switch {
		case err == nil:
			g.hold(s, rev, val)
			return s, nil
		case errors.Is(err, jetstream.ErrKeyExists), isWrongLastSeq(err):
			// Held. On a replicated bucket, a Create that loses the race
			// for a deleted key fails with 10164, which nats.go does not
			// wrap in ErrKeyExists.
			g.taken[s] = true
		default:
			// No answer: the Create may have been applied all the same,
			// and the slot held with val by no one who knows it, until
			// the TTL. Look at once, and again before the next try if
			// the look fails too.
			g.unsure[s] = unsureSlot{val: val, task: g.head.t.ID}
			if s := g.settleUnsure(g.head.t.ID); s >= 0 {
				return s, nil
			}
			return -1, err
		}
	}
	return -1, nil
}

// hold records slot s as held here, by the lease its key's revision rev
// created with val.
func (g *gate) hold(s int, rev uint64, val []byte) {
	g.taken[s] = true
	g.mine[s] = slotLease{id: rev, rev: rev, val: val}
}

// settleUnsure looks up the slots whose Create got no answer. One that
// holds this process's value is its lease: it returns the first such slot
// created for task, as held here, and gives back the others (created for
// a task no longer waiting, or every one when task is ""). A slot that
// holds anything else, or nothing, was not taken here; one that cannot be
// read stays unsure, and so do the rest after it. It returns -1 when it
// keeps none.
func (g *gate) settleUnsure(task string) int {
	kept := -1
	for s, u := range g.unsure {
		ctx, cancel := g.opCtx()
		e, err := g.c.q.slots.Get(ctx, g.key(s))
		switch {
		case err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted):
			// Still unsure, and so are the others: the server does not
			// answer, and each look would wait out its timeout.
			cancel()
			return kept
		case err == nil && e.Operation() == jetstream.KeyValuePut && bytes.Equal(e.Value(), u.val):
			if kept < 0 && task != "" && u.task == task {
				kept = s
				g.hold(s, e.Revision(), u.val)
			} else if err := g.c.q.slots.Delete(ctx, g.key(s), jetstream.LastRevision(e.Revision())); err != nil && !isWrongLastSeq(err) {
				cancel()
				continue // still held here: try again later
			}
		}
		cancel()
		delete(g.unsure, s)
	}
	return kept
}

// release deletes lease id of slot s if it is still this process's.
func (g *gate) release(s int, id uint64) {
	l, ok := g.mine[s]
	if !ok || l.id != id {
		// Lost: it expired and may be someone else's now, or a later
		// lease of this process, of a task still running.
		return
	}
	delete(g.mine, s)
	delete(g.taken, s)
	ctx, cancel := g.opCtx()
	defer cancel()
	err := g.c.q.slots.Delete(ctx, g.key(s), jetstream.LastRevision(l.rev))
	if isWrongLastSeq(err) {
		// A renewal whose answer was lost may have moved the revision on.
		if rev, ok := g.current(ctx, s, l); ok {
			err = g.c.q.slots.Delete(ctx, g.key(s), jetstream.LastRevision(rev))
		}
	}
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) && !isWrongLastSeq(err) {
		g.c.cfg.logger.Warn("natsbroker: global slot not given back; it expires with the bucket TTL",
			"queue", g.c.cfg.queue, "type", g.typ, "slot", s, "error", err)
	}
}

func (g *gate) giveBackFreed() {
	g.mu.Lock()
	freed := g.freed
	g.freed = nil
	g.mu.Unlock()
	for _, r := range freed {
		g.release(r.slot, r.id)
	}
}

// renew extends the leases of the slots held here.
func (g *gate) renew() {
	for s, l := range g.mine {
		ctx, cancel := g.opCtx()
		rev, err := g.c.q.slots.Update(ctx, g.key(s), l.val, l.rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || isWrongLastSeq(err) {
			// A renewal that the server applied but whose answer was lost
			// (a timeout) moved the revision on: the lease is still ours
			// if the key holds its value.
			if cur, ok := g.current(ctx, s, l); ok {
				rev, err = g.c.q.slots.Update(ctx, g.key(s), l.val, cur)
			}
		}
		cancel()
		switch {
		case err == nil:
			g.mine[s] = slotLease{id: l.id, rev: rev, val: l.val}
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyNotFound), isWrongLastSeq(err):
			// The lease expired (the process could not renew it within
			// the TTL): another process may hold the slot now.
			g.lose(s, err)
		default:
			g.warn("renew a slot", err)
		}
	}
}

// lose forgets the lease of slot s, which is no longer this process's;
// err is why, when a request said so.
func (g *gate) lose(s int, err error) {
	delete(g.mine, s)
	attrs := []any{"queue", g.c.cfg.queue, "type", g.typ, "slot", s}
	if err != nil {
		attrs = append(attrs, "error", err)
	}
	g.c.cfg.logger.Warn("natsbroker: global slot lease lost while its task runs; the limit may be exceeded until it ends", attrs...)
}

// current returns the revision of slot s's key if it still holds lease l.
func (g *gate) current(ctx context.Context, s int, l slotLease) (uint64, bool) {
	e, err := g.c.q.slots.Get(ctx, g.key(s))
	if err != nil || e.Operation() != jetstream.KeyValuePut || !bytes.Equal(e.Value(), l.val) {
		return 0, false
	}
	return e.Revision(), true
}

// seen applies a watcher update for one slot key.
func (g *gate) seen(e jetstream.KeyValueEntry) {
	k := e.Key()
	s, err := strconv.Atoi(k[len(g.prefix)+1:])
	if err != nil || s < 0 {
		return
	}
	held := e.Operation() == jetstream.KeyValuePut
	if l, ok := g.mine[s]; ok {
		if e.Revision() <= l.rev {
			return // older than our lease
		}
		if !held {
			// Our lease expired or was deleted under us.
			g.lose(s, nil)
		}
	}
	if held {
		g.taken[s] = true
	} else {
		delete(g.taken, s)
	}
}

// takeStart books the next start at the type's rate if it may be now; if
// not, it returns how long until it may. The state is the theoretical
// arrival time (TAT) of the next start: a start may be booked while TAT
// is at most slack ahead of now, and moves it one interval on.
func (g *gate) takeStart() (time.Duration, error) {
	for {
		now := time.Now()
		tat := g.rateTAT
		if tat.Before(now) {
			tat = now
		}
		if wait := tat.Sub(now) - g.slack; wait > 0 && g.rateRev != 0 {
			// As last seen; another process may have moved it on, which
			// the compare-and-set after the wait finds.
			return wait, nil
		}
		val := strconv.AppendInt(nil, tat.Add(g.interval).UnixNano(), 10)
		ctx, cancel := g.opCtx()
		var (
			rev uint64
			err error
		)
		if g.rateRev == 0 {
			rev, err = g.c.q.rates.Create(ctx, g.rateKey, val)
		} else {
			rev, err = g.c.q.rates.Update(ctx, g.rateKey, val, g.rateRev)
		}
		cancel()
		if err == nil {
			g.rateRev, g.rateTAT = rev, tat.Add(g.interval)
			return 0, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !isWrongLastSeq(err) {
			return 0, err
		}
		// Someone else booked a start: read the state and try again.
		if err := g.readRate(); err != nil {
			return 0, err
		}
		if wait := g.rateTAT.Sub(time.Now()) - g.slack; wait > 0 {
			return wait, nil
		}
	}
}

// readRate loads the rate key's state.
func (g *gate) readRate() error {
	ctx, cancel := g.opCtx()
	defer cancel()
	e, err := g.c.q.rates.Get(ctx, g.rateKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		g.rateRev, g.rateTAT = 0, time.Time{}
		return nil
	case err != nil:
		return err
	}
	ns, perr := strconv.ParseInt(string(e.Value()), 10, 64)
	if perr != nil {
		ns = 0 // not ours: overwritten by the next booking
	}
	g.rateRev, g.rateTAT = e.Revision(), time.Unix(0, ns)
	return nil
}

// warn logs the first failure of a run of failed requests.
func (g *gate) warn(what string, err error) {
	if g.failing {
		return
	}
	g.failing = true
	g.c.cfg.logger.Warn("natsbroker: global limit: "+what+" failed; tasks of the type wait",
		"queue", g.c.cfg.queue, "type", g.typ, "error", err)
}
