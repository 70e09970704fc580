package taskpoolotel_test

import (
	"context"
	"fmt"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/taskpool/taskpool"
	taskpoolotel "github.com/taskpool/taskpool/otel"
)

// ExampleNewClient submits a task through the wrapping client under a
// request span: the task's run is in the same trace, under the send span.
func ExampleNewClient() {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	done := make(chan struct{})
	s, err := taskpool.New(taskpool.HandlerFunc(func(context.Context, taskpool.Task) error {
		close(done)
		return nil
	}), taskpool.WithMiddleware(taskpoolotel.Middleware(taskpoolotel.WithTracerProvider(tp))))
	if err != nil {
		panic(err)
	}
	if err := s.Start(); err != nil {
		panic(err)
	}
	client := taskpoolotel.NewClient(s, taskpoolotel.WithTracerProvider(tp))

	ctx, req := tp.Tracer("app").Start(context.Background(), "request")
	if err := client.Submit(ctx, taskpool.Task{Type: "email"}); err != nil {
		panic(err)
	}
	req.End()
	<-done
	if err := s.Stop(context.Background()); err != nil {
		panic(err)
	}

	byName := map[string]tracetest.SpanStub{}
	for _, sp := range spans.GetSpans() {
		byName[sp.Name] = sp
	}
	request, send, run := byName["request"], byName["send email"], byName["process email"]
	fmt.Println("one trace:", send.SpanContext.TraceID() == request.SpanContext.TraceID() &&
		run.SpanContext.TraceID() == request.SpanContext.TraceID())
	fmt.Println("send under request:", send.Parent.SpanID() == request.SpanContext.SpanID())
	fmt.Println("run under send:", run.Parent.SpanID() == send.SpanContext.SpanID())
	fmt.Println("run linked to send:", len(run.Links) == 1 && run.Links[0].SpanContext.SpanID() == send.SpanContext.SpanID())
	// Output:
	// one trace: true
	// send under request: true
	// run under send: true
	// run linked to send: true
}
