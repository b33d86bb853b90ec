package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
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

// nopURL is where the hot-path benchmarks send requests over the no-op base.
const nopURL = "https://api.example.com/v1/items?page=2"

// newRequest returns the request every hot-path benchmark sends: a GET to
// url with one header, as an API client would send it, and with auth as
// its Authorization unless auth is empty.
func newRequest(tb testing.TB, url, auth string) *http.Request {
	tb.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return req
}

// newBearer returns bearer's Transport over base. The Source is real, its
// store holds a token valid for hours, and it has loaded the token already,
// so the first timed request takes the hot path too.
func newBearer(tb testing.TB, base http.RoundTripper) *bearer.Transport {
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
	for _, tc := range transports[1:] { // all but the base alone
		t.Run(tc.name, func(t *testing.T) {
			rec := new(recorder)
			req := newRequest(t, nopURL, "")
			resp, err := tc.wrap(t, rec).RoundTrip(req)
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

// newLoopback starts a server on the loopback interface that answers 200
// with an empty body, and returns its URL and an *http.Transport that keeps
// connections to it alive.
func newLoopback(tb testing.TB) (string, *http.Transport) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	base := &http.Transport{MaxIdleConnsPerHost: 64}
	tb.Cleanup(func() {
		base.CloseIdleConnections()
		srv.Close()
	})
	return srv.URL + "/v1/items?page=2", base
}

// transports are what the benchmarks compare over each base: the base
// alone, bearer's Transport, and x/oauth2's as Config.Client builds it and
// in its cheapest setup. The base alone gets requests that already carry
// the token, so that the base and the server do the same work for each.
var transports = []struct {
	name string
	wrap func(tb testing.TB, base http.RoundTripper) http.RoundTripper
	auth string // the caller's Authorization
}{
	{"none", func(_ testing.TB, base http.RoundTripper) http.RoundTripper { return base }, "Bearer " + accessToken},
	{"bearer", func(tb testing.TB, base http.RoundTripper) http.RoundTripper { return newBearer(tb, base) }, ""},
	{"oauth2", func(_ testing.TB, base http.RoundTripper) http.RoundTripper { return newOAuth2(base) }, ""},
	{"oauth2static", func(_ testing.TB, base http.RoundTripper) http.RoundTripper { return newOAuth2Static(base) }, ""},
}

// BenchmarkRoundTrip sends a GET with a valid token through each transport,
// over a no-op base and over an *http.Transport to a loopback server, so
// that one run gives every figure side by side. A transport's overhead is
// its ns/op (and allocs/op) minus transport=none's over the same base:
//
//	benchstat -col /transport out.txt
func BenchmarkRoundTrip(b *testing.B) {
	benchTransports(b, roundTrip)
}

// BenchmarkRoundTripParallel is BenchmarkRoundTrip from GOMAXPROCS
// goroutines (set with -cpu).
func BenchmarkRoundTripParallel(b *testing.B) {
	benchTransports(b, roundTripParallel)
}

// base is a RoundTripper the transports wrap, with the URL requests go to.
type base struct {
	name string
	rt   http.RoundTripper
	url  string
}

// bases returns the no-op base and an *http.Transport to a loopback server.
func bases(b *testing.B) []base {
	url, loopback := newLoopback(b)
	return []base{{"nop", nopTransport{}, nopURL}, {"loopback", loopback, url}}
}

// benchTransports runs bench for each base and transport, with a function
// returning the request to send.
func benchTransports(b *testing.B, bench func(*testing.B, http.RoundTripper, func() *http.Request)) {
	for _, base := range bases(b) {
		for _, tr := range transports {
			b.Run("base="+base.name+"/transport="+tr.name, func(b *testing.B) {
				bench(b, tr.wrap(b, base.rt), func() *http.Request { return newRequest(b, base.url, tr.auth) })
			})
		}
	}
}

// BenchmarkOverhead measures what each transport adds to its base directly:
// every iteration sends one request through each transport in turn (the
// base alone included), starting with another one each time, and times each
// call. Load from other processes, which moves separate runs by tens of
// percent on a shared machine, then falls on all of them alike. It reports
// the median time of each transport's calls minus the base's, as
// <transport>-overhead-ns: the median leaves out the calls that a garbage
// collection or the scheduler stalled, whoever caused it, so the cost of
// collecting a transport's garbage is in BenchmarkRoundTrip, not here.
func BenchmarkOverhead(b *testing.B) {
	for _, base := range bases(b) {
		b.Run("base="+base.name, func(b *testing.B) {
			rts := make([]http.RoundTripper, len(transports))
			reqs := make([]*http.Request, len(transports))
			for i, tr := range transports {
				rts[i], reqs[i] = tr.wrap(b, base.rt), newRequest(b, base.url, tr.auth)
			}
			took := make([][]time.Duration, len(transports)) // by transport, by call
			for i := range took {
				took[i] = make([]time.Duration, b.N)
			}
			b.ResetTimer()
			for n := range b.N {
				for k := range rts {
					i := (n + k) % len(rts)
					start := time.Now()
					if err := send(rts[i], reqs[i]); err != nil {
						b.Fatal(err)
					}
					took[i][n] = time.Since(start)
				}
			}
			b.StopTimer()
			median := func(d []time.Duration) float64 {
				slices.Sort(d)
				return float64(d[len(d)/2])
			}
			none := median(took[0])
			for i, tr := range transports[1:] {
				b.ReportMetric(median(took[i+1])-none, tr.name+"-overhead-ns")
			}
		})
	}
}

// roundTrip sends a request through rt b.N times, reading and closing each
// answer.
func roundTrip(b *testing.B, rt http.RoundTripper, newReq func() *http.Request) {
	req := newReq()
	b.ReportAllocs()
	cpu := cpuTime()
	b.ResetTimer()
	for range b.N {
		if err := send(rt, req); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// send sends req through rt, then reads and closes the answer.
func send(rt http.RoundTripper, req *http.Request) error {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
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

// roundTripParallel sends a request through rt b.N times from GOMAXPROCS
// goroutines, each with a request of its own.
func roundTripParallel(b *testing.B, rt http.RoundTripper, newReq func() *http.Request) {
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		req := newReq()
		for pb.Next() {
			if err := send(rt, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportCPU(b, cpu)
}
