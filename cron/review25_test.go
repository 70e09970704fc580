package cron_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool/cron"
)

// "@every <duration>" is a fixed interval: a zero or negative one is bad
// input and gets ErrInvalidExpr, rather than a schedule that fires every
// second.
func TestReview25EveryNotPositive(t *testing.T) {
	for _, expr := range []string{"@every 0s", "@every -1h", "@every -500ms", "CRON_TZ=UTC @every -1m",
		"CRON_TZ=UTC  @every -1m", "TZ=UTC \t@every 0s"} {
		s, err := cron.Parse(expr)
		assert.Nil(t, s, expr)
		require.ErrorIs(t, err, cron.ErrInvalidExpr, expr)
		assert.Contains(t, err.Error(), "want > 0", expr)
		s, err = cron.ParseInLocation(expr, time.UTC)
		assert.Nil(t, s, expr)
		require.ErrorIs(t, err, cron.ErrInvalidExpr, expr)
	}
}

// A positive interval is rounded down to whole seconds, and one under a
// second is one second.
func TestReview25EveryRounding(t *testing.T) {
	after := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	for expr, want := range map[string]time.Duration{
		"@every 1.9s":   time.Second,
		"@every 2500ms": 2 * time.Second,
		"@every 1ns":    time.Second,
		"@every 90m":    90 * time.Minute,
	} {
		s, err := cron.Parse(expr)
		require.NoError(t, err, expr)
		assert.Equal(t, after.Add(want), s.Next(after), expr)
	}
}

// String parses back to the same schedule for an IANA zone; for a fixed
// zone, which has no name time.LoadLocation knows, the prefix cannot be
// read back, as String's doc says, while the schedule itself runs.
func TestReview25StringRoundTrip(t *testing.T) {
	after := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := cron.ParseInLocation("0 9 * * *", mustLoad(t, "Asia/Tokyo"))
	require.NoError(t, err)
	back, err := cron.Parse(s.(interface{ String() string }).String())
	require.NoError(t, err)
	assert.Equal(t, s.Next(after), back.Next(after))

	s, err = cron.ParseInLocation("0 9 * * *", time.FixedZone("UTC+5", 5*3600))
	require.NoError(t, err)
	assert.Equal(t, "2025-01-01T04:00:00Z", s.Next(after).UTC().Format(time.RFC3339))
	_, err = cron.Parse(s.(interface{ String() string }).String())
	assert.ErrorIs(t, err, cron.ErrInvalidExpr)
}
