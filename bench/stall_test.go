package bench

import (
	"context"
	"flag"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
	"golang.org/x/oauth2"
)

var stallDuration = flag.Duration("stall.duration", 0,
	"how long `d` BenchmarkStall's callers send requests; 0 means 10s, except in a first run with b.N == 1 (all of -benchtime=1x), which takes 500ms")

const (
	stallCallers   = 20                     // goroutines sending back to back
	stallLatency   = 200 * time.Millisecond // of the token endpoint
	stallLifetime  = 2 * time.Second        // of an access token
	stallThreshold = 150 * time.Millisecond // a call this slow waited for a refresh
	// earlyExpiry is x/oauth2's expiry delta. Its default, 10 s, exceeds
	// the token lifetime and would refresh on every call; 200 ms is the
	// leeway bearer picks for a 2 s token (a tenth of it).
	earlyExpiry = 200 * time.Millisecond
)

// BenchmarkStall has stallCallers goroutines send requests back to back
// through each Transport to bearertest's protected API, whose token endpoint
// answers after 200 ms with 2 s access tokens, and reports how many calls
// waited 150 ms or more ("stalls") and the latency percentiles. Every call
// must get a 200; "failures" counts those that did not.
//
// The duration is -stall.duration, or by default 10 s; a first run with
// b.N == 1 (as with -benchtime=1x in CI) takes 500 ms, too short for a token
// to expire, and only checks that everything works. ns/op is wall time per
// request, all callers together.
func BenchmarkStall(b *testing.B) {
	b.Run("Bearer", func(b *testing.B) {
		stall(b, func(srv *bearertest.Server, g bearertest.Grant, base http.RoundTripper) (http.RoundTripper, func()) {
			src := bearer.NewSource(bearer.Config{
				TokenURL:     srv.TokenURL(),
				ClientID:     bearertest.DefaultClientID,
				ClientSecret: bearertest.DefaultClientSecret,
				HTTPClient:   srv.Client(),
			}, bearer.NewMemoryStore(&bearer.Token{
				AccessToken:   g.AccessToken,
				TokenType:     "Bearer",
				RefreshToken:  g.RefreshToken,
				Expiry:        g.Expiry,
				RefreshExpiry: g.RefreshExpiry,
			}))
			return &bearer.Transport{Source: src, Base: base}, func() {
				if err := src.Close(); err != nil {
					b.Error(err)
				}
			}
		})
	})
	b.Run("OAuth2", func(b *testing.B) {
		stall(b, func(srv *bearertest.Server, g bearertest.Grant, base http.RoundTripper) (http.RoundTripper, func()) {
			conf := &oauth2.Config{
				ClientID:     bearertest.DefaultClientID,
				ClientSecret: bearertest.DefaultClientSecret,
				Endpoint:     oauth2.Endpoint{TokenURL: srv.TokenURL(), AuthStyle: oauth2.AuthStyleInParams},
			}
			ctx := context.WithValue(context.Background(), oauth2.HTTPClient, srv.Client())
			tok := &oauth2.Token{AccessToken: g.AccessToken, TokenType: "Bearer", RefreshToken: g.RefreshToken, Expiry: g.Expiry}
			ts := oauth2.ReuseTokenSourceWithExpiry(tok, conf.TokenSource(ctx, tok), earlyExpiry)
			return &oauth2.Transport{Source: ts, Base: base}, func() {}
		})
	})
}

// stall runs one measurement with the Transport that newRT builds over
// base for a fresh server and authorization.
func stall(b *testing.B, newRT func(*bearertest.Server, bearertest.Grant, http.RoundTripper) (http.RoundTripper, func())) {
	d := *stallDuration
	switch {
	case d > 0:
	case b.N == 1:
		d = 500 * time.Millisecond
	default:
		d = 10 * time.Second
	}

	srv := bearertest.NewServer(bearertest.Config{Latency: stallLatency, AccessLifetime: stallLifetime})
	defer srv.Close()
	base := &http.Transport{MaxIdleConnsPerHost: stallCallers}
	defer base.CloseIdleConnections()
	rt, closeRT := newRT(srv, srv.Issue(), base)
	defer closeRT()
	client := &http.Client{Transport: rt}
	url := srv.APIURL() + "items"
	get := func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if !get() { // connects, and loads bearer's store
		b.Fatal("the first request failed")
	}

	lat := make([][]time.Duration, stallCallers)
	failures := make([]int, stallCallers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	end := start.Add(d)
	for i := range stallCallers {
		wg.Go(func() {
			for {
				t0 := time.Now()
				if t0.After(end) {
					return
				}
				if !get() {
					failures[i]++
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	all := slices.Concat(lat...)
	slices.Sort(all)
	firstStall, _ := slices.BinarySearch(all, stallThreshold)
	stalls := len(all) - firstStall
	failed := 0
	for _, n := range failures {
		failed += n
	}
	micros := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(float64(elapsed)/float64(len(all)), "ns/op")
	b.ReportMetric(float64(len(all)), "calls")
	b.ReportMetric(float64(stalls), "stalls")
	b.ReportMetric(micros(all[len(all)/2]), "p50-µs")
	b.ReportMetric(micros(all[len(all)*99/100]), "p99-µs")
	b.ReportMetric(micros(all[len(all)-1]), "max-µs")
	b.ReportMetric(float64(srv.Stats().Refreshes), "refreshes")
	b.ReportMetric(float64(failed), "failures")
	if failed > 0 {
		b.Errorf("%d of %d calls did not get a 200", failed, len(all))
	}
}
