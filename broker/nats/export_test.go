package natsbroker

import (
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taskpool/taskpool"
)

// ReferenceDecode exposes the encoding/json-only decoder to the black-box
// tests, which check that JSONCodec.Decode's fast path agrees with it.
var ReferenceDecode = decodeSlow

// CurrentPrefetch is the consumer's current prefetch.
func (c *Consumer) CurrentPrefetch() int { return int(c.prefetchN.Load()) }

// Measured returns the consumer's handler run time and fetch round trip
// averages.
func (c *Consumer) Measured() (run, rtt int64) {
	return int64(c.runTime.get()), int64(c.fetchRTT.get())
}

// WrapGlobalSlots replaces the consumer's slots bucket by wrap's result,
// for fault injection; call it before Start.
func (c *Consumer) WrapGlobalSlots(wrap func(jetstream.KeyValue) jetstream.KeyValue) {
	c.q.slots = wrap(c.q.slots)
}

// ServerSchedule exposes the translation of a Schedule spec into the
// server's pattern and zone, which FuzzScheduleSpec checks.
var ServerSchedule = serverSchedule

// MetadataOf exposes how a consumer reads a task's metadata from the
// headers of its message.
var MetadataOf = metadataOf

// NewOfflineProducer returns a Producer of the queue opts name that is
// connected to no server: only Message may be called on it. schedules
// says whether the server runs per-message schedules.
func NewOfflineProducer(schedules bool, opts ...Option) (*Producer, error) {
	cfg, err := newConfig(opts, forProducer)
	if err != nil {
		return nil, err
	}
	return &Producer{cfg: cfg, q: &queue{names: newNames(cfg.queue), schedules: schedules}}, nil
}

// Message is the message Enqueue publishes for t, due at at (zero for
// now).
func (p *Producer) Message(t taskpool.Task, at time.Time) (*nats.Msg, error) { return p.message(t, at) }

// Header names of a delayed message.
const (
	HeaderSchedule       = hdrSchedule
	HeaderScheduleTarget = hdrScheduleTarget
)

// WrapTasks replaces the producer's task stream by wrap's result, for
// fault injection.
func (p *Producer) WrapTasks(wrap func(jetstream.Stream) jetstream.Stream) {
	p.q.tasks = wrap(p.q.tasks)
}

// WrapDeadLetters replaces the inspector's dead-letter stream by wrap's
// result, for fault injection.
func (i *Inspector) WrapDeadLetters(wrap func(jetstream.Stream) jetstream.Stream) {
	i.q.dlq = wrap(i.q.dlq)
}

// WrapJetStream replaces the inspector's JetStream by wrap's result, for
// fault injection (Resubmit's publish).
func (i *Inspector) WrapJetStream(wrap func(jetstream.JetStream) jetstream.JetStream) {
	i.q.js = wrap(i.q.js)
}
