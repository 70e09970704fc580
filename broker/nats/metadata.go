package natsbroker

import (
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/taskpool/taskpool"
)

// MetadataHeaderPrefix is the header prefix that carries a task's
// [taskpool.Task.Metadata] on the wire: the entry "tenant" = "acme" is
// the header "Taskpool-Meta-tenant: acme". Keys keep their case. A
// consumer gives the handler every header with this prefix as Metadata,
// and a dead letter keeps them. A key must be a non-empty header token
// (letters, digits and !#$%&'*+-.^_`|~) and a value must hold no control
// character and not begin or end with a space, so that it comes back as it
// was sent: Enqueue rejects anything else with an error wrapping
// [taskpool.ErrInvalidTask].
const MetadataHeaderPrefix = "Taskpool-Meta-"

// setMetadata writes t's metadata into h, or returns an error wrapping
// taskpool.ErrInvalidTask for an entry that cannot travel as a header.
func setMetadata(h nats.Header, t taskpool.Task) error {
	for k, v := range t.Metadata {
		if !validMetaKey(k) {
			return fmt.Errorf("%w: task %s: metadata key %q is not a header token", taskpool.ErrInvalidTask, t.Type, k)
		}
		if !validMetaValue(v) {
			return fmt.Errorf("%w: task %s: metadata %q: value %q has a control character or a leading or trailing space", taskpool.ErrInvalidTask, t.Type, k, v)
		}
		h.Set(MetadataHeaderPrefix+k, v)
	}
	return nil
}

// metadataOf returns the metadata carried by h, or nil when there is none.
func metadataOf(h nats.Header) map[string]string {
	var md map[string]string
	for k, v := range h {
		if len(v) == 0 || !strings.HasPrefix(k, MetadataHeaderPrefix) || len(k) == len(MetadataHeaderPrefix) {
			continue
		}
		if md == nil {
			md = make(map[string]string, len(h))
		}
		md[k[len(MetadataHeaderPrefix):]] = v[0]
	}
	return md
}

func validMetaKey(k string) bool {
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

func validMetaValue(v string) bool {
	if v != "" && (v[0] == ' ' || v[len(v)-1] == ' ') {
		return false // the header parser trims them
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
