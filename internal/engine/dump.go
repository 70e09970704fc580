package engine

import (
	"fmt"
	"strings"
)

// Dump describes the lanes and the dispatcher's view of them, for a test
// that found the engine stuck. It reads dispatcher-only fields without
// synchronisation: call it only when the dispatcher is parked.
func (e *Engine[T, L]) Dump() string {
	var sb strings.Builder
	for p := range e.lanes {
		l := &e.lanes[p]
		l.mu.Lock()
		nb, nw, acc := len(l.buf), len(l.waiters), l.accepted
		l.mu.Unlock()
		fmt.Fprintf(&sb, "lane %d: in %d taken %d out %d accepted %d buf %d ch %d waiters %d cur %d/%d\n",
			p, l.in.Load(), e.taken[p], l.out.Load(), acc, nb, len(l.ch), nw, e.pos[p], len(e.cur[p]))
	}
	fmt.Fprintf(&sb, "parked %v ctl %d surplus %v nlive %d ready %d idle %d holding %d back %d early %d\n",
		e.parked.Load(), e.ctl.Load(), e.surplus.Load(), e.nlive.Load(), len(e.ready), len(e.idle), len(e.holding), len(e.back), len(e.earlies))
	return sb.String()
}
