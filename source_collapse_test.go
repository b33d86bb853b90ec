package bearer

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
)

// TestCollapse checks that a crowd of callers costs one refresh (the
// Source's singleflight): at expiry, in the refresh-ahead window, after a
// burst of 401s, and while the store is slow. Refreshes are held at a
// gate, so the crowd is there while one runs. Not parallel: the slow-store
// cases count the process's goroutines.
func TestCollapse(t *testing.T) {
	t.Run("at expiry", testCollapseAtExpiry)
	t.Run("refresh ahead", testCollapseRefreshAhead)
	t.Run("401", testCollapse401)
	t.Run("slow store", testCollapseSlowStore)
}

// collapseCallers is the size of every crowd.
const collapseCallers = 300

// collapseLifetime is the access token lifetime. With it a Source treats a
// token as expired 10 s before its Expiry and refreshes ahead from 25 s
// before, so at 80 s a token is in the refresh-ahead window and at 95 s it
// is expired.
const collapseLifetime = 100 * time.Second

// collapseGate holds each token request until release is closed, after
// announcing it on entered.
type collapseGate struct {
	base    http.RoundTripper
	entered chan struct{}
	release chan struct{}
}

func (g *collapseGate) RoundTrip(req *http.Request) (*http.Response, error) {
	select {
	case g.entered <- struct{}{}:
	default: // more requests than expected; the test counts them anyway
	}
	select {
	case <-g.release:
	case <-req.Context().Done():
		return nil, context.Cause(req.Context())
	}
	return g.base.RoundTrip(req)
}

// collapseStore is a Store whose Save announces itself on saving and then
// waits until release is closed. As it is no Locker, the Source calls Save
// directly.
type collapseStore struct {
	Store
	saving  chan struct{}
	release chan struct{}
}

func (s *collapseStore) Save(ctx context.Context, t *Token) error {
	select {
	case s.saving <- struct{}{}:
	default:
	}
	select {
	case <-s.release:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	return s.Store.Save(ctx, t)
}

// collapseNop answers every request 200 without a network, so that
// goroutine counts see the Source alone.
type collapseNop struct{}

func (collapseNop) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: req}, nil
}

// collapseRig is a strict bearertest server, a Source whose token requests
// pass collapseGate, and the clock both share.
type collapseRig struct {
	*fixture
	gate *collapseGate
	src  *Source
}

// newCollapseRig starts a rig. wrap, if not nil, wraps the MemoryStore
// holding the first grant; edit, if not nil, changes the Source's Config.
func newCollapseRig(t *testing.T, wrap func(Store) Store, edit func(*Config)) *collapseRig {
	t.Helper()
	r := &collapseRig{fixture: newFixture(t, bearertest.Config{AccessLifetime: collapseLifetime})}
	r.gate = &collapseGate{
		base:    r.srv.Client().Transport,
		entered: make(chan struct{}, collapseCallers),
		release: make(chan struct{}),
	}
	var store Store = NewMemoryStore(r.token())
	if wrap != nil {
		store = wrap(store)
	}
	cfg := r.config()
	cfg.HTTPClient = &http.Client{Transport: r.gate}
	if edit != nil {
		edit(&cfg)
	}
	r.src = NewSource(cfg, store)
	t.Cleanup(func() {
		r.open()
		if err := r.src.Close(); err != nil {
			t.Errorf("Close() = %v, want nil", err)
		}
	})
	// Load the first grant from the store, as a running program has.
	if tok, err := r.src.Token(t.Context()); err != nil || tok.AccessToken != r.grant.AccessToken {
		t.Fatalf("first Token() = %v, %v; want the first grant", tok, err)
	}
	return r
}

// open lets token requests through, if it has not already.
func (r *collapseRig) open() {
	select {
	case <-r.gate.release:
	default:
		close(r.gate.release)
	}
}

// checkRefreshes reports an error unless the server and the Source saw want
// refreshes, and the server no other token request.
func (r *collapseRig) checkRefreshes(t *testing.T, want int) {
	t.Helper()
	st := r.srv.Stats()
	if st.TokenRequests != want || st.Refreshes != want {
		t.Errorf("server: %d token requests, %d refreshes; want %d of each", st.TokenRequests, st.Refreshes, want)
	}
	if got := r.src.Stats().Refreshes; got != int64(want) {
		t.Errorf("Source.Stats().Refreshes = %d, want %d", got, want)
	}
}

// crowd runs f in collapseCallers goroutines and returns a WaitGroup that
// is done when all have started (arrived) and when all have returned (done).
func crowd(f func(i int)) (arrived, done *sync.WaitGroup) {
	arrived, done = new(sync.WaitGroup), new(sync.WaitGroup)
	arrived.Add(collapseCallers)
	for i := range collapseCallers {
		done.Go(func() {
			arrived.Done()
			f(i)
		})
	}
	return arrived, done
}

func testCollapseAtExpiry(t *testing.T) {
	r := newCollapseRig(t, nil, nil)
	r.clock.Advance(95 * time.Second)

	toks := make([]*Token, collapseCallers)
	errs := make([]error, collapseCallers)
	arrived, done := crowd(func(i int) { toks[i], errs[i] = r.src.Token(t.Context()) })
	<-r.gate.entered // the refresh is in flight
	arrived.Wait()
	r.open()
	done.Wait()

	for i := range collapseCallers {
		if errs[i] != nil {
			t.Fatalf("caller %d: Token() error = %v", i, errs[i])
		}
		if toks[i] != toks[0] {
			t.Fatalf("caller %d got another token than caller 0", i)
		}
	}
	if toks[0].AccessToken == r.grant.AccessToken {
		t.Errorf("Token() returned the expired token")
	}
	r.checkRefreshes(t, 1)
}

func testCollapseRefreshAhead(t *testing.T) {
	r := newCollapseRig(t, nil, nil)
	r.clock.Advance(80 * time.Second)

	// The refresh is held at the gate, so callers that waited for it
	// would end only by the deadline, with an error.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	toks := make([]*Token, collapseCallers)
	errs := make([]error, collapseCallers)
	_, done := crowd(func(i int) { toks[i], errs[i] = r.src.Token(ctx) })
	done.Wait()
	for i := range collapseCallers {
		if errs[i] != nil {
			t.Fatalf("caller %d: Token() error = %v, want the current token at once", i, errs[i])
		}
		if toks[i].AccessToken != r.grant.AccessToken {
			t.Fatalf("caller %d: Token() did not return the current token", i)
		}
	}
	<-r.gate.entered // one background refresh started
	r.open()
	if err := r.src.Close(); err != nil { // waits for the background refresh
		t.Fatalf("Close() = %v", err)
	}
	r.checkRefreshes(t, 1)
	tok, err := r.src.Token(t.Context())
	if err != nil || tok.AccessToken == r.grant.AccessToken {
		t.Errorf("Token() after the refresh = %v, %v; want a new token", tok, err)
	}
}

func testCollapse401(t *testing.T) {
	var rejected atomic.Int64
	allRejected := make(chan struct{})
	r := newCollapseRig(t, nil, func(c *Config) {
		c.Hooks.TokenRejected = func(context.Context) {
			if rejected.Add(1) == collapseCallers {
				close(allRejected)
			}
		}
	})
	// Unbounded, as http.DefaultTransport: the Transport keeps each 401
	// response open while it waits for Refresh, so every caller holds a
	// connection until the refresh, which here waits for all of them.
	api := &http.Transport{}
	defer api.CloseIdleConnections()
	client := &http.Client{Transport: &Transport{Source: r.src, Base: api}}
	r.srv.RevokeAccess(r.grant.AccessToken)

	status := make([]int, collapseCallers)
	errs := make([]error, collapseCallers)
	_, done := crowd(func(i int) {
		resp, err := client.Get(r.srv.APIURL() + "collapse")
		if err != nil {
			errs[i] = err
			return
		}
		resp.Body.Close()
		status[i] = resp.StatusCode
	})
	// Every caller has its 401 before the one refresh may end, so each
	// retries exactly once, with the new token.
	<-r.gate.entered
	<-allRejected
	r.open()
	done.Wait()

	for i := range collapseCallers {
		if errs[i] != nil {
			t.Fatalf("caller %d: Get error = %v", i, errs[i])
		}
		if status[i] != http.StatusOK {
			t.Fatalf("caller %d: status %d, want %d", i, status[i], http.StatusOK)
		}
	}
	st := r.srv.Stats()
	if st.APIRequests != 2*collapseCallers || st.APIRejected != collapseCallers {
		t.Errorf("API: %d requests, %d rejected; want %d and %d", st.APIRequests, st.APIRejected, 2*collapseCallers, collapseCallers)
	}
	if got := r.src.Stats().Rejected; got != collapseCallers {
		t.Errorf("Source.Stats().Rejected = %d, want %d", got, collapseCallers)
	}
	r.checkRefreshes(t, 1)
}

// collapseSlack is how many goroutines besides the callers a refresh may
// add: the singleflight call, and the client and server goroutines of the
// token endpoint connection.
const collapseSlack = 10

func testCollapseSlowStore(t *testing.T) {
	newRig := func(t *testing.T) (*collapseRig, *collapseStore) {
		var store *collapseStore
		r := newCollapseRig(t, func(s Store) Store {
			store = &collapseStore{Store: s, saving: make(chan struct{}, collapseCallers), release: make(chan struct{})}
			return store
		}, nil)
		t.Cleanup(func() {
			select {
			case <-store.release:
			default:
				close(store.release)
			}
		})
		return r, store
	}

	t.Run("expired", func(t *testing.T) {
		r, store := newRig(t)
		rt := &Transport{Source: r.src, Base: collapseNop{}}
		r.clock.Advance(95 * time.Second)
		r.open()
		before := runtime.NumGoroutine()

		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		errs := make([]error, collapseCallers)
		arrived, done := crowd(func(i int) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://api.example.com/", nil)
			var resp *http.Response
			if resp, errs[i] = rt.RoundTrip(req); errs[i] == nil {
				resp.Body.Close()
			}
		})
		<-store.saving // the new token is being saved
		arrived.Wait()
		if n := runtime.NumGoroutine() - before; n > collapseCallers+collapseSlack {
			t.Errorf("%d callers waiting: %d goroutines more than before, want at most %d", collapseCallers, n, collapseCallers+collapseSlack)
		}
		// Callers that give up leave nothing behind but the one refresh.
		cancel()
		done.Wait()
		for i, err := range errs {
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("caller %d: RoundTrip error = %v, want context.Canceled", i, err)
			}
		}
		if n := runtime.NumGoroutine() - before; n > collapseSlack {
			t.Errorf("callers gone: %d goroutines more than before, want at most %d", n, collapseSlack)
		}

		close(store.release)
		tok, err := r.src.Token(t.Context()) // joins the refresh, or finds its token
		if err != nil || tok.AccessToken == r.grant.AccessToken {
			t.Fatalf("Token() after the save = %v, %v; want a new token", tok, err)
		}
		saved, err := store.Load(t.Context())
		if err != nil || saved.AccessToken != tok.AccessToken {
			t.Errorf("store holds %v, %v; want the new token", saved, err)
		}
		r.checkRefreshes(t, 1)
	})

	t.Run("ahead", func(t *testing.T) {
		r, store := newRig(t)
		rt := &Transport{Source: r.src, Base: collapseNop{}}
		r.clock.Advance(80 * time.Second)
		r.open()
		before := runtime.NumGoroutine()

		errs := make([]error, collapseCallers)
		_, done := crowd(func(i int) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://api.example.com/", nil)
			var resp *http.Response
			if resp, errs[i] = rt.RoundTrip(req); errs[i] == nil {
				resp.Body.Close()
			}
		})
		done.Wait() // with the save still held: nobody waited for it
		for i, err := range errs {
			if err != nil {
				t.Fatalf("caller %d: RoundTrip error = %v", i, err)
			}
		}
		<-store.saving
		if n := runtime.NumGoroutine() - before; n > collapseSlack {
			t.Errorf("after %d requests: %d goroutines more than before, want at most %d", collapseCallers, n, collapseSlack)
		}

		close(store.release)
		if err := r.src.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
		r.checkRefreshes(t, 1)
	})
}
