package taskpool

import (
	"sync"
	"sync/atomic"
)

// pauseGate holds tasks back while the scheduler is paused. The dispatcher
// stops handing batches out, and a worker waits before starting the next
// task of a batch it already holds, so that no task starts after Pause has
// returned.
type pauseGate struct {
	mu     sync.Mutex    // serialises set, and pairs on with resume for wait
	on     atomic.Bool   // read without the lock on the task path
	resume chan struct{} // closed by the Resume that ends this pause
}

// paused reports whether tasks are held back.
func (g *pauseGate) paused() bool { return g.on.Load() }

// wait returns at once when the scheduler is not paused, and otherwise
// when it is resumed or stop is closed; it reports whether stop was.
func (g *pauseGate) wait(stop <-chan struct{}) bool {
	g.mu.Lock()
	on, resume := g.on.Load(), g.resume
	g.mu.Unlock()
	if !on {
		return false
	}
	select {
	case <-resume:
		return false
	case <-stop:
		return true
	}
}

// set pauses or resumes and reports whether that changed anything.
func (g *pauseGate) set(on bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.on.Load() == on {
		return false
	}
	g.on.Store(on)
	if on {
		g.resume = make(chan struct{})
	} else {
		close(g.resume)
	}
	return true
}

// Pause stops tasks from starting: tasks that are running finish, and
// everything else stays queued until [Scheduler.Resume]. Submit goes on
// accepting tasks until the queue is full, delayed tasks and retries
// become due as usual, and [Scheduler.Stop] resumes a paused scheduler,
// since a graceful stop runs every accepted task. Pausing a paused
// scheduler does nothing. Pause returns [ErrNotStarted] before Start and
// [ErrSchedulerClosed] once Stop has begun.
func (s *Scheduler) Pause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if state(s.state.Load()) != stateRunning {
		return s.closedErr()
	}
	if s.pause.set(true) {
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
	if state(s.state.Load()) != stateRunning {
		return s.closedErr()
	}
	s.resumeLocked()
	return nil
}

// resumeLocked ends a pause. The caller holds s.mu.
func (s *Scheduler) resumeLocked() {
	if s.pause.set(false) {
		s.opts.logger.Debug("taskpool: resumed")
	}
}
