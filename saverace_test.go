package bearer

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/tokenkit/bearer/bearertest"
)

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
