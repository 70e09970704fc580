package taskpool

import (
	"sync/atomic"
	"testing"

	"github.com/taskpool/taskpool/internal/engine"

	"github.com/stretchr/testify/require"
)

// The generator's IDs, made by adding one to the last ID's hex digits,
// are the IDs formatID makes of the same numbers: across the first
// block, whose numbers grow digits, and across later blocks, whose first
// ID is formatted afresh.
func TestIDGenMatchesFormatID(t *testing.T) {
	t.Parallel()
	var ctr atomic.Uint64
	g, prefix := idGen{}, "abcdefgh"
	seen := make(map[string]bool)
	for n := range uint64(3 * idBlock) {
		id := g.next(prefix, &ctr)
		require.Equal(t, formatID(prefix, n), id)
		require.False(t, seen[id], id)
		seen[id] = true
	}
	// A block whose numbers end in f…f: the carry runs through every
	// digit of the number.
	ctr.Store(1<<32 - idBlock)
	g, prefix = idGen{}, "p"
	for n := uint64(1<<32 - idBlock); n < 1<<32+idBlock; n++ {
		require.Equal(t, formatID(prefix, n), g.next(prefix, &ctr))
	}
}

// Inspect finds a running task's ID number from the low bits a worker's
// Begin kept and the ID counter: the highest number with those bits that
// has been handed out.
func TestWidenTag(t *testing.T) {
	t.Parallel()
	const span = uint64(1) << engine.TagBits
	for _, c := range []struct{ n, ctr uint64 }{
		{0, 1}, {5, 4096}, {4095, 4096}, {span - 1, span}, {span - 1, span + 4096},
		{span + 3, span + 4096}, {3*span - 2, 3*span + 7}, {2*span + 9, 3*span + 7},
	} {
		require.Equal(t, c.n, widenTag(c.n&(span-1), c.ctr), "n %d ctr %d", c.n, c.ctr)
	}
}

// BenchmarkIDGen is the cost of a generated ID on a worker, past the
// first block (whose IDs are formatted).
func BenchmarkIDGen(b *testing.B) {
	var ctr atomic.Uint64
	g, prefix := idGen{}, randomPrefix()
	for range idBlock {
		g.next(prefix, &ctr)
	}
	b.ReportAllocs()
	n := 0
	for range b.N {
		n += len(g.next(prefix, &ctr))
	}
	require.Positive(b, n)
}

// allocArgs are typed params for TestParamsAsDoesNotAllocate.
type allocArgs struct{ X, Y, Z int }

func (allocArgs) Kind() string { return "alloc" }

// Reading params that are already a T (a value or a pointer) allocates
// nothing, in ParamsAs as in the typed handlers' argsOf: only a decode
// does. (ParamsAs's v escaped through the decode's pointer on every call:
// one allocation per task of a typed handler.)
func TestParamsAsDoesNotAllocate(t *testing.T) {
	byValue := Task{Type: "alloc", Params: allocArgs{1, 2, 3}}
	byPointer := Task{Type: "alloc", Params: &allocArgs{1, 2, 3}}
	for name, f := range map[string]func(){
		"ParamsAs value":   func() { _, _ = ParamsAs[allocArgs](byValue) },
		"ParamsAs pointer": func() { _, _ = ParamsAs[*allocArgs](byPointer) },
		"argsOf value":     func() { _, _ = argsOf[allocArgs](byValue) },
		"argsOf pointer":   func() { _, _ = argsOf[*allocArgs](byPointer) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
}
