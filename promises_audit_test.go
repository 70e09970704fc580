package taskpool_test

// Promises of Task.Validate, MaxIDLength, MaxScheduleIDLength, Future and
// the submission paths that no other test covered; each test is named
// after the promise it checks.

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// Task.Validate: "an ID with an ASCII control character (U+0000 to
// U+001F, or DEL), or with a space at either end" and "a Metadata key
// that is not a header token (ASCII letters, digits and
// !#$%&'*+-.^_`|~), or a value with an ASCII control character or a
// space at either end" are refused with ErrInvalidTask, byte by byte:
// every one-byte key is accepted exactly when it is in the token set, and
// every ASCII control character is refused in an ID and in a value, at
// either end and inside. A space inside, and other characters, pass: a
// control character beyond ASCII (U+0085) among them, which the sentence
// said "a control character" of until Validate was found to accept it.
func TestAuditValidateHeaderRulesByteByByte(t *testing.T) {
	t.Parallel()
	const punct = "!#$%&'*+-.^_`|~"
	for c := 0; c < 256; c++ {
		k := string([]byte{byte(c)})
		isToken := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c < 0x80 && strings.IndexByte(punct, byte(c)) >= 0
		err := taskpool.Task{Type: "t", Metadata: map[string]string{k: "v"}}.Validate()
		if isToken {
			assert.NoError(t, err, "key %q", k)
		} else {
			assert.ErrorIs(t, err, taskpool.ErrInvalidTask, "key %q", k)
		}
	}
	require.NoError(t, taskpool.Task{Type: "t", Metadata: map[string]string{punct + "aZ09": "v"}}.Validate(),
		"a key of every token character")

	ctl := make([]byte, 0, 33)
	for c := byte(0); c < 0x20; c++ {
		ctl = append(ctl, c)
	}
	ctl = append(ctl, 0x7f)
	for _, c := range ctl {
		for _, v := range []string{string(c) + "x", "x" + string(c), "x" + string(c) + "y"} {
			assert.ErrorIs(t, taskpool.Task{Type: "t", ID: v}.Validate(), taskpool.ErrInvalidTask, "ID %q", v)
			assert.ErrorIs(t, taskpool.Task{Type: "t", Metadata: map[string]string{"k": v}}.Validate(),
				taskpool.ErrInvalidTask, "value %q", v)
		}
	}
	for _, v := range []string{" x", "x "} {
		assert.ErrorIs(t, taskpool.Task{Type: "t", ID: v}.Validate(), taskpool.ErrInvalidTask, "ID %q", v)
		assert.ErrorIs(t, taskpool.Task{Type: "t", Metadata: map[string]string{"k": v}}.Validate(),
			taskpool.ErrInvalidTask, "value %q", v)
	}
	for _, v := range []string{"x y", "é~!\"(),/:;<=>?@[\\]{}", "\u00a0x\u00a0", "x\u0085y"} {
		assert.NoError(t, taskpool.Task{Type: "t", ID: v}.Validate(), "ID %q", v)
		assert.NoError(t, taskpool.Task{Type: "t", Metadata: map[string]string{"k": v}}.Validate(), "value %q", v)
	}
}
