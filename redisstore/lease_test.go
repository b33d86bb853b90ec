package redisstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkit/bearer"
)

func lock(t testing.TB, s *Store) bearer.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := s.Lock(ctx)
	if err != nil {
		t.Fatalf("Lock() = %v", err)
	}
	return l
}

func unlock(t testing.TB, l bearer.Lease) {
	t.Helper()
	if err := l.Unlock(context.Background()); err != nil {
		t.Fatalf("Unlock() = %v", err)
	}
}

// TestLockExclusion runs critical sections from two replicas (two clients)
// that each read, then write, a counter: a lost update or two goroutines
// inside at once means the lock let two holders in.
func TestLockExclusion(t *testing.T) {
	a := newStore(t)
	b := peer(t, a)
	const workers, rounds = 4, 25
	ctx := context.Background()
	counter := a.key + ":counter"
	var inside, overlaps atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for i := range 2 * workers {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				l, err := s.Lock(ctx)
				if err != nil {
					errs <- err
					return
				}
				if inside.Add(1) != 1 {
					overlaps.Add(1)
				}
				n, _ := s.rdb.Get(ctx, counter).Int()
				s.rdb.Set(ctx, counter, n+1, 0)
				inside.Add(-1)
				if err := l.Unlock(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Lock or Unlock: %v", err)
	}
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d critical sections overlapped, want 0", n)
	}
	got, _ := a.rdb.Get(ctx, counter).Int()
	if want := 2 * workers * rounds; got != want {
		t.Errorf("counter = %d, want %d", got, want)
	}
}

// TestLockWaits checks that a second replica waits for the holder and gets
// the lease once it is released.
func TestLockWaits(t *testing.T) {
	a := newStore(t)
	b := peer(t, a)
	la := lock(t, a)

	// While a holds the lease, b cannot take it.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := b.Lock(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock() while held = %v, want an error wrapping DeadlineExceeded", err)
	}

	// A waiting b gets the lease once a releases it (exclusion itself is
	// shown above and by TestLockExclusion).
	acquired := make(chan bearer.Lease)
	go func() {
		l, err := b.Lock(context.Background())
		if err != nil {
			t.Error(err)
		}
		acquired <- l
	}()
	unlock(t, la)
	if lb := <-acquired; lb != nil {
		unlock(t, lb)
	}
}

func TestLockContext(t *testing.T) {
	a := newStore(t)
	b := peer(t, a)
	la := lock(t, a)
	defer unlock(t, la)

	cause := errors.New("shutting down")
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want []error
	}{
		{"canceled before", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, []error{context.Canceled}},
		{"deadline while waiting", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 30*time.Millisecond)
		}, []error{context.DeadlineExceeded}},
		{"canceled with cause", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancelCause(context.Background())
			cancel(cause)
			return ctx, func() {}
		}, []error{context.Canceled, cause}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			l, err := b.Lock(ctx)
			if err == nil {
				l.Unlock(context.Background())
				t.Fatal("Lock() = nil error while another replica holds the lease")
			}
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Errorf("Lock() = %v, want an error wrapping %v", err, want)
				}
			}
		})
	}
}

// TestLeaseExpiry checks that a holder that never unlocks (it crashed) does
// not keep the others out past LeaseTTL.
func TestLeaseExpiry(t *testing.T) {
	a := newStore(t)
	a.LeaseTTL = 100 * time.Millisecond
	b := peer(t, a)
	abandon(lock(t, a)) // never released: its holder died
	start := time.Now()
	lb := lock(t, b)
	defer unlock(t, lb)
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Errorf("b took the lease after %v, before a's lapsed", waited)
	}
	if ttl := b.rdb.PTTL(context.Background(), b.lockKey()).Val(); ttl <= 0 || ttl > a.LeaseTTL {
		t.Errorf("lease TTL = %v, want in (0, %v]", ttl, a.LeaseTTL)
	}
}

func TestDefaultLeaseTTL(t *testing.T) {
	s := newStore(t)
	l := lock(t, s)
	defer unlock(t, l)
	ttl := s.rdb.PTTL(context.Background(), s.lockKey()).Val()
	if ttl <= DefaultLeaseTTL-5*time.Second || ttl > DefaultLeaseTTL {
		t.Errorf("lease TTL = %v, want about %v", ttl, DefaultLeaseTTL)
	}
}

// lapse takes a's lease, lets it lapse, and returns it with b's lease, taken
// after it.
func lapse(t *testing.T, a, b *Store) (stale, current bearer.Lease) {
	t.Helper()
	a.LeaseTTL = 100 * time.Millisecond
	stale = lock(t, a)
	abandon(stale)
	current = lock(t, b) // returns only once a's lease lapsed
	return stale, current
}

func TestCompareAndSwap(t *testing.T) {
	ctx := context.Background()
	old := testToken()
	next := &bearer.Token{AccessToken: "at-2", RefreshToken: "rt-2"}

	t.Run("swaps", func(t *testing.T) {
		s := newStore(t)
		if err := s.Save(ctx, old); err != nil {
			t.Fatal(err)
		}
		l := lock(t, s)
		defer unlock(t, l)
		if _, err := l.Begin(ctx, old); err != nil {
			t.Fatal(err)
		}
		if err := l.CompareAndSwap(ctx, old, next); err != nil {
			t.Fatalf("CompareAndSwap() = %v", err)
		}
		if got, err := l.Load(ctx); err != nil || !sameToken(got, next) {
			t.Errorf("Load() = %v, %v, want %v", got, err, next)
		}
		if s.rdb.Exists(ctx, s.refreshingKey()).Val() != 0 {
			t.Error("CompareAndSwap left the refreshing record")
		}
	})

	t.Run("wrong old", func(t *testing.T) {
		s := newStore(t)
		if err := s.Save(ctx, next); err != nil {
			t.Fatal(err)
		}
		l := lock(t, s)
		defer unlock(t, l)
		if _, err := l.Begin(ctx, old); err != nil {
			t.Fatal(err)
		}
		err := l.CompareAndSwap(ctx, old, &bearer.Token{AccessToken: "at-3", RefreshToken: "rt-3"})
		if !errors.Is(err, bearer.ErrConflict) {
			t.Fatalf("CompareAndSwap() = %v, want an error wrapping ErrConflict", err)
		}
		if got, _ := s.Load(ctx); !sameToken(got, next) {
			t.Errorf("after the conflict the store holds %v, want %v", got, next)
		}
		if s.rdb.Get(ctx, s.refreshingKey()).Val() != fingerprint(old) {
			t.Error("a failed CompareAndSwap cleared the refreshing record")
		}
	})

	t.Run("from nothing", func(t *testing.T) {
		s := newStore(t)
		l := lock(t, s)
		defer unlock(t, l)
		if err := l.CompareAndSwap(ctx, nil, next); err != nil {
			t.Fatalf("CompareAndSwap(nil, new) on an empty store = %v", err)
		}
		if err := l.CompareAndSwap(ctx, nil, old); !errors.Is(err, bearer.ErrConflict) {
			t.Fatalf("CompareAndSwap(nil, new) on a full store = %v, want ErrConflict", err)
		}
		if err := l.CompareAndSwap(ctx, old, nil); err == nil {
			t.Fatal("CompareAndSwap(old, nil) = nil error")
		}
	})

	t.Run("access token only", func(t *testing.T) {
		s := newStore(t)
		a1, a2 := &bearer.Token{AccessToken: "a1"}, &bearer.Token{AccessToken: "a2"}
		if err := s.Save(ctx, a1); err != nil {
			t.Fatal(err)
		}
		l := lock(t, s)
		defer unlock(t, l)
		if err := l.CompareAndSwap(ctx, a2, next); !errors.Is(err, bearer.ErrConflict) {
			t.Fatalf("CompareAndSwap(other access token) = %v, want ErrConflict", err)
		}
		if err := l.CompareAndSwap(ctx, a1, next); err != nil {
			t.Fatalf("CompareAndSwap(same access token) = %v", err)
		}
	})

	t.Run("lapsed lease", func(t *testing.T) {
		a := newStore(t)
		b := peer(t, a)
		if err := a.Save(ctx, old); err != nil {
			t.Fatal(err)
		}
		stale, current := lapse(t, a, b)
		defer unlock(t, current)
		// b refreshes and saves first; a comes back from a long pause.
		if err := current.CompareAndSwap(ctx, old, next); err != nil {
			t.Fatalf("b: CompareAndSwap() = %v", err)
		}
		err := stale.CompareAndSwap(ctx, old, &bearer.Token{AccessToken: "at-stale", RefreshToken: "rt-stale"})
		if !errors.Is(err, bearer.ErrLockLost) {
			t.Fatalf("a: CompareAndSwap() on a lapsed lease = %v, want ErrLockLost", err)
		}
		if got, _ := a.Load(ctx); !sameToken(got, next) {
			t.Errorf("store holds %v, want b's token %v", got, next)
		}
		// Even with the right old token a lapsed lease writes nothing.
		err = stale.CompareAndSwap(ctx, next, &bearer.Token{AccessToken: "at-stale", RefreshToken: "rt-stale"})
		if !errors.Is(err, bearer.ErrLockLost) {
			t.Fatalf("a: CompareAndSwap(current old) on a lapsed lease = %v, want ErrLockLost", err)
		}
		if got, _ := a.Load(ctx); !sameToken(got, next) {
			t.Errorf("store holds %v, want b's token %v", got, next)
		}
	})
}

func TestBegin(t *testing.T) {
	ctx := context.Background()
	old := testToken()
	next := &bearer.Token{AccessToken: "at-2", RefreshToken: "rt-2"}
	a := newStore(t)
	b := peer(t, a)
	if err := a.Save(ctx, old); err != nil {
		t.Fatal(err)
	}

	la := lock(t, a)
	if interrupted, err := la.Begin(ctx, old); err != nil || interrupted {
		t.Fatalf("first Begin() = %v, %v, want false, nil", interrupted, err)
	}
	if got := a.rdb.Get(ctx, a.refreshingKey()).Val(); got != fingerprint(old) {
		t.Errorf("refreshing record = %q, want the fingerprint %q", got, fingerprint(old))
	}
	noSecrets(t, a.rdb.Get(ctx, a.refreshingKey()).Val())
	// a dies here, its answer lost.
	unlock(t, la)

	lb := lock(t, b)
	if interrupted, err := lb.Begin(ctx, old); err != nil || !interrupted {
		t.Fatalf("Begin() after an interrupted refresh = %v, %v, want true, nil", interrupted, err)
	}
	if err := lb.CompareAndSwap(ctx, old, next); err != nil {
		t.Fatal(err)
	}
	if interrupted, err := lb.Begin(ctx, next); err != nil || interrupted {
		t.Fatalf("Begin() after a completed refresh = %v, %v, want false, nil", interrupted, err)
	}
	unlock(t, lb)
}

func TestBeginLapsed(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	b := peer(t, a)
	stale, current := lapse(t, a, b)
	defer unlock(t, current)
	if _, err := stale.Begin(ctx, testToken()); !errors.Is(err, bearer.ErrLockLost) {
		t.Fatalf("Begin() on a lapsed lease = %v, want ErrLockLost", err)
	}
	if a.rdb.Exists(ctx, a.refreshingKey()).Val() != 0 {
		t.Error("Begin() on a lapsed lease wrote the refreshing record")
	}
	if _, err := stale.Begin(ctx, nil); err == nil {
		t.Error("Begin(nil) = nil error")
	}
}

// TestUnlockLapsed checks that unlocking a lapsed lease succeeds and leaves
// the next holder's lease in place.
func TestUnlockLapsed(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	b := peer(t, a)
	if err := a.Save(ctx, testToken()); err != nil {
		t.Fatal(err)
	}
	stale, current := lapse(t, a, b)
	if err := stale.Unlock(ctx); err != nil {
		t.Fatalf("Unlock() of a lapsed lease = %v, want nil", err)
	}
	if err := stale.Unlock(ctx); err != nil {
		t.Fatalf("second Unlock() = %v, want nil", err)
	}
	// b still holds its lease: its swap goes through, and a third replica
	// cannot take the lease.
	if err := current.CompareAndSwap(ctx, testToken(), &bearer.Token{AccessToken: "at-2", RefreshToken: "rt-2"}); err != nil {
		t.Fatalf("b: CompareAndSwap() after a's Unlock = %v", err)
	}
	c := peer(t, a)
	tctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := c.Lock(tctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("c: Lock() while b holds the lease = %v, want DeadlineExceeded", err)
	}
	unlock(t, current)
	if a.rdb.Exists(ctx, a.lockKey()).Val() != 0 {
		t.Error("b's Unlock left the lease")
	}
}

// TestCompareAndSwapRetried checks that a swap whose reply was lost can be
// run again: finding new already stored counts as saved.
func TestCompareAndSwapRetried(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	old, next := testToken(), &bearer.Token{AccessToken: "at-2", RefreshToken: "rt-2"}
	if err := s.Save(ctx, old); err != nil {
		t.Fatal(err)
	}
	l := lock(t, s)
	defer unlock(t, l)
	for i := range 2 {
		if err := l.CompareAndSwap(ctx, old, next); err != nil {
			t.Fatalf("CompareAndSwap() #%d = %v", i+1, err)
		}
	}
	if got, err := s.Load(ctx); err != nil || !sameToken(got, next) {
		t.Errorf("Load() = %v, %v, want %v", got, err, next)
	}
}

// TestCompareAndSwapWaitsForRedis checks that a swap tries again while
// Redis is down, until ctx ends or Redis is back, and that the lease kept
// in Redis's data still fences it after the restart.
func TestCompareAndSwapWaitsForRedis(t *testing.T) {
	srv := ownServer(t, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	ctx := context.Background()
	s := New(newClient(t, srv.addr), testKey(t))
	old, next := testToken(), &bearer.Token{AccessToken: "at-2", RefreshToken: "rt-2"}
	if err := s.Save(ctx, old); err != nil {
		t.Fatal(err)
	}
	l := lock(t, s)
	if _, err := l.Begin(ctx, old); err != nil {
		t.Fatal(err)
	}
	srv.stop()

	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	start := time.Now()
	err := l.CompareAndSwap(tctx, old, next)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CompareAndSwap() with Redis down = %v, want it to try until ctx ends", err)
	}
	if elapsed := time.Since(start); elapsed < 250*time.Millisecond {
		t.Errorf("CompareAndSwap() gave up after %v, before ctx ended", elapsed)
	}

	failed := failedScript(s.rdb)
	done := make(chan error, 1)
	go func() { done <- l.CompareAndSwap(ctx, old, next) }()
	<-failed
	srv.restart(t)
	if err := <-done; err != nil {
		t.Fatalf("CompareAndSwap() across the restart = %v", err)
	}
	if got, err := s.Load(ctx); err != nil || !sameToken(got, next) {
		t.Errorf("Load() = %v, %v, want %v", got, err, next)
	}
	unlock(t, l)
}

// TestCompareAndSwapFinalError checks that an error reply from Redis is
// not tried again.
func TestCompareAndSwapFinalError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := newStore(t)
	l := lock(t, s)
	defer unlock(t, l)
	s.rdb.Set(ctx, s.key, "a string, not a hash", 0)
	start := time.Now()
	err := l.CompareAndSwap(ctx, testToken(), &bearer.Token{AccessToken: "at-2", RefreshToken: "rt-2"})
	if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, bearer.ErrConflict) {
		t.Fatalf("CompareAndSwap() on a string key = %v, want Redis's WRONGTYPE error", err)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("CompareAndSwap() took %v, want no retries", elapsed)
	}
}

// abandon stops l's renewing without releasing it, as a holder that died
// would: the lease lapses after LeaseTTL.
func abandon(l bearer.Lease) { l.(*lease).stopRenewing() }

// TestLeaseRenewsWhileHeld: a lease whose holder works for longer than
// LeaseTTL (a 600 ms refresh under a 200 ms lease) keeps the others out
// all that time, and lets them in as soon as it is released.
func TestLeaseRenewsWhileHeld(t *testing.T) {
	a := newStore(t)
	a.LeaseTTL = 200 * time.Millisecond
	b := peer(t, a)
	b.LeaseTTL = a.LeaseTTL
	la := lock(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 3*a.LeaseTTL)
	defer cancel()
	if lb, err := b.Lock(ctx); err == nil {
		lb.Unlock(context.Background())
		t.Fatalf("b took the lease while a held it, %v after a took it", 3*a.LeaseTTL-time.Until(deadline(ctx)))
	}
	if _, err := la.Begin(context.Background(), testToken()); err != nil {
		t.Errorf("a's Begin after %v under a %v lease = %v, want the lease still held", 3*a.LeaseTTL, a.LeaseTTL, err)
	}
	unlock(t, la)
	unlock(t, lock(t, b))
}

func deadline(ctx context.Context) time.Time { d, _ := ctx.Deadline(); return d }

// TestLeaseTTLTooShort: a LeaseTTL that cannot be renewed in time is
// refused before anything is locked.
func TestLeaseTTLTooShort(t *testing.T) {
	s := newStore(t)
	s.LeaseTTL = MinLeaseTTL - time.Millisecond
	l, err := s.Lock(context.Background())
	if err == nil {
		l.Unlock(context.Background())
		t.Fatal("Lock with a LeaseTTL under MinLeaseTTL succeeded")
	}
	if !strings.Contains(err.Error(), "LeaseTTL") {
		t.Errorf("Lock() = %v, want an error naming LeaseTTL", err)
	}
	if n := s.rdb.Exists(context.Background(), s.lockKey()).Val(); n != 0 {
		t.Error("the refused Lock left a lease")
	}
}
