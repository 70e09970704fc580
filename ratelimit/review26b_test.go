package ratelimit_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/taskpool/taskpool/ratelimit"
)

// Every allows "burst starts at once and then one start every interval",
// and Reserve's wait for "an extremely small rate" saturates "at
// rate.InfDuration". An interval within a few hundred nanoseconds of the
// largest Duration is one: the token's refill time, computed in floating
// point by x/time/rate, rounds to 2^63 ns, which its conversion to a
// Duration overflows to a negative wait, so the start after the burst
// was allowed at once.
func TestReview26bReserveLargestInterval(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give time.Duration
	}{
		{"MaxInt64", math.MaxInt64},
		{"MaxInt64-100ns", math.MaxInt64 - 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := ratelimit.Every(tt.give, 1)
			require.NoError(t, err)
			assert.Equal(t, time.Duration(0), l.Reserve(t0), "the burst")
			assert.Equal(t, rate.InfDuration, l.Reserve(t0), "the next start waits")
			assert.Equal(t, rate.InfDuration, l.Reserve(t0.Add(time.Hour)))
		})
	}
}
