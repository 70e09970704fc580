package natsbroker

import (
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// WithDeadLetterLimits bounds the dead-letter stream, which otherwise
// keeps every dead letter for ever: dead letters older than maxAge are
// removed, and once the stream holds more than maxBytes the oldest are
// removed to make room. Zero means no limit of that kind. A maxAge shorter
// than the duplicate window also shortens the dead-letter stream's window
// (which makes a dead-lettering repeated after a crash store one dead
// letter) to maxAge, as the server requires. Like the other
// queue settings it applies when the queue is created; a process that
// opens an existing queue with other limits gets [ErrQueueMismatch],
// unless it also gives [WithReconfigure], which applies them.
func WithDeadLetterLimits(maxAge time.Duration, maxBytes int64) Option {
	return optionFunc(func(c *config) error {
		if maxAge < 0 || (maxAge > 0 && maxAge < time.Second) {
			return invalid("dead-letter max age", maxAge)
		}
		if maxBytes < 0 {
			return invalid("dead-letter max bytes", maxBytes)
		}
		c.deadMaxAge, c.deadMaxBytes = maxAge, maxBytes
		c.explicit |= setDeadLimits
		return nil
	})
}

// deadLimits sets the dead-letter stream's limits in sc from c.
func deadLimits(c *config, sc *jetstream.StreamConfig) {
	sc.MaxAge = c.deadMaxAge
	sc.MaxBytes = unlimited(c.deadMaxBytes)
	sc.Discard = jetstream.DiscardOld
	sc.Duplicates = deadDuplicates(sc.Duplicates, sc.MaxAge)
}

// deadDuplicates is the dead-letter stream's duplicate window: the
// queue's, but no longer than the stream's max age, which the server
// requires (a dead letter is not kept past it anyway).
func deadDuplicates(window, maxAge time.Duration) time.Duration {
	if maxAge > 0 && window > maxAge {
		return maxAge
	}
	return window
}

// unlimited maps "no limit" (zero or negative) to the server's -1.
func unlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// deadLimitsMismatch compares the limits of an existing dead-letter stream
// with those given by WithDeadLetterLimits.
func deadLimitsMismatch(have, want jetstream.StreamConfig, m *mismatch) {
	m.check("dead-letter max age", have.MaxAge, want.MaxAge)
	m.check("dead-letter max bytes", unlimited(have.MaxBytes), unlimited(want.MaxBytes))
}

// WithPlacement places the queue's streams and buckets on the servers of
// cluster (empty: any) that carry every one of tags (a server's
// configuration gives it tags such as "az:eu-1"): with replicas, on
// servers in other zones. It applies when the queue is created; a process
// that opens an existing queue with another placement gets
// [ErrQueueMismatch], unless it also gives [WithReconfigure], which asks
// the server to move the streams. At least one of cluster and tags must
// be given.
func WithPlacement(cluster string, tags ...string) Option {
	return optionFunc(func(c *config) error {
		if cluster == "" && len(tags) == 0 {
			return invalid("placement", "no cluster and no tags")
		}
		for _, t := range tags {
			if t == "" {
				return invalid("placement tag", `""`)
			}
		}
		c.placement = &jetstream.Placement{Cluster: cluster, Tags: append([]string(nil), tags...)}
		c.explicit |= setPlacement
		return nil
	})
}

// samePlacement compares two placements, nil meaning none.
func samePlacement(a, b *jetstream.Placement) bool {
	if a == nil || b == nil {
		return a == b || (a != nil && a.Cluster == "" && len(a.Tags) == 0) || (b != nil && b.Cluster == "" && len(b.Tags) == 0)
	}
	if a.Cluster != b.Cluster || len(a.Tags) != len(b.Tags) {
		return false
	}
	for i := range a.Tags {
		if a.Tags[i] != b.Tags[i] {
			return false
		}
	}
	return true
}

// placementText is p for a mismatch message.
func placementText(p *jetstream.Placement) string {
	if p == nil {
		return "none"
	}
	return "cluster " + p.Cluster + " tags " + strings.Join(p.Tags, ",")
}
