package dashboard_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Handler's doc: an action's body "over 4 KiB" is answered 413. A valid
// {"id": ...} followed by enough white space (which is otherwise fine
// after the value) to pass the limit was answered 400 "bad request",
// blaming its shape: the check for data after the value dropped the
// reader's *http.MaxBytesError.
func TestReview25dTrailingSpaceOverTheLimitIs413(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t)
	for _, tail := range []string{strings.Repeat(" ", 5000), strings.Repeat("\n\t ", 2000)} {
		for _, action := range []string{"requeue", "delete"} {
			code, resp := f.post(t, action, `{"id":"poison-1"}`+tail, tok)
			assert.Equal(t, http.StatusRequestEntityTooLarge, code, "%s: %s", action, resp)
			assert.Contains(t, resp, "over 4096 bytes")
		}
	}
	require.Len(t, f.s.DeadLetters(), 1, "nothing was done")
}
