package dashboard_test

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/dashboard"
)

// A payload longer than the page shows (16 KiB) is cut at a character
// boundary: a multi-byte character across the limit is left out whole,
// not split into bytes that the JSON state would show as U+FFFD.
func TestPayloadClippedAtRuneBoundary(t *testing.T) {
	const limit = 16 << 10
	tests := []struct {
		give string
		want string // before the ellipsis
	}{
		{give: strings.Repeat("a", limit-1) + "é" + "tail", want: strings.Repeat("a", limit-1)},
		{give: strings.Repeat("a", limit-2) + "€" + "tail", want: strings.Repeat("a", limit-2)},
		{give: strings.Repeat("a", limit-1) + "😀" + "tail", want: strings.Repeat("a", limit-1)},
		{give: strings.Repeat("a", limit-2) + "é" + "tail", want: strings.Repeat("a", limit-2) + "é"},
		{give: strings.Repeat("é", limit/2) + "tail", want: strings.Repeat("é", limit/2)},
	}
	for _, tt := range tests {
		got := deadPayload(t, tt.give)
		assert.True(t, utf8.ValidString(got), "not valid UTF-8")
		assert.NotContains(t, got, "\uFFFD")
		// Compared by length and end: a 16 KiB diff says nothing.
		assert.Equal(t, len(tt.want+"…"), len(got))
		assert.True(t, got == tt.want+"…", "ends with %q, want %q", tail(got), tail(tt.want+"…"))
	}
	full := strings.Repeat("é", limit/2)
	assert.True(t, deadPayload(t, full) == full, "cut at the limit")
}

// tail returns the last dozen bytes of s.
func tail(s string) string { return s[max(0, len(s)-12):] }

// deadPayload dead-letters a task with params p in a scheduler and returns
// its payload as the dashboard's source shows it.
func deadPayload(t *testing.T, p string) string {
	t.Helper()
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("fail", func(context.Context, taskpool.Task) error {
		return taskpool.SkipRetry(errBoom)
	}))
	s, err := taskpool.New(reg, taskpool.WithDeadLetters(1, nil))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	defer func() { assert.NoError(t, s.Stop(context.Background())) }()
	fut, err := s.SubmitFuture(context.Background(), taskpool.Task{Type: "fail", Params: p})
	require.NoError(t, err)
	_, err = fut.Wait(context.Background())
	require.ErrorIs(t, err, errBoom)
	snap, err := dashboard.NewSchedulerSource(s, nil).Snapshot(context.Background())
	require.NoError(t, err)
	require.Len(t, snap.Dead, 1)
	return snap.Dead[0].Payload
}
