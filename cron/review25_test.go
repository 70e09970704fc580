package cron_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
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

// "@every d" is taskpool.Every(d), whatever d: not rounded to whole
// seconds (robfig's parser rounds it), so that a Schedule and its String
// mean the same in process and on a broker's server.
func TestReview25EveryRounding(t *testing.T) {
	after := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	for expr, d := range map[string]time.Duration{
		"@every 1.9s":                    1900 * time.Millisecond,
		"@every 2500ms":                  2500 * time.Millisecond,
		"@every 1ns":                     time.Nanosecond,
		"@every 90m":                     90 * time.Minute,
		"CRON_TZ=Asia/Tokyo @every 1.5s": 1500 * time.Millisecond,
	} {
		s, err := cron.Parse(expr)
		require.NoError(t, err, expr)
		every := taskpool.Every(d)
		for at := after; at.Before(after.Add(3 * d)); at = s.Next(at) {
			assert.Equal(t, every.Next(at), s.Next(at), expr)
		}
		back, err := cron.Parse(every.(fmt.Stringer).String())
		require.NoError(t, err, expr)
		assert.Equal(t, s.Next(after), back.Next(after), "Every(%v).String() parses back to the same schedule", d)
	}
}

// A zone prefix before "@every" names a zone that must exist, as before
// any other expression (the interval itself is the same in every zone).
func TestReview26EveryWithAnUnknownZone(t *testing.T) {
	for _, expr := range []string{"CRON_TZ=Mars/Olympus @every 5m", "TZ=Nowhere @every 1s"} {
		s, err := cron.Parse(expr)
		assert.Nil(t, s, expr)
		assert.ErrorIs(t, err, cron.ErrInvalidExpr, expr)
	}
	s, err := cron.Parse("TZ=Europe/Paris @every 5m")
	require.NoError(t, err)
	after := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	assert.Equal(t, after.Add(5*time.Minute), s.Next(after))
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
