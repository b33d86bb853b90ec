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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"go.uber.org/goleak"
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

func TestTransportInsecureHop(t *testing.T) {
	// An allowed host still gets the token only over https.
	base := baseFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("Base called for %s", r.URL)
		return nil, errors.New("unexpected")
	})
	tr := &Transport{Source: newRotatingSource(), Base: base, AllowedHosts: []string{"cdn.test"}}
	req := redirectChain(t, "https://api.test/a", "http://cdn.test/b")
	if _, err := tr.RoundTrip(req); !errors.Is(err, ErrInsecure) {
		t.Errorf("RoundTrip() error = %v, want %v", err, ErrInsecure)
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

// redirectChain returns a request for hop whose redirect chain starts at the first
// URL, linked as http.Client links it.
func redirectChain(t *testing.T, urls ...string) *http.Request {
	t.Helper()
	var prev *http.Request
	for _, u := range urls {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		if prev != nil {
			req.Response = &http.Response{StatusCode: http.StatusFound, Request: prev}
		}
		prev = req
	}
	return prev
}

func TestTransportOrigin(t *testing.T) {
	tests := []struct {
		name    string
		urls    []string // the redirect chain, first to last
		allowed []string
		want    bool
	}{
		{"first request", []string{"https://api.test/a"}, nil, true},
		{"same origin", []string{"https://api.test/a", "https://api.test/b"}, nil, true},
		{"same origin, default port spelled", []string{"https://api.test/a", "https://api.test:443/b"}, nil, true},
		{"same origin, host case", []string{"https://API.test/a", "https://api.TEST/b"}, nil, true},
		{"back to origin after a hop", []string{"https://api.test/a", "https://cdn.test/b", "https://api.test/c"}, nil, true},
		{"other port", []string{"https://api.test/a", "https://api.test:8443/b"}, nil, false},
		{"other scheme", []string{"https://api.test/a", "http://api.test:443/b"}, nil, false},
		{"other host", []string{"https://api.test/a", "https://evil.test/b"}, nil, false},
		{"subdomain", []string{"https://api.test/a", "https://x.api.test/b"}, nil, false},
		{"origin is the first request, not the previous", []string{"https://api.test/a", "https://cdn.test/b", "https://cdn.test/c"}, nil, false},
		{"allowed host", []string{"https://api.test/a", "https://cdn.test/b"}, []string{"cdn.test"}, true},
		{"allowed host, any port", []string{"https://api.test/a", "https://cdn.test:8443/b"}, []string{"CDN.test"}, true},
		{"allowed host and port", []string{"https://api.test/a", "https://cdn.test:8443/b"}, []string{"cdn.test:8443"}, true},
		{"allowed host, other port", []string{"https://api.test/a", "https://cdn.test/b"}, []string{"cdn.test:8443"}, false},
		{"allowed IPv6 and port", []string{"https://api.test/a", "https://[::1]:8443/b"}, []string{"[::1]:8443"}, true},
		{"allowed IPv6", []string{"https://api.test/a", "https://[::1]:8443/b"}, []string{"::1"}, true},
		{"allowed other host", []string{"https://api.test/a", "https://evil.test/b"}, []string{"cdn.test"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &Transport{AllowedHosts: tt.allowed}
			req := redirectChain(t, tt.urls...)
			if got := tr.mayAuthorize(req); got != tt.want {
				t.Errorf("mayAuthorize(%v) = %v, want %v", tt.urls, got, tt.want)
			}
		})
	}

	t.Run("broken chain", func(t *testing.T) {
		// A Base that returns responses without Request hides the
		// origin: only allowed hosts get the token.
		req := redirectChain(t, "https://api.test/a", "https://api.test/b")
		req.Response.Request = nil
		if (&Transport{}).mayAuthorize(req) {
			t.Errorf("mayAuthorize() = true with a broken chain, want false")
		}
		if !(&Transport{AllowedHosts: []string{"api.test"}}).mayAuthorize(req) {
			t.Errorf("mayAuthorize() = false for an allowed host, want true")
		}
	})
}

// authRecorder is an httptest handler that records the Authorization
// header each path received, and redirects /redirect?to=URL.
type authRecorder struct {
	mu   sync.Mutex // guards auth
	auth map[string][]string
}

func (a *authRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if to := r.URL.Query().Get("to"); r.URL.Path == "/redirect" && to != "" {
		http.Redirect(w, r, to, http.StatusFound)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.auth == nil {
		a.auth = map[string][]string{}
	}
	a.auth[r.URL.Path] = r.Header.Values("Authorization")
	io.WriteString(w, "ok")
}

func (a *authRecorder) get(path string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.auth[path]
}

func TestTransportRedirect(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	origin, other, secure := &authRecorder{}, &authRecorder{}, &authRecorder{}
	originSrv := httptest.NewServer(origin)
	defer originSrv.Close()
	otherSrv := httptest.NewServer(other) // same host, another port
	defer otherSrv.Close()
	secureSrv := httptest.NewTLSServer(secure)
	defer secureSrv.Close()

	u, err := url.Parse(originSrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	localhost := "http://localhost:" + u.Port() // the origin server under another host name

	tests := []struct {
		name    string
		to      string // redirect target
		rec     *authRecorder
		allowed []string
		header  string // Authorization the caller sets, if any
		want    []string
	}{
		{"same origin keeps the token", originSrv.URL + "/same", origin, nil, "", []string{"Bearer tok-0"}},
		{"other port drops it", otherSrv.URL + "/port", other, nil, "", nil},
		{"other host drops it", localhost + "/host", origin, nil, "", nil},
		{"other scheme drops it", secureSrv.URL + "/scheme", secure, nil, "", nil},
		{"allowed host keeps it", localhost + "/allowed", origin, []string{"localhost"}, "", []string{"Bearer tok-0"}},
		{"caller's header copied to another port is stripped", otherSrv.URL + "/copied", other, nil, "Basic dTpw", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &Transport{
				Source:       newRotatingSource(),
				Base:         secureSrv.Client().Transport, // trusts secureSrv, speaks http too
				AllowedHosts: tt.allowed,
			}
			client := &http.Client{Transport: tr}
			defer client.CloseIdleConnections()
			req, err := http.NewRequest(http.MethodGet, originSrv.URL+"/redirect?to="+url.QueryEscape(tt.to), nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("Do() error = %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", resp.StatusCode)
			}
			u, _ := url.Parse(tt.to)
			if got := tt.rec.get(u.Path); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Authorization at %s = %q, want %q", tt.to, got, tt.want)
			}
		})
	}
}

// newBodyRequest returns a POST with a replayable body whose copies are
// recorded, so that tests can count each one's Close calls.
func newBodyRequest(t *testing.T, url, body string) (req *http.Request, orig *countingBody, replays *[]*countingBody) {
	t.Helper()
	orig = newCountingBody(body)
	req, err := http.NewRequest(http.MethodPost, url, orig)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	var mu sync.Mutex // guards copies
	var copies []*countingBody
	req.GetBody = func() (io.ReadCloser, error) {
		mu.Lock()
		defer mu.Unlock()
		b := newCountingBody(body)
		copies = append(copies, b)
		return b, nil
	}
	return req, orig, &copies
}

func TestTransportBodyReplay(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	var mu sync.Mutex // guards bodies
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the body: %v", err)
			return
		}
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer tok-1" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	const payload = `{"name":"gopher"}`

	t.Run("replayable body is sent again", func(t *testing.T) {
		bodies = nil
		src := newRotatingSource()
		client := &http.Client{Transport: &Transport{Source: src}}
		defer client.CloseIdleConnections()
		resp, err := client.Post(srv.URL, "application/json", strings.NewReader(payload))
		if err != nil {
			t.Fatalf("Post() error = %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status = %d, want 200", resp.StatusCode)
		}
		if want := []string{payload, payload}; !reflect.DeepEqual(bodies, want) {
			t.Errorf("bodies received = %q, want %q", bodies, want)
		}
	})

	t.Run("body without GetBody is not retried", func(t *testing.T) {
		bodies = nil
		src := newRotatingSource()
		client := &http.Client{Transport: &Transport{Source: src}}
		defer client.CloseIdleConnections()
		body := newCountingBody(payload)
		req, err := http.NewRequest(http.MethodPost, srv.URL, body) // no GetBody for this type
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("Do() error = %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("status = %d, want 401", resp.StatusCode)
		}
		if want := []string{payload}; !reflect.DeepEqual(bodies, want) {
			t.Errorf("bodies received = %q, want %q", bodies, want)
		}
		if got := src.refreshes.Load(); got != 0 {
			t.Errorf("Refresh called %d times, want 0", got)
		}
	})
}

func TestTransportClosesBody(t *testing.T) {
	errBase := errors.New("connection refused")
	errReplay := errors.New("body gone")
	tests := []struct {
		name       string
		url        string
		src        func() TokenSource
		status     int   // the first answer; later answers are 200
		baseErr    error // returned by Base after it closed the body
		replay     bool  // the request has GetBody
		getBodyErr error // returned by GetBody
		wantErr    error
		wantTries  int
	}{
		{name: "success", url: "https://api.test/", src: func() TokenSource { return newRotatingSource() }, status: 200, replay: true, wantTries: 1},
		{name: "retry", url: "https://api.test/", src: func() TokenSource { return newRotatingSource() }, status: 401, replay: true, wantTries: 2},
		{name: "401 not replayable", url: "https://api.test/", src: func() TokenSource { return newRotatingSource() }, status: 401, wantTries: 1},
		{name: "nil source", url: "https://api.test/", src: func() TokenSource { return nil }, status: 200, replay: true, wantErr: errNoSource},
		{name: "source error", url: "https://api.test/", src: func() TokenSource {
			s := newRotatingSource()
			s.tokenErr = ErrReauthorize
			return s
		}, status: 200, replay: true, wantErr: ErrReauthorize},
		{name: "refresh error", url: "https://api.test/", src: func() TokenSource {
			s := newRotatingSource()
			s.refreshErr = ErrReauthorize
			return s
		}, status: 401, replay: true, wantErr: ErrReauthorize, wantTries: 1},
		{name: "insecure", url: "http://api.test/", src: func() TokenSource { return newRotatingSource() }, status: 200, replay: true, wantErr: ErrInsecure},
		{name: "GetBody error", url: "https://api.test/", src: func() TokenSource { return newRotatingSource() }, status: 401, replay: true, getBodyErr: errReplay, wantErr: errReplay, wantTries: 1},
		{name: "base error", url: "https://api.test/", src: func() TokenSource { return newRotatingSource() }, baseErr: errBase, replay: true, wantErr: errBase, wantTries: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tries := 0
			base := closingBase(baseFunc(func(r *http.Request) (*http.Response, error) {
				tries++
				if tt.baseErr != nil {
					return nil, tt.baseErr
				}
				status := 200
				if tries == 1 {
					status = tt.status
				}
				return &http.Response{StatusCode: status, Body: http.NoBody, Request: r}, nil
			}))
			tr := &Transport{Source: tt.src(), Base: base}
			req, orig, replays := newBodyRequest(t, tt.url, "payload")
			if !tt.replay {
				req.GetBody = nil
			}
			if tt.getBodyErr != nil {
				req.GetBody = func() (io.ReadCloser, error) { return nil, tt.getBodyErr }
			}
			resp, err := tr.RoundTrip(req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("RoundTrip() error = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Errorf("RoundTrip() error = %v", err)
			} else {
				resp.Body.Close()
			}
			if tries != tt.wantTries {
				t.Errorf("Base called %d times, want %d", tries, tt.wantTries)
			}
			if got := orig.closes.Load(); got != 1 {
				t.Errorf("body closed %d times, want 1", got)
			}
			wantReplays := max(tt.wantTries-1, 0)
			if tt.getBodyErr != nil {
				wantReplays = 0 // GetBody was called but made no body
			}
			if len(*replays) != wantReplays {
				t.Errorf("GetBody called %d times, want %d", len(*replays), wantReplays)
			}
			for i, b := range *replays {
				if got := b.closes.Load(); got != 1 {
					t.Errorf("replayed body %d closed %d times, want 1", i+1, got)
				}
			}
		})
	}
}

// requestState is a deep copy of everything in req a RoundTripper could
// change, compared with reflect.DeepEqual.
type requestState struct {
	req     http.Request // a Clone, with GetBody left out (funcs never compare equal)
	header  uintptr      // identity of the header map
	values  map[string]uintptr
	getBody uintptr
}

func stateOf(req *http.Request) requestState {
	s := requestState{
		req:    *req.Clone(req.Context()),
		header: reflect.ValueOf(req.Header).Pointer(),
		values: map[string]uintptr{},
	}
	s.req.GetBody = nil
	if req.GetBody != nil {
		s.getBody = reflect.ValueOf(req.GetBody).Pointer()
	}
	for k, v := range req.Header {
		s.values[k] = reflect.ValueOf(v).Pointer()
	}
	return s
}

func TestTransportRequestUnchanged(t *testing.T) {
	tests := []struct {
		name   string
		status int
		url    string
		chain  bool // the request is a cross-origin redirect hop
	}{
		{"success", 200, "https://api.test/x?q=1", false},
		{"retry", 401, "https://api.test/x?q=1", false},
		{"insecure", 200, "http://api.test/x?q=1", false},
		{"cross-origin hop", 200, "https://cdn.test/x?q=1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tries := 0
			base := closingBase(baseFunc(func(r *http.Request) (*http.Response, error) {
				tries++
				// A Base may change its own copy; that must not reach the caller.
				r.Header.Set("X-Base", "seen")
				r.URL.RawQuery = "base=1"
				status := 200
				if tries == 1 {
					status = tt.status
				}
				return &http.Response{StatusCode: status, Body: http.NoBody, Request: r}, nil
			}))
			tr := &Transport{Source: newRotatingSource(), Base: base}
			req, _, _ := newBodyRequest(t, tt.url, "payload")
			req.Header.Set("Authorization", "Basic dTpw")
			req.Header.Set("Accept", "application/json")
			req.Header.Add("X-Multi", "a")
			req.Header.Add("X-Multi", "b")
			if tt.chain {
				first, _ := http.NewRequest(http.MethodGet, "https://api.test/", nil)
				req.Response = &http.Response{StatusCode: http.StatusFound, Request: first}
			}
			before := stateOf(req)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			after := stateOf(req)
			if !reflect.DeepEqual(before, after) {
				t.Errorf("request changed:\nbefore %+v\nafter  %+v", before.req, after.req)
			}
		})
	}
}

// TestTransportStorm sends K requests that all get 401 for the same token:
// the source rotates once, and each request is sent exactly twice.
func TestTransportStorm(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const k = 500

	src := newRotatingSource()
	var (
		arrived  atomic.Int32
		allIn    = make(chan struct{}) // closed when all k first attempts arrived
		attempts [k]atomic.Int32
	)
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder(http.MethodGet, "https://api.test/storm", func(r *http.Request) (*http.Response, error) {
		id, err := strconv.Atoi(r.Header.Get("X-Id"))
		if err != nil || id < 0 || id >= k {
			return nil, fmt.Errorf("bad X-Id %q", r.Header.Get("X-Id"))
		}
		attempts[id].Add(1)
		switch r.Header.Get("Authorization") {
		case "Bearer tok-0":
			// Hold every answer until all requests carry tok-0, so that
			// none of them sees the rotated token first.
			if arrived.Add(1) == k {
				close(allIn)
			}
			<-allIn
			return httpmock.NewStringResponse(http.StatusUnauthorized, "expired"), nil
		case "Bearer tok-1":
			return httpmock.NewStringResponse(http.StatusOK, "ok"), nil
		}
		return httpmock.NewStringResponse(http.StatusForbidden, "unknown token"), nil
	})
	client := &http.Client{Transport: &Transport{Source: src, Base: mock}}

	var wg sync.WaitGroup
	statuses := make([]int, k)
	errs := make([]error, k)
	for i := range k {
		wg.Go(func() {
			req, err := http.NewRequest(http.MethodGet, "https://api.test/storm", nil)
			if err != nil {
				errs[i] = err
				return
			}
			req.Header.Set("X-Id", strconv.Itoa(i))
			resp, err := client.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()

	for i := range k {
		if errs[i] != nil {
			t.Errorf("request %d: error = %v", i, errs[i])
			continue
		}
		if statuses[i] != http.StatusOK {
			t.Errorf("request %d: status = %d, want 200", i, statuses[i])
		}
		if got := attempts[i].Load(); got != 2 {
			t.Errorf("request %d: sent %d times, want 2", i, got)
		}
	}
	if got := src.rotations.Load(); got != 1 {
		t.Errorf("rotations = %d, want 1", got)
	}
	if got := src.refreshes.Load(); got != k {
		t.Errorf("Refresh calls = %d, want %d (one per rejected request)", got, k)
	}
}

func TestTransportHeaderCache(t *testing.T) {
	src := newRotatingSource()
	tr := &Transport{Source: src}
	tok := src.cur
	if got := tr.value(tok); got != "Bearer tok-0" {
		t.Fatalf("value() = %q, want %q", got, "Bearer tok-0")
	}
	if allocs := testing.AllocsPerRun(100, func() { tr.value(tok) }); allocs != 0 {
		t.Errorf("value() of the cached token allocates %v times, want 0", allocs)
	}
	// A source reading its token from a file on each call hands out a new
	// *Token for the same token: the value is built once per token.
	same := &Token{AccessToken: tok.AccessToken}
	if allocs := testing.AllocsPerRun(100, func() { tr.value(same) }); allocs != 0 {
		t.Errorf("value() of an equal token allocates %v times, want 0", allocs)
	}
	next, _ := src.Refresh(context.Background(), tok)
	if got := tr.value(next); got != "Bearer tok-1" {
		t.Errorf("value() after rotation = %q, want %q", got, "Bearer tok-1")
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

// fzReqBody is a request body that counts its Close calls.
type fzReqBody struct {
	io.Reader
	closed int
}

func (b *fzReqBody) Close() error {
	b.closed++
	return nil
}

// fzSource is a TokenSource with Refresh (unless noRefresh is set in the
// wrapper below) whose behaviour the fuzzer picks.
type fzSource struct {
	kind        int // see FuzzTransport
	tok, next   *Token
	refreshes   int
	badRejected bool // Refresh was not given the token sent
}

var (
	errFzToken   = errors.New("fz: no token for you")
	errFzRefresh = errors.New("fz: refresh failed")
	errFzBase    = errors.New("fz: base transport failed")
)

func (s *fzSource) Token(ctx context.Context) (*Token, error) {
	switch s.kind {
	case 5:
		return nil, errFzToken
	case 6:
		return &Token{}, nil
	}
	return s.tok, nil
}

func (s *fzSource) Refresh(ctx context.Context, rejected *Token) (*Token, error) {
	s.refreshes++
	if rejected != s.tok {
		s.badRejected = true
	}
	switch s.kind {
	case 1:
		return s.tok, nil
	case 2:
		return nil, errFzRefresh
	case 3:
		return nil, nil
	}
	return s.next, nil
}

// fzTokenOnly hides Refresh.
type fzTokenOnly struct{ src *fzSource }

func (s fzTokenOnly) Token(ctx context.Context) (*Token, error) { return s.src.Token(ctx) }

// fzHeader parses fuzzed header lines loosely: "Key: value" per line.
func fzHeader(s string) http.Header {
	h := http.Header{}
	for line := range strings.Lines(s) {
		line = strings.TrimRight(line, "\r\n")
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		h.Add(k, strings.TrimSpace(v))
	}
	return h
}

// fzRequestSnapshot is what RoundTrip must leave alone in the caller's request.
type fzRequestSnapshot struct {
	method, url, host string
	header            http.Header
	body              io.ReadCloser
	getBody           bool
	contentLength     int64
	response          *http.Response
}

func fzSnapshot(req *http.Request) fzRequestSnapshot {
	return fzRequestSnapshot{
		method: req.Method, url: req.URL.String(), host: req.Host,
		header: req.Header.Clone(), body: req.Body, getBody: req.GetBody != nil,
		contentLength: req.ContentLength, response: req.Response,
	}
}

func (s fzRequestSnapshot) equal(o fzRequestSnapshot) bool {
	return s.method == o.method && s.url == o.url && s.host == o.host &&
		fmt.Sprint(s.header) == fmt.Sprint(o.header) && s.body == o.body &&
		s.getBody == o.getBody && s.contentLength == o.contentLength && s.response == o.response
}

// fzAuthorization returns the Authorization values of h, in any spelling.
func fzAuthorization(h http.Header) []string {
	var vs []string
	for k, v := range h {
		if strings.EqualFold(k, "Authorization") {
			vs = append(vs, v...)
		}
	}
	return vs
}

// fzTransportSeeds are protected API answers: status, header lines, body,
// second status, flags (see FuzzTransport).
var fzTransportSeeds = []struct {
	status  int
	header  string
	body    string
	status2 int
	flags   uint16
}{
	{200, "Content-Type: application/json", `{"ok":true}`, 200, 0},
	{401, "WWW-Authenticate: Bearer error=\"invalid_token\"", `{"error":"invalid_token"}`, 200, 0},
	{401, "WWW-Authenticate: Bearer error=\"invalid_token\"", `{"error":"invalid_token"}`, 401, 2 << 3},
	{401, "WWW-Authenticate: Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"write\"", ``, 200, 0},
	{401, "WWW-Authenticate: Bearer x_error=\"insufficient_scope\"\r\nWWW-Authenticate: Basic realm=x", ``, 200, 0},
	{401, "WWW-Authenticate: Bearer error = insufficient_scopes", `denied`, 200, 1},
	{401, "", `denied`, 200, 2},
	{401, "", `denied`, 200, 3},
	{401, "", `denied`, 200, 4},
	{401, "", `denied`, 200, 3 << 3},
	{401, "Content-Length: 100000000", strings.Repeat("x", 9000), 200, 2<<5 | 1<<13},
	{401, "", strings.Repeat("x", 5000), 200, 1 << 5},
	{401, "", `endless`, 200, 2 << 5},
	{500, "Retry-After: 1", `oops`, 200, 1 << 7},
	{200, "", ``, 200, 5},
	{200, "", ``, 200, 6},
	{302, "Location: https://evil.example/", ``, 200, 1<<9 | 1<<10},
	{200, "", ``, 200, 1<<8 | 1<<10},
	{401, "", ``, 200, 1<<9 | 1<<12},
	{200, "", ``, 200, 1 << 11},
	{401, "", ``, 200, 1<<11 | 1<<9},
	{401, "", ``, 200, 1 << 10},
	{302, "Location: https://evil.example/", ``, 200, 1 << 9},
}

// FuzzTransport sends a request through Transport to an in-memory Base
// whose answers are fuzzed. flags:
//
//	bits 0-2   source: 0 and 7 Refresh rotates, 1 Refresh returns the same
//	           token, 2 Refresh fails, 3 Refresh returns nil, 4 no Refresh,
//	           5 Token fails, 6 Token returns an empty token
//	bits 3-4   request body: none, http.NoBody, replayable, not replayable
//	bits 5-6   answer body: plain, failing after its bytes, endless, nil
//	bit 7      Base fails the first request
//	bit 8      the request is a redirect from the same origin
//	bit 9      the request is a redirect from another origin
//	bit 10     the caller set an Authorization header
//	bit 11     plain http to a host that is not loopback
//	bit 12     AllowedHosts lists the request's host
//	bit 13     the answer declares its Content-Length from the header
func FuzzTransport(f *testing.F) {
	for _, s := range fzTransportSeeds {
		f.Add(s.status, s.header, []byte(s.body), s.status2, s.flags)
	}
	f.Fuzz(func(t *testing.T, status int, header string, data []byte, status2 int, flags uint16) {
		statuses := [2]int{fzStatus(status), fzStatus(status2)}
		respHeader := fzHeader(header)

		src := &fzSource{
			kind: int(flags & 7),
			tok:  &Token{AccessToken: "SECRETtok-1", TokenType: "Bearer"},
			next: &Token{AccessToken: "SECRETtok-2"},
		}
		var ts TokenSource = src
		hasRefresh := src.kind != 4
		if !hasRefresh {
			ts = fzTokenOnly{src}
		}

		var bodies []*fzBody // answers' bodies, by call
		var resps []*http.Response
		var sent []*http.Request
		base := fzRoundTripper{func(req *http.Request) (*http.Response, error) {
			sent = append(sent, req)
			if req.Body != nil {
				io.Copy(io.Discard, req.Body)
				req.Body.Close()
			}
			if flags&(1<<7) != 0 && len(sent) == 1 {
				return nil, errFzBase
			}
			b := &fzBody{data: data}
			switch flags >> 5 & 3 {
			case 1:
				b.errAfter = errFzRead
			case 2:
				b.endless = true
			}
			resp := &http.Response{
				StatusCode:    statuses[min(len(sent), 2)-1],
				Proto:         "HTTP/1.1",
				ProtoMajor:    1,
				ProtoMinor:    1,
				Header:        respHeader.Clone(),
				Body:          b,
				ContentLength: int64(len(data)),
				Request:       req,
			}
			if b.endless || b.errAfter != nil {
				resp.ContentLength = -1
			}
			if flags&(1<<13) != 0 {
				resp.ContentLength = -1
				fmt.Sscan(respHeader.Get("Content-Length"), &resp.ContentLength)
			}
			if flags>>5&3 == 3 {
				resp.Body = nil
			}
			bodies = append(bodies, b)
			resps = append(resps, resp)
			return resp, nil
		}}

		scheme := "https"
		if flags&(1<<11) != 0 {
			scheme = "http"
		}
		tr := &Transport{Source: ts, Base: base}
		if flags&(1<<12) != 0 {
			tr.AllowedHosts = []string{"api.example.test"}
		}

		var reqBody *fzReqBody
		var getBodies []*fzReqBody
		var body io.ReadCloser
		payload := []byte(`{"order":1}`)
		switch flags >> 3 & 3 {
		case 1:
			body = http.NoBody
		case 2, 3:
			reqBody = &fzReqBody{Reader: bytes.NewReader(payload)}
			body = reqBody
		}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, scheme+"://api.example.test/v1/orders?x=1", body)
		if err != nil {
			t.Fatal(err)
		}
		req.GetBody = nil
		if flags>>3&3 == 2 {
			req.GetBody = func() (io.ReadCloser, error) {
				b := &fzReqBody{Reader: bytes.NewReader(payload)}
				getBodies = append(getBodies, b)
				return b, nil
			}
		}
		req.Header.Set("X-Request-Id", "r-1")
		if flags&(1<<10) != 0 {
			req.Header["authorization"] = []string{"Basic caller"}
		}
		crossOrigin := false
		switch {
		case flags&(1<<9) != 0:
			prev, _ := http.NewRequest(http.MethodGet, "https://login.example.test/start", nil)
			req.Response = &http.Response{StatusCode: http.StatusFound, Request: prev}
			crossOrigin = tr.AllowedHosts == nil
		case flags&(1<<8) != 0:
			prev, _ := http.NewRequest(http.MethodGet, scheme+"://api.example.test/v1/start", nil)
			req.Response = &http.Response{StatusCode: http.StatusFound, Request: prev}
		}
		before := fzSnapshot(req)

		type result struct {
			resp *http.Response
			err  error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := tr.RoundTrip(req)
			done <- result{resp, err}
		}()
		var res result
		timer := time.NewTimer(10 * time.Second)
		select {
		case res = <-done:
			timer.Stop()
		case <-timer.C:
			t.Fatal("RoundTrip still running after 10 s")
		}
		resp, err := res.resp, res.err

		if !fzSnapshot(req).equal(before) {
			t.Errorf("RoundTrip changed the caller's request: %+v, was %+v", fzSnapshot(req), before)
		}
		if len(sent) > 2 {
			t.Errorf("Base called %d times, want at most 2", len(sent))
		}
		if reqBody != nil && reqBody.closed == 0 {
			t.Error("the request body was never closed")
		}
		for i, b := range getBodies {
			if b.closed == 0 {
				t.Errorf("the request body from GetBody call %d was never closed", i+1)
			}
		}
		if (resp == nil) == (err == nil) {
			t.Errorf("RoundTrip = %v, %v; want an answer or an error", resp, err)
		}
		if resp != nil && resp.Request != req {
			t.Errorf("the answer's Request is %p, want the caller's %p", resp.Request, req)
		}

		// Which requests carried which token.
		insecure := scheme == "http" && !crossOrigin
		for i, r := range sent {
			auth := fzAuthorization(r.Header)
			var want []string
			switch {
			case crossOrigin:
			case i == 0:
				want = []string{"Bearer SECRETtok-1"}
			default:
				want = []string{"Bearer SECRETtok-2"}
			}
			if !slices.Equal(auth, want) {
				t.Errorf("request %d sent Authorization %q, want %q", i+1, auth, want)
			}
			if r.URL.String() != req.URL.String() {
				t.Errorf("request %d went to %v, want %v", i+1, r.URL, req.URL)
			}
		}
		switch {
		case insecure:
			if !errors.Is(err, ErrInsecure) || len(sent) != 0 {
				t.Errorf("plain http: RoundTrip error %v after %d requests, want ErrInsecure before any", err, len(sent))
			}
		case crossOrigin:
			if len(sent) != 1 {
				t.Errorf("cross-origin hop: %d requests, want 1", len(sent))
			}
		case src.kind == 5 || src.kind == 6:
			if err == nil || len(sent) != 0 {
				t.Errorf("no token: RoundTrip error %v after %d requests, want an error before any", err, len(sent))
			}
			if src.kind == 5 && !errors.Is(err, errFzToken) {
				t.Errorf("RoundTrip error %v does not wrap the source's error", err)
			}
		}
		if len(sent) == 2 {
			if statuses[0] != http.StatusUnauthorized || !hasRefresh || flags>>3&3 == 3 || flags&(1<<7) != 0 {
				t.Errorf("retried a %d answer (flags %#x)", statuses[0], flags)
			}
			if src.refreshes != 1 {
				t.Errorf("Refresh called %d times before the retry, want 1", src.refreshes)
			}
		}
		if flags&(1<<7) != 0 && len(sent) == 1 && !errors.Is(err, errFzBase) {
			t.Errorf("RoundTrip error %v, want the Base's error", err)
		}
		if src.badRejected {
			t.Error("Refresh was not given the token the server rejected")
		}
		if src.refreshes > 0 && (len(resps) == 0 || resps[0].StatusCode != http.StatusUnauthorized) {
			t.Errorf("Refresh called without a 401")
		}
		if src.kind == 2 && src.refreshes > 0 && !errors.Is(err, errFzRefresh) {
			t.Errorf("RoundTrip error %v does not wrap Refresh's error", err)
		}

		// The answer returned is the last one, untouched; the others were
		// closed after a bounded read.
		for i, r := range resps {
			b := bodies[i]
			if r == resp {
				if i != len(resps)-1 {
					t.Errorf("RoundTrip returned answer %d of %d", i+1, len(resps))
				}
				if (b.n != 0 || b.closed != 0) && r.Body == io.ReadCloser(b) {
					t.Errorf("the answer returned was read (%d bytes) or closed (%d times)", b.n, b.closed)
				}
				if r.Body != nil && r.Body != io.ReadCloser(b) && !b.endless {
					// Buffered to free the connection while Refresh ran:
					// the caller must still read the whole answer.
					if b.n > 64<<10+1 {
						t.Errorf("buffered %d bytes of the answer returned, want at most 64 KiB", b.n)
					}
					got, err := io.ReadAll(r.Body)
					if b.errAfter == nil && (err != nil || !bytes.Equal(got, b.data)) {
						t.Errorf("the answer returned reads %d bytes (%v), want its %d bytes intact", len(got), err, len(b.data))
					}
				}
				continue
			}
			if r.Body != nil && b.closed == 0 {
				t.Errorf("answer %d (status %d) was dropped without closing its body", i+1, r.StatusCode)
			}
			if b.n > 64<<10 {
				t.Errorf("read %d bytes of answer %d (status %d), want at most 64 KiB", b.n, i+1, r.StatusCode)
			}
		}
		if resp != nil && !slices.Contains(resps, resp) {
			t.Errorf("RoundTrip returned an answer Base never gave")
		}
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
	})
}
