package bearer

import (
	"context"
	"log/slog"
	"math"
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

// waitFor receives from ch until it gets a value for which ok holds. The
// bound only turns a missing signal into a failure instead of a hang.
func waitFor[T any](t *testing.T, what string, ch <-chan T, ok func(T) bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case v := <-ch:
			if ok(v) {
				return
			}
		case <-timeout:
			t.Fatalf("no %s within 10 s", what)
		}
	}
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
