package taskpool

import "runtime"

// prioIndex maps a Priority to its queue: high first.
func prioIndex(p Priority) int {
	switch {
	case p > 0:
		return 0
	case p < 0:
		return 2
	}
	return 1
}

// weightedCycle spreads the queue indexes over a cycle in proportion to
// their weights (smooth weighted round robin), so that with weights 6, 3, 1
// a low-priority task is taken at least once in every ten.
func weightedCycle(w [numPriorities]int) []int {
	total := 0
	for _, x := range w {
		total += x
	}
	cycle := make([]int, 0, total)
	var cur [numPriorities]int
	for range total {
		best := 0
		for i := range cur {
			cur[i] += w[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		cycle = append(cycle, best)
	}
	return cycle
}

// dispatch is the dispatcher: the only goroutine that receives from the
// task channels and the only one that sends to workers.
func (s *Scheduler) dispatch() {
	buf := make([]envelope, 0, s.opts.batchSize)
	for {
		if s.pause.paused() && s.pause.wait(s.quit) {
			s.drain(buf)
			return
		}
		e, ok := s.poll()
		for !ok {
			if s.await(s.quit) {
				s.drain(buf)
				return
			}
			e, ok = s.takeOne()
		}
		buf = append(buf, e)
		// Wait for a worker with room, then top the batch up with whatever
		// queued meanwhile: the deeper the queue, the bigger the batch.
		reg := s.nextIdle()
		buf = s.handoff(reg, s.fill(buf))
		s.announceRoom()
	}
}

// await parks the dispatcher until a task arrives, a queue is made, Resize
// asks for fewer workers, or stop is closed, and reports whether stop was.
// A task it receives is held for takeOne: several queues may become ready
// at once, and select picks among them at random, so the caller chooses
// again by priority.
func (s *Scheduler) await(stop <-chan struct{}) bool {
	select {
	case e := <-s.loaded(0):
		s.hold(0, e)
	case e := <-s.loaded(1):
		s.hold(1, e)
	case e := <-s.loaded(2):
		s.hold(2, e)
	case <-s.queueAdded:
	case <-s.resized:
		s.shrinkIdle()
	case <-stop:
		return true
	}
	return false
}

// poll tries to take a task, yielding between tries, before the dispatcher
// parks on empty queues (see waitForRoom for why yielding first).
func (s *Scheduler) poll() (envelope, bool) {
	for range spinYields {
		if e, ok := s.takeOne(); ok {
			return e, true
		}
		runtime.Gosched()
	}
	return envelope{}, false
}

// takeOne receives one task without blocking, choosing the queue by
// priority: strictly, or by the weighted cycle and then any non-empty one.
func (s *Scheduler) takeOne() (envelope, bool) {
	if !s.opts.strict {
		q := s.cycle[s.next]
		if s.next++; s.next == len(s.cycle) {
			s.next = 0
		}
		if e, ok := s.takeFrom(q); ok {
			return e, true
		}
	}
	for q := range s.queues {
		if e, ok := s.takeFrom(q); ok {
			return e, true
		}
	}
	return envelope{}, false
}

// takeFrom receives from queue q without blocking, the held task first.
func (s *Scheduler) takeFrom(q int) (envelope, bool) {
	if s.holding[q] {
		e := s.held[q]
		s.held[q], s.holding[q] = envelope{}, false
		return e, true
	}
	select {
	case e := <-s.loaded(q):
		return e, true
	default:
		return envelope{}, false
	}
}

// hold keeps a task received by a blocking select until takeOne chooses
// its queue.
func (s *Scheduler) hold(q int, e envelope) {
	s.held[q], s.holding[q] = e, true
}

// queued is the number of tasks in the task channels.
func (s *Scheduler) queued() int {
	return len(s.loaded(0)) + len(s.loaded(1)) + len(s.loaded(2))
}

// fill tops buf up without blocking, to at most the batch size and at most
// a fair share of the queue per worker.
func (s *Scheduler) fill(buf []envelope) []envelope {
	limit := s.opts.batchSize
	if share := 1 + s.queued()/max(int(s.live.Load()), 1); share < limit {
		limit = share
	}
	return s.take(buf, limit)
}

// take receives without blocking until buf holds limit tasks or the
// queues are empty.
func (s *Scheduler) take(buf []envelope, limit int) []envelope {
	for len(buf) < limit {
		e, ok := s.takeOne()
		if !ok {
			break
		}
		buf = append(buf, e)
	}
	return buf
}

// nextIdle returns the registration of an idle worker, retiring idle
// workers beyond the count asked for by Resize on the way.
func (s *Scheduler) nextIdle() registration {
	for {
		reg := <-s.idle
		if s.live.Load() <= s.target.Load() {
			return reg
		}
		close(reg.ch)
		s.live.Add(-1)
	}
}

// shrinkIdle retires idle workers until the count asked for is reached or
// no worker is idle; busy ones are retired by nextIdle when they register.
func (s *Scheduler) shrinkIdle() {
	for s.live.Load() > s.target.Load() {
		select {
		case reg := <-s.idle:
			close(reg.ch)
			s.live.Add(-1)
		default:
			return
		}
	}
}

// handoff gives the batch to the registered worker and returns the
// worker's spare buffer, empty, for the next batch.
func (s *Scheduler) handoff(reg registration, batch []envelope) []envelope {
	for i := range batch {
		if batch[i].task.ID == "" {
			batch[i].task.ID = s.ids.next()
		}
	}
	reg.ch <- batch // buffered, and the worker is waiting: never blocks
	return reg.spare
}

// announceRoom wakes the submitters waiting for room in a queue once it
// has drained to half.
func (s *Scheduler) announceRoom() {
	for q := range s.queues {
		if ch := s.loaded(q); s.waiting[q].Load() == 0 || len(ch) > cap(ch)/2 {
			continue
		}
		s.roomMu.Lock()
		close(s.room[q])
		s.room[q] = make(chan struct{})
		s.roomMu.Unlock()
	}
}

// drain runs once Stop has begun. It goes on handing tasks to the workers
// until no Submit call is in flight and the timer goroutine has flushed
// the delayed tasks, then hands out what is left in the channels (or, once
// Stop's deadline has passed, reports it not run), closes the worker
// channels and waits for the workers to exit.
func (s *Scheduler) drain(buf []envelope) {
	quiesced := false
	for {
		if !quiesced {
			select {
			case <-s.quiesced:
				quiesced = true
			default:
			}
		}
		buf = s.take(buf, s.opts.batchSize)
		if len(buf) == 0 {
			if quiesced {
				break
			}
			quiesced = s.await(s.quiesced)
			continue
		}
		if s.abandon.Load() {
			for i := range buf {
				s.dropped(buf[i])
				buf[i] = envelope{}
			}
			buf = buf[:0]
			continue
		}
		buf = s.handoff(s.nextIdle(), buf)
		s.announceRoom()
	}
	for ; s.live.Load() > 0; s.live.Add(-1) {
		close((<-s.idle).ch)
	}
	s.workersWG.Wait()
	<-s.timerDone
	s.mu.Lock()
	s.state.Store(int32(stateStopped))
	s.mu.Unlock()
	s.cancel(ErrSchedulerClosed)
	close(s.done)
	s.opts.logger.Debug("taskpool: stopped")
}
