package examples_test

import (
	"context"
	"fmt"
	"net/http"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// otelhttp can go on either side of bearer.Transport, and the spans differ.
//
// Outside, otelhttp.NewTransport(&bearer.Transport{...}) makes one client
// span per logical request. It covers waiting for a token, a refresh after
// a 401 and the resent request, and records only the final status: a 401
// that bearer recovered from does not show.
//
// Inside, &bearer.Transport{Base: otelhttp.NewTransport(base)} makes one
// span per request sent: the rejected attempt (401) and the resent one are
// two spans, each with its own status and duration, while waiting for a
// token falls between spans.
//
// Either way the token endpoint's requests are not traced; give the Source
// an instrumented client for that: Config.HTTPClient = &http.Client{
// Transport: otelhttp.NewTransport(nil)}.
func Example_otelhttp() {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	// A Source each: a token that replaced a rejected one is not
	// refreshed again on a second 401 within a minute.
	srcOut, _ := newSource(srv, bearer.Config{})
	defer srcOut.Close()
	srcIn, _ := newSource(srv, bearer.Config{})
	defer srcIn.Close()
	base := srv.Client().Transport // nil, http.DefaultTransport, in production

	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())

	outside := &http.Client{Transport: otelhttp.NewTransport(
		&bearer.Transport{Source: srcOut, Base: base},
		otelhttp.WithTracerProvider(tp),
	)}
	inside := &http.Client{Transport: &bearer.Transport{
		Source: srcIn,
		Base:   otelhttp.NewTransport(base, otelhttp.WithTracerProvider(tp)),
	}}

	for _, c := range []struct {
		name   string
		src    *bearer.Source
		client *http.Client
	}{{"outside", srcOut, outside}, {"inside", srcIn, inside}} {
		// Revoke the current access token, so that the request meets a 401.
		tok, err := c.src.Token(context.Background())
		if err != nil {
			fmt.Println(err)
			return
		}
		srv.RevokeAccess(tok.AccessToken)

		spans.Reset()
		resp, err := c.client.Get(srv.APIURL() + "hello")
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Printf("%s: %s;", c.name, resp.Status)
		for _, s := range spans.GetSpans() {
			fmt.Printf(" span %q status %v", s.Name, statusCode(s.Attributes))
		}
		fmt.Println()
	}
	// Output:
	// outside: 200 OK; span "HTTP GET" status 200
	// inside: 200 OK; span "HTTP GET" status 401 span "HTTP GET" status 200
}

// statusCode returns the HTTP response status among a span's attributes.
func statusCode(attrs []attribute.KeyValue) int64 {
	for _, a := range attrs {
		if a.Key == "http.response.status_code" {
			return a.Value.AsInt64()
		}
	}
	return 0
}
