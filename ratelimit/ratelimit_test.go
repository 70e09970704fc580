package ratelimit_test

import (
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/taskpool/taskpool/ratelimit"
)

// t0 is the fixed start of every test's time line.
var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// step is one call to Reserve, at t0 plus at.
type step struct {
	at   time.Duration
	want time.Duration
}

func TestReserve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		rate  rate.Limit
		burst int
		steps []step
	}{
		{
			name: "burst then spacing at the same now", rate: 10, burst: 2,
			steps: []step{{0, 0}, {0, 0}, {0, 100 * time.Millisecond}, {0, 200 * time.Millisecond}},
		},
		{
			name: "burst of one", rate: 10, burst: 1,
			steps: []step{{0, 0}, {0, 100 * time.Millisecond}, {0, 200 * time.Millisecond}},
		},
		{
			// Borrowed slots queue up: t0+100ms, t0+200ms, t0+300ms.
			name: "later calls get the next slot", rate: 10, burst: 2,
			steps: []step{
				{0, 0}, {0, 0}, {0, 100 * time.Millisecond},
				{50 * time.Millisecond, 150 * time.Millisecond},
				{200 * time.Millisecond, 100 * time.Millisecond},
			},
		},
		{
			name: "refills at the rate", rate: 10, burst: 2,
			steps: []step{
				{0, 0}, {0, 0},
				{100 * time.Millisecond, 0}, // one token back
				{100 * time.Millisecond, 100 * time.Millisecond},
			},
		},
		{
			name: "refills only up to the burst", rate: 10, burst: 2,
			steps: []step{
				{0, 0}, {0, 0},
				{time.Hour, 0}, {time.Hour, 0},
				{time.Hour, 100 * time.Millisecond},
			},
		},
		{
			name: "slow rate", rate: rate.Every(time.Minute), burst: 1,
			steps: []step{{0, 0}, {0, time.Minute}, {30 * time.Second, 90 * time.Second}},
		},
		{
			name: "no limit", rate: rate.Inf, burst: 1,
			steps: []step{{0, 0}, {0, 0}, {0, 0}, {0, 0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := ratelimit.New(tt.rate, tt.burst)
			require.NoError(t, err)
			got := make([]time.Duration, 0, len(tt.steps))
			want := make([]time.Duration, 0, len(tt.steps))
			for _, s := range tt.steps {
				got = append(got, l.Reserve(t0.Add(s.at)))
				want = append(want, s.want)
			}
			assert.Equal(t, want, got)
		})
	}
}

func TestEvery(t *testing.T) {
	t.Parallel()
	l, err := ratelimit.Every(100*time.Millisecond, 2)
	require.NoError(t, err)
	got := []time.Duration{l.Reserve(t0), l.Reserve(t0), l.Reserve(t0), l.Reserve(t0)}
	assert.Equal(t, []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond}, got)
}

// A now earlier than the last one (a fake clock set back) refills nothing:
// the start still waits.
func TestReserveClockBackwards(t *testing.T) {
	t.Parallel()
	l, err := ratelimit.New(10, 1)
	require.NoError(t, err)
	assert.Equal(t, time.Duration(0), l.Reserve(t0))
	assert.Positive(t, l.Reserve(t0.Add(-time.Hour)))
}

func TestNewInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		rate  rate.Limit
		burst int
		want  string
	}{
		{"zero rate", 0, 1, "rate 0"},
		{"negative rate", -1, 1, "rate -1"},
		{"NaN rate", rate.Limit(math.NaN()), 1, "rate NaN"},
		{"negative infinite rate", rate.Limit(math.Inf(-1)), 1, "rate -Inf"},
		{"zero burst", 10, 0, "burst 0"},
		{"negative burst", 10, -1, "burst -1"},
		{"no limit, zero burst", rate.Inf, 0, "burst 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := ratelimit.New(tt.rate, tt.burst)
			assert.Nil(t, l)
			require.ErrorIs(t, err, ratelimit.ErrInvalidLimit)
			assert.True(t, strings.HasPrefix(err.Error(), "ratelimit: "), err.Error())
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestEveryInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		interval time.Duration
		burst    int
		want     string
	}{
		{"zero interval", 0, 1, "interval 0s"},
		{"negative interval", -time.Second, 1, "interval -1s"},
		{"zero burst", time.Second, 0, "burst 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := ratelimit.Every(tt.interval, tt.burst)
			assert.Nil(t, l)
			require.ErrorIs(t, err, ratelimit.ErrInvalidLimit)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestErrInvalidLimitMessage(t *testing.T) {
	t.Parallel()
	_, err := ratelimit.New(10, 0)
	assert.EqualError(t, err, "ratelimit: invalid limit: burst 0, want >= 1")
	_, err = ratelimit.Every(0, 1)
	assert.EqualError(t, err, "ratelimit: invalid limit: interval 0s, want > 0")
}

// Concurrent Reserves at the same now each take a distinct start: the
// delays are the burst's zeros and then one slot per interval, in some
// order. (x/time/rate computes delays in floating point, so a later slot
// can be a nanosecond short: compare to the millisecond.)
func TestReserveConcurrent(t *testing.T) {
	t.Parallel()
	const n = 50
	l, err := ratelimit.New(10, 5)
	require.NoError(t, err)
	got := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = l.Reserve(t0).Round(time.Millisecond)
		}()
	}
	wg.Wait()
	slices.Sort(got)
	want := make([]time.Duration, n)
	for i := 5; i < n; i++ {
		want[i] = time.Duration(i-4) * 100 * time.Millisecond
	}
	assert.Equal(t, want, got)
}
