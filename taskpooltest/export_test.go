package taskpooltest

// Timers returns the number of timers the clock keeps.
func (c *Clock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}
