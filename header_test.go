package bearer

import (
	"context"
	"errors"
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

	"go.uber.org/goleak"
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
	t.Parallel() // touches nothing shared
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
