package bearer

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/tokenkit/bearer/bearertest"
)

// flakyLocker is a MemoryStore whose first compare-and-swaps fail.
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
