package redisstore

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
)

// refusingStore is a replica's Store whose compare-and-swaps fail while
// refuse is set, as if Redis could not be reached when it saves, for
// longer than its lease. Everything else reaches the real Redis.
type refusingStore struct {
	*Store
	refuse atomic.Bool
	saved  chan struct{}
}

type refusingLease struct {
	bearer.Lease
	s *refusingStore
}

func (s *refusingStore) Lock(ctx context.Context) (bearer.Lease, error) {
	l, err := s.Store.Lock(ctx)
	if err != nil {
		return nil, err
	}
	return &refusingLease{Lease: l, s: s}, nil
}

func (l *refusingLease) CompareAndSwap(ctx context.Context, old, new *bearer.Token) error {
	if l.s.refuse.Load() {
		return errors.New("dial tcp: connection refused")
	}
	if err := l.Lease.CompareAndSwap(ctx, old, new); err != nil {
		return err
	}
	l.s.saved <- struct{}{}
	return nil
}

// receive waits for a value from ch that ok accepts. The bound only turns
// a missing signal into a failure instead of a hang.
func receive[T any](t *testing.T, what string, ch <-chan T, ok func(T) bool) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case v := <-ch:
			if ok(v) {
				return
			}
		case <-timeout:
			t.Fatalf("no %s within 20 s", what)
		}
	}
}

// lockingStore signals each call of Lock as it begins.
type lockingStore struct {
	*Store
	locking chan struct{}
}

func (s *lockingStore) Lock(ctx context.Context) (bearer.Lease, error) {
	s.locking <- struct{}{}
	return s.Store.Lock(ctx)
}

// TestFleetWaitsForUnsavedRefresh: replica a refreshes, but Redis does not
// take its save, so the store keeps the refresh token a spent. Replica b,
// in its refresh-ahead window with a token still valid, must not spend
// that refresh token again (the strict server would revoke the family, a's
// new token included): a keeps the lease while its token is unsaved, b
// waits for it, and adopts a's token once a's retried save lands.
func TestFleetWaitsForUnsavedRefresh(t *testing.T) {
	f := newFleet(t, redisAddr(t), 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := bearer.Config{
		TokenURL:     f.srv.TokenURL(),
		ClientID:     bearertest.DefaultClientID,
		ClientSecret: bearertest.DefaultClientSecret,
		HTTPClient:   f.srv.Client(),
		Now:          f.clock.Now,
		RetryBackoff: time.Millisecond,
	}
	down := &refusingStore{Store: f.replicaStore(0), saved: make(chan struct{}, 10)}
	down.refuse.Store(true)
	a := bearer.NewSource(cfg, down)
	t.Cleanup(func() { a.Close() })

	adopted := make(chan struct{}, 10)
	cfg.Hooks.Adopted = func(context.Context) { adopted <- struct{}{} }
	bstore := &lockingStore{Store: f.replicaStore(0), locking: make(chan struct{}, 10)}
	b := bearer.NewSource(cfg, bstore)
	t.Cleanup(func() { b.Close() })

	t0, err := a.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Token(ctx); err != nil {
		t.Fatal(err)
	}
	<-bstore.locking
	f.clock.Advance(80 * time.Second) // refresh ahead from 75 s, expired from 90 s
	t1, err := a.Refresh(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	if a.Stats().SaveFailures == 0 {
		t.Fatal("a's save did not fail")
	}

	got, err := b.Token(ctx) // one background refresh, which waits for a's lease
	if err != nil || got.AccessToken != t0.AccessToken {
		t.Fatalf("b.Token() = %v, %v; want the valid token at once", got, err)
	}
	receive(t, "b's background refresh at the lock", bstore.locking, func(struct{}) bool { return true })

	down.refuse.Store(false) // Redis takes a's saves again
	receive(t, "retried save of a", down.saved, func(struct{}) bool { return true })
	receive(t, "adoption by b", adopted, func(struct{}) bool { return true })
	if got, err := b.Token(ctx); err != nil || got.AccessToken != t1.AccessToken {
		t.Errorf("b.Token() after a's save = %v, %v; want a's token", got, err)
	}
	st := f.srv.Stats()
	if st.ReuseAttempts != 0 || st.Revocations != 0 || !f.srv.FamilyAlive(f.grant.Family) {
		t.Errorf("server saw %d reuses, %d revocations, family alive %v; want 0, 0, true",
			st.ReuseAttempts, st.Revocations, f.srv.FamilyAlive(f.grant.Family))
	}
}
