package bearer

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixture is a strict bearertest server, a fake clock shared by both
// sides, and the first authorization.
type fixture struct {
	t     *testing.T
	clock *bearertest.Clock
	srv   *bearertest.Server
	grant bearertest.Grant
}

func newFixture(t *testing.T, cfg bearertest.Config) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: bearertest.NewClock(time.Time{})}
	cfg.Now = f.clock.Now
	if cfg.AccessLifetime == 0 {
		cfg.AccessLifetime = 100 * time.Second
	}
	f.srv = bearertest.NewServer(cfg)
	t.Cleanup(f.srv.Close)
	f.grant = f.srv.Issue()
	return f
}

func (f *fixture) config() Config {
	return Config{
		TokenURL:     f.srv.TokenURL(),
		ClientID:     bearertest.DefaultClientID,
		ClientSecret: bearertest.DefaultClientSecret,
		HTTPClient:   f.srv.Client(),
		Now:          f.clock.Now,
		RetryBackoff: time.Millisecond,
	}
}

func (f *fixture) token() *Token {
	return &Token{
		AccessToken:   f.grant.AccessToken,
		TokenType:     "Bearer",
		RefreshToken:  f.grant.RefreshToken,
		Expiry:        f.grant.Expiry,
		RefreshExpiry: f.grant.RefreshExpiry,
	}
}

func (f *fixture) source(store Store) *Source {
	s := NewSource(f.config(), store)
	f.t.Cleanup(func() { s.Close() })
	return s
}

// gate is a proxy in front of the token endpoint that holds each request
// until the test releases it, so tests can act while a refresh is in flight.
type gate struct {
	arrived chan struct{}
	release chan struct{}
	url     string
}

func newGate(t *testing.T, target string) *gate {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{arrived: make(chan struct{}, 100), release: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.arrived <- struct{}{}
		<-g.release
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.url = srv.URL + u.Path
	return g
}

// signalStore wraps a Store (without exposing Locker) and reports saves.
type signalStore struct {
	Store
	fail  atomic.Int32 // saves left to fail
	saved chan *Token
	loads func(n int) *Token // if set, overrides what the nth Load returns
	nload atomic.Int32
}

func newSignalStore(inner Store) *signalStore {
	return &signalStore{Store: inner, saved: make(chan *Token, 100)}
}

func (s *signalStore) Load(ctx context.Context) (*Token, error) {
	n := int(s.nload.Add(1))
	if s.loads != nil {
		if t := s.loads(n); t != nil {
			return t, nil
		}
	}
	return s.Store.Load(ctx)
}

func (s *signalStore) Save(ctx context.Context, t *Token) error {
	if s.fail.Add(-1) >= 0 {
		return errors.New("disk full")
	}
	if err := s.Store.Save(ctx, t); err != nil {
		return err
	}
	s.saved <- t
	return nil
}

func TestTokenFreshUsesNoNetwork(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	src := f.source(NewMemoryStore(f.token()))
	ctx := context.Background()
	first, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		got, err := src.Token(ctx)
		if err != nil || got != first {
			t.Fatalf("Token() = %p, %v; want the cached %p", got, err, first)
		}
	}
	if got := f.srv.Stats().TokenRequests; got != 0 {
		t.Errorf("token requests = %d, want 0", got)
	}
	if first.AccessToken != f.grant.AccessToken {
		t.Errorf("Token() did not return the stored token")
	}
}

func TestTokenRefreshesAndPersistsBeforeUse(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	store := NewMemoryStore(f.token())
	src := f.source(store)
	ctx := context.Background()
	for i := range 5 {
		f.clock.Advance(100 * time.Second) // past expiry
		got, err := src.Token(ctx)
		if err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
		if !got.Valid(f.clock.Now()) {
			t.Fatalf("rotation %d: Token() returned an expired token", i)
		}
		saved, err := store.Load(ctx)
		if err != nil || saved.RefreshToken != got.RefreshToken || saved.AccessToken != got.AccessToken {
			t.Fatalf("rotation %d: store holds another token than was returned", i)
		}
		if !f.srv.Alive(got.RefreshToken) {
			t.Fatalf("rotation %d: returned refresh token is not the live head", i)
		}
	}
	st := f.srv.Stats()
	if st.Refreshes != 5 || st.ReuseAttempts != 0 {
		t.Errorf("server: refreshes = %d, reuses = %d; want 5, 0", st.Refreshes, st.ReuseAttempts)
	}
	if got := src.Stats().Refreshes; got != 5 {
		t.Errorf("Stats().Refreshes = %d, want 5", got)
	}
}

func TestConcurrentCallersAtExpiryShareOneRefresh(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	src := f.source(NewMemoryStore(f.token()))
	if _, err := src.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(101 * time.Second)

	const n = 200
	start := make(chan struct{})
	tokens := make([]*Token, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tokens[i], errs[i] = src.Token(context.Background())
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if tokens[i].AccessToken != tokens[0].AccessToken {
			t.Fatalf("caller %d got another token than caller 0", i)
		}
	}
	if got := f.srv.Stats().Refreshes; got != 1 {
		t.Errorf("refresh requests = %d, want 1", got)
	}
}

func TestCancelledCallerDoesNotLoseRotation(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	g := newGate(t, f.srv.TokenURL())
	expired := f.token()
	store := newSignalStore(NewMemoryStore(expired))
	cfg := f.config()
	cfg.TokenURL = g.url
	cfg.HTTPClient = nil
	src := NewSource(cfg, store)
	defer src.Close()
	f.clock.Advance(101 * time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := src.Token(ctx)
		done <- err
	}()
	<-g.arrived // the refresh request is at the server
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Token() error = %v, want context.Canceled", err)
	}
	close(g.release) // the server rotates and answers

	saved := <-store.saved
	if !f.srv.Alive(saved.RefreshToken) {
		t.Fatal("saved refresh token is not the live head")
	}
	got, err := src.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken != saved.AccessToken {
		t.Errorf("Token() after the refresh = another token than the one saved")
	}
	if st := f.srv.Stats(); st.Refreshes != 1 || st.ReuseAttempts != 0 {
		t.Errorf("server: refreshes = %d, reuses = %d; want 1, 0", st.Refreshes, st.ReuseAttempts)
	}
}

func TestAdoptsTokenSavedByAnotherProcess(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	shared := NewMemoryStore(f.token())
	// Two Sources as two processes: the store offers no lock.
	a := f.source(newSignalStore(shared))
	b := f.source(newSignalStore(shared))
	ctx := context.Background()
	for _, s := range []*Source{a, b} {
		if _, err := s.Token(ctx); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.Advance(101 * time.Second)
	ta, err := a.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := b.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tb.AccessToken != ta.AccessToken {
		t.Errorf("b did not adopt a's token")
	}
	if st := f.srv.Stats(); st.Refreshes != 1 || st.ReuseAttempts != 0 {
		t.Errorf("server: refreshes = %d, reuses = %d; want 1, 0", st.Refreshes, st.ReuseAttempts)
	}
	if got := b.Stats().Adopted; got != 1 {
		t.Errorf("b.Stats().Adopted = %d, want 1", got)
	}
}

func TestInvalidGrantRecovery(t *testing.T) {
	f := newFixture(t, bearertest.Config{Lenient: true})
	shared := NewMemoryStore(f.token())
	a := f.source(newSignalStore(shared))
	f.clock.Advance(101 * time.Second)
	if _, err := a.Token(context.Background()); err != nil {
		t.Fatal(err)
	}

	t.Run("nothing newer", func(t *testing.T) {
		b := f.source(NewMemoryStore(f.token()))
		_, err := b.Token(context.Background())
		if !errors.Is(err, ErrReauthorize) {
			t.Fatalf("Token() error = %v, want ErrReauthorize", err)
		}
		var re *RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
			t.Errorf("Token() error = %v, want a *RetrieveError with invalid_grant", err)
		}
	})
}

func TestRefreshRejected(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	src := f.source(NewMemoryStore(f.token()))
	ctx := context.Background()
	cur, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}

	const n = 100
	start := make(chan struct{})
	var wg sync.WaitGroup
	got := make([]*Token, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var err error
			if got[i], err = src.Refresh(ctx, cur); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if st := f.srv.Stats(); st.Refreshes != 1 {
		t.Fatalf("refreshes for %d rejections of one token = %d, want 1", n, st.Refreshes)
	}
	for i := range n {
		if got[i] == nil || got[i].AccessToken == cur.AccessToken {
			t.Fatalf("caller %d did not get a new token", i)
		}
	}
	// A rejection of a token that is no longer current changes nothing.
	again, err := src.Refresh(ctx, cur)
	if err != nil || again.AccessToken != got[0].AccessToken {
		t.Errorf("Refresh(stale) = %v, want the current token", err)
	}
	if st := f.srv.Stats(); st.Refreshes != 1 {
		t.Errorf("refreshes after a stale rejection = %d, want 1", st.Refreshes)
	}
}

func TestRefreshAheadDoesNotBlock(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	g := newGate(t, f.srv.TokenURL())
	finished := make(chan error, 10)
	cfg := f.config()
	cfg.TokenURL = g.url
	cfg.HTTPClient = nil
	cfg.Hooks.RefreshFinished = func(ctx context.Context, d time.Duration, err error) { finished <- err }
	src := NewSource(cfg, NewMemoryStore(f.token()))
	defer src.Close()
	ctx := context.Background()
	old, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Lifetime 100 s: the default window opens 25 s before expiry.
	f.clock.Advance(80 * time.Second)
	for range 100 {
		got, err := src.Token(ctx)
		if err != nil || got != old {
			t.Fatalf("Token() in the window = %v; want the current token at once", err)
		}
	}
	<-g.arrived // exactly one background refresh is at the server
	close(g.release)
	if err := <-finished; err != nil {
		t.Fatalf("background refresh: %v", err)
	}
	got, err := src.Token(ctx)
	if err != nil || got.AccessToken == old.AccessToken {
		t.Fatalf("Token() after the background refresh = %v; want the new token", err)
	}
	if st := f.srv.Stats(); st.Refreshes != 1 {
		t.Errorf("refreshes = %d, want 1", st.Refreshes)
	}
}

// brokenLocker is a store whose lock cannot be had, as with Redis down.
type brokenLocker struct{ *MemoryStore }

func (brokenLocker) Lock(ctx context.Context) (Lease, error) {
	return nil, errors.New("connection refused")
}

func TestLockFailureFailsClosedButServesValidToken(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	finished := make(chan error, 10)
	cfg := f.config()
	cfg.Hooks.RefreshFinished = func(ctx context.Context, d time.Duration, err error) { finished <- err }
	src := NewSource(cfg, brokenLocker{NewMemoryStore(f.token())})
	defer src.Close()
	ctx := context.Background()
	// The first load needs the lock too: without it no token at all.
	if _, err := src.Token(ctx); err == nil {
		t.Fatal("Token() without the lock and no token in memory succeeded")
	}
	// Once a token is in memory, a store outage only hurts after expiry.
	src.publish(f.token(), f.clock.Now(), false)
	f.clock.Advance(80 * time.Second)
	if _, err := src.Token(ctx); err != nil {
		t.Fatalf("Token() in the refresh-ahead window with the store down = %v, want the valid token", err)
	}
	src.Close() // waits for the failed background refresh
	f.clock.Advance(21 * time.Second)
	if _, err := src.Token(ctx); err == nil {
		t.Fatal("Token() after expiry with the store down succeeded")
	}
	if n := f.srv.Stats().TokenRequests; n != 0 {
		t.Errorf("token requests without the lock = %d, want 0", n)
	}
	select {
	case err := <-finished:
		t.Errorf("a refresh was attempted without the lock: %v", err)
	default:
	}
}

func TestInterruptedRefreshIsNamed(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	path := filepath.Join(t.TempDir(), "token.json")
	store := NewFileStore(path)
	ctx := context.Background()
	if err := store.Save(ctx, f.token()); err != nil {
		t.Fatal(err)
	}
	// A process recorded the refresh, sent it, and died before saving.
	lease, err := store.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lease.Begin(ctx, f.token()); err != nil {
		t.Fatal(err)
	}
	lost := f.source(NewMemoryStore(f.token()))
	f.clock.Advance(101 * time.Second)
	if _, err := lost.Token(ctx); err != nil { // the rotation the dead process never saved
		t.Fatal(err)
	}
	lease.Unlock(ctx)

	_, err = f.source(store).Token(ctx)
	if !errors.Is(err, ErrInterrupted) || !errors.Is(err, ErrReauthorize) {
		t.Fatalf("Token() error = %v, want ErrInterrupted and ErrReauthorize", err)
	}
}

func TestClientCredentials(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	cfg := f.config()
	cfg.ClientCredentials = true
	src := NewSource(cfg, nil)
	defer src.Close()
	ctx := context.Background()
	for round := range 3 {
		var wg sync.WaitGroup
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, err := src.Token(ctx)
				if err != nil || !tok.Valid(f.clock.Now()) {
					t.Errorf("round %d: Token() = %v", round, err)
				}
			}()
		}
		wg.Wait()
		f.clock.Advance(101 * time.Second)
	}
	if got := f.srv.Stats().ClientCredentials; got != 3 {
		t.Errorf("client_credentials grants = %d, want 3", got)
	}
}

func TestNoTokenStored(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	_, err := f.source(NewMemoryStore(nil)).Token(context.Background())
	if !errors.Is(err, ErrNoToken) {
		t.Errorf("Token() on an empty store = %v, want ErrNoToken", err)
	}
}

func TestNeverReturnsExpiredToken(t *testing.T) {
	f := newFixture(t, bearertest.Config{AccessLifetime: 10 * time.Second})
	src := f.source(NewMemoryStore(f.token()))
	ctx := context.Background()
	for step := range 200 {
		tok, err := src.Token(ctx)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if !tok.Valid(f.clock.Now()) {
			t.Fatalf("step %d: Token() returned a token expired at %v (now %v)", step, tok.Expiry, f.clock.Now())
		}
		f.clock.Advance(700 * time.Millisecond)
	}
	src.Close()
	if st := f.srv.Stats(); st.ReuseAttempts != 0 {
		t.Errorf("reuses = %d, want 0", st.ReuseAttempts)
	}
}

func TestRejectedRefreshTokenIsNotSentAgain(t *testing.T) {
	f := newFixture(t, bearertest.Config{Lenient: true})
	spent := f.token()
	f.source(NewMemoryStore(spent)).Refresh(context.Background(), spent) // spends it
	src := f.source(NewMemoryStore(spent))
	for i := range 3 {
		_, err := src.Refresh(context.Background(), spent)
		if !errors.Is(err, ErrReauthorize) {
			t.Fatalf("call %d: error = %v, want ErrReauthorize", i, err)
		}
	}
	if got := f.srv.Stats().ReuseAttempts; got != 1 {
		t.Errorf("the spent refresh token was presented %d times, want 1", got)
	}
}

func TestLeewayIsAFractionOfTheWholeLifetime(t *testing.T) {
	clock := bearertest.NewClock(time.Time{})
	obtained := clock.Now()
	tok := &Token{AccessToken: "a", RefreshToken: "r", Expiry: obtained.Add(100 * time.Second), Obtained: obtained}
	// Through the store, as a restarted process would see it.
	b, err := marshalToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := unmarshalToken(b)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Obtained.Equal(obtained) {
		t.Fatalf("obtained after a round trip = %v, want %v", loaded.Obtained, obtained)
	}
	s := NewSource(Config{Now: clock.Now}, nil)
	clock.Advance(91 * time.Second) // 9 s left; the leeway is 10 s of 100
	if e := s.newEntry(loaded, clock.Now()); s.satisfies(e, want{}, clock.Now()) {
		t.Errorf("a token 9 s before expiry is fresh, want it inside the 10 s leeway of its 100 s lifetime")
	}
}

// Windows configured longer than a token lives must not make a new token
// stale at once: that would refresh on every call.
func TestWindowsLongerThanLifetime(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name          string
		leeway, ahead time.Duration
	}{
		{name: "RefreshAhead 10 min", ahead: 10 * time.Minute},
		{name: "Leeway 200 s", leeway: 200 * time.Second},
		{name: "both", leeway: time.Hour, ahead: 2 * time.Hour},
		{name: "defaults"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSource(Config{Leeway: tt.leeway, RefreshAhead: tt.ahead, Now: func() time.Time { return now }}, nil)
			tok := &Token{AccessToken: "a", Expiry: now.Add(100 * time.Second), Obtained: now}
			e := s.newEntry(tok, now)
			if !now.Before(e.refreshAt) || !now.Before(e.expireAt) {
				t.Errorf("a new 100 s token: refreshAt in %v, expireAt in %v; want both ahead of now",
					e.refreshAt.Sub(now), e.expireAt.Sub(now))
			}
			if e.refreshAt.After(e.expireAt) {
				t.Errorf("refreshAt %v after expireAt %v", e.refreshAt, e.expireAt)
			}
		})
	}
}
