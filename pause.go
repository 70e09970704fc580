package taskpool

// Pause stops tasks from starting: tasks that are running finish, and
// everything else waits until [Scheduler.Resume]; a worker that wakes from
// a Resume looks again before it starts a task, so a second Pause holds it
// again. Submit goes on accepting tasks until the queue is full, delayed
// tasks and retries become due as usual, and [Scheduler.Stop] resumes a
// paused scheduler, since a graceful stop runs every accepted task
// (unless its ctx has ended already: then no task starts any more).
// Pausing a paused scheduler does nothing. Pause returns [ErrNotStarted]
// before Start and [ErrSchedulerClosed] once Stop has begun.
func (s *Scheduler) Pause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return s.closedErr()
	}
	if !s.e.Held() {
		s.e.Hold()
		s.opts.logger.Debug("taskpool: paused")
	}
	return nil
}

// Resume lets tasks start again after [Scheduler.Pause]. Resuming a
// scheduler that is not paused does nothing. Resume returns
// [ErrNotStarted] before Start and [ErrSchedulerClosed] once Stop has
// begun (Stop resumes by itself).
func (s *Scheduler) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return s.closedErr()
	}
	if s.e.Held() {
		s.e.Unhold()
		s.opts.logger.Debug("taskpool: resumed")
	}
	return nil
}
