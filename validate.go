package taskpool

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxIDLength is the longest task ID or unique key, in bytes, that
// [Task.Validate] accepts: the NATS broker names delayed tasks, results
// and unique keys by subjects holding the ID or key in base64 (4 bytes for
// 3), and one of about 3 KB would pass the server's default limit on a
// protocol line (4 KiB), which makes the server close the connection;
// 1024 leaves room for the rest of the line.
const MaxIDLength = 1024

// MaxScheduleIDLength is the longest periodic schedule id, in bytes, that
// SchedulePeriodic accepts on either transport: each activation's task ID
// is the id followed by "@" and the activation time (RFC 3339 in UTC with
// nanoseconds, at most 31 bytes more for a time before the year 10000),
// which must itself be at most [MaxIDLength].
const MaxScheduleIDLength = MaxIDLength - len("@2006-01-02T15:04:05.999999999Z")

// Validate reports whether every transport accepts t, as far as t alone
// can tell (whether its type has a handler, or its unique key is free, is
// for the scheduler or the broker to say). It returns an error wrapping
// [ErrInvalidType] for an empty Type, and [ErrInvalidTask] for:
//
//   - a negative Attempt or MaxAttempts;
//   - an ID, Type or UniqueKey that is not valid UTF-8;
//   - an ID or UniqueKey longer than [MaxIDLength] bytes;
//   - an ID with an ASCII control character (U+0000 to U+001F, or DEL),
//     or with a space at either end;
//   - a Metadata key that is not a header token (ASCII letters, digits and
//     !#$%&'*+-.^_`|~), or a value with an ASCII control character or a
//     space at either end.
//
// These are the rules of a task that travels as a message with headers
// (the NATS broker sends the ID and the metadata as headers, which cannot
// carry the rest unchanged, and names delayed tasks, results and unique
// keys by subjects made of the ID or key, which a server limits in
// length). [Scheduler.Submit] and every other way of submitting apply them
// in process as well, so that a task accepted by one transport is accepted
// by the other, and means the same on both.
func (t Task) Validate() error {
	if err := t.validateHead(); err != nil {
		return err
	}
	if !utf8.ValidString(t.Type) {
		return fmt.Errorf("%w: type %q must be valid UTF-8", ErrInvalidTask, t.Type)
	}
	return t.validateFields()
}

// validateHead is what Submit checks on every task: a type, and no
// negative attempts. It is small enough to be inlined on Submit's path;
// headErr, which formats the error, is not.
func (t *Task) validateHead() error {
	if t.Type == "" || t.Attempt < 0 || t.MaxAttempts < 0 {
		return t.headErr()
	}
	return nil
}

// headErr is validateHead's error.
func (t *Task) headErr() error {
	if t.Type == "" {
		return fmt.Errorf("%w: empty", ErrInvalidType)
	}
	return fmt.Errorf("%w: task %s: attempt %d, max attempts %d", ErrInvalidTask, t.Type, t.Attempt, t.MaxAttempts)
}

// validateFields is Validate without the checks that Submit makes on every
// task (an empty type, negative attempts) or once per type (UTF-8): what a
// task with an ID, a unique key or metadata must pass as well.
func (t *Task) validateFields() error {
	if !utf8.ValidString(t.ID) || !utf8.ValidString(t.UniqueKey) {
		return fmt.Errorf("%w: task %s: ID %q and unique key %q must be valid UTF-8", ErrInvalidTask, t.Type, t.ID, t.UniqueKey)
	}
	if len(t.ID) > MaxIDLength || len(t.UniqueKey) > MaxIDLength {
		return fmt.Errorf("%w: task %s: ID of %d bytes, unique key of %d, at most %d each", ErrInvalidTask, t.Type, len(t.ID), len(t.UniqueKey), MaxIDLength)
	}
	if !headerValue(t.ID) {
		return fmt.Errorf("%w: task %s: ID %q has a control character or a space at an end", ErrInvalidTask, t.Type, t.ID)
	}
	for k, v := range t.Metadata {
		if !headerToken(k) {
			return fmt.Errorf("%w: task %s: metadata key %q is not a header token", ErrInvalidTask, t.Type, k)
		}
		if !headerValue(v) {
			return fmt.Errorf("%w: task %s: metadata %q: value %q has a control character or a space at an end", ErrInvalidTask, t.Type, k, v)
		}
	}
	return nil
}

// headerToken reports whether k is a header field name (RFC 9110's token).
func headerToken(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// headerValue reports whether v travels as a header value unchanged: no
// ASCII control character, and no space at either end (header parsers trim
// them).
func headerValue(v string) bool {
	if v != "" && (v[0] == ' ' || v[len(v)-1] == ' ') {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
