package cron_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/cron"
)

// never is how the zero time, "no more activations", formats.
const never = "0001-01-01T00:00:00Z"

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	require.NoError(t, err)
	return loc
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return tm
}

func TestParseNext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		give  string
		after string // RFC 3339, in UTC
		want  string // RFC 3339, in UTC
	}{
		{"every quarter hour", "*/15 * * * *", "2025-01-01T10:07:30Z", "2025-01-01T10:15:00Z"},
		{"strictly after", "*/15 * * * *", "2025-01-01T10:15:00Z", "2025-01-01T10:30:00Z"},
		{"list and range", "0,30 9-10 * * *", "2025-01-01T10:30:00Z", "2025-01-02T09:00:00Z"},
		{"names", "0 12 * JAN,JUL SUN", "2025-01-05T12:00:00Z", "2025-01-12T12:00:00Z"},
		{"yearly field", "0 0 1 1 *", "2025-06-01T00:00:00Z", "2026-01-01T00:00:00Z"},
		{"leap day", "0 0 29 2 *", "2025-01-01T00:00:00Z", "2028-02-29T00:00:00Z"},
		{"never", "0 0 30 2 *", "2025-01-01T00:00:00Z", never},
		{"surrounding space", "  0 * * * *\n", "2025-01-01T10:00:00Z", "2025-01-01T11:00:00Z"},
		{"hourly", "@hourly", "2025-01-01T10:00:00Z", "2025-01-01T11:00:00Z"},
		{"daily", "@daily", "2025-01-01T10:00:00Z", "2025-01-02T00:00:00Z"},
		{"midnight", "@midnight", "2025-01-01T10:00:00Z", "2025-01-02T00:00:00Z"},
		{"weekly", "@weekly", "2025-01-01T10:00:00Z", "2025-01-05T00:00:00Z"},
		{"monthly", "@monthly", "2025-01-15T10:00:00Z", "2025-02-01T00:00:00Z"},
		{"yearly", "@yearly", "2025-01-15T10:00:00Z", "2026-01-01T00:00:00Z"},
		{"annually", "@annually", "2025-01-15T10:00:00Z", "2026-01-01T00:00:00Z"},
		{"every", "@every 1h30m", "2025-01-01T10:00:00Z", "2025-01-01T11:30:00Z"},
		{"every keeps fractional seconds", "@every 1h30m", "2025-01-01T10:00:00.5Z", "2025-01-01T11:30:00.5Z"},
		{"every under a second", "@every 10ms", "2025-01-01T10:00:00Z", "2025-01-01T10:00:00.01Z"},
		{
			"weekdays in New York before DST", "CRON_TZ=America/New_York 0 9 * * 1-5",
			"2025-03-06T14:00:00Z", "2025-03-07T14:00:00Z",
		},
		{
			"weekdays in New York into DST", "CRON_TZ=America/New_York 0 9 * * 1-5",
			"2025-03-07T14:00:00Z", "2025-03-10T13:00:00Z",
		},
		{
			"weekdays in New York out of DST", "CRON_TZ=America/New_York 0 9 * * 1-5",
			"2025-10-31T13:00:00Z", "2025-11-03T14:00:00Z",
		},
		{"TZ prefix", "TZ=Asia/Tokyo 30 8 * * *", "2025-01-01T00:00:00Z", "2025-01-01T23:30:00Z"},
		{"zone with descriptor", "CRON_TZ=Europe/Paris @daily", "2025-07-01T12:00:00Z", "2025-07-01T22:00:00Z"},
		{"UTC prefix", "CRON_TZ=UTC 0 9 * * *", "2025-01-01T10:00:00Z", "2025-01-02T09:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := cron.Parse(tt.give)
			require.NoError(t, err)
			got := s.Next(mustTime(t, tt.after))
			assert.Equal(t, tt.want, got.UTC().Format(time.RFC3339Nano))
		})
	}
}

func TestParseInLocationNext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		give  string
		loc   string
		after string // RFC 3339, in UTC
		want  string // RFC 3339, in UTC
	}{
		{"weekdays before DST", "0 9 * * 1-5", "America/New_York", "2025-03-06T14:00:00Z", "2025-03-07T14:00:00Z"},
		{"weekdays into DST", "0 9 * * 1-5", "America/New_York", "2025-03-07T14:00:00Z", "2025-03-10T13:00:00Z"},
		{"weekdays in DST", "0 9 * * 1-5", "America/New_York", "2025-03-10T13:00:00Z", "2025-03-11T13:00:00Z"},
		{"weekdays out of DST", "0 9 * * 1-5", "America/New_York", "2025-10-31T13:00:00Z", "2025-11-03T14:00:00Z"},
		{"skipped in the spring gap", "30 2 * * *", "America/New_York", "2025-03-08T12:00:00Z", "2025-03-10T06:30:00Z"},
		{"repeated in the autumn overlap", "30 1 * * *", "America/New_York", "2025-11-02T05:30:00Z", "2025-11-02T06:30:00Z"},
		{"southern hemisphere DST ends", "0 9 * * *", "Australia/Sydney", "2025-04-05T00:00:00Z", "2025-04-05T23:00:00Z"},
		{"half-hour offset", "0 9 * * *", "Asia/Kolkata", "2025-01-01T00:00:00Z", "2025-01-01T03:30:00Z"},
		{"descriptor", "@daily", "Asia/Tokyo", "2025-01-01T00:00:00Z", "2025-01-01T15:00:00Z"},
		{"every ignores the location", "@every 2h", "Asia/Tokyo", "2025-01-01T00:00:00Z", "2025-01-01T02:00:00Z"},
		{"fixed zone", "0 9 * * *", "UTC", "2025-01-01T10:00:00Z", "2025-01-02T09:00:00Z"},
		{"prefix wins", "CRON_TZ=Asia/Tokyo 0 9 * * *", "America/New_York", "2025-01-01T01:00:00Z", "2025-01-02T00:00:00Z"},
		{"TZ prefix wins", "TZ=UTC 0 9 * * *", "Asia/Tokyo", "2025-01-01T01:00:00Z", "2025-01-01T09:00:00Z"},
		{"never", "0 0 31 4 *", "Europe/Paris", "2025-01-01T00:00:00Z", never},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := cron.ParseInLocation(tt.give, mustLoad(t, tt.loc))
			require.NoError(t, err)
			got := s.Next(mustTime(t, tt.after))
			assert.Equal(t, tt.want, got.UTC().Format(time.RFC3339Nano))
		})
	}
}

// Without a zone, Parse reads the fields in the location of the time given
// to Next; ParseInLocation and a prefix fix it.
func TestNextLocation(t *testing.T) {
	t.Parallel()
	tokyo := mustLoad(t, "Asia/Tokyo")
	ny := mustLoad(t, "America/New_York")
	after := time.Date(2025, 1, 1, 0, 0, 0, 0, tokyo) // 2024-12-31T15:00:00Z

	s, err := cron.Parse("0 9 * * *")
	require.NoError(t, err)
	got := s.Next(after)
	assert.Equal(t, "2025-01-01T09:00:00+09:00", got.Format(time.RFC3339))
	assert.Equal(t, tokyo, got.Location())
	got = s.Next(after.UTC())
	assert.Equal(t, "2025-01-01T09:00:00Z", got.Format(time.RFC3339))

	// Read in New York, returned in the caller's location.
	s, err = cron.ParseInLocation("0 9 * * *", ny)
	require.NoError(t, err)
	got = s.Next(after)
	assert.Equal(t, "2025-01-01T23:00:00+09:00", got.Format(time.RFC3339))
	assert.Equal(t, tokyo, got.Location())

	s, err = cron.Parse("CRON_TZ=America/New_York 0 9 * * *")
	require.NoError(t, err)
	assert.Equal(t, "2025-01-01T23:00:00+09:00", s.Next(after).Format(time.RFC3339))

	// "Never" is the zero time itself, whatever the location.
	s, err = cron.ParseInLocation("0 0 30 2 *", ny)
	require.NoError(t, err)
	assert.True(t, s.Next(after).IsZero())
	assert.Equal(t, time.Time{}, s.Next(after))
}

// ParseInLocation(expr, time.Local) and a CRON_TZ=Local prefix read the
// fields in time.Local, not in the location of the time given to Next.
// (Where the machine's local zone is UTC the two cannot be told apart.)
func TestLocal(t *testing.T) {
	t.Parallel()
	after := time.Date(2025, 1, 1, 9, 0, 0, 0, time.Local).UTC()
	want := time.Date(2025, 1, 2, 9, 0, 0, 0, time.Local)

	inLocal, err := cron.ParseInLocation("0 9 * * *", time.Local)
	require.NoError(t, err)
	prefixed, err := cron.Parse("CRON_TZ=Local 0 9 * * *")
	require.NoError(t, err)
	for _, s := range []taskpool.Schedule{inLocal, prefixed} {
		got := s.Next(after)
		assert.True(t, want.Equal(got), "got %v, want %v", got, want)
		assert.Equal(t, time.UTC, got.Location())
	}
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give string
		want string // a part of the message
	}{
		{"empty", "", "empty spec"},
		{"blank", " \t\n", "empty spec"},
		{"too few fields", "0 9 * *", "expected exactly 5 fields"},
		{"seconds field", "0 0 9 * * *", "expected exactly 5 fields"},
		{"minute out of range", "60 * * * *", "above maximum"},
		{"hour out of range", "0 24 * * *", "above maximum"},
		{"day zero", "0 0 0 * *", "below minimum"},
		{"backwards range", "0 0 * * 5-1", "beyond end of range"},
		{"bad step", "*/0 * * * *", "step of range should be a positive number"},
		{"bad name", "0 0 * * FUNDAY", "failed to parse int"},
		{"unknown descriptor", "@fortnightly", "unrecognized descriptor"},
		{"bad every", "@every soon", "failed to parse duration"},
		{"unknown zone", "CRON_TZ=Mars/Olympus_Mons 0 9 * * *", "provided bad location"},
		{"zone only", "CRON_TZ=UTC", "no space after the time zone"},
		{"zone only, trailing space", "TZ=UTC ", "no space after the time zone"},
		{"tab after zone", "TZ=UTC\t@daily", "no space after the time zone"},
		{"empty zone", "CRON_TZ= 0 9 * * *", "empty time zone"},
		{"zone without expression", "CRON_TZ=UTC  ", "no space after the time zone"},
		{"zone, then nothing valid", "CRON_TZ=UTC 0 9", "expected exactly 5 fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := cron.Parse(tt.give)
			assert.Nil(t, s)
			require.ErrorIs(t, err, cron.ErrInvalidExpr)
			assert.True(t, strings.HasPrefix(err.Error(), "cron: "), err.Error())
			assert.Contains(t, err.Error(), tt.want)

			s, err = cron.ParseInLocation(tt.give, time.UTC)
			assert.Nil(t, s)
			assert.ErrorIs(t, err, cron.ErrInvalidExpr)
		})
	}
}

func TestParseInLocationNil(t *testing.T) {
	t.Parallel()
	s, err := cron.ParseInLocation("0 9 * * *", nil)
	assert.Nil(t, s)
	require.ErrorIs(t, err, cron.ErrInvalidExpr)
	assert.Contains(t, err.Error(), "nil location")
}

func TestErrInvalidExprMessage(t *testing.T) {
	t.Parallel()
	_, err := cron.Parse("0 9 * *")
	require.Error(t, err)
	assert.True(t, errors.Is(err, cron.ErrInvalidExpr))
	assert.Equal(t, `cron: invalid expression "0 9 * *": expected exactly 5 fields, found 4: [0 9 * *]`, err.Error())
}

// Next may be called from many goroutines at once.
func TestNextConcurrent(t *testing.T) {
	t.Parallel()
	s, err := cron.ParseInLocation("*/5 * * * *", mustLoad(t, "Europe/Berlin"))
	require.NoError(t, err)
	after := mustTime(t, "2025-01-01T10:01:00Z")
	done := make(chan time.Time)
	for range 8 {
		go func() { done <- s.Next(after) }()
	}
	for range 8 {
		assert.Equal(t, "2025-01-01T10:05:00Z", (<-done).UTC().Format(time.RFC3339))
	}
}

// Parse never panics, and a schedule it returns can be asked for Next.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "* * * * *", "0 9 * * 1-5", "@daily", "@every 1h", "TZ=UTC",
		"CRON_TZ=America/New_York 0 9 * * 1-5", "CRON_TZ= 0 9 * * *", "TZ=UTC\t@daily",
		"*/0 * * * *", "1-0 * * * *", "0 0 30 2 *", "@every -1s", "? ? ? ? ?",
	} {
		f.Add(s)
	}
	after := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, expr string) {
		s, err := cron.Parse(expr)
		if err != nil {
			require.ErrorIs(t, err, cron.ErrInvalidExpr)
			return
		}
		next := s.Next(after)
		assert.True(t, next.IsZero() || next.After(after), "Next(%v) = %v", after, next)
	})
}

// String is the expression a broker's client hands to its server.
func TestString(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	tests := []struct {
		give string
		loc  *time.Location
		want string
	}{
		{give: "  */5 * * * * ", want: "*/5 * * * *"},
		{give: "CRON_TZ=Europe/Paris 0 9 * * MON", want: "CRON_TZ=Europe/Paris 0 9 * * MON"},
		{give: "0 9 * * *", loc: ny, want: "CRON_TZ=America/New_York 0 9 * * *"},
		{give: "TZ=UTC 0 9 * * *", loc: ny, want: "TZ=UTC 0 9 * * *"},
		{give: "@daily", loc: time.Local, want: "@daily"},
		{give: "@every 1h", loc: ny, want: "@every 1h"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			var (
				s   taskpool.Schedule
				err error
			)
			if tt.loc == nil {
				s, err = cron.Parse(tt.give)
			} else {
				s, err = cron.ParseInLocation(tt.give, tt.loc)
			}
			require.NoError(t, err)
			require.Implements(t, (*fmt.Stringer)(nil), s)
			assert.Equal(t, tt.want, s.(fmt.Stringer).String())
		})
	}
}
