package bearer_test

import (
	"path/filepath"
	"testing"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/internal/storetest"
)

func TestStoresKeepTheContract(t *testing.T) {
	t.Parallel() // waits on the disk; touches nothing shared
	t.Run("MemoryStore", func(t *testing.T) {
		storetest.Run(t, func(*testing.T) bearer.Store { return bearer.NewMemoryStore(nil) })
	})
	t.Run("FileStore", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) bearer.Store {
			return bearer.NewFileStore(filepath.Join(t.TempDir(), "token.json"))
		})
	})
}
