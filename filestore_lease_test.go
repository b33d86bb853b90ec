package bearer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
)

func TestFileStoreLockExcludes(t *testing.T) {
	tests := []struct {
		name   string
		second func(first *FileStore) *FileStore
	}{
		{"same FileStore", func(first *FileStore) *FileStore { return first }},
		{"another FileStore", func(first *FileStore) *FileStore { return NewFileStore(first.path) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := NewFileStore(fsPath(t))
			second := tt.second(first)
			held, err := first.Lock(t.Context())
			if err != nil {
				t.Fatalf("first Lock: %v", err)
			}

			// While the first is held, a waiting Lock ends with its context.
			ctx, cancel := context.WithCancel(t.Context())
			waited := make(chan error, 1)
			go func() {
				l, err := second.Lock(ctx)
				if l != nil {
					l.Unlock(context.Background())
				}
				waited <- err
			}()
			cancel()
			if err := <-waited; !errors.Is(err, context.Canceled) {
				t.Errorf("second Lock while held = %v, want an error wrapping context.Canceled", err)
			}

			// After Unlock the second gets it.
			var released atomic.Bool
			acquired := make(chan error, 1)
			var lease Lease
			go func() {
				l, err := second.Lock(t.Context())
				if err == nil && !released.Load() {
					err = errors.New("got the lock while the first holder had it")
				}
				lease = l
				acquired <- err
			}()
			released.Store(true)
			if err := held.Unlock(t.Context()); err != nil {
				t.Fatalf("Unlock: %v", err)
			}
			if err := <-acquired; err != nil {
				t.Fatalf("second Lock after Unlock: %v", err)
			}
			if err := lease.Unlock(t.Context()); err != nil {
				t.Errorf("second Unlock: %v", err)
			}
			// Unlocking twice is harmless.
			if err := held.Unlock(t.Context()); err != nil {
				t.Errorf("second Unlock of the first lease: %v", err)
			}
		})
	}
}

func TestFileStoreLockCancelledBeforeWait(t *testing.T) {
	fs := NewFileStore(fsPath(t))
	held, err := fs.Lock(t.Context())
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	defer held.Unlock(t.Context())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if l, err := NewFileStore(fs.path).Lock(ctx); !errors.Is(err, context.Canceled) {
		if l != nil {
			l.Unlock(t.Context())
		}
		t.Errorf("Lock with a cancelled context while held = %v, want context.Canceled", err)
	}
}

func TestFileLeaseBegin(t *testing.T) {
	fs := NewFileStore(fsPath(t))
	old := &Token{AccessToken: "at-1", RefreshToken: "rt-1"}
	if err := fs.Save(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	lease, err := fs.Lock(t.Context())
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	defer lease.Unlock(t.Context())

	begin := func(step string, tok *Token, want bool) {
		t.Helper()
		got, err := lease.Begin(t.Context(), tok)
		if err != nil {
			t.Fatalf("%s: Begin: %v", step, err)
		}
		if got != want {
			t.Errorf("%s: Begin interrupted = %t, want %t", step, got, want)
		}
	}
	begin("first", old, false)
	begin("again without CompareAndSwap", old, true)

	// The record survives another lease, as it would a crash.
	lease.Unlock(t.Context())
	lease, err = NewFileStore(fs.path).Lock(t.Context())
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	begin("after a new lock", old, true)

	// Begin must not change the token.
	got, err := lease.Load(t.Context())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	fsTokenEqual(t, got, old)

	next := &Token{AccessToken: "at-2", RefreshToken: "rt-2"}
	if err := lease.CompareAndSwap(t.Context(), old, next); err != nil {
		t.Fatalf("CompareAndSwap: %v", err)
	}
	begin("next token after CompareAndSwap", next, false)
	if err := lease.CompareAndSwap(t.Context(), next, &Token{AccessToken: "at-3", RefreshToken: "rt-3"}); err != nil {
		t.Fatalf("CompareAndSwap: %v", err)
	}
	begin("a token after the record was cleared", &Token{AccessToken: "at-3", RefreshToken: "rt-3"}, false)
}

func TestFileLeaseBeginEmptyStore(t *testing.T) {
	fs := NewFileStore(fsPath(t))
	lease, err := fs.Lock(t.Context())
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	defer lease.Unlock(t.Context())
	old := &Token{AccessToken: "at-1", RefreshToken: "rt-1"}
	if got, err := lease.Begin(t.Context(), old); err != nil || got {
		t.Errorf("Begin on an empty store = %t, %v; want false, nil", got, err)
	}
	if got, err := lease.Begin(t.Context(), old); err != nil || !got {
		t.Errorf("Begin again on an empty store = %t, %v; want true, nil", got, err)
	}
	next := &Token{AccessToken: "at-2", RefreshToken: "rt-2"}
	if err := lease.CompareAndSwap(t.Context(), nil, next); err != nil {
		t.Fatalf("CompareAndSwap from empty: %v", err)
	}
	got, err := fs.Load(t.Context())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	fsTokenEqual(t, got, next)
}

func TestFileLeaseCompareAndSwapConflict(t *testing.T) {
	stored := &Token{AccessToken: "at-1", RefreshToken: "rt-1"}
	tests := []struct {
		name  string
		setup func(t *testing.T, fs *FileStore, l Lease) // after stored was saved
		old   *Token
	}{
		{name: "other refresh token", old: &Token{AccessToken: "at-1", RefreshToken: "rt-other"}},
		{name: "other access token, no refresh token", old: &Token{AccessToken: "at-other"}},
		{name: "nil old over a stored token", old: nil},
		{
			name: "nil old over a stored token with a refresh record",
			setup: func(t *testing.T, fs *FileStore, l Lease) {
				if _, err := l.Begin(t.Context(), stored); err != nil {
					t.Fatalf("Begin: %v", err)
				}
			},
			old: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := NewFileStore(fsPath(t))
			if err := fs.Save(t.Context(), stored); err != nil {
				t.Fatal(err)
			}
			lease, err := fs.Lock(t.Context())
			if err != nil {
				t.Fatalf("Lock: %v", err)
			}
			defer lease.Unlock(t.Context())
			if tt.setup != nil {
				tt.setup(t, fs, lease)
			}
			before, err := os.ReadFile(fs.path)
			if err != nil {
				t.Fatal(err)
			}
			err = lease.CompareAndSwap(t.Context(), tt.old, &Token{AccessToken: "at-new", RefreshToken: "rt-new"})
			if !errors.Is(err, ErrConflict) {
				t.Errorf("CompareAndSwap = %v, want ErrConflict", err)
			}
			after, err := os.ReadFile(fs.path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Errorf("file changed by a conflicting CompareAndSwap:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestFileLeaseCompareAndSwapCorrupt(t *testing.T) {
	fs := NewFileStore(fsPath(t))
	data := []byte("corrupt")
	if err := os.WriteFile(fs.path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	lease, err := fs.Lock(t.Context())
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	defer lease.Unlock(t.Context())
	if _, err := lease.Begin(t.Context(), &Token{AccessToken: "at-1", RefreshToken: "rt-1"}); err == nil || errors.Is(err, ErrNoToken) {
		t.Errorf("Begin over a corrupt file = %v, want an error that is not ErrNoToken", err)
	}
	err = lease.CompareAndSwap(t.Context(), nil, &Token{AccessToken: "at-new"})
	if err == nil || errors.Is(err, ErrNoToken) {
		t.Errorf("CompareAndSwap over a corrupt file = %v, want an error that is not ErrNoToken", err)
	}
	if got, _ := os.ReadFile(fs.path); !bytes.Equal(got, data) {
		t.Errorf("file = %q, want it unchanged: %q", got, data)
	}
}

func TestFileLeaseCompareAndSwapNil(t *testing.T) {
	fs := NewFileStore(fsPath(t))
	lease, err := fs.Lock(t.Context())
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	defer lease.Unlock(t.Context())
	if err := lease.CompareAndSwap(t.Context(), nil, nil); err == nil {
		t.Errorf("CompareAndSwap(nil, nil) = nil error, want one")
	}
}

func TestFileStoreLockRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token.json")
	stale := filepath.Join(dir, ".token.json.tmp-123")
	fresh := filepath.Join(dir, ".token.json.tmp-456")
	other := filepath.Join(dir, ".other.json.tmp-789")
	for _, p := range []string{stale, fresh, other} {
		if err := os.WriteFile(p, []byte(`{"version":1`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTemp)
	for _, p := range []string{stale, other} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	lease, err := NewFileStore(path).Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Unlock(t.Context())
	for _, tc := range []struct {
		path string
		want bool
	}{{stale, false}, {fresh, true}, {other, true}} {
		_, err := os.Stat(tc.path)
		if got := err == nil; got != tc.want {
			t.Errorf("%s exists = %t, want %t", filepath.Base(tc.path), got, tc.want)
		}
	}
}

func TestFileStoreLockSharesOneRefreshAcrossStores(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	path := filepath.Join(t.TempDir(), "token.json")
	if err := NewFileStore(path).Save(context.Background(), f.token()); err != nil {
		t.Fatal(err)
	}
	const n = 4
	srcs := make([]*Source, n)
	for i := range srcs {
		srcs[i] = f.source(NewFileStore(path)) // one store each, as processes have
		if _, err := srcs[i].Token(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 5 {
		f.clock.Advance(101 * time.Second)
		var wg sync.WaitGroup
		for _, s := range srcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Token(context.Background()); err != nil {
					t.Errorf("round %d: %v", round, err)
				}
			}()
		}
		wg.Wait()
	}
	st := f.srv.Stats()
	if st.Refreshes != 5 || st.ReuseAttempts != 0 {
		t.Errorf("server: refreshes = %d, reuses = %d; want 5, 0", st.Refreshes, st.ReuseAttempts)
	}
	saved, err := NewFileStore(path).Load(context.Background())
	if err != nil || !f.srv.Alive(saved.RefreshToken) {
		t.Errorf("the file does not hold the live refresh token (%v)", err)
	}
}
