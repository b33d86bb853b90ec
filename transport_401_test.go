package bearer

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jarcoal/httpmock"
	"github.com/tokenkit/bearer/bearertest"
	"go.uber.org/goleak"
)

// The 401 retry: a request answered 401 is retried once with a new token,
// and a crowd of them, or an API that rejects every token, costs one
// refresh, not one per request.

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

// An API that rejects every token does not cause a refresh per request:
// a 401 for a token that itself replaced a rejected one moments ago is
// returned as it is, until a minute has passed.
func TestRejectEverythingIsNoStorm(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer api.Close()
	src := f.source(NewMemoryStore(f.token()))
	client := &http.Client{Transport: &Transport{Source: src}}
	get := func() {
		t.Helper()
		resp, err := client.Get(api.URL)
		if err != nil {
			t.Fatalf("Get() = %v, want the API's 401", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
	}
	for range 20 {
		get()
	}
	if n := f.srv.Stats().Refreshes; n > 3 || n == 0 {
		t.Errorf("20 requests rejected caused %d refreshes, want 1 to 3", n)
	}
	before := f.srv.Stats().Refreshes
	f.clock.Advance(rejectionPause)
	get()
	if n := f.srv.Stats().Refreshes; n != before+1 {
		t.Errorf("after the pause a rejection caused %d refreshes, want 1", n-before)
	}
	if st := f.srv.Stats(); st.ReuseAttempts != 0 {
		t.Errorf("server saw %d reuses, want none", st.ReuseAttempts)
	}
}

// The 401-storm rule holds back token requests only: when the store holds
// a token another Source obtained, a rejection is answered with it.
func TestRejectionPauseStillAdopts(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	store := NewMemoryStore(f.token())
	a, b := f.source(store), f.source(store)
	ctx := t.Context()
	t0, err := a.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t1, err := a.refreshAfter401(ctx, t0) // replaced a rejected token
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Token(ctx); err != nil {
		t.Fatal(err)
	}
	t2, err := b.Refresh(ctx, t1) // b obtains another
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.refreshAfter401(ctx, t1)
	if err != nil || got.AccessToken != t2.AccessToken {
		t.Errorf("a.refreshAfter401(T1) = %v, %v; want the store's T2", got, err)
	}
	if st := f.srv.Stats(); st.Refreshes != 2 {
		t.Errorf("server saw %d refreshes, want 2 (a's and b's)", st.Refreshes)
	}
}
