package natsbroker

import "github.com/nats-io/nats.go/jetstream"

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
