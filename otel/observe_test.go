package taskpoolotel_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/taskpool/taskpool"
	taskpoolotel "github.com/taskpool/taskpool/otel"
)

// TestObserve checks the gauges and counters read from Stats while the
// worker is held busy, with tasks queued, delayed and paused, and after the
// scheduler stopped.
//
// One worker: with two or more handlers running at once, Stats (core,
// d7a6927) counts one run too many as succeeded, and one task too few as
// queued, per two running handlers (it halves the sum of the workers'
// start/end ticks, odd for each running worker, instead of summing each
// worker's half).
func TestObserve(t *testing.T) {
	tel := newTelemetry(t)
	started := make(chan string, 10)
	release := make(chan struct{})
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("block", func(_ context.Context, tk taskpool.Task) error {
		started <- tk.ID
		<-release
		return nil
	}))
	require.NoError(t, reg.HandleFunc("fail", func(context.Context, taskpool.Task) error { return errBoom },
		taskpool.WithRetry(2, taskpool.ConstantBackoff(time.Millisecond))))
	outs := newOutcomes(10)
	s, err := taskpool.New(reg, taskpool.WithWorkers(1), taskpool.WithCompletionHook(outs.hook))
	require.NoError(t, err)
	reg1, err := taskpoolotel.Observe(s, tel.opts(
		taskpoolotel.WithQueue("q"),
		taskpoolotel.WithAttributes(attribute.String("scheduler", "one")))...)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	ctx := ctxT(t)

	// One task fails twice (retried once); wait for its final outcome.
	require.NoError(t, s.Submit(ctx, taskpool.Task{ID: "f", Type: "fail"}))
	outs.wait(t, 1)

	// One task holds the worker, four more wait, one is delayed.
	for _, id := range []string{"b1", "b2", "b3", "b4", "b5"} {
		require.NoError(t, s.Submit(ctx, taskpool.Task{ID: id, Type: "block"}))
	}
	require.NoError(t, s.SubmitAfter(ctx, taskpool.Task{ID: "later", Type: "block"}, time.Hour))
	<-started
	require.NoError(t, s.Pause())

	m := tel.collect(t)
	want := []attribute.KeyValue{
		attribute.String("messaging.system", "taskpool"),
		attribute.String("messaging.destination.name", "q"),
		attribute.String("scheduler", "one"),
	}
	value := func(name string) int64 {
		t.Helper()
		require.Contains(t, m, name)
		v, found := sum(t, m[name], want...)
		require.True(t, found, "%s has a point with the attributes", name)
		return v
	}
	assert.Equal(t, int64(1), value(taskpoolotel.MetricRunning))
	assert.Equal(t, int64(1), value(taskpoolotel.MetricWorkers))
	assert.Equal(t, 1.0, gaugeValue(t, m, taskpoolotel.MetricUtilization, want...), "the one worker is busy")
	assert.Equal(t, int64(4), value(taskpoolotel.MetricQueued))
	byPrio := func(p string) int64 {
		t.Helper()
		v, found := sum(t, m[taskpoolotel.MetricQueued], append(want, taskpoolotel.TaskPriorityKey.String(p))...)
		require.True(t, found, "a queued point for priority %s", p)
		return v
	}
	assert.Equal(t, int64(4), byPrio("default"), "the four waiting tasks have the default priority")
	assert.Equal(t, int64(0), byPrio("high"))
	assert.Equal(t, int64(0), byPrio("low"))
	assert.Equal(t, int64(1), value(taskpoolotel.MetricDelayed))
	assert.Equal(t, int64(1), value(taskpoolotel.MetricPaused))
	assert.Equal(t, int64(7), value(taskpoolotel.MetricSubmitted))
	assert.Equal(t, int64(1), value(taskpoolotel.MetricTotalFailed))
	assert.Equal(t, int64(1), value(taskpoolotel.MetricRetried))
	assert.Equal(t, int64(0), value(taskpoolotel.MetricTotalSucceeded))
	assert.False(t, m[taskpoolotel.MetricRunning].Data.(metricdata.Sum[int64]).IsMonotonic, "a current value")
	assert.True(t, m[taskpoolotel.MetricSubmitted].Data.(metricdata.Sum[int64]).IsMonotonic, "a total")

	require.NoError(t, s.Resume())
	close(release)
	outs.wait(t, 5)
	require.NoError(t, s.Stop(ctx)) // reports "later" as not run

	m = tel.collect(t)
	assert.Equal(t, int64(5), value(taskpoolotel.MetricTotalSucceeded))
	assert.Equal(t, int64(1), value(taskpoolotel.MetricNotRun))
	assert.Equal(t, int64(0), value(taskpoolotel.MetricRunning))
	assert.Equal(t, 0.0, gaugeValue(t, m, taskpoolotel.MetricUtilization, want...))
	assert.Equal(t, int64(0), value(taskpoolotel.MetricQueued))
	assert.Equal(t, int64(0), value(taskpoolotel.MetricDelayed))
	assert.Equal(t, int64(0), value(taskpoolotel.MetricPaused))
	assert.Equal(t, int64(0), value(taskpoolotel.MetricCanceled))
	assert.Equal(t, int64(0), value(taskpoolotel.MetricPanicked))

	// Once unregistered, the scheduler is no longer read.
	require.NoError(t, reg1.Unregister())
	m = tel.collect(t)
	if q, ok := m[taskpoolotel.MetricQueued]; ok {
		_, found := sum(t, q, want...)
		assert.False(t, found)
	}
}

// statsFunc is a StatsReader that is not a Scheduler, as the NATS
// consumer is.
type statsFunc func() taskpool.Stats

func (f statsFunc) Stats() taskpool.Stats { return f() }

// TestObserveTwoSources checks that two sources told apart by their
// attributes report their own values.
func TestObserveTwoSources(t *testing.T) {
	tel := newTelemetry(t)
	a, err := taskpoolotel.Observe(statsFunc(func() taskpool.Stats { return taskpool.Stats{Queued: 4, Workers: 8} }),
		tel.opts(taskpoolotel.WithQueue("a"))...)
	require.NoError(t, err)
	b, err := taskpoolotel.Observe(statsFunc(func() taskpool.Stats { return taskpool.Stats{Queued: 9, Workers: 1} }),
		tel.opts(taskpoolotel.WithQueue("b"))...)
	require.NoError(t, err)
	m := tel.collect(t)
	qa, _ := sum(t, m[taskpoolotel.MetricQueued], attribute.String("messaging.destination.name", "a"))
	qb, _ := sum(t, m[taskpoolotel.MetricQueued], attribute.String("messaging.destination.name", "b"))
	all, _ := sum(t, m[taskpoolotel.MetricWorkers])
	assert.Equal(t, 0.0, gaugeValue(t, m, taskpoolotel.MetricUtilization, attribute.String("messaging.destination.name", "a")))
	assert.Equal(t, int64(4), qa)
	assert.Equal(t, int64(9), qb)
	assert.Equal(t, int64(9), all)
	require.NoError(t, a.Unregister())
	require.NoError(t, b.Unregister())

	_, err = taskpoolotel.Observe(nil)
	assert.Error(t, err)

	// Utilization is running/workers, and 0 without workers.
	c, err := taskpoolotel.Observe(statsFunc(func() taskpool.Stats { return taskpool.Stats{Running: 3, Workers: 4} }),
		tel.opts(taskpoolotel.WithQueue("c"))...)
	require.NoError(t, err)
	d, err := taskpoolotel.Observe(statsFunc(func() taskpool.Stats { return taskpool.Stats{} }),
		tel.opts(taskpoolotel.WithQueue("d"))...)
	require.NoError(t, err)
	m = tel.collect(t)
	assert.Equal(t, 0.75, gaugeValue(t, m, taskpoolotel.MetricUtilization, attribute.String("messaging.destination.name", "c")))
	assert.Equal(t, 0.0, gaugeValue(t, m, taskpoolotel.MetricUtilization, attribute.String("messaging.destination.name", "d")))
	require.NoError(t, c.Unregister())
	require.NoError(t, d.Unregister())
}

// gaugeValue returns the value of the float64 gauge point whose attributes
// hold want; it fails the test when there is none.
func gaugeValue(t *testing.T, m map[string]metricdata.Metrics, name string, want ...attribute.KeyValue) float64 {
	t.Helper()
	require.Contains(t, m, name)
	g, ok := m[name].Data.(metricdata.Gauge[float64])
	require.Truef(t, ok, "%s is %T, not a float64 gauge", name, m[name].Data)
	for _, dp := range g.DataPoints {
		if matches(dp.Attributes, want) {
			return dp.Value
		}
	}
	t.Fatalf("%s has no point with %v", name, want)
	return 0
}
