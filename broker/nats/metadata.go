package natsbroker

import (
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

// setMetadata writes t's metadata into h. t has passed Validate: every
// entry travels as a header unchanged.
func setMetadata(h nats.Header, t taskpool.Task) {
	for k, v := range t.Metadata {
		h.Set(MetadataHeaderPrefix+k, v)
	}
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
