// Package natstest tests the OpenTelemetry instrumentation on a NATS
// consumer, against the embedded server. It is a module of its own so that
// the otel module does not depend on the NATS broker.
package natstest
