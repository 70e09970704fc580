package taskpool

import (
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// The worker's IDs match formatID at the lengths where the block's head
// stops fitting: numbers of 15 hex digits (an ID of exactly idHead bytes,
// copied from the head) and of 16 (one byte more: formatted), the blocks
// around each change of length, and the counter's wrap; and no ID changes
// as the next ones are written into the rest of its slab.
func TestReviewFastIDGenAtHeadLimits(t *testing.T) {
	prefix := randomPrefix()
	for _, start := range []uint64{
		1<<56 - idBlock, 1<<60 - 2*idBlock, 1<<64 - 2*idBlock, 1<<52 - idBlock,
	} {
		var ctr atomic.Uint64
		ctr.Store(start)
		var g idGen
		ids := make([]string, 3*idBlock)
		for k := range ids {
			n := start + uint64(k)
			ids[k] = g.next(prefix, &ctr)
			require.Equal(t, formatID(prefix, n), ids[k], "number %#x", n)
		}
		// The IDs written since have left each one as it was.
		for k, id := range ids {
			require.Equal(t, formatID(prefix, start+uint64(k)), id, "number %#x changed", start+uint64(k))
		}
	}
}
