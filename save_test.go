package bearer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
)

// flakyLocker is a MemoryStore whose first compare-and-swaps (fail of
// them; math.MaxInt32 for an outage that lasts) fail. saved receives a
// value for each one that lands.
type flakyLocker struct {
	*MemoryStore
	fail  atomic.Int32
	saved chan struct{}
}

type flakyLease struct {
	Lease
	s *flakyLocker
}

func (s *flakyLocker) Lock(ctx context.Context) (Lease, error) {
	l, err := s.MemoryStore.Lock(ctx)
	if err != nil {
		return nil, err
	}
	return &flakyLease{Lease: l, s: s}, nil
}

func (l *flakyLease) CompareAndSwap(ctx context.Context, old, new *Token) error {
	if l.s.fail.Add(-1) >= 0 {
		return errors.New("flaky store")
	}
	if err := l.Lease.CompareAndSwap(ctx, old, new); err != nil {
		return err
	}
	l.s.saved <- struct{}{}
	return nil
}

func TestSaveRetriesNeverLeaveASpentToken(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	mem := NewMemoryStore(f.token())
	store := &flakyLocker{MemoryStore: mem, saved: make(chan struct{}, 10)}
	store.fail.Store(2)
	src := f.source(store)
	ctx := context.Background()
	t0, _ := src.Token(ctx)
	t1, err := src.Refresh(ctx, t0) // the save fails: retried in the background
	if err != nil {
		t.Fatal(err)
	}
	t2, err := src.Refresh(ctx, t1) // fails too, or follows a retry
	if err != nil {
		t.Fatal(err)
	}
	<-store.saved
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := mem.Load(ctx)
	if got.RefreshToken != t2.RefreshToken || !f.srv.Alive(got.RefreshToken) {
		t.Errorf("store holds a refresh token alive=%v, want t2's, the live head", f.srv.Alive(got.RefreshToken))
	}
	// Another replica sharing the store refreshes from it.
	b := NewSource(f.config(), mem)
	defer b.Close()
	bt, _ := b.Token(ctx)
	if _, err := b.Refresh(ctx, bt); err != nil {
		t.Errorf("replica: %v", err)
	}
	if st := f.srv.Stats(); st.Revocations != 0 || st.ReuseAttempts != 0 {
		t.Errorf("revocations, reuses = %d, %d; want 0, 0", st.Revocations, st.ReuseAttempts)
	}
}

// raceSaveStore: plain Store. Save #1 fails, save #2 (the background retry)
// blocks until released, later saves succeed at once.
type raceSaveStore struct {
	inner   *MemoryStore
	n       atomic.Int32
	entered chan struct{}
	release chan struct{}
}

func (s *raceSaveStore) Load(ctx context.Context) (*Token, error) { return s.inner.Load(ctx) }
func (s *raceSaveStore) Save(ctx context.Context, t *Token) error {
	switch s.n.Add(1) {
	case 1:
		return errors.New("transient")
	case 2:
		close(s.entered)
		<-s.release
	}
	return s.inner.Save(ctx, t)
}

func TestRetriedSaveNeverOverwritesNewerToken(t *testing.T) {
	t.Parallel() // waits on real time; touches nothing shared
	f := newFixture(t, bearertest.Config{})
	store := &raceSaveStore{inner: NewMemoryStore(f.token()), entered: make(chan struct{}), release: make(chan struct{})}
	src := f.source(store)
	ctx := context.Background()
	t0, _ := src.Token(ctx)
	t1, err := src.Refresh(ctx, t0) // save fails -> background retry
	if err != nil {
		t.Fatal(err)
	}
	<-store.entered // the retry is inside Save(t1)
	// A refresh now waits for the retried save instead of racing it.
	done := make(chan *Token)
	go func() {
		t2, err := src.Refresh(ctx, t1)
		if err != nil {
			t.Error(err)
		}
		done <- t2
	}()
	close(store.release)
	t2 := <-done
	if t2 == nil {
		t.FailNow()
	}
	src.Close()
	got, _ := store.inner.Load(ctx)
	if got.RefreshToken != t2.RefreshToken {
		t.Errorf("store holds refresh token alive=%v, want the newest (t2); t1's was spent: alive(t1)=%v",
			f.srv.Alive(got.RefreshToken), f.srv.Alive(t1.RefreshToken))
	}
	// A restart reads the store and refreshes from it.
	src2 := NewSource(f.config(), store.inner)
	defer src2.Close()
	cur, _ := src2.Token(ctx)
	if _, err := src2.Refresh(ctx, cur); err != nil {
		t.Errorf("after restart: %v", err)
	}
	if st := f.srv.Stats(); st.Revocations != 0 {
		t.Errorf("Revocations = %d, want 0", st.Revocations)
	}
}

// Saves that keep failing leave the store ever further behind: the Source
// must neither adopt nor refresh from a token whose refresh token it spent.
func TestNoDoubleSpendAfterFailedSaves(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	store := newSignalStore(NewMemoryStore(f.token()))
	store.fail.Store(1 << 20) // every save fails
	src := f.source(store)
	ctx := context.Background()
	tok, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{tok.AccessToken: 0}
	for i := 1; i <= 4; i++ {
		next, err := src.Refresh(ctx, tok)
		if err != nil {
			t.Errorf("refresh %d: %v", i, err)
			break
		}
		if j, ok := seen[next.AccessToken]; ok {
			t.Errorf("refresh %d returned the token of step %d again (an older token whose refresh token is spent)", i, j)
		}
		seen[next.AccessToken] = i
		tok = next
	}
	st := f.srv.Stats()
	if st.ReuseAttempts != 0 || st.Revocations != 0 {
		t.Errorf("server saw ReuseAttempts=%d Revocations=%d, want 0", st.ReuseAttempts, st.Revocations)
	}
}

// fmt of a *Source shows no refresh token, not even the spent ones it
// remembers.
func TestSourcePrintsNoRefreshToken(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	src := f.source(NewMemoryStore(f.token()))
	ctx := context.Background()
	tok, _ := src.Token(ctx)
	if _, err := src.Refresh(ctx, tok); err != nil {
		t.Fatal(err)
	}
	out := fmt.Sprintf("%+v", src)
	if strings.Contains(out, f.grant.RefreshToken) {
		t.Errorf("fmt %%+v of *Source contains the refresh token: %.200s...", out)
	}
}

func TestSaveFailureUsesTokenAndRetriesSave(t *testing.T) {
	t.Parallel() // waits on real time; touches nothing shared
	f := newFixture(t, bearertest.Config{})
	store := newSignalStore(NewMemoryStore(f.token()))
	store.fail.Store(2)
	var hookErrs atomic.Int32
	cfg := f.config()
	cfg.Hooks.SaveFailed = func(ctx context.Context, err error) { hookErrs.Add(1) }
	src := NewSource(cfg, store)
	defer src.Close()
	f.clock.Advance(101 * time.Second)

	got, err := src.Token(context.Background())
	if err != nil {
		t.Fatalf("Token() error = %v, want the new token despite the failed save", err)
	}
	if !f.srv.Alive(got.RefreshToken) {
		t.Fatal("Token() did not return the rotated token")
	}
	if hookErrs.Load() != 1 {
		t.Errorf("SaveFailed hook calls = %d, want 1", hookErrs.Load())
	}
	saved := <-store.saved // the retry goroutine got through
	if saved.RefreshToken != got.RefreshToken {
		t.Errorf("retried save wrote another token than the one in use")
	}
	if n := src.Stats().SaveFailures; n != 2 {
		t.Errorf("Stats().SaveFailures = %d, want 2", n)
	}
	if err := src.Close(); err != nil {
		t.Errorf("Close() = %v, want nil once saved", err)
	}
}

func TestCloseSavesPendingToken(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	store := newSignalStore(NewMemoryStore(f.token()))
	store.fail.Store(1)
	src := f.source(store)
	f.clock.Advance(101 * time.Second)
	got, err := src.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	saved, err := store.Load(context.Background())
	if err != nil || saved.RefreshToken != got.RefreshToken {
		t.Errorf("after Close the store does not hold the token in use")
	}
}

// However many rotations a save outage lasts, the Source never sends a
// refresh token that a read answer replaced (the store keeps offering the
// last saved one), and the newest token is saved once the store is back.
func TestLongSaveOutageNeverResendsReplacedToken(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	store := &flakyLocker{MemoryStore: NewMemoryStore(f.token()), saved: make(chan struct{}, 10)}
	store.fail.Store(math.MaxInt32)
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
	store.fail.Store(0)
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
	store := &flakyLocker{MemoryStore: NewMemoryStore(f.token()), saved: make(chan struct{}, 10)}
	store.fail.Store(math.MaxInt32)
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
