package examples_test

import (
	"testing"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newSource returns a Source for srv holding a fresh authorization whose
// access token has already expired, so that the first request refreshes,
// as a program started the next morning would, and the authorization's
// family. cfg's endpoint and credentials are filled in.
func newSource(srv *bearertest.Server, cfg bearer.Config) (*bearer.Source, string) {
	g := srv.Issue()
	cfg.TokenURL = srv.TokenURL()
	cfg.ClientID = bearertest.DefaultClientID
	cfg.ClientSecret = bearertest.DefaultClientSecret
	cfg.HTTPClient = srv.Client()
	return bearer.NewSource(cfg, bearer.NewMemoryStore(&bearer.Token{
		AccessToken:  g.AccessToken,
		RefreshToken: g.RefreshToken,
		Expiry:       time.Now().Add(-time.Minute),
	})), g.Family
}
