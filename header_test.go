package bearer

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// headerBase records the header each request arrives with, as a copy. It
// only reads requests.
type headerBase struct {
	headers []http.Header
}

func (b *headerBase) RoundTrip(r *http.Request) (*http.Response, error) {
	b.headers = append(b.headers, r.Header.Clone())
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

// TestHeaderFollowsCallerHeader sends a sequence of requests whose headers
// repeat, change in place, change in size and carry their own
// Authorization, and checks that each one goes out with exactly its
// caller's header plus the token.
func TestHeaderFollowsCallerHeader(t *testing.T) {
	base := new(headerBase)
	tr := &Transport{Source: newRotatingSource(), Base: base}
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
		{"nil header", func() http.Header { return nil }},
		{"empty header", func() http.Header { return http.Header{} }},
		{"key with nil value", func() http.Header { return http.Header{"User-Agent": nil} }},
		{"caller's Authorization", func() http.Header {
			return http.Header{"Authorization": {"Basic dTpw"}, "Accept": {"application/json"}}
		}},
		{"caller's authorization, other spelling", func() http.Header {
			return http.Header{"authorization": {"Basic dTpw"}}
		}},
	}
	for _, step := range steps {
		name, h := step.name, step.header()
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

// TestHeaderIsolation runs Bases that break the RoundTripper contract from
// many goroutines, over real HTTP, while the token rotates after a 401: a
// masking logger that overwrites every header value in place after sending,
// a Base that sets a header and appends to a value before sending, and an
// http.Transport whose Proxy func edits a value in place and sets a header.
// Half the requests share one header map, as callers may while nobody
// writes to it. No caller's request may change, each request must reach
// the server with exactly its caller's header plus what its Base did, and
// under -race nothing may race.
func TestHeaderIsolation(t *testing.T) {
	var mu sync.Mutex
	valid := "Bearer tok-0" // guarded by mu
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
	hb := srv.Client().Transport.(*http.Transport)
	defer hb.CloseIdleConnections()
	proxied := &http.Transport{Proxy: func(r *http.Request) (*url.URL, error) {
		r.Header["Accept"][0] = "proxied/" + r.Header["Accept"][0]
		r.Header.Set("X-Proxy", "1")
		return nil, nil
	}}
	defer proxied.CloseIdleConnections()

	for _, tt := range []struct {
		name string
		base http.RoundTripper
		did  func(h http.Header) // what base does to the header the server gets
	}{
		{"masks values in place after sending", baseFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := hb.RoundTrip(r)
			for _, v := range r.Header {
				for i := range v {
					v[i] = "***"
				}
			}
			return resp, err
		}), func(http.Header) {}},
		{"sets a header and appends a value", baseFunc(func(r *http.Request) (*http.Response, error) {
			r.Header.Set("X-Added", "1")
			r.Header["Accept"] = append(r.Header["Accept"], "text/x-added")
			return hb.RoundTrip(r)
		}), func(h http.Header) {
			h.Set("X-Added", "1")
			h.Add("Accept", "text/x-added")
		}},
		{"Proxy func edits a value and sets a header", proxied, func(h http.Header) {
			h["Accept"] = []string{"proxied/" + h["Accept"][0]}
			h.Set("X-Proxy", "1")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			valid = "Bearer tok-0"
			mu.Unlock()
			src := newRotatingSource()
			tr := &Transport{Source: src, Base: tt.base}
			shared := http.Header{"Accept": {"application/json"}, "X-Tenant": {"t1"}}

			const workers, each = 4, 40
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := range each {
						if w == 0 && i == each/2 {
							mu.Lock()
							valid = "Bearer tok-1" // revoke tok-0: the next requests get 401
							mu.Unlock()
						}
						req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
						if i%2 == 0 {
							req.Header = shared
						} else {
							req.Header.Set("Accept", "text/plain")
							req.Header.Set("X-Request-Id", strconv.Itoa(w*each+i))
						}
						before := req.Header.Clone()
						want := req.Header.Clone()
						tt.did(want)
						resp, err := tr.RoundTrip(req)
						if err != nil {
							t.Error(err)
							continue
						}
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						var sb strings.Builder
						want.Write(&sb)
						if resp.StatusCode != http.StatusOK || string(body) != sb.String() {
							t.Errorf("server answered %d to header\n%s\nwant 200 to\n%s", resp.StatusCode, body, sb.String())
						}
						if !reflect.DeepEqual(req.Header, before) {
							t.Errorf("caller's header became %v, want %v", req.Header, before)
						}
						if resp.Request != req {
							t.Errorf("Response.Request is not the caller's request")
						}
					}
				})
			}
			wg.Wait()
			if got := src.rotations.Load(); got != 1 {
				t.Errorf("rotations = %d, want 1 (the revoked token refreshed once)", got)
			}
		})
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
		name string
		body string
	}{
		{"GET", ""},
		{"POST", "payload"},
	} {
		tr := &Transport{Source: newRotatingSource(), Base: cloning}
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
