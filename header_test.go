package bearer

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// headerBase records the header each request arrives with, as a copy, and
// the identity of its map. It only reads requests.
type headerBase struct {
	mu      sync.Mutex
	headers []http.Header
	maps    []uintptr
}

func (b *headerBase) RoundTrip(r *http.Request) (*http.Response, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.headers = append(b.headers, r.Header.Clone())
	b.maps = append(b.maps, reflect.ValueOf(r.Header).Pointer())
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
}

// wantSent returns the header that should go out for a caller's header h
// and token value: h without any spelling of Authorization, plus auth.
func wantSent(h http.Header, auth string) http.Header {
	w := http.Header{}
	for k, v := range h {
		if !isAuthorization(k) {
			w[k] = slices.Clone(v)
		}
	}
	w["Authorization"] = []string{auth}
	return w
}

// sameHeader compares headers as the wire sees them: a key present with
// no values equals one present with an empty, non-nil slice.
func sameHeader(a, b http.Header) bool {
	return maps.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

// TestSharedHeaderFollowsCallerHeader sends a sequence of requests whose
// headers repeat, change in place, change in size and carry their own
// Authorization, through a Transport sharing header maps, and checks that
// each one goes out with exactly its caller's header plus the token.
func TestSharedHeaderFollowsCallerHeader(t *testing.T) {
	base := new(headerBase)
	tr := &Transport{Source: newRotatingSource(), Base: base, BaseReadOnly: true}
	accept := http.Header{"Accept": {"application/json"}}
	steps := []struct {
		name   string
		header func() http.Header
	}{
		{"first", func() http.Header { return accept }},
		{"same map again", func() http.Header { return accept }},
		{"equal map", func() http.Header { return http.Header{"Accept": {"application/json"}} }},
		{"value changed in place", func() http.Header { accept["Accept"][0] = "text/plain"; return accept }},
		{"same again", func() http.Header { return accept }},
		{"value appended", func() http.Header { accept.Add("Accept", "text/html"); return accept }},
		{"key added", func() http.Header { accept.Set("X-Trace", "1"); return accept }},
		{"other key, same count", func() http.Header {
			return http.Header{"Accept": {"text/plain", "text/html"}, "X-Other": {"1"}}
		}},
		{"nil header", func() http.Header { return nil }},
		{"empty header", func() http.Header { return http.Header{} }},
		{"key with nil value", func() http.Header { return http.Header{"User-Agent": nil} }},
		{"key with nil value again", func() http.Header { return http.Header{"User-Agent": nil} }},
		{"caller's Authorization", func() http.Header {
			return http.Header{"Authorization": {"Basic dTpw"}, "Accept": {"application/json"}}
		}},
		{"caller's authorization, other spelling", func() http.Header {
			return http.Header{"authorization": {"Basic dTpw"}}
		}},
		{"after those, the shared one", func() http.Header { return http.Header{"Accept": {"application/json"}} }},
	}
	send := func(tr *Transport, base *headerBase, name string, h http.Header) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "https://api.test/x", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = h
		before := req.Header.Clone()
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatalf("%s: RoundTrip: %v", name, err)
		}
		if got, want := base.headers[len(base.headers)-1], wantSent(before, "Bearer tok-0"); !sameHeader(got, want) {
			t.Errorf("%s: sent header %v, want %v", name, got, want)
		}
		if !reflect.DeepEqual(req.Header, before) {
			t.Errorf("%s: caller's header became %v, want %v", name, req.Header, before)
		}
	}
	for _, step := range steps {
		send(tr, base, step.name, step.header())
	}
	// The shared map proves itself by being shared: "same map again" and
	// "equal map" went out in the map "first" built.
	if base.maps[1] != base.maps[0] || base.maps[2] != base.maps[0] {
		t.Errorf("requests with equal headers got maps %#x, %#x, %#x, want one map", base.maps[0], base.maps[1], base.maps[2])
	}
	// Each header again as the first request of a Transport, which builds
	// the shared map from it.
	for _, step := range steps {
		b := new(headerBase)
		send(&Transport{Source: newRotatingSource(), Base: b, BaseReadOnly: true}, b, step.name+", first", step.header())
	}
}

// TestSharedHeaderPerShape alternates GETs and POSTs, whose headers differ
// in their number of keys: each kind keeps its shared map.
func TestSharedHeaderPerShape(t *testing.T) {
	base := new(headerBase)
	tr := &Transport{Source: newRotatingSource(), Base: base, BaseReadOnly: true}
	get := http.Header{"Accept": {"application/json"}}
	post := http.Header{"Accept": {"application/json"}, "Content-Type": {"application/json"}}
	for range 3 {
		for _, h := range []http.Header{get, post} {
			req, _ := http.NewRequest(http.MethodGet, "https://api.test/x", nil)
			req.Header = h
			if _, err := tr.RoundTrip(req); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, h := range base.headers {
		want := wantSent([]http.Header{get, post}[i%2], "Bearer tok-0")
		if !sameHeader(h, want) {
			t.Errorf("request %d sent %v, want %v", i, h, want)
		}
		if base.maps[i] != base.maps[i%2] {
			t.Errorf("request %d got a map other than the first of its kind", i)
		}
	}
	if base.maps[0] == base.maps[1] {
		t.Errorf("GET and POST shared a map")
	}
}

// TestLargeHeaderNotShared checks that a header too large to keep goes out
// intact in a map of its own each time.
func TestLargeHeaderNotShared(t *testing.T) {
	base := new(headerBase)
	tr := &Transport{Source: newRotatingSource(), Base: base, BaseReadOnly: true}
	big := http.Header{"Cookie": {strings.Repeat("c", maxShared)}, "Accept": {"application/json"}}
	for range 2 {
		req, _ := http.NewRequest(http.MethodGet, "https://api.test/x", nil)
		req.Header = big
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
	}
	for i, h := range base.headers {
		if want := wantSent(big, "Bearer tok-0"); !sameHeader(h, want) {
			t.Errorf("request %d sent another header than the caller's plus the token", i)
		}
	}
	if base.maps[0] == base.maps[1] {
		t.Errorf("a %d-byte header was shared", maxShared)
	}
	if tr.shared[len(big)%len(tr.shared)].Load() != nil {
		t.Errorf("the Transport keeps a %d-byte header", maxShared)
	}
}

// TestSharedHeaderAfterRotation checks that once the token changes no
// request goes out with a header map built for the old one.
func TestSharedHeaderAfterRotation(t *testing.T) {
	base := new(headerBase)
	src := newRotatingSource()
	tr := &Transport{Source: src, Base: base, BaseReadOnly: true}
	send := func() {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "https://api.test/x", nil)
		req.Header.Set("Accept", "application/json")
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
	}
	send()
	send()
	if _, err := src.Refresh(context.Background(), src.cur); err != nil {
		t.Fatal(err)
	}
	send()
	for i, want := range []string{"Bearer tok-0", "Bearer tok-0", "Bearer tok-1"} {
		if got := base.headers[i].Get("Authorization"); got != want {
			t.Errorf("request %d: Authorization = %q, want %q", i, got, want)
		}
	}
}

// TestSharedHeaderOnlyWithReadOnlyBase checks which bases get shared
// header maps: those declared read-only and net/http's Transport, and no
// other.
func TestSharedHeaderOnlyWithReadOnlyBase(t *testing.T) {
	for _, tt := range []struct {
		name string
		tr   *Transport
		want bool
	}{
		{"unknown base", &Transport{Base: new(headerBase)}, false},
		{"declared read-only", &Transport{Base: new(headerBase), BaseReadOnly: true}, true},
		{"nil base (http.DefaultTransport)", &Transport{}, true},
		{"*http.Transport", &Transport{Base: &http.Transport{}}, true},
	} {
		if got := tt.tr.readOnly(tt.tr.base()); got != tt.want {
			t.Errorf("%s: readOnly = %v, want %v", tt.name, got, tt.want)
		}
	}

	base := new(headerBase)
	tr := &Transport{Source: newRotatingSource(), Base: base}
	for range 2 {
		req, _ := http.NewRequest(http.MethodGet, "https://api.test/x", nil)
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
	}
	if base.maps[0] == base.maps[1] {
		t.Errorf("an unknown base got the same header map twice")
	}
}

// TestMutatingBaseGetsPrivateHeaders runs a Base that breaks the
// RoundTripper contract by setting a header on each request it gets, from
// many goroutines: without BaseReadOnly each request has its own map, so
// nothing races (under -race) and no request inherits another's header.
func TestMutatingBaseGetsPrivateHeaders(t *testing.T) {
	base := baseFunc(func(r *http.Request) (*http.Response, error) {
		if got := r.Header.Get("X-Seen"); got != "" {
			return nil, fmt.Errorf("request arrived with X-Seen %q set by an earlier one", got)
		}
		r.Header.Set("X-Seen", "yes")
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
	})
	tr := &Transport{Source: newRotatingSource(), Base: base}
	var wg sync.WaitGroup
	errs := make(chan error, 8*50)
	for range 8 {
		wg.Go(func() {
			for range 50 {
				req, _ := http.NewRequest(http.MethodGet, "https://api.test/x", nil)
				req.Header.Set("Accept", "application/json")
				if _, err := tr.RoundTrip(req); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestResponseRequestIsCallers checks that a response carries the caller's
// request, not the copy with the token, over a real http.Transport, which
// answers a request with a body with a copy of it, directly and through a
// Base Transport does not know; and that a Base's own request is left.
func TestResponseRequestIsCallers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	hb := srv.Client().Transport.(*http.Transport)
	defer hb.CloseIdleConnections()
	for _, tt := range []struct {
		name string
		base http.RoundTripper
		body string
	}{
		{"http.Transport, GET", hb, ""},
		{"http.Transport, POST", hb, "payload"},
		{"wrapper that copies the request", closingBase(hb), ""},
	} {
		tr := &Transport{Source: newRotatingSource(), Base: tt.base}
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(tt.body))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Request != req {
			t.Errorf("%s: Response.Request is not the caller's request", tt.name)
		}
		if got := resp.Request.Header.Get("Authorization"); got != "" {
			t.Errorf("%s: Response.Request has Authorization %q", tt.name, got)
		}
	}

	own, _ := http.NewRequest(http.MethodGet, "https://elsewhere.test/", nil)
	tr := &Transport{Source: newRotatingSource(), Base: baseFunc(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: own}, nil
	})}
	req, _ := http.NewRequest(http.MethodGet, "https://api.test/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Request != own {
		t.Errorf("a Base's own Response.Request was replaced")
	}
}

// TestSharedHeaderConcurrent sends requests with a few different header
// sets and request IDs from many goroutines through net/http's Transport,
// which Transport shares header maps over, to a server that echoes what it
// got, while the token rotates after a 401. Every request must arrive with
// exactly its own header and a token the server accepts.
func TestSharedHeaderConcurrent(t *testing.T) {
	src := newRotatingSource()
	var mu sync.Mutex
	valid := "Bearer tok-0"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ok := r.Header.Get("Authorization") == valid
		mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h := r.Header.Clone()
		for _, k := range []string{"Accept-Encoding", "User-Agent", "Authorization"} {
			delete(h, k)
		}
		h.Write(w)
	}))
	defer srv.Close()
	base := srv.Client().Transport.(*http.Transport)
	defer base.CloseIdleConnections()
	tr := &Transport{Source: src, Base: base}

	const workers, each = 8, 60
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if w == 0 && i == each/2 {
					mu.Lock()
					valid = "Bearer tok-1" // revoke tok-0: the next requests get 401
					mu.Unlock()
				}
				req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
				req.Header.Set("Accept", []string{"application/json", "text/plain", "*/*"}[i%3])
				if i%4 == 0 {
					req.Header.Set("X-Request-Id", strconv.Itoa(w*each+i))
				}
				want := req.Header.Clone()
				resp, err := tr.RoundTrip(req)
				if err != nil {
					errs <- err
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					continue
				}
				var sb strings.Builder
				want.Write(&sb)
				if string(body) != sb.String() {
					errs <- fmt.Errorf("server got header\n%s\nwant\n%s", body, sb.String())
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := src.rotations.Load(); got != 1 {
		t.Errorf("rotations = %d, want 1 (the revoked token refreshed once)", got)
	}
}

// newTokenSource hands out a new *Token on every call, all for the same
// access token, as a TokenSource reading its token from a file or the
// environment on each call does.
type newTokenSource struct{ access string }

func (s newTokenSource) Token(context.Context) (*Token, error) {
	return &Token{AccessToken: s.access}, nil
}

// TestSharedHeaderPerTokenNotPerPointer checks that the shared header map
// is built once per token, as documented, also when the Source hands out a
// new *Token for the same token on each call: requests with equal headers
// then still share one map, and cost fewer allocations than over a Base
// that gets a map per request.
func TestSharedHeaderPerTokenNotPerPointer(t *testing.T) {
	for _, tt := range []struct {
		name string
		src  TokenSource
	}{
		{"same *Token on each call", staticBenchSource{&Token{AccessToken: "tok-0"}}},
		{"new *Token on each call", newTokenSource{"tok-0"}},
	} {
		base := new(headerBase)
		tr := &Transport{Source: tt.src, Base: base, BaseReadOnly: true}
		for range 3 {
			req, _ := http.NewRequest(http.MethodGet, "https://api.test/x", nil)
			req.Header.Set("Accept", "application/json")
			if _, err := tr.RoundTrip(req); err != nil {
				t.Fatalf("%s: RoundTrip: %v", tt.name, err)
			}
		}
		for i, h := range base.headers {
			if got, want := h.Get("Authorization"), "Bearer tok-0"; got != want {
				t.Errorf("%s: request %d: Authorization = %q, want %q", tt.name, i, got, want)
			}
		}
		if base.maps[1] != base.maps[0] || base.maps[2] != base.maps[0] {
			t.Errorf("%s: requests with equal headers got maps %#x, %#x, %#x, want one map", tt.name, base.maps[0], base.maps[1], base.maps[2])
		}

		allocs := func(readOnly bool) float64 {
			resp := &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}
			tr := &Transport{
				Source:       tt.src,
				Base:         baseFunc(func(*http.Request) (*http.Response, error) { return resp, nil }),
				BaseReadOnly: readOnly,
			}
			req, _ := http.NewRequest(http.MethodGet, "https://api.test/x", nil)
			req.Header.Set("Accept", "application/json")
			return testing.AllocsPerRun(100, func() { tr.RoundTrip(req) })
		}
		if shared, private := allocs(true), allocs(false); shared >= private {
			t.Errorf("%s: a request with a shared header map costs %v allocations, one with its own %v; want fewer", tt.name, shared, private)
		}
	}
}

// TestResponseRequestFromCloningBase checks that the token does not show
// in a response's Request when Base clones the request it gets before
// sending it, as otelhttp's Transport does: the response answers the
// caller's request, which it must carry.
func TestResponseRequestFromCloningBase(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	hb := srv.Client().Transport.(*http.Transport)
	defer hb.CloseIdleConnections()
	cloning := baseFunc(func(r *http.Request) (*http.Response, error) {
		return hb.RoundTrip(r.Clone(r.Context()))
	})
	for _, tt := range []struct {
		name     string
		readOnly bool
		body     string
	}{
		{"own header map, GET", false, ""},
		{"own header map, POST", false, "payload"},
		{"shared header map, GET", true, ""},
		{"shared header map, POST", true, "payload"},
	} {
		tr := &Transport{Source: newRotatingSource(), Base: cloning, BaseReadOnly: tt.readOnly}
		method := http.MethodGet
		if tt.body != "" {
			method = http.MethodPost
		}
		req, _ := http.NewRequest(method, srv.URL, strings.NewReader(tt.body))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: RoundTrip: %v", tt.name, err)
		}
		resp.Body.Close()
		if got := resp.Request.Header.Get("Authorization"); got != "" {
			t.Errorf("%s: Response.Request has Authorization %q, want none", tt.name, got)
		}
		if resp.Request != req {
			t.Errorf("%s: Response.Request is not the caller's request", tt.name)
		}
	}
}
