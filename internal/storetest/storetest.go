// Package storetest checks a bearer.Store against the contract in the
// Store and Locker docs, so that every store in this repo is held to it.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/internal/issuer"
)

// Run checks the store that newStore returns, empty, against the contract.
func Run(t *testing.T, newStore func(t *testing.T) bearer.Store) {
	t.Run("empty", func(t *testing.T) {
		if tok, err := newStore(t).Load(t.Context()); !errors.Is(err, bearer.ErrNoToken) {
			t.Errorf("Load() of an empty store = %v, %v; want ErrNoToken", tok, err)
		}
	})
	t.Run("keeps every field", func(t *testing.T) {
		s := newStore(t)
		want := token(1)
		if err := s.Save(t.Context(), want); err != nil {
			t.Fatal(err)
		}
		got, err := s.Load(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !equal(got, want) {
			t.Errorf("Load() = %+v, want %+v", *got, *want)
		}
	})
	t.Run("read your writes", func(t *testing.T) {
		s := newStore(t)
		for i := range 20 {
			if err := s.Save(t.Context(), token(i)); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Load(t.Context()); err != nil || got.RefreshToken != token(i).RefreshToken {
				t.Fatalf("Load() after save %d = %v, %v; want that token", i, got, err)
			}
		}
	})
	t.Run("an empty token clears", func(t *testing.T) {
		s := newStore(t)
		for _, tok := range []*bearer.Token{token(1), {}} {
			if err := s.Save(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := s.Load(t.Context()); !errors.Is(err, bearer.ErrNoToken) {
			t.Errorf("Load() after saving an empty token = %v, %v; want ErrNoToken", got, err)
		}
		if err := s.Save(t.Context(), token(2)); err != nil {
			t.Fatal(err)
		}
		l, ok := s.(bearer.Locker)
		if !ok {
			return
		}
		lease, err := l.Lock(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer lease.Unlock(t.Context())
		if err := lease.CompareAndSwap(t.Context(), token(2), &bearer.Token{}); err != nil {
			t.Fatalf("CompareAndSwap(token, empty) = %v", err)
		}
		if got, err := lease.Load(t.Context()); !errors.Is(err, bearer.ErrNoToken) {
			t.Errorf("Load() after swapping in an empty token = %v, %v; want ErrNoToken", got, err)
		}
		// A cleared store is an empty one: a swap from nothing lands.
		if err := lease.CompareAndSwap(t.Context(), nil, token(3)); err != nil {
			t.Errorf("CompareAndSwap(nil, token) on a cleared store = %v", err)
		}
		if got, err := lease.Load(t.Context()); err != nil || !equal(got, token(3)) {
			t.Errorf("Load() = %v, %v; want the token swapped in", got, err)
		}
	})
	t.Run("locker", func(t *testing.T) {
		s := newStore(t)
		l, ok := s.(bearer.Locker)
		if !ok {
			t.Skip("not a Locker: a store for one process")
		}
		testLocker(t, s, l)
	})
}

func testLocker(t *testing.T, s bearer.Store, l bearer.Locker) {
	ctx := t.Context()
	t0, t1, t2 := token(0), token(1), token(2)
	if err := s.Save(ctx, t0); err != nil {
		t.Fatal(err)
	}
	lease, err := l.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if other, err := l.Lock(short); err == nil {
		other.Unlock(ctx)
		t.Error("a second Lock succeeded while a lease was held")
	}
	cancel()
	if again, err := lease.Begin(ctx, t0); err != nil || again {
		t.Errorf("first Begin = %v, %v; want false, nil", again, err)
	}
	if again, err := lease.Begin(ctx, t0); err != nil || !again {
		t.Errorf("second Begin of the same token = %v, %v; want true, nil", again, err)
	}
	if err := lease.CompareAndSwap(ctx, t2, t1); !errors.Is(err, bearer.ErrConflict) {
		t.Errorf("CompareAndSwap from a token not stored = %v, want ErrConflict", err)
	}
	if got, _ := lease.Load(ctx); got == nil || got.RefreshToken != t0.RefreshToken {
		t.Error("a refused CompareAndSwap wrote")
	}
	if err := lease.CompareAndSwap(ctx, t0, t1); err != nil {
		t.Fatalf("CompareAndSwap = %v", err)
	}
	if got, err := lease.Load(ctx); err != nil || !equal(got, t1) {
		t.Errorf("Lease.Load after CompareAndSwap = %v, %v; want the new token", got, err)
	}
	if again, err := lease.Begin(ctx, t1); err != nil || again {
		t.Errorf("Begin after a CompareAndSwap = %v, %v; want false (the record cleared)", again, err)
	}
	if err := lease.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lease.Unlock(ctx); err != nil {
		t.Errorf("a second Unlock = %v, want nil", err)
	}

	// Mutual exclusion, as a counter: each holder reads n and writes n+1.
	// A lost update or a stale read under the lock shows as a short count.
	const workers, rounds = 4, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				lease, err := l.Lock(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				cur, err := lease.Load(ctx)
				if err != nil {
					t.Error(err)
				} else {
					next := counter(count(cur) + 1)
					if err := lease.CompareAndSwap(ctx, cur, next); err != nil {
						t.Error(err)
					}
				}
				lease.Unlock(ctx)
			}
		})
	}
	wg.Wait()
	if got, err := s.Load(ctx); err != nil || count(got) != workers*rounds+count(t1) {
		t.Errorf("after %d increments under the lock the count is %d, %v; want %d", workers*rounds, count(got), err, workers*rounds+count(t1))
	}
}

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func token(i int) *bearer.Token {
	t := &bearer.Token{
		AccessToken:   fmt.Sprintf("at-%d", i),
		TokenType:     "Bearer",
		RefreshToken:  fmt.Sprintf("rt-%d", i),
		Expiry:        epoch.Add(time.Hour),
		RefreshExpiry: epoch.Add(24 * time.Hour),
		Obtained:      epoch,
		Info:          json.RawMessage(`{"i": 1}`),
	}
	issuer.Set(t, issuer.Record{TokenURL: "https://auth.example.test/tokens", ClientID: "client-1"})
	return t
}

func counter(n int) *bearer.Token {
	t := token(n)
	t.Info = json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))
	return t
}

func count(t *bearer.Token) int {
	var v struct{ N int }
	json.Unmarshal(t.Info, &v)
	return v.N
}

func equal(a, b *bearer.Token) bool {
	return a.AccessToken == b.AccessToken && a.TokenType == b.TokenType && a.RefreshToken == b.RefreshToken &&
		a.Expiry.Equal(b.Expiry) && a.RefreshExpiry.Equal(b.RefreshExpiry) && a.Obtained.Equal(b.Obtained) &&
		string(a.Info) == string(b.Info) && issuer.Of(a) == issuer.Of(b)
}
