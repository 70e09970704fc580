package taskpool

// DumpEngine describes the engine's lanes, for a stress test that found
// Stop hung.
func DumpEngine(s *Scheduler) string { return s.e.Dump() }
