package taskpoolotel

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/taskpool/taskpool"
)

// StatsReader is what [Observe] reads. A [*taskpool.Scheduler] is one, and
// so is the NATS broker's *Consumer, whose Stats count deliveries: a
// delivery the broker retries counts as failed, and retried stays 0 (see
// its Stats method).
type StatsReader interface {
	Stats() taskpool.Stats
}

// ErrNilStatsReader is returned, wrapped, by [Observe] for a nil
// StatsReader: its Stats would panic at the first collection.
var ErrNilStatsReader = errors.New("taskpoolotel: Observe: nil StatsReader")

// Names of the instruments [Observe] registers. The first five are
// observable up-down counters (gauges in Prometheus): current values that
// add up across schedulers. Utilization is an observable gauge: a ratio,
// which does not add up. The others are observable counters: totals since
// the scheduler was made.
const (
	MetricQueued  = "taskpool.scheduler.queued"
	MetricRunning = "taskpool.scheduler.running"
	MetricDelayed = "taskpool.scheduler.delayed"
	MetricWorkers = "taskpool.scheduler.workers"
	MetricPaused  = "taskpool.scheduler.paused"
	// MetricUtilization is a gauge: the share of workers running a
	// handler, running/workers, from 0 to 1 (0 without workers).
	MetricUtilization = "taskpool.scheduler.utilization"

	MetricSubmitted      = "taskpool.scheduler.submitted"
	MetricTotalSucceeded = "taskpool.scheduler.succeeded"
	MetricTotalFailed    = "taskpool.scheduler.failed"
	MetricRetried        = "taskpool.scheduler.retried"
	MetricPanicked       = "taskpool.scheduler.panicked"
	MetricNotRun         = "taskpool.scheduler.not_run"
	MetricCanceled       = "taskpool.scheduler.canceled"
)

// Observe registers instruments whose values are read from s.Stats() at
// each collection: tasks queued (one point per priority, with
// taskpool.task.priority; a reader that leaves Stats.QueuedByPriority
// empty reports its total without it), running and delayed, workers and whether
// the scheduler is paused (1) or not (0), the workers' utilization
// (running/workers, a gauge); and the totals of tasks
// submitted, succeeded, failed, retried, panicked, not run and canceled.
// Every value carries messaging.system and, with [WithQueue] and
// [WithAttributes], the queue and other attributes that tell schedulers
// apart. The tracer provider option is not used.
//
// Unregister the returned registration when s is gone: until then the
// meter keeps s. It returns an error wrapping [ErrNilStatsReader] when s is
// nil (a nil interface, or a nil pointer, such as the *Scheduler of a New
// whose error was not checked, func, map, chan or slice), and an error when
// an instrument or the callback cannot be registered.
func Observe(s StatsReader, opts ...Option) (metric.Registration, error) {
	if isNil(s) {
		return nil, fmt.Errorf("%w: %T", ErrNilStatsReader, s)
	}
	c := newConfig(opts)
	meter := c.meter()
	base := append([]attribute.KeyValue{attrSystem}, c.extra()...)
	attrs := metric.WithAttributeSet(attribute.NewSet(base...))
	// Queued is reported per priority, in the order of
	// Stats.QueuedByPriority.
	var byPrio [3]metric.ObserveOption
	for i, p := range [3]taskpool.Priority{taskpool.PriorityHigh, taskpool.PriorityDefault, taskpool.PriorityLow} {
		kv := append(append([]attribute.KeyValue(nil), base...), TaskPriorityKey.String(p.String()))
		byPrio[i] = metric.WithAttributeSet(attribute.NewSet(kv...))
	}

	var errs []error
	gauge := func(name, unit, desc string) metric.Int64ObservableUpDownCounter {
		g, err := meter.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	counter := func(name, desc string) metric.Int64ObservableCounter {
		g, err := meter.Int64ObservableCounter(name, metric.WithUnit("{task}"), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	queued := gauge(MetricQueued, "{task}", "Tasks that are due and wait for a worker.")
	running := gauge(MetricRunning, "{task}", "Handlers running now.")
	delayed := gauge(MetricDelayed, "{task}", "Delayed tasks, retries waiting for their backoff and rate-limited tasks.")
	workers := gauge(MetricWorkers, "{worker}", "Worker goroutines.")
	paused := gauge(MetricPaused, "1", "1 while the scheduler is paused, else 0.")
	utilization, err := meter.Float64ObservableGauge(MetricUtilization, metric.WithUnit("1"),
		metric.WithDescription("Share of the workers running a handler."))
	errs = append(errs, err)
	submitted := counter(MetricSubmitted, "Tasks accepted, periodic activations included.")
	succeeded := counter(MetricTotalSucceeded, "Tasks whose final run succeeded.")
	failed := counter(MetricTotalFailed, "Tasks whose final run failed, panics included.")
	retried := counter(MetricRetried, "Failed runs after which another attempt was scheduled.")
	panicked := counter(MetricPanicked, "Runs that panicked, retried or not.")
	notRun := counter(MetricNotRun, "Accepted tasks that Stop reported without running them.")
	canceled := counter(MetricCanceled, "Tasks removed by Cancel.")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := s.Stats()
		var split uint64
		for i, n := range st.QueuedByPriority {
			o.ObserveInt64(queued, int64(n), byPrio[i])
			split += uint64(n)
		}
		if st.Queued > split {
			// A reader that does not split its queue by priority.
			o.ObserveInt64(queued, int64(st.Queued-split), attrs)
		}
		o.ObserveInt64(running, int64(st.Running), attrs)
		o.ObserveInt64(delayed, int64(st.Delayed), attrs)
		o.ObserveInt64(workers, int64(st.Workers), attrs)
		p := int64(0)
		if st.Paused {
			p = 1
		}
		o.ObserveInt64(paused, p, attrs)
		u := 0.0
		if st.Workers > 0 {
			u = float64(st.Running) / float64(st.Workers)
		}
		o.ObserveFloat64(utilization, u, attrs)
		o.ObserveInt64(submitted, int64(st.Submitted), attrs)
		o.ObserveInt64(succeeded, int64(st.Succeeded), attrs)
		o.ObserveInt64(failed, int64(st.Failed), attrs)
		o.ObserveInt64(retried, int64(st.Retried), attrs)
		o.ObserveInt64(panicked, int64(st.Panicked), attrs)
		o.ObserveInt64(notRun, int64(st.NotRun), attrs)
		o.ObserveInt64(canceled, int64(st.Canceled), attrs)
		return nil
	}, queued, running, delayed, workers, paused, utilization,
		submitted, succeeded, failed, retried, panicked, notRun, canceled)
}
