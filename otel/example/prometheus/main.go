// Command prometheus serves a scheduler's OpenTelemetry metrics in the
// Prometheus text format, through the OpenTelemetry Prometheus exporter:
//
//	cd otel/example/prometheus && go run . -listen 127.0.0.1:9464
//	curl -s 127.0.0.1:9464/metrics | grep taskpool
//
// It submits a few tasks a second, some of which fail and are retried.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/taskpool/taskpool"
	taskpoolotel "github.com/taskpool/taskpool/otel"
)

// app is a scheduler instrumented into its own Prometheus registry.
type app struct {
	sched    *taskpool.Scheduler
	client   *taskpoolotel.Client // submits to sched, with the enqueue time for the queue wait
	provider *sdkmetric.MeterProvider
	observed metric.Registration
	handler  http.Handler // serves /metrics
}

// newApp makes the scheduler, the meter provider and the metrics handler.
// The scheduler is not started.
func newApp(reg *taskpool.Registry) (*app, error) {
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	s, err := taskpool.New(reg,
		taskpool.WithRetry(3, taskpool.ConstantBackoff(50*time.Millisecond)),
		taskpool.WithMiddleware(taskpoolotel.Middleware(taskpoolotel.WithMeterProvider(mp))),
		taskpool.WithCompletionHook(taskpoolotel.CompletionHook(taskpoolotel.WithMeterProvider(mp))),
		taskpool.WithDeadLetters(100, taskpoolotel.DeadLetterHook(taskpoolotel.WithMeterProvider(mp))),
	)
	if err != nil {
		return nil, err
	}
	observed, err := taskpoolotel.Observe(s, taskpoolotel.WithMeterProvider(mp))
	if err != nil {
		return nil, err
	}
	return &app{
		sched: s, provider: mp, observed: observed,
		client:  taskpoolotel.NewClient(s, taskpoolotel.WithMeterProvider(mp)),
		handler: promhttp.HandlerFor(registry, promhttp.HandlerOpts{}),
	}, nil
}

// stop stops the scheduler and the meter provider.
func (a *app) stop(ctx context.Context) error {
	return errors.Join(a.sched.Stop(ctx), a.observed.Unregister(), a.provider.Shutdown(ctx))
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9464", "address to serve /metrics on")
	flag.Parse()

	reg := taskpool.NewRegistry()
	_ = reg.HandleFunc("email", func(context.Context, taskpool.Task) error {
		time.Sleep(time.Duration(rand.N(20)) * time.Millisecond) // the work
		if rand.N(4) == 0 {
			return errors.New("smtp: try again")
		}
		return nil
	})
	a, err := newApp(reg)
	if err != nil {
		log.Fatal(err)
	}
	if err := a.sched.Start(); err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", a.handler)
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	log.Printf("metrics on http://%s/metrics", *listen)

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			stopCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
			defer done()
			_ = srv.Shutdown(stopCtx)
			if err := a.stop(stopCtx); err != nil {
				log.Print(err)
			}
			return
		case <-tick.C:
			_ = a.client.Submit(ctx, taskpool.Task{Type: "email"})
		}
	}
}
