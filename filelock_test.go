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

// lockExcluded fails t unless another FileStore on path cannot lock now.
func lockExcluded(t *testing.T, path, why string) {
	t.Helper()
	short, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if c, err := NewFileStore(path).Lock(short); err == nil {
		c.Unlock(t.Context())
		t.Fatalf("another process locked the store while %s", why)
	}
}

// Deleting what looks like a lock file while a process holds the lock (a
// clean-up job, an operator) must not let a second process in: it would
// spend the holder's refresh token.
func TestFileLockSurvivesDeletedLockFiles(t *testing.T) {
	t.Parallel() // waits on the disk; touches nothing shared
	path := filepath.Join(t.TempDir(), "token.json")
	a, err := NewFileStore(path).Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Unlock(t.Context())
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*lock*"))
	for _, m := range append(matches, path+".lock") {
		os.Remove(m)
	}
	lockExcluded(t, path, "a held the lock and lock files were deleted")
}

// A folder renamed away and made anew while a process waits on the old
// one must not leave that process holding a lock that guards nothing: once
// the old folder's lock is free it locks the new one, which then excludes
// every other process. The holder of the old one writes nothing.
func TestFileLockNoticesReplacedFolder(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "store")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "token.json")
	store := NewFileStore(path)
	ctx := t.Context()
	old := fsToken()
	if err := store.Save(ctx, old); err != nil {
		t.Fatal(err)
	}
	a, err := store.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// b opens the folder and finds it locked by a; only then is the
	// folder replaced.
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
	if err := os.Rename(dir, filepath.Join(parent, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	next := fsToken()
	next.RefreshToken = "rt-next"
	if err := a.CompareAndSwap(ctx, old, next); !errors.Is(err, ErrLockLost) {
		t.Errorf("CompareAndSwap under a replaced folder = %v, want ErrLockLost", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the holder of the replaced folder wrote into the new one (%v)", err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	b := <-bLease
	if b == nil {
		t.FailNow()
	}
	defer b.Unlock(ctx)
	lockExcluded(t, path, "b held the lock on the new folder")
}

// The lock creates and opens no file: a symbolic link at the old lock
// path, dangling or live, is left as it is.
func TestFileLockTouchesNoLockFile(t *testing.T) {
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
		l, err := NewFileStore(path).Lock(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		l.Unlock(t.Context())
		b, err := os.ReadFile(target)
		switch {
		case !live && !errors.Is(err, os.ErrNotExist):
			t.Errorf("dangling link: its target was created (%v)", err)
		case live && string(b) != "keep":
			t.Errorf("live link: its target now holds %q", b)
		}
	}
}
