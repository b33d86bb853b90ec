package bearer

import (
	"context"
	"log/slog"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
)

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

// TestExpiredTokenTakesOverAnotherProcessRefresh checks the other side:
// once b's token has expired and a's save still has not landed (a may have
// died), b spends the marked refresh token itself, which a server with a
// reuse grace answers, rather than wait forever.
func TestExpiredTokenTakesOverAnotherProcessRefresh(t *testing.T) {
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

// TestDeadProcessRefreshTakenOverWithinGrace: a process recorded its
// refresh in a FileStore, the server rotated, and the process died before
// saving. The next Source, at its next refresh, finds the mark and sends
// the marked refresh token once more at once (its outcome is unknown), and
// a server with a reuse grace answers with the pair it already issued.
func TestDeadProcessRefreshTakenOverWithinGrace(t *testing.T) {
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
