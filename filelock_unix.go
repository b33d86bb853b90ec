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

// lockFile takes an exclusive flock on the folder dir, and polls while
// another holder has it: flock cannot wait on a context. The lock belongs
// to the open folder, so the OS drops it when the holder dies.
//
// The folder, not a lock file beside the token: a lock file can be
// deleted while a process holds its lock, and the next process then locks
// a new file and spends the same refresh token. The folder cannot go away
// while it holds the token file. After locking, the open folder must still
// be the one at dir (not renamed and replaced meanwhile); if not, it
// starts over. Nothing is created.
func lockFile(ctx context.Context, dir string) (*fileLock, error) {
	wait := time.Millisecond
	for {
		f, err := os.Open(dir)
		if err != nil {
			return nil, err
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			l := &fileLock{f: f, path: dir}
			if l.held() {
				return l, nil
			}
			f.Close() // replaced while this process waited
			continue
		}
		if testHookLockBusy != nil {
			testHookLockBusy()
		}
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return nil, fmt.Errorf("locking the folder: %w", err)
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

// testHookLockBusy, if set, is called when the folder was found locked by
// another holder.
var testHookLockBusy func()

// fileLock is a held lock on the open folder f at path.
type fileLock struct {
	f    *os.File
	path string
}

// held reports whether the lock still guards path: the folder locked is
// still the one at path.
func (l *fileLock) held() bool {
	fi, err := l.f.Stat()
	if err != nil {
		return false
	}
	pi, err := os.Stat(l.path)
	return err == nil && os.SameFile(fi, pi)
}

func (l *fileLock) unlock() error {
	uerr := syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	return errors.Join(uerr, l.f.Close())
}
