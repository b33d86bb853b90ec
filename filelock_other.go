//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package bearer

import (
	"context"
	"fmt"
	"sync"
)

// Without flock, the lock covers this process only.
var (
	fileLocksMu sync.Mutex
	fileLocks   = map[string]chan struct{}{}
)

func lockFile(ctx context.Context, path string) (unlock func() error, err error) {
	fileLocksMu.Lock()
	ch, ok := fileLocks[path]
	if !ok {
		ch = make(chan struct{}, 1)
		fileLocks[path] = ch
	}
	fileLocksMu.Unlock()
	select {
	case ch <- struct{}{}:
		var once sync.Once
		return func() error { once.Do(func() { <-ch }); return nil }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the lock: %w", context.Cause(ctx))
	}
}
