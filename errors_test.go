package bearer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
)

// Every error says "bearer:" once, however deep the chain, and still
// unwraps to the typed errors a caller branches on.
func TestErrorsReadOnce(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	ctx := t.Context()
	missing := NewSource(f.config(), NewFileStore(filepath.Join(t.TempDir(), "token.json")))
	defer missing.Close()

	spent := f.token()
	f.source(NewMemoryStore(f.token())).Refresh(ctx, f.token()) // spends it
	interruptedStore := NewFileStore(filepath.Join(t.TempDir(), "token.json"))
	if err := interruptedStore.Save(ctx, spent); err != nil {
		t.Fatal(err)
	}
	lease, err := interruptedStore.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lease.Begin(ctx, spent)
	lease.Unlock(ctx)
	interrupted := f.source(interruptedStore)

	unreadable := filepath.Join(t.TempDir(), "token.json")
	if err := os.Mkdir(unreadable, 0o700); err != nil {
		t.Fatal(err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	tests := []struct {
		name string
		err  func() error
		want []error
	}{
		{"no token stored", func() error { _, err := missing.Token(ctx); return err }, []error{ErrNoToken}},
		{"interrupted and rejected", func() error {
			f.clock.Advance(101 * time.Second)
			_, err := interrupted.Token(ctx)
			return err
		}, []error{ErrInterrupted, ErrReauthorize}},
		{"unreadable store", func() error {
			_, err := f.source(NewFileStore(unreadable)).Token(ctx)
			return err
		}, nil},
		{"cancelled", func() error { _, err := missing.Token(cancelled); return err }, []error{context.Canceled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err()
			if err == nil {
				t.Fatal("no error")
			}
			if n := strings.Count(err.Error(), "bearer:"); n != 1 || !strings.HasPrefix(err.Error(), "bearer: ") {
				t.Errorf("error says \"bearer:\" %d times: %q", n, err)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("error %q does not match %v", err, w)
				}
			}
		})
	}
}
