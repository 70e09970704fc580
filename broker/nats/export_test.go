package natsbroker

// ReferenceDecode exposes the encoding/json-only decoder to the black-box
// tests, which check that JSONCodec.Decode's fast path agrees with it.
var ReferenceDecode = decodeSlow
