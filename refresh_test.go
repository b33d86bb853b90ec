package bearer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
)

// mangler is a proxy in front of the token endpoint that rewrites the next
// successful answers: the server has rotated, the client gets an answer it
// cannot fully use.
type mangler struct {
	url  string
	left atomic.Int32                                    // answers still to mangle
	fn   func(m map[string]any) (body []byte, ct string) // the rewrite
}

func newMangler(t *testing.T, target string) *mangler {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	mg := &mangler{}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.StatusCode != 200 || mg.left.Add(-1) < 0 {
			return nil
		}
		var m map[string]any
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || json.Unmarshal(b, &m) != nil {
			return errors.New("mangler: the answer is not JSON")
		}
		body, ct := mg.fn(m)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		resp.Header.Set("Content-Type", ct)
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	mg.url = srv.URL + u.Path
	return mg
}

// A successful answer that the parser refuses, but whose new refresh token
// can be read, has been rotated by the server: that refresh token is saved
// and used next, and the one it replaced is never sent again.
func TestRefreshKeepsRotationOfUnusableAnswer(t *testing.T) {
	set := func(k string, v any) func(m map[string]any) ([]byte, string) {
		return func(m map[string]any) ([]byte, string) {
			m[k] = v
			b, _ := json.Marshal(m)
			return b, "application/json"
		}
	}
	raw := func(k, v string) func(m map[string]any) ([]byte, string) {
		return func(m map[string]any) ([]byte, string) {
			b, _ := json.Marshal(m)
			b = bytes.Replace(b, []byte("{"), []byte(`{"`+k+`":`+v+`,`), 1)
			delete(m, k)
			return b, "application/json"
		}
	}
	tests := []struct {
		name   string
		fn     func(m map[string]any) ([]byte, string)
		usable bool
	}{
		{name: "token_type DPoP", fn: set("token_type", "DPoP")},
		{name: "token_type mac", fn: set("token_type", "mac")},
		{name: "access token with a space", fn: set("access_token", "a b")},
		{name: "refresh_token_expires_in -1", fn: set("refresh_token_expires_in", -1)},
		{name: "expires_in 3600s", fn: set("expires_in", "3600s")},
		{name: "expires_in true", fn: set("expires_in", true)},
		{name: "expires_in 1e400", fn: raw("expires_in", "1e400")},
		{name: "JSON labelled text/plain", usable: true, fn: func(m map[string]any) ([]byte, string) {
			b, _ := json.Marshal(m)
			return b, "text/plain"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, bearertest.Config{})
			mg := newMangler(t, f.srv.TokenURL())
			mg.fn = tt.fn
			mg.left.Store(1)
			store := NewMemoryStore(f.token())
			cfg := f.config()
			cfg.TokenURL = mg.url
			src := NewSource(cfg, store)
			defer src.Close()
			ctx := t.Context()
			f.clock.Advance(101 * time.Second) // expired

			tok, err := src.Token(ctx)
			if tt.usable {
				if err != nil {
					t.Fatalf("Token() = %v, want the token", err)
				}
			} else if err == nil {
				t.Fatalf("Token() = %v, want the answer's error", tok)
			}
			stored, err := store.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if stored.RefreshToken == f.grant.RefreshToken || !f.srv.Alive(stored.RefreshToken) {
				t.Fatalf("the store holds the spent refresh token or a dead one after the rotation; want the new one")
			}
			if _, err := src.Token(ctx); err != nil {
				t.Fatalf("Token() after the unusable answer = %v, want a token", err)
			}
			if st := f.srv.Stats(); st.ReuseAttempts != 0 || st.Revocations != 0 {
				t.Errorf("server saw %d reuses, %d revocations; want none", st.ReuseAttempts, st.Revocations)
			}
		})
	}
}

// Close waits for a refresh that a caller started and gave up on, and for
// its save: a process that exits after Close has the rotation on disk.
func TestCloseWaitsForAbandonedRefresh(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	g := newGate(t, f.srv.TokenURL())
	cfg := f.config()
	cfg.TokenURL = g.url
	store := NewMemoryStore(f.token())
	src := NewSource(cfg, store)
	f.clock.Advance(101 * time.Second)

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { _, err := src.Token(ctx); errc <- err }()
	<-g.arrived
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Token() = %v, want context.Canceled", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- src.Close() }()
	close(g.release)
	if err := <-closed; err != nil {
		t.Fatalf("Close() = %v", err)
	}
	stored, err := store.Load(t.Context())
	if err != nil || stored.RefreshToken == f.grant.RefreshToken || !f.srv.Alive(stored.RefreshToken) {
		t.Errorf("after Close the store holds %v, %v; want the live rotated token", stored, err)
	}
	if _, err := src.Refresh(t.Context(), stored); !errors.Is(err, ErrClosed) {
		t.Errorf("Refresh after Close = %v, want ErrClosed", err)
	}
}

// failingLocker is a MemoryStore whose writes under the lock fail while
// fail is set, and whose reads return the last good token: a long outage.
type failingLocker struct {
	*MemoryStore
	fail atomic.Bool
}

type failingLease struct {
	Lease
	s *failingLocker
}

func (s *failingLocker) Lock(ctx context.Context) (Lease, error) {
	l, err := s.MemoryStore.Lock(ctx)
	if err != nil {
		return nil, err
	}
	return &failingLease{Lease: l, s: s}, nil
}

func (l *failingLease) CompareAndSwap(ctx context.Context, old, new *Token) error {
	if l.s.fail.Load() {
		return errors.New("store unavailable")
	}
	return l.Lease.CompareAndSwap(ctx, old, new)
}

// However many rotations a save outage lasts, the Source never sends a
// refresh token that a read answer replaced (the store keeps offering the
// last saved one), and the newest token is saved once the store is back.
func TestLongSaveOutageNeverResendsReplacedToken(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	store := &failingLocker{MemoryStore: NewMemoryStore(f.token())}
	store.fail.Store(true)
	src := f.source(store)
	ctx := t.Context()
	var last *Token
	const rotations = 40 // more than any bounded memory of spent tokens
	for i := range rotations {
		f.clock.Advance(101 * time.Second)
		tok, err := src.Token(ctx)
		if err != nil {
			t.Fatalf("rotation %d: Token() = %v", i, err)
		}
		last = tok
	}
	if st := f.srv.Stats(); st.Refreshes != rotations || st.ReuseAttempts != 0 || st.Revocations != 0 {
		t.Fatalf("server: %d refreshes, %d reuses, %d revocations; want %d, 0, 0", st.Refreshes, st.ReuseAttempts, st.Revocations, rotations)
	}
	if stored, _ := store.Load(ctx); stored.RefreshToken != f.grant.RefreshToken {
		t.Fatal("a save landed during the outage")
	}
	store.fail.Store(false)
	if err := src.Close(); err != nil {
		t.Fatalf("Close() after the outage = %v, want the last save to land", err)
	}
	if stored, err := store.Load(ctx); err != nil || stored.RefreshToken != last.RefreshToken {
		t.Errorf("after Close the store holds %v, %v; want the newest token", stored, err)
	}
}

// While its newest token is unsaved, a Source keeps the store's lock: another
// Source sharing the store waits instead of spending the stored, already
// spent refresh token, and Close returns the error of a save that did not land.
func TestUnsavedRotationKeepsOthersOut(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	store := &failingLocker{MemoryStore: NewMemoryStore(f.token())}
	store.fail.Store(true)
	a := f.source(store)
	b := f.source(store.MemoryStore)
	ctx := t.Context()
	f.clock.Advance(101 * time.Second)
	if _, err := a.Token(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if tok, err := b.Token(short); err == nil {
		t.Fatalf("b.Token() = %v while a's rotation is unsaved; want it to wait for the store's lock", tok)
	}
	if err := a.Close(); err == nil {
		t.Error("a.Close() = nil with its newest token unsaved, want the save's error")
	}
	// a is gone; its rotation with it. b finds the refresh token marked as
	// being spent, sends it once (the outcome is unknown to b), and
	// reports the strict server's answer as an interrupted refresh.
	_, err := b.Token(ctx)
	if !errors.Is(err, ErrInterrupted) || !errors.Is(err, ErrReauthorize) {
		t.Errorf("b.Token() after a died = %v, want ErrInterrupted and ErrReauthorize", err)
	}
	if st := f.srv.Stats(); st.ReuseAttempts != 1 {
		t.Errorf("server saw %d reuses, want exactly b's one", st.ReuseAttempts)
	}
}

// laggingStore returns, once, the token it held before the last save: a
// store that lost a write it reported done.
type laggingStore struct {
	Store
	prev, last *Token
	lag        atomic.Bool
}

func (s *laggingStore) Load(ctx context.Context) (*Token, error) {
	if s.lag.CompareAndSwap(true, false) && s.prev != nil {
		return cloneToken(s.prev), nil
	}
	return s.Store.Load(ctx)
}

func (s *laggingStore) Save(ctx context.Context, t *Token) error {
	if err := s.Store.Save(ctx, t); err != nil {
		return err
	}
	s.prev, s.last = s.last, cloneToken(t)
	return nil
}

// A store whose read lags one write behind offers the refresh token the
// Source just spent: the Source does not send it again, and saves its
// newer token over the stale one.
func TestLaggingStoreOffersSpentToken(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	store := &laggingStore{Store: NewMemoryStore(nil)}
	if err := store.Save(t.Context(), f.token()); err != nil {
		t.Fatal(err)
	}
	src := f.source(store)
	ctx := t.Context()
	f.clock.Advance(101 * time.Second)
	t1, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	store.lag.Store(true)
	f.clock.Advance(101 * time.Second)
	t2, err := src.Token(ctx)
	if err != nil {
		t.Fatalf("Token() with a lagging store = %v", err)
	}
	if st := f.srv.Stats(); st.ReuseAttempts != 0 || st.Revocations != 0 {
		t.Errorf("server saw %d reuses, %d revocations; want none", st.ReuseAttempts, st.Revocations)
	}
	if t2.RefreshToken == t1.RefreshToken {
		t.Errorf("Token() = the expired token, want a new one")
	}
	if stored, _ := store.Load(ctx); stored.RefreshToken != t2.RefreshToken {
		t.Errorf("the store does not hold the newest token")
	}
}

// A refresh token the server rejects as already used is reported, never
// hidden by adopting whatever the store holds by then: on a strict server
// the whole family, the stored token included, is revoked.
func TestInvalidGrantIsNotHiddenByAdoption(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	shared := NewMemoryStore(f.token())
	plain := newSignalStore(shared) // no Locker: the two do not exclude each other
	g := newGate(t, f.srv.TokenURL())
	bcfg := f.config()
	bcfg.TokenURL = g.url
	b := NewSource(bcfg, plain)
	defer b.Close()
	a := f.source(plain)
	f.clock.Advance(101 * time.Second)

	errc := make(chan error, 1)
	go func() { _, err := b.Token(t.Context()); errc <- err }()
	<-g.arrived // b read the store and sent the refresh token; held here
	if _, err := a.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	if err := <-errc; !errors.Is(err, ErrReauthorize) {
		t.Errorf("b.Token() = %v, want ErrReauthorize (the family is revoked)", err)
	}
	// b never sends that refresh token again. (It may take what the store
	// holds now: whether that was revoked too only the server knows.)
	b.Token(t.Context())
	if st := f.srv.Stats(); st.ReuseAttempts != 1 {
		t.Errorf("server saw %d reuses, want 1", st.ReuseAttempts)
	}
}

// A Source that NewSource did not make reports an error; it does not panic
// (least of all inside a goroutine, where the caller could not recover).
func TestZeroSource(t *testing.T) {
	var s Source
	if _, err := s.Token(t.Context()); err == nil {
		t.Error("zero Source: Token() = nil error")
	}
	if _, err := s.Refresh(t.Context(), &Token{AccessToken: "a"}); err == nil {
		t.Error("zero Source: Refresh() = nil error")
	}
	if err := s.Close(); err != nil {
		t.Errorf("zero Source: Close() = %v", err)
	}
}

// Refresh never answers with the access token it was told was rejected,
// not even when the token endpoint hands the same one out again.
func TestRefreshNeverReturnsRejected(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	mg := newMangler(t, f.srv.TokenURL())
	mg.fn = func(m map[string]any) ([]byte, string) {
		m["access_token"] = f.grant.AccessToken // the server answers with the old one
		b, _ := json.Marshal(m)
		return b, "application/json"
	}
	mg.left.Store(1)
	cfg := f.config()
	cfg.TokenURL = mg.url
	src := NewSource(cfg, NewMemoryStore(f.token()))
	defer src.Close()
	old, err := src.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := src.Refresh(t.Context(), old); err == nil && got.AccessToken == old.AccessToken {
		t.Errorf("Refresh(rejected) = the rejected token, want another or an error")
	}
	got, err := src.Refresh(t.Context(), old)
	if err != nil || got.AccessToken == old.AccessToken {
		t.Errorf("Refresh(rejected) again = %v, %v; want a new token", got, err)
	}
	if st := f.srv.Stats(); st.ReuseAttempts != 0 {
		t.Errorf("server saw %d reuses, want none", st.ReuseAttempts)
	}
}

// RefreshFinished fires after the new token is saved and published: a hook
// that looks finds both.
func TestRefreshFinishedAfterSaveAndPublish(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	store := NewMemoryStore(f.token())
	cfg := f.config()
	type seen struct {
		stored, published string
		err               error
	}
	got := make(chan seen, 1)
	var src *Source
	cfg.Hooks.RefreshFinished = func(ctx context.Context, d time.Duration, err error) {
		st, _ := store.Load(ctx)
		got <- seen{stored: st.RefreshToken, published: src.cur.Load().tok.RefreshToken, err: err}
	}
	src = NewSource(cfg, store)
	defer src.Close()
	if _, err := src.Token(t.Context()); err != nil { // loads
		t.Fatal(err)
	}
	f.clock.Advance(101 * time.Second)
	tok, err := src.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s := <-got
	if s.err != nil || s.stored != tok.RefreshToken || s.published != tok.RefreshToken {
		t.Errorf("at RefreshFinished: err %v, stored new token %v, published new token %v; want nil, true, true",
			s.err, s.stored == tok.RefreshToken, s.published == tok.RefreshToken)
	}
}

// A token whose lifetime is unknown (built by hand, or kept by a Store that
// drops Obtained) gets the absolute default windows: with 2 s left it is
// refreshed, not handed out, and with 4 minutes left it is refreshed ahead.
func TestUnknownLifetimeGetsAbsoluteDefaults(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewSource(Config{Now: func() time.Time { return now }}, nil)
	tests := []struct {
		left             time.Duration
		fresh, beforeWin bool
	}{
		{left: 2 * time.Second, fresh: false},
		{left: 11 * time.Second, fresh: true, beforeWin: false},
		{left: 4 * time.Minute, fresh: true, beforeWin: false},
		{left: 6 * time.Minute, fresh: true, beforeWin: true},
	}
	for _, tt := range tests {
		e := s.newEntry(&Token{AccessToken: "a", Expiry: now.Add(tt.left)}, now)
		if got := s.satisfies(e, want{}, now); got != tt.fresh {
			t.Errorf("%v left: fresh = %v, want %v", tt.left, got, tt.fresh)
		}
		if got := s.satisfies(e, want{ahead: true}, now); got != tt.beforeWin {
			t.Errorf("%v left: before the refresh-ahead window = %v, want %v", tt.left, got, tt.beforeWin)
		}
	}
}
