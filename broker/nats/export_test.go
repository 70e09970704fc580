package natsbroker

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
