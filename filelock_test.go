//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package bearer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A lock file removed and created anew while a process waits on the old
// one must not leave that process holding a lock that guards nothing: once
// the old file's lock is free it locks the new file, which then excludes
// every other process.
func TestFileLockNoticesReplacedLockFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token.json")
	store := NewFileStore(path)
	ctx := t.Context()
	a, err := store.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// b opens the lock file and finds it locked by a; only then is the
	// file removed and created anew.
	busy := make(chan struct{}, 1)
	testHookLockBusy = func() {
		select {
		case busy <- struct{}{}:
		default:
		}
	}
	defer func() { testHookLockBusy = nil }()
	bLease := make(chan Lease, 1)
	go func() {
		l, err := NewFileStore(path).Lock(ctx)
		if err != nil {
			t.Error(err)
		}
		bLease <- l
	}()
	<-busy
	if err := os.Remove(path + ".lock"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".lock", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	b := <-bLease
	if b == nil {
		t.FailNow()
	}
	defer b.Unlock(ctx)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if c, err := NewFileStore(path).Lock(short); err == nil {
		c.Unlock(ctx)
		t.Fatal("a third process locked the file while b held the lock")
	}
}

// A holder whose lock file was removed under it writes nothing: another
// process may hold a lock on a new file at the same path.
func TestFileLeaseWritesNothingAfterLockFileRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token.json")
	store := NewFileStore(path)
	ctx := t.Context()
	old := fsToken()
	if err := store.Save(ctx, old); err != nil {
		t.Fatal(err)
	}
	lease, err := store.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Unlock(ctx)
	if err := os.Remove(path + ".lock"); err != nil {
		t.Fatal(err)
	}
	if _, err := lease.Begin(ctx, old); !errors.Is(err, ErrLockLost) {
		t.Errorf("Begin after the lock file was removed = %v, want ErrLockLost", err)
	}
	next := fsToken()
	next.RefreshToken = "rt-next"
	if err := lease.CompareAndSwap(ctx, old, next); !errors.Is(err, ErrLockLost) {
		t.Errorf("CompareAndSwap after the lock file was removed = %v, want ErrLockLost", err)
	}
	got, err := store.Load(ctx)
	if err != nil || got.RefreshToken != old.RefreshToken {
		t.Errorf("Load = %v, %v; want the old token, untouched", got, err)
	}
}

// A symbolic link at the lock path, dangling or live, is refused: Lock
// never creates or opens what it points to.
func TestFileLockRefusesSymlink(t *testing.T) {
	for _, live := range []bool{false, true} {
		dir := t.TempDir()
		path := filepath.Join(dir, "token.json")
		target := filepath.Join(dir, "elsewhere")
		if live {
			if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink(target, path+".lock"); err != nil {
			t.Fatal(err)
		}
		if l, err := NewFileStore(path).Lock(t.Context()); err == nil {
			l.Unlock(t.Context())
			t.Errorf("live=%v: Lock through a symbolic link succeeded, want an error", live)
		}
		b, err := os.ReadFile(target)
		switch {
		case !live && !errors.Is(err, os.ErrNotExist):
			t.Errorf("dangling link: its target was created (%v)", err)
		case live && string(b) != "keep":
			t.Errorf("live link: its target now holds %q", b)
		}
	}
}
