//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package bearer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockFile takes an exclusive flock on path, creating it, and polls while
// another holder has it: flock cannot wait on a context. The lock belongs
// to the open file, so the OS drops it when the holder dies.
//
// A lock is only as good as the file it is on: if path was removed or
// replaced while this process waited for the lock on the file it opened,
// another process may have locked the new file at path meanwhile. So after
// locking, the open file must still be the one at path; if not, it starts
// over. A symbolic link at path is refused, not followed.
func lockFile(ctx context.Context, path string) (*fileLock, error) {
	wait := time.Millisecond
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			if errors.Is(err, syscall.ELOOP) {
				return nil, fmt.Errorf("lock file %s is a symbolic link: refusing to follow it", path)
			}
			return nil, err
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			l := &fileLock{f: f, path: path}
			if l.held() {
				return l, nil
			}
			// Removed or replaced while this process waited: this lock
			// guards nothing.
			f.Close()
			continue
		}
		if testHookLockBusy != nil {
			testHookLockBusy()
		}
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return nil, fmt.Errorf("locking: %w", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("waiting for the lock: %w", context.Cause(ctx))
		case <-t.C:
		}
		wait = min(wait*2, 50*time.Millisecond)
	}
}

// testHookLockBusy, if set, is called when an opened lock file was found
// locked by another holder.
var testHookLockBusy func()

// fileLock is a held lock on the open file f at path.
type fileLock struct {
	f    *os.File
	path string
}

// held reports whether the lock still guards path: the file locked is
// still the one at path, not removed or replaced since.
func (l *fileLock) held() bool {
	fi, err := l.f.Stat()
	if err != nil {
		return false
	}
	pi, err := os.Lstat(l.path)
	return err == nil && os.SameFile(fi, pi)
}

func (l *fileLock) unlock() error {
	uerr := syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	return errors.Join(uerr, l.f.Close())
}
