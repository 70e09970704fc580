package taskpoolotel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/taskpool/taskpool"
	taskpoolotel "github.com/taskpool/taskpool/otel"
)

var errNoInstrument = errors.New("test: no instrument")

// failingMeterProvider's meter creates no synchronous instrument: it
// returns a nil one and an error, as a meter that cannot create it may.
type failingMeterProvider struct{ noop.MeterProvider }

func (failingMeterProvider) Meter(string, ...metric.MeterOption) metric.Meter {
	return failingMeter{}
}

type failingMeter struct{ noop.Meter }

func (failingMeter) Int64Counter(string, ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	return nil, errNoInstrument
}

func (failingMeter) Int64Histogram(string, ...metric.Int64HistogramOption) (metric.Int64Histogram, error) {
	return nil, errNoInstrument
}

func (failingMeter) Float64Histogram(string, ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	return nil, errNoInstrument
}

// Middleware, CompletionHook, DeadLetterHook and NewClient promise that
// "an instrument that cannot be created is reported to otel.Handle and
// replaced by a no-op": with a meter that returns no instrument, tasks
// still run, succeed and complete, and the hooks and the client record
// nothing rather than panic on a nil instrument.
func TestReview26bInstrumentsThatCannotBeCreatedAreNoOps(t *testing.T) {
	tel := newTelemetry(t)
	opts := []taskpoolotel.Option{
		taskpoolotel.WithTracerProvider(tel.tp),
		taskpoolotel.WithMeterProvider(failingMeterProvider{}),
	}
	completion := taskpoolotel.CompletionHook(opts...)
	dead := taskpoolotel.DeadLetterHook(opts...)
	outs := newOutcomes(1)
	s := start(t, taskpool.HandlerFunc(func(context.Context, taskpool.Task) error { return nil }),
		taskpool.WithMiddleware(taskpoolotel.Middleware(opts...)),
		taskpool.WithCompletionHook(outs.hook))
	c := taskpoolotel.NewClient(s, opts...)
	require.NoError(t, c.Submit(ctxT(t), taskpool.Task{ID: "m-1", Type: "t", Metadata: map[string]string{
		taskpoolotel.MetadataEnqueuedAt: time.Now().UTC().Format(time.RFC3339Nano),
	}}))
	got := outs.wait(t, 1)
	require.NoError(t, got["m-1"].Err, "the run failed on a nil instrument")
	assert.NotPanics(t, func() { completion(got["m-1"]) })
	assert.NotPanics(t, func() { dead(taskpool.Outcome{Task: taskpool.Task{Type: "t"}, Err: errors.New("x")}) })
	assert.Len(t, tel.spans.GetSpans(), 2, "a send and a process span")
}
