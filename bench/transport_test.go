package bench

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/tokenkit/bearer"
	"golang.org/x/oauth2"
)

// nopTransport answers every request with the same empty response and
// allocates nothing, so that a benchmark over it measures only the
// transport wrapped around it.
type nopTransport struct{}

var nopResponse = &http.Response{
	Status:     "200 OK",
	StatusCode: http.StatusOK,
	Proto:      "HTTP/1.1",
	ProtoMajor: 1,
	ProtoMinor: 1,
	Header:     http.Header{},
	Body:       http.NoBody,
}

func (nopTransport) RoundTrip(*http.Request) (*http.Response, error) { return nopResponse, nil }

// accessToken is the token every hot-path benchmark sends.
const accessToken = "eyJhbGciOiJFUzI1NiJ9.bench-access-token.c2lnbmF0dXJl"

// newRequest returns the request every hot-path benchmark sends: a GET with
// one header, as an API client would send it.
func newRequest(tb testing.TB) *http.Request {
	tb.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://api.example.com/v1/items?page=2", nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	return req
}

// newBearer returns bearer's Transport over base, which it is told only
// reads requests, as it knows of an *http.Transport (nil Base included):
// requests with the same header share one header map. The Source is real,
// its store holds a token valid for hours, and it has loaded the token
// already, so the first timed request takes the hot path too.
func newBearer(tb testing.TB, base http.RoundTripper) *bearer.Transport {
	tr := newBearerPrivate(tb, base)
	tr.BaseReadOnly = true
	return tr
}

// newBearerPrivate is newBearer without BaseReadOnly, as over a Base that
// Transport knows nothing of: each request gets a header map of its own.
func newBearerPrivate(tb testing.TB, base http.RoundTripper) *bearer.Transport {
	tb.Helper()
	tok := &bearer.Token{
		AccessToken:  accessToken,
		TokenType:    "Bearer",
		RefreshToken: "bench-refresh-token",
		Expiry:       time.Now().Add(8 * time.Hour),
	}
	src := bearer.NewSource(bearer.Config{}, bearer.NewMemoryStore(tok))
	tb.Cleanup(func() { src.Close() })
	if _, err := src.Token(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return &bearer.Transport{Source: src, Base: base}
}

// newOAuth2 returns x/oauth2's Transport over base as Config.Client builds
// it: a ReuseTokenSource, here over a StaticTokenSource, with a token valid
// for hours.
func newOAuth2(base http.RoundTripper) *oauth2.Transport {
	tok := &oauth2.Token{AccessToken: accessToken, TokenType: "Bearer", Expiry: time.Now().Add(8 * time.Hour)}
	return &oauth2.Transport{Source: oauth2.ReuseTokenSource(nil, oauth2.StaticTokenSource(tok)), Base: base}
}

// newOAuth2Static returns x/oauth2's Transport over a StaticTokenSource,
// its cheapest configuration: no mutex, no expiry check.
func newOAuth2Static(base http.RoundTripper) *oauth2.Transport {
	tok := &oauth2.Token{AccessToken: accessToken, TokenType: "Bearer"}
	return &oauth2.Transport{Source: oauth2.StaticTokenSource(tok), Base: base}
}

// recorder records the Authorization header of the last request.
type recorder struct{ auth string }

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.auth = req.Header.Get("Authorization")
	return nopResponse, nil
}

// TestTransports checks that each benchmarked transport sends the token,
// so that the benchmarks compare equal work.
func TestTransports(t *testing.T) {
	for _, tc := range []struct {
		name string
		rt   func(base http.RoundTripper) http.RoundTripper
	}{
		{"Bearer", func(base http.RoundTripper) http.RoundTripper { return newBearer(t, base) }},
		{"BearerPrivate", func(base http.RoundTripper) http.RoundTripper { return newBearerPrivate(t, base) }},
		{"OAuth2", func(base http.RoundTripper) http.RoundTripper { return newOAuth2(base) }},
		{"OAuth2Static", func(base http.RoundTripper) http.RoundTripper { return newOAuth2Static(base) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := new(recorder)
			req := newRequest(t)
			resp, err := tc.rt(rec).RoundTrip(req)
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Errorf("StatusCode = %d, want %d", resp.StatusCode, http.StatusOK)
			}
			if got, want := rec.auth, "Bearer "+accessToken; got != want {
				t.Errorf("Authorization = %q, want %q", got, want)
			}
			if got := req.Header.Get("Authorization"); got != "" {
				t.Errorf("caller's request got Authorization %q, want none", got)
			}
		})
	}
}

// roundTrip sends req through rt b.N times.
func roundTrip(b *testing.B, rt http.RoundTripper) {
	req := newRequest(b)
	b.ReportAllocs()
	cpu := cpuTime()
	b.ResetTimer()
	for range b.N {
		if _, err := rt.RoundTrip(req); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// reportCPU reports the process's CPU time per operation since start as
// cpu-ns/op. Unlike ns/op it does not grow when other processes take the
// CPUs; like it, it includes garbage collection. In a parallel benchmark it
// adds up all goroutines, so it grows with contention.
func reportCPU(b *testing.B, start time.Duration) {
	if start == 0 {
		return
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// roundTripParallel sends req through rt b.N times from GOMAXPROCS
// goroutines (set with -cpu).
func roundTripParallel(b *testing.B, rt http.RoundTripper) {
	req := newRequest(b)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := rt.RoundTrip(req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportCPU(b, cpu)
}

// BenchmarkBase is the no-op base alone: subtract its ns/op from the others
// to get what each transport adds.
func BenchmarkBase(b *testing.B) { roundTrip(b, nopTransport{}) }

func BenchmarkBearer(b *testing.B) { roundTrip(b, newBearer(b, nopTransport{})) }

func BenchmarkBearerPrivate(b *testing.B) { roundTrip(b, newBearerPrivate(b, nopTransport{})) }

func BenchmarkOAuth2(b *testing.B) { roundTrip(b, newOAuth2(nopTransport{})) }

func BenchmarkOAuth2Static(b *testing.B) { roundTrip(b, newOAuth2Static(nopTransport{})) }

func BenchmarkBaseParallel(b *testing.B) { roundTripParallel(b, nopTransport{}) }

func BenchmarkBearerParallel(b *testing.B) { roundTripParallel(b, newBearer(b, nopTransport{})) }

func BenchmarkBearerPrivateParallel(b *testing.B) {
	roundTripParallel(b, newBearerPrivate(b, nopTransport{}))
}

func BenchmarkOAuth2Parallel(b *testing.B) { roundTripParallel(b, newOAuth2(nopTransport{})) }

func BenchmarkOAuth2StaticParallel(b *testing.B) {
	roundTripParallel(b, newOAuth2Static(nopTransport{}))
}
