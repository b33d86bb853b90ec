package bearer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jarcoal/httpmock"
)

// Source must keep the method Transport looks for after a 401.
var _ refresher = (*Source)(nil)

// rotatingSource is a TokenSource with Refresh that follows Source's rules:
// Refresh(rejected) returns the current token when rejected is no longer
// current, and otherwise rotates to "tok-<n+1>" once.
type rotatingSource struct {
	tokenErr   error // returned by Token when set
	refreshErr error // returned by Refresh when set
	stuck      bool  // Refresh never rotates

	tokens    atomic.Int64 // Token calls
	refreshes atomic.Int64 // Refresh calls
	rotations atomic.Int64 // Refresh calls that rotated

	mu  sync.Mutex // guards cur and gen
	cur *Token
	gen int
}

func newRotatingSource() *rotatingSource {
	return &rotatingSource{cur: &Token{AccessToken: "tok-0"}}
}

func (s *rotatingSource) Token(ctx context.Context) (*Token, error) {
	s.tokens.Add(1)
	if s.tokenErr != nil {
		return nil, s.tokenErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, nil
}

func (s *rotatingSource) Refresh(ctx context.Context, rejected *Token) (*Token, error) {
	s.refreshes.Add(1)
	if s.refreshErr != nil {
		return nil, s.refreshErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rejected != s.cur || s.stuck {
		return s.cur, nil
	}
	s.gen++
	s.cur = &Token{AccessToken: "tok-" + strconv.Itoa(s.gen)}
	s.rotations.Add(1)
	return s.cur, nil
}

// tokenOnly hides the Refresh method of the source it holds.
type tokenOnly struct{ src TokenSource }

func (s tokenOnly) Token(ctx context.Context) (*Token, error) { return s.src.Token(ctx) }

// countingBody is a request body that counts its Close calls.
type countingBody struct {
	io.Reader
	closes atomic.Int32
}

func newCountingBody(s string) *countingBody { return &countingBody{Reader: strings.NewReader(s)} }

func (b *countingBody) Close() error {
	b.closes.Add(1)
	return nil
}

// baseFunc is a RoundTripper made of a function.
type baseFunc func(*http.Request) (*http.Response, error)

func (f baseFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// closingBase is a Base that keeps the RoundTripper contract as
// http.Transport does: it reads and closes the request body, then lets
// next answer with the body's contents in a fresh reader.
func closingBase(next http.RoundTripper) http.RoundTripper {
	return baseFunc(func(r *http.Request) (*http.Response, error) {
		var b []byte
		if r.Body != nil {
			b, _ = io.ReadAll(r.Body)
			r.Body.Close()
		}
		r2 := *r
		r2.Body = io.NopCloser(bytes.NewReader(b))
		return next.RoundTrip(&r2)
	})
}

// closeTracker is a response body that reports its Close on a channel.
type closeTracker struct {
	io.Reader
	once   sync.Once
	closed chan struct{}
}

func newCloseTracker(s string) *closeTracker {
	return &closeTracker{Reader: strings.NewReader(s), closed: make(chan struct{})}
}

func (c *closeTracker) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *closeTracker) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func TestTransportZeroValue(t *testing.T) {
	body := newCountingBody("x")
	req := httptest.NewRequest(http.MethodPost, "https://api.test/", body)
	req.RequestURI = ""
	resp, err := (&Transport{}).RoundTrip(req)
	if !errors.Is(err, errNoSource) {
		t.Errorf("RoundTrip() error = %v, want %v", err, errNoSource)
	}
	if resp != nil {
		t.Errorf("RoundTrip() response = %v, want nil", resp)
	}
	if got := body.closes.Load(); got != 1 {
		t.Errorf("body closed %d times, want 1", got)
	}
}

func TestTransportRoundTrip(t *testing.T) {
	const apiURL = "https://api.test/v1/things"
	reauth := fmt.Errorf("source: %w", ErrReauthorize)
	tests := []struct {
		name       string
		url        string
		header     http.Header // the caller's request headers
		token      *Token      // replaces tok-0 when set
		tokenErr   error
		refreshErr error
		stuck      bool   // Refresh returns the rejected token
		noRefresh  bool   // the source has no Refresh method
		statuses   []int  // the server's answers in turn; the last repeats
		wwwAuth    string // WWW-Authenticate on 401 answers
		insecureOK bool   // Transport.AllowInsecureHTTP

		wantStatus    int
		wantErr       error // matched with errors.Is
		wantAuth      []string
		wantRotations int64
	}{{
		name:       "valid token",
		url:        apiURL,
		statuses:   []int{200},
		wantStatus: 200,
		wantAuth:   []string{"Bearer tok-0"},
	}, {
		name:       "token type from token",
		url:        apiURL,
		token:      &Token{AccessToken: "mac-0", TokenType: "MAC"},
		statuses:   []int{200},
		wantStatus: 200,
		wantAuth:   []string{"MAC mac-0"},
	}, {
		name:       "caller's Authorization replaced",
		url:        apiURL,
		header:     http.Header{"Authorization": {"Basic dTpw"}, "authorization": {"stale"}},
		statuses:   []int{200},
		wantStatus: 200,
		wantAuth:   []string{"Bearer tok-0"},
	}, {
		name:          "401 refreshes and retries once",
		url:           apiURL,
		statuses:      []int{401, 200},
		wantStatus:    200,
		wantAuth:      []string{"Bearer tok-0", "Bearer tok-1"},
		wantRotations: 1,
	}, {
		name:          "401 twice returns the second 401",
		url:           apiURL,
		statuses:      []int{401},
		wantStatus:    401,
		wantAuth:      []string{"Bearer tok-0", "Bearer tok-1"},
		wantRotations: 1,
	}, {
		name:       "401 insufficient_scope is not retried",
		url:        apiURL,
		statuses:   []int{401, 200},
		wwwAuth:    `Bearer realm="api", error="insufficient_scope", scope="write"`,
		wantStatus: 401,
		wantAuth:   []string{"Bearer tok-0"},
	}, {
		name:          "401 invalid_token is retried",
		url:           apiURL,
		statuses:      []int{401, 200},
		wwwAuth:       `Bearer realm="api", error="invalid_token"`,
		wantStatus:    200,
		wantAuth:      []string{"Bearer tok-0", "Bearer tok-1"},
		wantRotations: 1,
	}, {
		name:       "401 from a source without Refresh",
		url:        apiURL,
		noRefresh:  true,
		statuses:   []int{401, 200},
		wantStatus: 401,
		wantAuth:   []string{"Bearer tok-0"},
	}, {
		name:       "401 when Refresh keeps the rejected token",
		url:        apiURL,
		stuck:      true,
		statuses:   []int{401, 200},
		wantStatus: 401,
		wantAuth:   []string{"Bearer tok-0"},
	}, {
		name:       "403 is not retried",
		url:        apiURL,
		statuses:   []int{403, 200},
		wantStatus: 403,
		wantAuth:   []string{"Bearer tok-0"},
	}, {
		name:       "Refresh error is returned",
		url:        apiURL,
		refreshErr: reauth,
		statuses:   []int{401, 200},
		wantErr:    ErrReauthorize,
		wantAuth:   []string{"Bearer tok-0"},
	}, {
		name:     "Token error is returned",
		url:      apiURL,
		tokenErr: reauth,
		statuses: []int{200},
		wantErr:  ErrReauthorize,
	}, {
		name:     "source returns an empty token",
		url:      apiURL,
		token:    &Token{},
		statuses: []int{200},
		wantErr:  errEmptyToken,
	}, {
		name:     "plain http to a remote host",
		url:      "http://api.test/v1/things",
		statuses: []int{200},
		wantErr:  ErrInsecure,
	}, {
		name:       "plain http to a remote host when allowed",
		url:        "http://api.test/v1/things",
		insecureOK: true,
		statuses:   []int{200},
		wantStatus: 200,
		wantAuth:   []string{"Bearer tok-0"},
	}, {
		name:       "plain http to localhost",
		url:        "http://localhost:8080/v1/things",
		statuses:   []int{200},
		wantStatus: 200,
		wantAuth:   []string{"Bearer tok-0"},
	}, {
		name:       "plain http to 127.0.0.2",
		url:        "http://127.0.0.2/v1/things",
		statuses:   []int{200},
		wantStatus: 200,
		wantAuth:   []string{"Bearer tok-0"},
	}, {
		name:       "plain http to ::1",
		url:        "http://[::1]:8080/v1/things",
		statuses:   []int{200},
		wantStatus: 200,
		wantAuth:   []string{"Bearer tok-0"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newRotatingSource()
			if tt.token != nil {
				src.cur = tt.token
			}
			src.tokenErr, src.refreshErr, src.stuck = tt.tokenErr, tt.refreshErr, tt.stuck
			var ts TokenSource = src
			if tt.noRefresh {
				ts = tokenOnly{src}
			}

			var mu sync.Mutex // guards gotAuth and bodies
			var gotAuth []string
			var bodies []*closeTracker
			mock := httpmock.NewMockTransport()
			mock.RegisterResponder(http.MethodGet, tt.url, func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				defer mu.Unlock()
				gotAuth = append(gotAuth, r.Header.Get("Authorization"))
				status := tt.statuses[min(len(gotAuth), len(tt.statuses))-1]
				body := newCloseTracker("answer")
				bodies = append(bodies, body)
				resp := &http.Response{StatusCode: status, Header: http.Header{}, Body: body, ContentLength: -1, Request: r}
				if status == 401 && tt.wwwAuth != "" {
					resp.Header.Set("WWW-Authenticate", tt.wwwAuth)
				}
				return resp, nil
			})
			tr := &Transport{Source: ts, Base: mock, AllowInsecureHTTP: tt.insecureOK}
			client := &http.Client{Transport: tr}

			req, err := http.NewRequest(http.MethodGet, tt.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err := client.Do(req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Do() error = %v, want %v", err, tt.wantErr)
				}
				if ue := (*url.Error)(nil); !errors.As(err, &ue) {
					t.Errorf("Do() error = %T, want a *url.Error", err)
				}
				if resp != nil {
					t.Errorf("Do() response = %v, want nil", resp.Status)
				}
			} else {
				if err != nil {
					t.Fatalf("Do() error = %v", err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != tt.wantStatus {
					t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
				}
			}
			if !reflect.DeepEqual(gotAuth, tt.wantAuth) {
				t.Errorf("Authorization sent = %q, want %q", gotAuth, tt.wantAuth)
			}
			if got := src.rotations.Load(); got != tt.wantRotations {
				t.Errorf("rotations = %d, want %d", got, tt.wantRotations)
			}
			// Every answer but the one returned is closed.
			for i, b := range bodies {
				last := i == len(bodies)-1 && tt.wantErr == nil
				if !last && !b.isClosed() {
					t.Errorf("answer %d not closed", i+1)
				}
			}
			if err != nil && strings.Contains(err.Error(), "tok-") {
				t.Errorf("error %q holds a token", err)
			}
		})
	}
}

func TestTransportNilURL(t *testing.T) {
	body := newCountingBody("x")
	req := &http.Request{Method: http.MethodPost, Body: body}
	if _, err := (&Transport{Source: newRotatingSource()}).RoundTrip(req); err == nil {
		t.Errorf("RoundTrip() with a nil URL: error = nil, want an error")
	}
	if got := body.closes.Load(); got != 1 {
		t.Errorf("body closed %d times, want 1", got)
	}
}

func TestTransportInsufficientScope(t *testing.T) {
	tests := []struct {
		header []string
		want   bool
	}{
		{nil, false},
		{[]string{`Bearer realm="example"`}, false},
		{[]string{`Bearer error="insufficient_scope"`}, true},
		{[]string{`Bearer realm="x", error="insufficient_scope", scope="a b"`}, true},
		{[]string{`Bearer realm="x",error=insufficient_scope`}, true},
		{[]string{`Bearer ERROR = "Insufficient_Scope"`}, true},
		{[]string{`Basic realm="x"`, `Bearer error="insufficient_scope"`}, true},
		{[]string{`Bearer error="invalid_token"`}, false},
		{[]string{`Bearer x_error="insufficient_scope"`}, false},
		{[]string{`Bearer error="insufficient_scope_more"`}, false},
		{[]string{`Bearer error=`}, false},
		{[]string{`Bearer error`}, false},
	}
	for _, tt := range tests {
		h := http.Header{"Www-Authenticate": tt.header}
		if got := insufficientScope(h); got != tt.want {
			t.Errorf("insufficientScope(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}

func TestTransportCloseIdleConnections(t *testing.T) {
	var closed atomic.Bool
	base := &idleCloser{closed: &closed}
	(&Transport{Base: base}).CloseIdleConnections()
	if !closed.Load() {
		t.Errorf("CloseIdleConnections did not reach Base")
	}
	(&Transport{Base: baseFunc(nil)}).CloseIdleConnections() // no such method: nothing to do
}

type idleCloser struct {
	http.RoundTripper
	closed *atomic.Bool
}

func (c *idleCloser) CloseIdleConnections() { c.closed.Store(true) }

// staticBenchSource returns the same token every time, as a Source does
// while its token is valid.
type staticBenchSource struct{ tok *Token }

func (s staticBenchSource) Token(context.Context) (*Token, error) { return s.tok, nil }

func benchTransport() (*Transport, *http.Request) {
	resp := &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}
	tr := &Transport{
		Source: staticBenchSource{&Token{AccessToken: "tok-0"}},
		Base:   baseFunc(func(*http.Request) (*http.Response, error) { return resp, nil }),
	}
	req, _ := http.NewRequest(http.MethodGet, "https://api.test/v1/things", nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "bench")
	return tr, req
}

// TestTransportAllocs holds Transport to the cost its documentation gives:
// with a valid token, the request copy is four allocations.
func TestTransportAllocs(t *testing.T) {
	tr, req := benchTransport()
	if got := testing.AllocsPerRun(100, func() { tr.RoundTrip(req) }); got > 4 {
		t.Errorf("RoundTrip allocates %v times, want at most 4", got)
	}
}

func BenchmarkTransport(b *testing.B) {
	tr, req := benchTransport()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.RoundTrip(req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTransportParallel(b *testing.B) {
	tr, req := benchTransport()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := tr.RoundTrip(req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
