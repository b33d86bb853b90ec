package bearer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tokenkit/bearer/bearertest"
)

// Saves that keep failing leave the store ever further behind: the Source
// must neither adopt nor refresh from a token whose refresh token it spent.
func TestNoDoubleSpendAfterFailedSaves(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	store := newSignalStore(NewMemoryStore(f.token()))
	store.fail.Store(1 << 20) // every save fails
	src := f.source(store)
	ctx := context.Background()
	tok, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{tok.AccessToken: 0}
	for i := 1; i <= 4; i++ {
		next, err := src.Refresh(ctx, tok)
		if err != nil {
			t.Errorf("refresh %d: %v", i, err)
			break
		}
		if j, ok := seen[next.AccessToken]; ok {
			t.Errorf("refresh %d returned the token of step %d again (an older token whose refresh token is spent)", i, j)
		}
		seen[next.AccessToken] = i
		tok = next
	}
	st := f.srv.Stats()
	if st.ReuseAttempts != 0 || st.Revocations != 0 {
		t.Errorf("server saw ReuseAttempts=%d Revocations=%d, want 0", st.ReuseAttempts, st.Revocations)
	}
}

// fmt of a *Source shows no refresh token, not even the spent ones it
// remembers.
func TestSourcePrintsNoRefreshToken(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	src := f.source(NewMemoryStore(f.token()))
	ctx := context.Background()
	tok, _ := src.Token(ctx)
	if _, err := src.Refresh(ctx, tok); err != nil {
		t.Fatal(err)
	}
	out := fmt.Sprintf("%+v", src)
	if strings.Contains(out, f.grant.RefreshToken) {
		t.Errorf("fmt %%+v of *Source contains the refresh token: %.200s...", out[strings.Index(out, "spent"):])
	}
}

var _ = sync.Mutex{}
