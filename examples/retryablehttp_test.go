package examples_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
)

// With go-retryablehttp, bearer.Transport goes outside and retryablehttp's
// RoundTripper is its Base:
//
//	http.Client -> bearer.Transport -> retryablehttp.RoundTripper -> http.Transport
//
// Each request then gets its token once, and retryablehttp's retries of
// 5xx, 429 and network errors resend the same header. A 401, which
// retryablehttp's DefaultRetryPolicy never retries (it retries no 4xx but
// 429), comes back up to bearer.Transport, which refreshes once and resends
// the request once. When no token can be had, such as after the user
// withdrew consent (bearer.ErrReauthorize), the request fails at once.
func Example_retryablehttp() {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	src, family := newSource(srv, bearer.Config{})
	defer src.Close()

	rc := retryablehttp.NewClient()
	net := &flaky{base: srv.Client().Transport, fail: newCount(2)} // two 503s, then the API
	rc.HTTPClient.Transport = net
	rc.RetryWaitMin, rc.RetryWaitMax = time.Millisecond, time.Millisecond
	rc.Logger = nil

	counted := &countingSource{src: src}
	client := &http.Client{Transport: &bearer.Transport{
		Source: counted,
		Base:   &retryablehttp.RoundTripper{Client: rc},
	}}

	resp, err := client.Get(srv.APIURL() + "hello")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status, "after", net.sent.Load(), "attempts,", counted.calls.Load(), "Token call")

	srv.RevokeFamily(family) // the user withdraws consent
	before := srv.Stats().TokenRequests
	_, err = client.Get(srv.APIURL() + "hello")
	fmt.Println("reauthorize:", errors.Is(err, bearer.ErrReauthorize))
	fmt.Println("refresh attempts:", srv.Stats().TokenRequests-before)
	// Output:
	// 200 OK after 3 attempts, 1 Token call
	// reauthorize: true
	// refresh attempts: 1
}

// The other order, retryablehttp outside with bearer.Transport below it,
// works for the happy path but is wrong:
//
//	retryablehttp.Client -> bearer.Transport -> http.Transport
//
// Each attempt asks the Source for a token again (cheap, but the token may
// change between attempts). Worse, retryablehttp's DefaultRetryPolicy
// retries every error that is not a bad redirect, scheme, header or
// certificate, and so the errors of bearer.Transport too: a refresh that the
// server refused (bearer.ErrReauthorize) is tried again RetryMax times, with
// backoff (up to 30 s each by default), and the error arrives late and
// wrapped in "giving up after 5 attempt(s)". (The Source remembers a
// refresh token the server rejected and never presents it again, so the
// server sees one refresh attempt; a source without that memory would
// present the dead token on every attempt.)
func Example_retryablehttpOutside() {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	src, family := newSource(srv, bearer.Config{})
	defer src.Close()

	net := &flaky{base: srv.Client().Transport, fail: newCount(2)}
	counted := &countingSource{src: src}
	rc := retryablehttp.NewClient()
	rc.HTTPClient.Transport = &bearer.Transport{
		Source: counted,
		Base:   net,
	}
	rc.RetryWaitMin, rc.RetryWaitMax = time.Millisecond, time.Millisecond
	rc.Logger = nil
	client := rc.StandardClient()

	resp, err := client.Get(srv.APIURL() + "hello")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status, "after", net.sent.Load(), "attempts,", counted.calls.Load(), "Token calls")

	srv.RevokeFamily(family)
	before := srv.Stats().TokenRequests
	_, err = client.Get(srv.APIURL() + "hello")
	fmt.Println("reauthorize:", errors.Is(err, bearer.ErrReauthorize))
	fmt.Println("refresh attempts:", srv.Stats().TokenRequests-before)
	// Output:
	// 200 OK after 3 attempts, 3 Token calls
	// reauthorize: true
	// refresh attempts: 1
}

// flaky answers 503 to as many requests as fail holds, then sends them to
// base.
type flaky struct {
	base http.RoundTripper
	fail *atomic.Int32
	sent atomic.Int32 // requests seen, failed or not
}

func newCount(n int32) *atomic.Int32 {
	c := new(atomic.Int32)
	c.Store(n)
	return c
}

func (f *flaky) RoundTrip(req *http.Request) (*http.Response, error) {
	f.sent.Add(1)
	if f.fail.Add(-1) >= 0 {
		if req.Body != nil {
			req.Body.Close()
		}
		return &http.Response{
			Status:     "503 Service Unavailable",
			StatusCode: http.StatusServiceUnavailable,
			Header:     http.Header{},
			Body:       http.NoBody,
			Request:    req,
		}, nil
	}
	return f.base.RoundTrip(req)
}

// countingSource counts the Token calls to src; it keeps src's Refresh
// method, which bearer.Transport uses after a 401.
type countingSource struct {
	src   *bearer.Source
	calls atomic.Int32
}

func (c *countingSource) Token(ctx context.Context) (*bearer.Token, error) {
	c.calls.Add(1)
	return c.src.Token(ctx)
}

func (c *countingSource) Refresh(ctx context.Context, rejected *bearer.Token) (*bearer.Token, error) {
	return c.src.Refresh(ctx, rejected)
}
