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
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

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
