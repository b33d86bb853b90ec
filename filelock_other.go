//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package bearer

import (
	"context"
	"fmt"
	"os"
	"sync"
)

// Without flock, the lock covers this process only.
var (
	fileLocksMu sync.Mutex
	fileLocks   = map[string]chan struct{}{}
)

func lockFile(ctx context.Context, path string) (*fileLock, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	fileLocksMu.Lock()
	ch, ok := fileLocks[path]
	if !ok {
		ch = make(chan struct{}, 1)
		fileLocks[path] = ch
	}
	fileLocksMu.Unlock()
	select {
	case ch <- struct{}{}:
		return &fileLock{ch: ch}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the lock: %w", context.Cause(ctx))
	}
}

// fileLock is a held lock of this process.
type fileLock struct {
	ch   chan struct{}
	once sync.Once
}

func (l *fileLock) held() bool { return true }

func (l *fileLock) unlock() error {
	l.once.Do(func() { <-l.ch })
	return nil
}
