package examples_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// OpenTelemetry: Config.Hooks feed a counter and a histogram, an
// observable counter reads Source.Stats at collection time, and each
// refresh becomes a span. RefreshFinished receives the refresh's duration,
// so the span is made there, back-dated to its start. A refresh that a
// caller waits for runs on a context detached from the caller's
// cancellation but keeping its values, so with a span in the request's
// context (from otelhttp placed outside bearer.Transport, say) the refresh
// span is its child; a refresh ahead of expiry runs in the background and
// starts a trace of its own. In a program, take the providers from
// otel.GetMeterProvider and otel.GetTracerProvider.
func Example_openTelemetry() {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	ctx := context.Background()

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(ctx)
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(ctx)

	const scope = "github.com/tokenkit/bearer"
	meter, tracer := mp.Meter(scope), tp.Tracer(scope)
	refreshes, _ := meter.Int64Counter("bearer.refreshes",
		metric.WithDescription("Token requests, by result."))
	duration, _ := meter.Float64Histogram("bearer.refresh.duration", metric.WithUnit("s"),
		metric.WithDescription("How long token requests took, retries included."))
	rejected, _ := meter.Int64Counter("bearer.tokens.rejected",
		metric.WithDescription("Access tokens the API rejected before they expired."))

	src, _ := newSource(srv, bearer.Config{Hooks: bearer.Hooks{
		RefreshFinished: func(ctx context.Context, d time.Duration, err error) {
			result := attribute.String("result", "ok")
			_, span := tracer.Start(ctx, "bearer.refresh",
				trace.WithSpanKind(trace.SpanKindClient),
				trace.WithTimestamp(time.Now().Add(-d)))
			if err != nil {
				result = attribute.String("result", "error")
				span.RecordError(err) // bearer's errors hold no secret
				span.SetStatus(codes.Error, "refresh failed")
			}
			span.End()
			refreshes.Add(ctx, 1, metric.WithAttributes(result))
			duration.Record(ctx, d.Seconds(), metric.WithAttributes(result))
		},
		TokenRejected: func(ctx context.Context) { rejected.Add(ctx, 1) },
	}})
	defer src.Close()
	_, err := meter.Int64ObservableCounter("bearer.adopted",
		metric.WithDescription("Tokens taken from the store, refreshed by another process."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(src.Stats().Adopted)
			return nil
		}))
	if err != nil {
		fmt.Println(err)
		return
	}

	// otelhttp outside bearer.Transport: one span per request, the parent
	// of the refresh it waited for.
	client := &http.Client{Transport: otelhttp.NewTransport(
		&bearer.Transport{Source: src, Base: srv.Client().Transport},
		otelhttp.WithTracerProvider(tp),
	)}
	get(client, srv.APIURL()+"hello") // refreshes the expired token
	tok, _ := src.Token(ctx)
	srv.RevokeAccess(tok.AccessToken)
	get(client, srv.APIURL()+"hello") // 401, refresh, resend

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				fmt.Println(m.Name, data.DataPoints[0].Value)
			case metricdata.Histogram[float64]:
				fmt.Println(m.Name, "count", data.DataPoints[0].Count)
			}
		}
	}
	names := map[trace.SpanID]string{}
	for _, s := range spans.GetSpans() {
		names[s.SpanContext.SpanID()] = s.Name
	}
	for _, s := range spans.GetSpans() {
		fmt.Printf("span %q status %v parent %q\n", s.Name, s.Status.Code, names[s.Parent.SpanID()])
	}
	// Output:
	// bearer.refreshes 2
	// bearer.refresh.duration count 2
	// bearer.tokens.rejected 1
	// bearer.adopted 0
	// span "bearer.refresh" status Unset parent "HTTP GET"
	// span "HTTP GET" status Unset parent ""
	// span "bearer.refresh" status Unset parent "HTTP GET"
	// span "HTTP GET" status Unset parent ""
}
