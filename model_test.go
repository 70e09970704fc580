package taskpool_test

// Model-based test of the core promises (issue 9): random programs of
// Submit, TrySubmit, SubmitFuture, SubmitAt, SubmitAfter, Cancel, Resize,
// Pause, Resume, Requeue, SchedulePeriodic, Unschedule and Stop (with and
// without a deadline), on the fake clock and on the real one, with handlers that succeed, fail, fail with
// SkipRetry, panic, call runtime.Goexit, block until released or time out,
// submit a child task and wait for it (lending their worker),
// on types with concurrency limits, a rate limit and retries. Each program is checked
// against a small reference model of the promises:
//
//   - every accepted task (a submit that returned nil, or a Requeue) gets
//     exactly one outcome from the completion hook, and its Future (if any)
//     the same one;
//   - every periodic activation gets exactly one outcome (one more per
//     Requeue of it), with the ID "<schedule id>@<activation time>", and
//     none is due after Unschedule of its schedule returned;
//   - a task's handler runs at most its attempts, and the outcome's
//     Attempts add up to the runs;
//   - no handler starts after Pause returned and before Resume (checked
//     with a flag set a few yields after Pause returned: see settlePause);
//   - per-type concurrency never exceeds the type's limit;
//   - no task of the rate-limited type starts before the time its
//     RateLimiter gave (the k-th start is no earlier than the k-th
//     reservation), a graceful Stop included (on the fake clock, time goes
//     on while Stop waits);
//   - each outcome's Status is the kind of its Err (and Stats counts it so);
//   - Cancel that returns nil has delivered ErrCanceled already, and a
//     task is cancelled exactly as often as Cancel said so;
//   - Stop returns within its deadline plus a bounded grace;
//   - after Stop, Stats.Submitted == Succeeded+Failed+NotRun+Canceled, each
//     equal to the outcomes of that kind, and nothing is queued, delayed or
//     running;
//   - no goroutine is left.
//
// TestModel runs a bounded number of programs (TASKPOOL_MODEL_PROGRAMS=N
// for more; TASKPOOL_MODEL_SEED=S runs the one program of seed S, as
// printed by a failure; TASKPOOL_MODEL_KEEPGOING=1 goes on after a failing
// program). FuzzModel runs the same programs generated from
// the fuzzer's bytes: go test -run '^$' -fuzz FuzzModel.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/taskpooltest"
)

// stopGrace is how long Stop may take past its deadline: the model's
// handlers all honour their context.
const stopGrace = 5 * time.Second

// choices is where a program's random decisions come from: a seeded
// generator, or the fuzzer's bytes (zeros once they run out).
type choices struct {
	r    *rand.Rand
	data []byte
}

// n returns a choice in [0, k).
func (c *choices) n(k int) int {
	if k <= 1 {
		return 0
	}
	if c.r != nil {
		return c.r.IntN(k)
	}
	if len(c.data) == 0 {
		return 0
	}
	b := int(c.data[0])
	c.data = c.data[1:]
	return b % k
}

func (c *choices) pick(weights ...int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	x := c.n(total)
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

// Handler behaviours.
const (
	kSucceed = iota
	kFail    // retryable error
	kSkip    // SkipRetry
	kPanic
	kGoexit
	kBlock   // until released or its context ends
	kTimeout // waits for its (short) timeout
	kFlaky   // fails until attempt FailUntil, then succeeds
	kFanOut  // submits a child task (plain, succeeds) and waits for it with its ctx: the wait lends its worker
	numKinds
)

var kindNames = [numKinds]string{"succeed", "fail", "skip", "panic", "goexit", "block", "timeout", "flaky", "fan-out"}

// childTokens are the tokens of the tasks fan-out handlers submit, above
// any a program's ops use.
const childTokens = 1 << 20

var errModelFail = errors.New("model: handler failed")

// modelParams are a task's Params: its identity in the model and what its
// handler does.
type modelParams struct {
	Token     int
	Kind      int
	FailUntil int
}

// Operations.
const (
	opSubmit = iota
	opTrySubmit
	opSubmitFuture
	opSubmitAt
	opSubmitAfter
	opCancel
	opResize
	opPause
	opResume
	opRequeue
	opRelease
	opTime // fake clock: Advance; real clock: yield
	opRead // Stats and Inspect
	opSchedule
	opUnschedule
	numOps
)

var opNames = [numOps]string{"Submit", "TrySubmit", "SubmitFuture", "SubmitAt", "SubmitAfter", "Cancel",
	"Resize", "Pause", "Resume", "Requeue", "Release", "Time", "Read", "Schedule", "Unschedule"}

type modelOp struct {
	op    int
	task  taskpool.Task // submits
	delay time.Duration // SubmitAt/SubmitAfter offset, Advance step
	n     int           // Resize size; Cancel/Requeue target choice
}

// program is one generated test case.
type program struct {
	name      string
	fake      bool
	workers   int
	batch     int
	queue     int
	policy    taskpool.DelayedPolicy
	deadCap   int
	backoff   time.Duration
	limits    map[string]int
	rateGap   time.Duration // the rate type's limiter: one start per gap
	executors int
	ops       []modelOp
	stopAt    int           // op index of executor 0 at which Stop begins
	deadline  time.Duration // <0: graceful Stop
}

var modelTypes = []string{"plain", "retry", "lim", "lim1", "rate"}

// typeAttempts are the per-type WithRetry attempts (0: the scheduler's).
var typeAttempts = map[string]int{"plain": 0, "retry": 3, "lim": 2, "lim1": 0}

const defaultAttempts = 2

func genProgram(name string, c *choices) program {
	p := program{
		name:      name,
		fake:      c.n(2) == 0,
		workers:   1 + c.n(4),
		batch:     1 + c.n(4),
		queue:     1 + c.n(8),
		policy:    taskpool.DelayedPolicy(c.n(2)),
		deadCap:   c.n(4),
		backoff:   []time.Duration{0, time.Millisecond, 10 * time.Millisecond, time.Second}[c.n(4)],
		limits:    map[string]int{"lim": 1 + c.n(2), "lim1": 1},
		executors: 1 + c.n(2),
		rateGap:   []time.Duration{100 * time.Microsecond, time.Millisecond, 20 * time.Millisecond}[c.n(3)],
	}
	nops := 10 + c.n(40)
	token := 0
	for range nops {
		op := modelOp{op: c.pick(6, 4, 5, 3, 3, 3, 2, 2, 2, 2, 2, 2, 1, 3, 2)}
		switch op.op {
		case opSchedule:
			// A periodic task: no unique key (its activations' keys
			// would be taken by tasks the model does not see accepted).
			token++
			kind := c.pick(8, 4, 1, 2, 1, 3, 1, 3, 2)
			op.task = taskpool.Task{
				Type:        modelTypes[c.n(len(modelTypes))],
				Params:      modelParams{Token: token, Kind: kind, FailUntil: 1 + c.n(3)},
				Priority:    taskpool.Priority(c.n(3) - 1),
				MaxAttempts: c.n(4),
			}
			if kind == kTimeout {
				op.task.Timeout = time.Duration(1+c.n(3)) * time.Millisecond
			}
			op.n = c.n(3) // schedule s<n>: a few, so that IDs collide
			op.delay = []time.Duration{50 * time.Microsecond, time.Millisecond, 20 * time.Millisecond}[c.n(3)]
		case opUnschedule:
			op.n = c.n(4)
		case opSubmit, opTrySubmit, opSubmitFuture, opSubmitAt, opSubmitAfter:
			token++
			typ := modelTypes[c.n(len(modelTypes))]
			kind := c.pick(8, 4, 1, 2, 1, 3, 1, 3, 2)
			tk := taskpool.Task{
				Type:        typ,
				Params:      modelParams{Token: token, Kind: kind, FailUntil: 1 + c.n(3)},
				Priority:    taskpool.Priority(c.n(3) - 1),
				MaxAttempts: c.n(4),
			}
			if c.n(3) != 0 {
				tk.ID = fmt.Sprintf("t%d", token)
			}
			if c.n(8) == 0 {
				tk.UniqueKey = fmt.Sprintf("u%d", c.n(2))
			}
			if kind == kTimeout {
				tk.Timeout = time.Duration(1+c.n(3)) * time.Millisecond
			}
			op.task = tk
			op.delay = []time.Duration{-time.Second, 0, time.Millisecond, 20 * time.Millisecond, time.Second, time.Hour}[c.n(6)]
		case opResize:
			op.n = 1 + c.n(5)
		case opCancel, opRequeue:
			op.n = c.n(1 << 16)
		case opTime:
			op.delay = []time.Duration{time.Millisecond, 20 * time.Millisecond, time.Second, time.Hour}[c.n(4)]
		}
		p.ops = append(p.ops, op)
	}
	p.stopAt = len(p.ops)
	if c.n(3) == 0 {
		p.stopAt = c.n(len(p.ops) + 1)
	}
	p.deadline = -1
	if c.n(2) == 0 {
		p.deadline = []time.Duration{0, time.Millisecond, 20 * time.Millisecond}[c.n(3)]
	}
	return p
}

func (p program) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: fake=%v workers=%d batch=%d queue=%d policy=%d dead=%d backoff=%v limits=%v rate=%v executors=%d stopAt=%d deadline=%v ops:",
		p.name, p.fake, p.workers, p.batch, p.queue, p.policy, p.deadCap, p.backoff, p.limits, p.rateGap, p.executors, p.stopAt, p.deadline)
	for i, op := range p.ops {
		if i%8 == 0 {
			b.WriteString("\n ")
		}
		fmt.Fprintf(&b, " %s", opNames[op.op])
		switch op.op {
		case opSchedule:
			fmt.Fprintf(&b, "[s%d every %v]", op.n, op.delay)
		case opUnschedule:
			fmt.Fprintf(&b, "[s%d]", op.n)
		}
		if mp, ok := op.task.Params.(modelParams); ok {
			fmt.Fprintf(&b, "(%s %s #%d)", op.task.Type, kindNames[mp.Kind], mp.Token)
		}
	}
	return b.String()
}

// life is one acceptance of a task: a submit that returned nil, or a
// Requeue.
type life struct {
	future *taskpool.Future
}

// model is the reference: what was accepted, what ran, what came out.
type model struct {
	p program

	mu         sync.Mutex
	paused     bool         // set after Pause returned, cleared before Resume
	pausedFlag atomic.Bool  // paused, for handlers to read before they lock
	inside     atomic.Int64 // handlers between their first line and their return
	stopBegun  bool         // Stop was called (or is about to be): it resumes
	stopping   bool         // graceful Stop began: blocked handlers are released
	release    chan struct{}
	runs       map[int]int // token -> handler runs
	cur        map[string]int
	lives      map[int][]life // token -> acceptances
	params     map[int]taskpool.Task
	outcomes   map[int][]taskpool.Outcome // token -> hook outcomes
	canceledBy map[string]int             // ID -> Cancel calls that returned nil
	canceledAt map[string]int             // ID -> ErrCanceled outcomes
	ids        []string                   // explicit IDs submitted, for Cancel
	keyLive    map[string]int             // unique key -> accepted lives without outcome
	keyTrying  map[string]int             // unique key -> submits in flight
	keyStarts  map[string]int             // unique key -> submits started so far
	violations []string

	// Periodic schedules. schedMu serialises SchedulePeriodic and
	// Unschedule with the model's view of which schedules are live.
	schedMu  sync.Mutex
	sched    map[int]string             // token -> its schedule's id (set before SchedulePeriodic)
	live     map[string]int             // schedule id -> token, while scheduled
	cutoff   map[int]time.Time          // token -> the clock when Unschedule returned nil
	actRuns  map[string]int             // activation ID -> handler runs
	actOuts  map[int][]taskpool.Outcome // token -> its activations' outcomes
	requeued map[string]int             // activation ID -> Requeues that returned nil

	s          *taskpool.Scheduler // for fan-out handlers
	children   atomic.Int64        // child tokens handed out
	now        func() time.Time    // the scheduler's clock
	limiter    *modelLimiter       // the rate type's
	rateStarts []time.Time         // when the rate type's handlers started
}

// modelLimiter is the rate type's RateLimiter: one start per gap, each
// reservation noted.
type modelLimiter struct {
	mu   sync.Mutex
	gap  time.Duration
	next time.Time
	res  []time.Time
}

// reserved returns the reservations so far, soonest first.
func (l *modelLimiter) reserved() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.SortedFunc(slices.Values(l.res), time.Time.Compare)
}

func (l *modelLimiter) Reserve(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	at := now
	if l.next.After(at) {
		at = l.next
	}
	l.next = at.Add(l.gap)
	l.res = append(l.res, at)
	return at.Sub(now)
}

func newModel(p program) *model {
	return &model{
		p:          p,
		limiter:    &modelLimiter{gap: p.rateGap},
		release:    make(chan struct{}),
		runs:       map[int]int{},
		cur:        map[string]int{},
		lives:      map[int][]life{},
		params:     map[int]taskpool.Task{},
		outcomes:   map[int][]taskpool.Outcome{},
		canceledBy: map[string]int{},
		canceledAt: map[string]int{},
		keyLive:    map[string]int{},
		keyTrying:  map[string]int{},
		keyStarts:  map[string]int{},
		sched:      map[int]string{},
		live:       map[string]int{},
		cutoff:     map[int]time.Time{},
		actRuns:    map[string]int{},
		actOuts:    map[int][]taskpool.Outcome{},
		requeued:   map[string]int{},
	}
}

// violate records a broken promise; the caller holds m.mu.
func (m *model) violate(format string, args ...any) {
	if len(m.violations) < 20 {
		m.violations = append(m.violations, fmt.Sprintf(format, args...))
	}
}

func (m *model) handle(ctx context.Context, tk taskpool.Task) error {
	p := tk.Params.(modelParams)
	// Read before taking m.mu: a handler blocked on the model's lock after
	// it started would otherwise look as if it started later.
	pausedAtEntry := m.pausedFlag.Load()
	var started time.Time
	if tk.Type == "rate" {
		started = m.now()
	}
	m.inside.Add(1)
	defer m.inside.Add(-1)
	m.mu.Lock()
	if pausedAtEntry && m.paused {
		m.violate("task #%d (%s) started after Pause returned", p.Token, tk.ID)
	}
	m.runs[p.Token]++
	if tk.Type == "rate" {
		m.rateStarts = append(m.rateStarts, started)
	}
	if _, ok := m.sched[p.Token]; ok {
		if m.actRuns[tk.ID] == 0 {
			m.ids = append(m.ids, tk.ID) // for Cancel: a retry of it may wait
		}
		m.actRuns[tk.ID]++
	}
	m.cur[tk.Type]++
	if lim := m.p.limits[tk.Type]; lim > 0 && m.cur[tk.Type] > lim {
		m.violate("type %s: %d running, limit %d", tk.Type, m.cur[tk.Type], lim)
	}
	release, stopping := m.release, m.stopping
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.cur[tk.Type]--
		m.mu.Unlock()
	}()
	switch p.Kind {
	case kSucceed:
		return nil
	case kFail:
		return errModelFail
	case kSkip:
		return taskpool.SkipRetry(errModelFail)
	case kPanic:
		panic(errModelFail)
	case kGoexit:
		runtime.Goexit()
	case kBlock:
		if stopping {
			return nil
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	case kTimeout:
		<-ctx.Done()
		return ctx.Err()
	case kFlaky:
		if tk.Attempt < p.FailUntil {
			return errModelFail
		}
		return nil
	case kFanOut:
		child := taskpool.Task{Type: "plain", Params: modelParams{Token: childTokens + int(m.children.Add(1)), Kind: kSucceed}}
		var f *taskpool.Future
		m.submit(child, func() (*taskpool.Future, error) {
			var err error
			f, err = m.s.SubmitFuture(ctx, child)
			return f, err
		})
		if f == nil {
			return errModelFail // not accepted: Stop began, or ctx ended
		}
		if _, err := f.Wait(ctx); err != nil {
			return errModelFail // ctx ended (Stop's deadline), or the child was not run
		}
		return nil
	}
	return nil
}

func (m *model) hook(out taskpool.Outcome) {
	p, ok := out.Task.Params.(modelParams)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !ok {
		m.violate("outcome without the model's params: %+v", out)
		return
	}
	if errors.Is(out.Err, taskpool.ErrCanceled) {
		m.canceledAt[out.Task.ID]++
	}
	if _, ok := m.sched[p.Token]; ok {
		m.actOuts[p.Token] = append(m.actOuts[p.Token], out)
		return
	}
	m.outcomes[p.Token] = append(m.outcomes[p.Token], out)
	if k := out.Task.UniqueKey; k != "" {
		m.keyLive[k]--
	}
}

// maxAttempts is the attempts a task may run, as the scheduler resolves
// them.
func maxAttempts(tk taskpool.Task) int {
	if tk.MaxAttempts > 0 {
		return tk.MaxAttempts
	}
	if n := typeAttempts[tk.Type]; n > 0 {
		return n
	}
	return defaultAttempts
}

func (m *model) registry(t testing.TB) *taskpool.Registry {
	reg := taskpool.NewRegistry()
	bo := taskpool.ConstantBackoff(m.p.backoff)
	for _, typ := range modelTypes {
		var opts []taskpool.HandleOption
		if n := typeAttempts[typ]; n > 0 {
			opts = append(opts, taskpool.WithRetry(n, bo))
		}
		if lim := m.p.limits[typ]; lim > 0 {
			opts = append(opts, taskpool.WithConcurrencyLimit(lim))
		}
		if typ == "rate" {
			opts = append(opts, taskpool.WithRateLimit(m.limiter))
		}
		require.NoError(t, reg.HandleFunc(typ, m.handle, opts...))
	}
	return reg
}

// submitted records an attempted submit and its result.
func (m *model) submit(tk taskpool.Task, fn func() (*taskpool.Future, error)) {
	key := tk.UniqueKey
	m.mu.Lock()
	if key != "" {
		m.keyTrying[key]++
		m.keyStarts[key]++
	}
	// The key is free if no accepted task holds it and no other submit
	// with it runs before or during this one.
	freeBefore := key != "" && m.keyLive[key] == 0 && m.keyTrying[key] == 1
	starts := m.keyStarts[key]
	m.mu.Unlock()
	f, err := fn()
	m.mu.Lock()
	defer m.mu.Unlock()
	if key != "" {
		m.keyTrying[key]--
	}
	if err != nil {
		if errors.Is(err, taskpool.ErrDuplicateTask) && freeBefore && m.keyStarts[key] == starts {
			m.violate("task #%d: ErrDuplicateTask for key %s that no live task held", tk.Params.(modelParams).Token, key)
		}
		return
	}
	tok := tk.Params.(modelParams).Token
	m.lives[tok] = append(m.lives[tok], life{future: f})
	m.params[tok] = tk
	if key != "" {
		m.keyLive[key]++
	}
	if tk.ID != "" {
		m.ids = append(m.ids, tk.ID)
	}
}

func (m *model) pick(n int) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.ids) == 0 || n%5 == 0 {
		return "nope"
	}
	return m.ids[n%len(m.ids)]
}

// exec runs one operation.
func (m *model) exec(s *taskpool.Scheduler, clock *taskpooltest.Clock, now func() time.Time, pauseMu *sync.Mutex, op modelOp) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond)
	defer cancel()
	tk := op.task
	switch op.op {
	case opSubmit:
		m.submit(tk, func() (*taskpool.Future, error) { return nil, s.Submit(ctx, tk) })
	case opTrySubmit:
		m.submit(tk, func() (*taskpool.Future, error) { return nil, s.TrySubmit(tk) })
	case opSubmitFuture:
		m.submit(tk, func() (*taskpool.Future, error) { return s.SubmitFuture(ctx, tk) })
	case opSubmitAt:
		m.submit(tk, func() (*taskpool.Future, error) { return nil, s.SubmitAt(ctx, tk, now().Add(op.delay)) })
	case opSubmitAfter:
		m.submit(tk, func() (*taskpool.Future, error) { return nil, s.SubmitAfter(ctx, tk, op.delay) })
	case opCancel:
		id := m.pick(op.n)
		m.mu.Lock()
		before := m.canceledAt[id]
		m.mu.Unlock()
		err := s.Cancel(id)
		m.mu.Lock()
		if err == nil {
			m.canceledBy[id]++
			if m.canceledAt[id] <= before {
				m.violate("Cancel(%s) returned nil before its ErrCanceled outcome was delivered", id)
			}
		} else if !errors.Is(err, taskpool.ErrTaskNotFound) {
			m.violate("Cancel(%s): %v", id, err)
		}
		m.mu.Unlock()
	case opResize:
		_ = s.Resize(op.n)
	case opPause:
		pauseMu.Lock()
		if s.Pause() == nil {
			settlePause(s, &m.inside) // see TestGuarantee14NothingStartsWhilePaused
			m.mu.Lock()
			m.paused = !m.stopBegun
			m.pausedFlag.Store(m.paused)
			m.mu.Unlock()
		}
		pauseMu.Unlock()
	case opResume:
		pauseMu.Lock()
		m.mu.Lock()
		m.paused = false
		m.pausedFlag.Store(false)
		m.mu.Unlock()
		_ = s.Resume()
		pauseMu.Unlock()
	case opRequeue:
		dead := s.DeadLetters()
		if len(dead) == 0 {
			return
		}
		out := dead[op.n%len(dead)]
		p, ok := out.Task.Params.(modelParams)
		if !ok {
			return
		}
		key := out.Task.UniqueKey
		if key != "" {
			m.mu.Lock()
			m.keyTrying[key]++
			m.keyStarts[key]++
			m.mu.Unlock()
		}
		err := s.Requeue(ctx, out.Task.ID)
		m.mu.Lock()
		if key != "" {
			m.keyTrying[key]--
		}
		if _, periodic := m.sched[p.Token]; err == nil && periodic {
			m.requeued[out.Task.ID]++
		} else if err == nil {
			m.lives[p.Token] = append(m.lives[p.Token], life{})
			if key != "" {
				m.keyLive[key]++
			}
		}
		m.mu.Unlock()
	case opRelease:
		m.mu.Lock()
		close(m.release)
		m.release = make(chan struct{})
		m.mu.Unlock()
	case opTime:
		if clock != nil {
			clock.Advance(op.delay)
		} else if op.delay <= 20*time.Millisecond {
			// The real clock's Advance: let a little time pass, so
			// that periodic schedules fire and delays come due.
			<-time.After(op.delay / 20)
		} else {
			yield(50)
		}
	case opRead:
		// Read while tasks move: for the race detector and for hangs.
		_ = s.Stats()
		_ = s.Inspect()
	case opSchedule:
		m.schedule(s, fmt.Sprintf("s%d", op.n), op)
	case opUnschedule:
		m.unschedule(s, fmt.Sprintf("s%d", op.n), now)
	}
}

// schedule runs SchedulePeriodic(id) and checks its error against the
// schedules the model knows to be live.
func (m *model) schedule(s *taskpool.Scheduler, id string, op modelOp) {
	tok := op.task.Params.(modelParams).Token
	m.schedMu.Lock()
	defer m.schedMu.Unlock()
	m.mu.Lock()
	m.sched[tok] = id
	m.params[tok] = op.task
	m.mu.Unlock()
	err := s.SchedulePeriodic(id, taskpool.Every(op.delay), op.task)
	m.mu.Lock()
	defer m.mu.Unlock()
	old, taken := m.live[id]
	switch {
	case err == nil:
		if taken {
			m.violate("SchedulePeriodic(%s) accepted while #%d holds the id", id, old)
		}
		m.live[id] = tok
		return
	case errors.Is(err, taskpool.ErrDuplicateTask):
		if !taken {
			m.violate("SchedulePeriodic(%s): %v, no schedule holds the id", id, err)
		}
	case errors.Is(err, taskpool.ErrSchedulerClosed):
		if !m.stopBegun {
			m.violate("SchedulePeriodic(%s): %v before Stop", id, err)
		}
	default:
		m.violate("SchedulePeriodic(%s): %v", id, err)
	}
	delete(m.sched, tok)
}

// unschedule runs Unschedule(id), checks its error and notes when the
// schedule ended: none of its activations may be due after that.
func (m *model) unschedule(s *taskpool.Scheduler, id string, now func() time.Time) {
	m.schedMu.Lock()
	defer m.schedMu.Unlock()
	err := s.Unschedule(id)
	at := now()
	m.mu.Lock()
	defer m.mu.Unlock()
	tok, live := m.live[id]
	switch {
	case err == nil:
		if !live {
			m.violate("Unschedule(%s) returned nil, no schedule holds the id", id)
			return
		}
		m.cutoff[tok] = at
		delete(m.live, id)
	case errors.Is(err, taskpool.ErrTaskNotFound):
		if live {
			m.violate("Unschedule(%s): %v, #%d holds the id", id, err, tok)
		}
	case errors.Is(err, taskpool.ErrSchedulerClosed):
		if !m.stopBegun {
			m.violate("Unschedule(%s): %v before Stop", id, err)
		}
	default:
		m.violate("Unschedule(%s): %v", id, err)
	}
}

// runProgram runs p and checks it against the model.
func runProgram(t *testing.T, p program) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	m := newModel(p)
	var clock *taskpooltest.Clock
	now := time.Now
	opts := []taskpool.Option{
		taskpool.WithWorkers(p.workers), taskpool.WithBatchSize(p.batch), taskpool.WithQueueSize(p.queue),
		taskpool.WithDelayedOnStop(p.policy), taskpool.WithRetry(defaultAttempts, taskpool.ConstantBackoff(p.backoff)),
		taskpool.WithCompletionHook(m.hook),
		// Activations skipped on a full queue are logged: not a failure.
		taskpool.WithLogger(slog.New(slog.DiscardHandler)),
	}
	if p.deadCap > 0 {
		opts = append(opts, taskpool.WithDeadLetters(p.deadCap, nil))
	}
	if p.fake {
		clock = taskpooltest.NewClock(epoch)
		now = clock.Now
		opts = append(opts, taskpool.WithClock(clock))
	}
	m.now = now
	s, err := taskpool.New(m.registry(t), opts...)
	require.NoError(t, err)
	m.s = s
	require.NoError(t, s.Start())

	var pauseMu sync.Mutex
	stopResult := make(chan error, 1)
	var stopElapsed time.Duration
	var stopOnce sync.Once
	beginStop := func() {
		stopOnce.Do(func() {
			pauseMu.Lock()
			m.mu.Lock()
			m.paused = false // Stop resumes
			m.pausedFlag.Store(false)
			m.stopBegun = true
			if p.deadline < 0 {
				// A graceful Stop waits for the handlers: release them.
				m.stopping = true
				close(m.release)
				m.release = make(chan struct{})
			}
			m.mu.Unlock()
			pauseMu.Unlock()
			go func() {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if p.deadline >= 0 {
					ctx, cancel = context.WithTimeout(ctx, p.deadline)
				}
				defer cancel()
				start := time.Now()
				err := s.Stop(ctx)
				stopElapsed = time.Since(start)
				stopResult <- err
			}()
		})
	}
	var wg sync.WaitGroup
	for e := range p.executors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := e; i < len(p.ops); i += p.executors {
				if e == 0 && i >= p.stopAt {
					beginStop()
				}
				m.exec(s, clock, now, &pauseMu, p.ops[i])
			}
		}()
	}
	wg.Wait()
	beginStop()
	stopTicking := func() {}
	if clock != nil {
		// Time goes on while Stop waits: a task the rate limiter holds
		// back comes due, as on the real clock.
		stopped, ticking := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(ticking)
			for {
				select {
				case <-stopped:
					return
				default:
					clock.Advance(time.Millisecond)
					yield(1)
				}
			}
		}()
		var once sync.Once
		stopTicking = func() { once.Do(func() { close(stopped); <-ticking }) }
		defer stopTicking() // t.Fatalf below
	}
	limit := stopGrace
	if p.deadline >= 0 {
		limit += p.deadline
	} else {
		limit = hangAfter
	}
	timer := time.NewTimer(limit + time.Second)
	defer timer.Stop()
	var stopErr error
	select {
	case stopErr = <-stopResult:
		stopTicking()
	case <-timer.C:
		m.mu.Lock()
		var pending []string
		for tok, lives := range m.lives {
			if len(m.outcomes[tok]) < len(lives) {
				pending = append(pending, fmt.Sprintf("#%d %s runs=%d lives=%d outs=%d", tok, m.params[tok].Type, m.runs[tok], len(lives), len(m.outcomes[tok])))
			}
		}
		m.mu.Unlock()
		t.Fatalf("%v\nStop did not return within %v\nstats %+v\ninspect %+v\naccepted tokens without an outcome: %v\n%s", p, limit, s.Stats(), s.Inspect(), pending, stacks())
	}
	m.mu.Lock()
	close(m.release) // for a Stop with a deadline; blocked handlers have returned already
	m.release = make(chan struct{})
	m.mu.Unlock()

	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%v\n"+format, append([]any{p}, args...)...)
	}
	if stopElapsed > limit {
		fail("Stop took %v, limit %v", stopElapsed, limit)
	}
	if p.deadline < 0 && stopErr != nil {
		fail("graceful Stop: %v", stopErr)
	}
	if stopErr != nil {
		var se *taskpool.StopError
		if !errors.As(stopErr, &se) {
			fail("Stop: %v, not a *StopError", stopErr)
		}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range m.violations {
		fail("%s", v)
	}
	var accepted, ok, failed, notRun, canceled uint64
	// outcome checks one outcome of task #tok against its kind, and counts it.
	outcome := func(tok int, tk taskpool.Task, out taskpool.Outcome) {
		t.Helper()
		kind := tk.Params.(modelParams).Kind
		if out.Task.ID == "" {
			fail("task #%d: outcome without an ID: %+v", tok, out)
		}
		if out.Attempts > maxAttempts(tk) || out.Attempts < 0 {
			fail("task #%d (%s): %d attempts, at most %d", tok, kindNames[kind], out.Attempts, maxAttempts(tk))
		}
		want := taskpool.OutcomeFailed
		switch {
		case out.Err == nil:
			want = taskpool.OutcomeSucceeded
		case errors.Is(out.Err, taskpool.ErrCanceled):
			want = taskpool.OutcomeCanceled
		case errors.Is(out.Err, taskpool.ErrSchedulerClosed):
			want = taskpool.OutcomeNotRun
		}
		if out.Status != want {
			fail("task #%d (%s): status %v, want %v: %+v", tok, kindNames[kind], out.Status, want, out)
		}
		switch {
		case out.Err == nil:
			ok++
			if kind != kSucceed && kind != kFlaky && kind != kBlock && kind != kFanOut {
				fail("task #%d (%s): succeeded", tok, kindNames[kind])
			}
		case errors.Is(out.Err, taskpool.ErrCanceled):
			canceled++
		case errors.Is(out.Err, taskpool.ErrSchedulerClosed):
			notRun++
		default:
			failed++
			if kind == kSucceed {
				fail("task #%d (succeed): %v", tok, out.Err)
			}
			if kind == kGoexit && !errors.Is(out.Err, taskpool.ErrHandlerExited) {
				fail("task #%d (goexit): %v", tok, out.Err)
			}
		}
		if (kind == kGoexit || kind == kSkip) && out.Attempts > 1 {
			fail("task #%d (%s): retried, %d attempts", tok, kindNames[kind], out.Attempts)
		}
	}
	for tok, lives := range m.lives {
		tk := m.params[tok]
		kind := tk.Params.(modelParams).Kind
		outs := m.outcomes[tok]
		accepted += uint64(len(lives))
		if len(outs) != len(lives) {
			fail("task #%d (%s %s, ID %q): accepted %d times, %d outcomes: %+v", tok, tk.Type, kindNames[kind], tk.ID, len(lives), len(outs), outs)
			continue
		}
		attempts := 0
		for _, out := range outs {
			attempts += out.Attempts
			outcome(tok, tk, out)
		}
		if attempts != m.runs[tok] {
			fail("task #%d (%s): the handler ran %d times, the outcomes count %d attempts: %+v", tok, kindNames[kind], m.runs[tok], attempts, outs)
		}
		for _, l := range lives {
			if l.future == nil {
				continue
			}
			fo, done := l.future.Outcome()
			if !done {
				fail("task #%d: Future not complete after Stop", tok)
				continue
			}
			same := false
			for _, out := range outs {
				same = same || (fmt.Sprint(out.Err) == fmt.Sprint(fo.Err) && errors.Is(fo.Err, out.Err) &&
					out.Attempts == fo.Attempts && out.Task.ID == fo.Task.ID)
			}
			if !same {
				fail("task #%d: the Future's outcome %+v is none of the hook's %+v", tok, fo, outs)
			}
		}
	}
	// Periodic activations: the model does not see them accepted, so it
	// counts their outcomes and checks them against the runs it saw and
	// against Stats.Submitted below.
	for tok, outs := range m.actOuts {
		tk, id := m.params[tok], m.sched[tok]
		byID := map[string][]taskpool.Outcome{}
		for _, out := range outs {
			accepted++
			outcome(tok, tk, out)
			byID[out.Task.ID] = append(byID[out.Task.ID], out)
			at, found := strings.CutPrefix(out.Task.ID, id+"@")
			due, err := time.Parse(time.RFC3339Nano, at)
			if !found || err != nil {
				fail("schedule %s (#%d): activation ID %q", id, tok, out.Task.ID)
				continue
			}
			if end, ok := m.cutoff[tok]; ok && due.After(end) {
				fail("schedule %s (#%d): activation %s due after Unschedule returned at %v", id, tok, out.Task.ID, end)
			}
		}
		for aid, outs := range byID {
			attempts := 0
			for _, out := range outs {
				attempts += out.Attempts
			}
			if want := 1 + m.requeued[aid]; len(outs) != want {
				fail("activation %s: %d outcomes, want %d: %+v", aid, len(outs), want, outs)
			}
			if attempts != m.actRuns[aid] {
				fail("activation %s: the handler ran %d times, the outcomes count %d attempts: %+v", aid, m.actRuns[aid], attempts, outs)
			}
		}
	}
	// A rate-limited start comes no sooner than a reservation: the k-th
	// start is no earlier than the k-th reservation.
	res := m.limiter.reserved()
	starts := slices.SortedFunc(slices.Values(m.rateStarts), time.Time.Compare)
	if len(starts) > len(res) {
		fail("rate type: %d starts, %d reservations", len(starts), len(res))
	} else {
		for k, at := range starts {
			if at.Before(res[k]) {
				fail("rate type: start %d at %v, before its reservation at %v (gap %v)", k, at, res[k], m.p.rateGap)
				break
			}
		}
	}
	settled := map[string]bool{}
	for _, outs := range m.actOuts {
		for _, out := range outs {
			settled[out.Task.ID] = true
		}
	}
	for aid, n := range m.actRuns {
		if !settled[aid] {
			fail("activation %s ran %d times and has no outcome", aid, n)
		}
	}
	for tok, outs := range m.outcomes {
		if _, ok := m.lives[tok]; !ok {
			fail("task #%d: %d outcomes for a task never accepted: %+v", tok, len(outs), outs)
		}
	}
	for id, n := range m.canceledAt {
		if m.canceledBy[id] != n {
			fail("ID %s: %d ErrCanceled outcomes, Cancel returned nil %d times", id, n, m.canceledBy[id])
		}
	}
	for id, n := range m.canceledBy {
		if m.canceledAt[id] != n {
			fail("ID %s: Cancel returned nil %d times, %d ErrCanceled outcomes", id, n, m.canceledAt[id])
		}
	}
	st := s.Stats()
	if st.Submitted != accepted || st.Succeeded != ok || st.Failed != failed || st.NotRun != notRun || st.Canceled != canceled {
		fail("Stats %+v; the model: %d accepted, %d succeeded, %d failed, %d not run, %d cancelled", st, accepted, ok, failed, notRun, canceled)
	}
	if st.Submitted != st.Succeeded+st.Failed+st.NotRun+st.Canceled {
		fail("Stats do not add up: %+v", st)
	}
	if st.Queued != 0 || st.Delayed != 0 || st.Running != 0 || st.Workers != 0 {
		fail("Stats after Stop: %+v", st)
	}
	if err := goleak.Find(ignore); err != nil {
		fail("goroutines left: %v", err)
	}
}

func modelPrograms() int {
	if n, err := strconv.Atoi(os.Getenv("TASKPOOL_MODEL_PROGRAMS")); err == nil && n > 0 {
		return n
	}
	return 500
}

// TestModel runs random programs against the reference model. Not parallel:
// it checks for leaked goroutines after each program.
func TestModel(t *testing.T) {
	if v := os.Getenv("TASKPOOL_MODEL_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err)
		runProgram(t, genProgram(fmt.Sprint("seed ", seed), &choices{r: rand.New(rand.NewPCG(seed, seed))}))
		return
	}
	base := rand.Uint64() >> 1
	n := modelPrograms()
	for i := range n {
		seed := base + uint64(i)
		p := genProgram(fmt.Sprintf("program %d, TASKPOOL_MODEL_SEED=%d", i, seed), &choices{r: rand.New(rand.NewPCG(seed, seed))})
		runProgram(t, p)
		if t.Failed() && os.Getenv("TASKPOOL_MODEL_KEEPGOING") == "" {
			return
		}
	}
}

// FuzzModel runs programs generated from the fuzzer's bytes.
func FuzzModel(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a"))
	f.Add([]byte("\x01\x03\x03\x07\x00\x01\x03\x01\x02\x00\x10\x20\x05\x05\x05\x06\x06\x06\x07\x07\x08\x09\x0a\x0b\x01\x02\x03\x04"))
	f.Add([]byte("fuzz the model: submit, cancel, pause, resume, stop"))
	// Found by the fuzzer: ten submits racing a Stop whose deadline has
	// passed (not-run outcomes without an ID, item 12).
	f.Add([]byte("y"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 512 {
			data = data[:512]
		}
		runProgram(t, genProgram(fmt.Sprintf("fuzz input %q", data), &choices{data: data}))
	})
}
