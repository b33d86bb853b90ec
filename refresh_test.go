package bearer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
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

// A token endpoint that refuses the client (invalid_client) is asked once,
// not once per API call: callers get the same typed error at once for a
// minute, then one request tries again.
func TestClientRefusalIsRemembered(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	cfg := f.config()
	cfg.ClientSecret = "wrong"
	src := NewSource(cfg, NewMemoryStore(f.token()))
	defer src.Close()
	f.clock.Advance(101 * time.Second)
	var first error
	for i := range 50 {
		_, err := src.Token(t.Context())
		var re *RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
			t.Fatalf("call %d: Token() = %v, want the invalid_client *RetrieveError", i, err)
		}
		if first == nil {
			first = err
		}
	}
	if n := f.srv.Stats().TokenRequests; n != 1 {
		t.Errorf("token requests = %d for 50 calls, want 1", n)
	}
	if n := src.Stats().Suppressed; n != 49 {
		t.Errorf("Stats().Suppressed = %d, want 49", n)
	}
	f.clock.Advance(refusalPause)
	src.Token(t.Context())
	if n := f.srv.Stats().TokenRequests; n != 2 {
		t.Errorf("token requests after the pause = %d, want 2", n)
	}
}

// A successful answer that was read but whose new refresh token is not a
// string has still rotated: the old token is dead, reported as
// ErrReauthorize, and never sent again. A refresh token with a space (RFC
// 6749's VSCHAR allows it; it travels in a body) is kept and used.
func TestRefreshUnreadableRotationIsNotResent(t *testing.T) {
	tests := []struct {
		name     string
		fault    bearertest.Fault
		wantKept bool
	}{
		{name: "space in refresh_token", wantKept: true,
			fault: bearertest.Fault{Consume: true, Body: `{"access_token":"at_new","token_type":"Bearer","expires_in":3600,"refresh_token":"rt new"}`}},
		{name: "refresh_token not a string",
			fault: bearertest.Fault{Consume: true, Body: `{"access_token":"at_new","token_type":"Bearer","expires_in":3600,"refresh_token":12345}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, bearertest.Config{Lenient: true})
			store := NewMemoryStore(f.token())
			src := f.source(store)
			ctx := t.Context()
			t0, err := src.Token(ctx)
			if err != nil {
				t.Fatal(err)
			}
			f.srv.InjectFault(tt.fault)
			_, err = src.Refresh(ctx, t0)
			if !tt.wantKept && !errors.Is(err, ErrReauthorize) {
				t.Errorf("Refresh() = %v, want ErrReauthorize (the old token is spent)", err)
			}
			src.Refresh(ctx, t0) // the Transport's next 401
			if st := f.srv.Stats(); st.ReuseAttempts != 0 || st.TokenRequests != 1 {
				t.Errorf("server saw %d requests, %d reuses; want 1, 0", st.TokenRequests, st.ReuseAttempts)
			}
			stored, _ := store.Load(ctx)
			if kept := stored.RefreshToken == "rt new"; kept != tt.wantKept {
				t.Errorf("the store holds the new refresh token: %v, want %v", kept, tt.wantKept)
			}
		})
	}
}

// msgHandler is a slog.Handler that sends each record's message to ch.
type msgHandler struct{ ch chan string }

func (h msgHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h msgHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h msgHandler) WithGroup(string) slog.Handler            { return h }
func (h msgHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.ch <- r.Message:
	default:
	}
	return nil
}

// refreshFinished is what interruptedFixture's logs receive when b's token
// request ends.
const refreshFinished = "test: b's token request ended"

// interruptedFixture has two replicas, a and b, sharing one locked store.
// a has refreshed, but its store was unreachable when it saved (a Redis
// outage longer than its lease): the store still holds the refresh token a
// spent, marked as being spent, and a retries the save in the background
// while the test keeps the store down.
type interruptedFixture struct {
	*fixture
	down    *flakyLocker // a's view of the store
	a, b    *Source
	t0, t1  *Token      // the token both started with; the one a got
	logs    chan string // b's log messages and refreshFinished
	adopted chan struct{}
}

func newInterruptedFixture(t *testing.T, cfg bearertest.Config) *interruptedFixture {
	f := &interruptedFixture{
		fixture: newFixture(t, cfg),
		logs:    make(chan string, 100),
		adopted: make(chan struct{}, 10),
	}
	mem := NewMemoryStore(f.token())
	f.down = &flakyLocker{MemoryStore: mem, saved: make(chan struct{}, 10)}
	f.down.fail.Store(math.MaxInt32)
	f.a = f.source(f.down)
	bcfg := f.config()
	bcfg.Logger = slog.New(msgHandler{f.logs})
	bcfg.Hooks.Adopted = func(context.Context) { f.adopted <- struct{}{} }
	bcfg.Hooks.RefreshFinished = func(context.Context, time.Duration, error) { f.logs <- refreshFinished }
	f.b = NewSource(bcfg, mem)
	t.Cleanup(func() { f.b.Close() })

	ctx := context.Background()
	var err error
	if f.t0, err = f.a.Token(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.Token(ctx); err != nil {
		t.Fatal(err)
	}
	// Tokens live 100 s: refresh ahead from 75 s, expired from 90 s.
	f.clock.Advance(80 * time.Second)
	if f.t1, err = f.a.Refresh(ctx, f.t0); err != nil {
		t.Fatal(err)
	}
	if got := f.a.Stats().SaveFailures; got == 0 {
		t.Fatal("a's save did not fail")
	}
	return f
}

// TestRefreshInterrupted: a refresh token recorded as being spent whose
// result was never saved (its process died, or its store is down) is
// taken over, not waited for forever.
func TestRefreshInterrupted(t *testing.T) {
	t.Run("expired token takes over another process's refresh", testExpiredTokenTakesOver)
	t.Run("dead process's refresh taken over within grace", testDeadProcessTakenOver)
}

// testExpiredTokenTakesOver: once b's token has expired and a's save still has not landed (a may have
// died), b spends the marked refresh token itself, which a server with a
// reuse grace answers, rather than wait forever.
func testExpiredTokenTakesOver(t *testing.T) {
	f := newInterruptedFixture(t, bearertest.Config{ReuseGrace: time.Hour})
	f.a.Close() // gone, its new token with it
	ctx := context.Background()

	f.clock.Advance(15 * time.Second) // b's token expired
	got, err := f.b.Token(ctx)
	if err != nil {
		t.Fatalf("b.Token() = %v", err)
	}
	if got.AccessToken == f.t0.AccessToken {
		t.Errorf("b.Token() returned the expired token")
	}
	if st := f.srv.Stats(); st.GraceReuses != 1 || st.Revocations != 0 {
		t.Errorf("server saw %d grace reuses, %d revocations; want 1, 0", st.GraceReuses, st.Revocations)
	}
}

// testDeadProcessTakenOver: a process recorded its
// refresh in a FileStore, the server rotated, and the process died before
// saving. The next Source, at its next refresh, finds the mark and sends
// the marked refresh token once more at once (its outcome is unknown), and
// a server with a reuse grace answers with the pair it already issued.
func testDeadProcessTakenOver(t *testing.T) {
	f := newFixture(t, bearertest.Config{AccessLifetime: time.Hour, ReuseGrace: 30 * time.Second})
	store := NewFileStore(filepath.Join(t.TempDir(), "token.json"))
	ctx := context.Background()
	t0 := f.token()
	t0.Obtained = f.clock.Now()
	if err := store.Save(ctx, t0); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(56 * time.Minute) // refresh ahead from 55 min

	// The dead process: it records its refresh, the server rotates, and
	// nothing is saved.
	lease, err := store.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lease.Begin(ctx, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.source(NewMemoryStore(f.token())).Refresh(ctx, f.token()); err != nil {
		t.Fatal(err)
	}
	if err := lease.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	finished := make(chan error, 10)
	cfg := f.config()
	cfg.Hooks.RefreshFinished = func(_ context.Context, _ time.Duration, err error) { finished <- err }
	b := NewSource(cfg, store)
	defer b.Close()
	for range 2 { // loads the token, then refreshes ahead in the background
		if got, err := b.Token(ctx); err != nil || got.AccessToken != t0.AccessToken {
			t.Fatalf("b.Token() = %v, %v; want the valid token", got, err)
		}
	}
	if err := <-finished; err != nil {
		t.Fatalf("the takeover failed: %v", err)
	}
	got, err := b.Token(ctx)
	if err != nil || got.AccessToken == t0.AccessToken || !f.srv.Alive(got.RefreshToken) {
		t.Fatalf("b.Token() after the takeover = %v, %v; want a new, live token", got, err)
	}
	if st := f.srv.Stats(); st.GraceReuses != 1 || st.Revocations != 0 {
		t.Errorf("server saw %d grace reuses, %d revocations; want 1, 0", st.GraceReuses, st.Revocations)
	}
}
