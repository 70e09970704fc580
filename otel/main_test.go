package taskpoolotel_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/taskpool/taskpool"
	taskpoolotel "github.com/taskpool/taskpool/otel"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// telemetry is an SDK tracer provider exporting to memory, synchronously,
// and an SDK meter provider read by hand.
type telemetry struct {
	spans  *tracetest.InMemoryExporter
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newTelemetry(t *testing.T) *telemetry {
	t.Helper()
	tel := &telemetry{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(tel.spans))
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	t.Cleanup(func() {
		ctx := context.Background()
		require.NoError(t, tel.tp.Shutdown(ctx))
		require.NoError(t, tel.mp.Shutdown(ctx))
	})
	return tel
}

func (tel *telemetry) opts(extra ...taskpoolotel.Option) []taskpoolotel.Option {
	return append([]taskpoolotel.Option{
		taskpoolotel.WithTracerProvider(tel.tp),
		taskpoolotel.WithMeterProvider(tel.mp),
	}, extra...)
}

// collect reads every metric of the package's scope, by name.
func (tel *telemetry) collect(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, tel.reader.Collect(context.Background(), &rm))
	out := make(map[string]metricdata.Metrics)
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != taskpoolotel.ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// matches reports whether set holds every attribute of want.
func matches(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		v, ok := set.Value(kv.Key)
		if !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// sum adds the int64 points of a sum (counter or up-down counter) whose
// attributes hold want; found is false when no point matched.
func sum(t *testing.T, m metricdata.Metrics, want ...attribute.KeyValue) (total int64, found bool) {
	t.Helper()
	s, ok := m.Data.(metricdata.Sum[int64])
	require.Truef(t, ok, "%s is %T, not an int64 sum", m.Name, m.Data)
	for _, dp := range s.DataPoints {
		if matches(dp.Attributes, want) {
			total += dp.Value
			found = true
		}
	}
	return total, found
}

// histCount returns the count and sum of the float64 histogram points
// whose attributes hold want.
func histCount(t *testing.T, m metricdata.Metrics, want ...attribute.KeyValue) (count uint64, total float64) {
	t.Helper()
	h, ok := m.Data.(metricdata.Histogram[float64])
	require.Truef(t, ok, "%s is %T, not a float64 histogram", m.Name, m.Data)
	for _, dp := range h.DataPoints {
		if matches(dp.Attributes, want) {
			count += dp.Count
			total += dp.Sum
		}
	}
	return count, total
}

func intHist(t *testing.T, m metricdata.Metrics, want ...attribute.KeyValue) (count uint64, total int64) {
	t.Helper()
	h, ok := m.Data.(metricdata.Histogram[int64])
	require.Truef(t, ok, "%s is %T, not an int64 histogram", m.Name, m.Data)
	for _, dp := range h.DataPoints {
		if matches(dp.Attributes, want) {
			count += dp.Count
			total += dp.Sum
		}
	}
	return count, total
}

// outcomes collects completion-hook outcomes and lets a test wait for n
// of them.
type outcomes struct {
	ch chan taskpool.Outcome
}

func newOutcomes(n int) *outcomes { return &outcomes{ch: make(chan taskpool.Outcome, n)} }

func (o *outcomes) hook(out taskpool.Outcome) { o.ch <- out }

func (o *outcomes) wait(t *testing.T, n int) map[string]taskpool.Outcome {
	t.Helper()
	got := make(map[string]taskpool.Outcome, n)
	timeout := time.After(20 * time.Second)
	for len(got) < n {
		select {
		case out := <-o.ch:
			got[out.Task.ID] = out
		case <-timeout:
			t.Fatalf("timed out with %d of %d outcomes", len(got), n)
		}
	}
	return got
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// start makes and starts a scheduler, stopped when the test ends.
func start(t *testing.T, h taskpool.Handler, opts ...taskpool.Option) *taskpool.Scheduler {
	t.Helper()
	s, err := taskpool.New(h, opts...)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}
