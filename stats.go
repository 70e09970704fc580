package taskpool

// Stats is a snapshot of a Scheduler's counters. Each counter is exact,
// and the outcome counters only ever grow, but they are read one by one
// while tasks run, so together they are not taken at a single instant.
// Once Stop has returned, Submitted equals
// Succeeded + Failed + NotRun + Canceled.
type Stats struct {
	// Submitted counts accepted tasks, periodic activations included.
	Submitted uint64
	// Queued counts accepted tasks that are due and have not started:
	// in a queue, or handed to a worker that has not started them.
	Queued uint64
	// QueuedByPriority splits Queued by priority: high, default, low (the
	// order of Inspection.Queued).
	QueuedByPriority [3]int
	// Delayed counts tasks waiting in the timer heap: delayed tasks,
	// retries and rate-limited tasks.
	Delayed int
	// Running counts workers busy with a task: running its handler,
	// delivering its outcome to the hooks right after, or on the way to
	// the next task of the same batch (a worker counts the task it began
	// last until it begins the next one or runs out of work). Never more
	// than Workers; the same tasks as Inspection.Running.
	Running int
	// Succeeded counts tasks whose final run returned nil.
	Succeeded uint64
	// Failed counts tasks whose final run failed (panics included).
	Failed uint64
	// Retried counts failed runs after which another attempt was
	// scheduled, whether it ran or was cancelled or reported not run by
	// Stop.
	Retried uint64
	// Panicked counts runs that panicked, retried or not.
	Panicked uint64
	// NotRun counts accepted tasks that Stop reported without running
	// them (again).
	NotRun uint64
	// Canceled counts tasks removed by [Scheduler.Cancel].
	Canceled uint64
	// Workers is the number of worker goroutines: those asked for, and
	// one more for each handler that lends its worker while it waits
	// on a [Future] with its ctx (of this scheduler or another: see
	// [Future.Wait]), for room in a full queue (see [Scheduler.Submit]),
	// or between [Lend] and its release, however many of its waits
	// overlap.
	Workers int
	// Paused reports whether [Scheduler.Pause] holds tasks back.
	Paused bool
}

// Stats returns a snapshot of the scheduler's counters. Outcomes are
// counted where they are delivered, each by the goroutine that settles
// the task; Stats sums them, and takes no lock on the task path.
func (s *Scheduler) Stats() Stats {
	var c counts
	s.e.Each(func(l *local) { c.add(l.c.snapshot()) })
	c.add(s.shared.snapshot())
	st := Stats{
		Submitted: s.accepted(),
		Succeeded: c.succeeded, Failed: c.failed, NotRun: c.notRun, Canceled: c.canceled,
		Retried: c.retried, Panicked: c.panicked,
		Paused:  s.e.Held(),
		Delayed: s.timers.pendingTasks(),
	}
	st.QueuedByPriority = s.queued()
	for _, n := range st.QueuedByPriority {
		st.Queued += uint64(n)
	}
	// Workers before Running, with no Resize in between: workers only
	// retire idle, so no more tasks run than there were workers.
	s.sizeMu.RLock()
	st.Workers = s.e.Workers()
	s.e.Inspect(func(_ *local, running *job, _ uint64, _ []job) {
		if running != nil {
			st.Running++
		}
	})
	s.sizeMu.RUnlock()
	return st
}

// queued counts, per priority, the tasks that are due and not started:
// those in the lanes and those in workers' batches, less the cancelled
// ones still there.
func (s *Scheduler) queued() [numPriorities]int {
	q := s.e.Queued()
	s.e.Inspect(func(_ *local, _ *job, _ uint64, unstarted []job) {
		for i := range unstarted {
			q[unstarted[i].b.lane]++
		}
	})
	for i := range q {
		q[i] = max(q[i]-int(s.tombs[i].Load()), 0)
	}
	return q
}
