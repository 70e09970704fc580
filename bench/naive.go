package bench

import "sync"

// naiveScheduler is the "job queue and pool of worker channels" dispatcher
// of the well-known article that many Go worker pools copy, kept as the
// baseline that taskpool improves on. It has the article's shape:
//
//   - a task channel that Submit sends to;
//   - a channel of worker channels on which idle workers register their
//     private channel;
//   - a dispatcher that, for every task, starts a goroutine that takes an
//     idle worker's channel and hands the task to it.
//
// All three kinds of channel are unbuffered. The goroutine per task is the
// flaw: the dispatcher never waits for a worker, so there is no
// backpressure, every queued task costs a goroutine, and each hand-off
// costs a goroutine start and two extra context switches.
//
// Unlike the article it counts the tasks in flight so that stop can wait
// for them, and its workers select on quit so that stop leaks nothing.
type naiveScheduler struct {
	tasks   chan func()      // the task channel
	workers chan chan func() // the channel of worker channels
	quit    chan struct{}

	pending sync.WaitGroup // tasks submitted and not finished
	running sync.WaitGroup // the dispatcher and the workers
}

func newNaiveScheduler(workers int) *naiveScheduler {
	s := &naiveScheduler{
		tasks:   make(chan func()),
		workers: make(chan chan func()),
		quit:    make(chan struct{}),
	}
	s.running.Add(workers + 1)
	for range workers {
		go s.work()
	}
	go s.dispatch()
	return s
}

// submit hands f to the dispatcher. It must not be called after stop.
func (s *naiveScheduler) submit(f func()) {
	s.pending.Add(1)
	s.tasks <- f
}

// stop waits for every submitted task to finish, then stops the dispatcher
// and the workers and waits for them to exit.
func (s *naiveScheduler) stop() {
	s.pending.Wait()
	close(s.quit)
	s.running.Wait()
}

func (s *naiveScheduler) dispatch() {
	defer s.running.Done()
	for {
		select {
		case f := <-s.tasks:
			go func() {
				w := <-s.workers
				w <- f
			}()
		case <-s.quit:
			return
		}
	}
}

func (s *naiveScheduler) work() {
	defer s.running.Done()
	mine := make(chan func())
	for {
		select {
		case s.workers <- mine:
		case <-s.quit:
			return
		}
		// A goroutine took our channel, so a task is on its way: wait for
		// it without looking at quit, or the task would be lost.
		f := <-mine
		f()
		s.pending.Done()
	}
}
