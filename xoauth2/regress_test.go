package xoauth2_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
	"github.com/tokenkit/bearer/xoauth2"
	"golang.org/x/oauth2"
)

// The oauth2.Token that TokenSource hands out must not carry the Source's
// single-use refresh token: the type prints it in clear, and x/oauth2 code
// spends it on its own (oauth2.Config.TokenSource/Client, or any library
// that persists and refreshes the *oauth2.Token it is given).
func TestTokenSourceKeepsRefreshTokenToItself(t *testing.T) {
	clock := bearertest.NewClock(time.Now())
	srv := bearertest.NewServer(bearertest.Config{AccessLifetime: 5 * time.Second, Now: clock.Now})
	defer srv.Close()
	g := srv.Issue()
	src := bearer.NewSource(bearer.Config{
		TokenURL: srv.TokenURL(), ClientID: bearertest.DefaultClientID, ClientSecret: bearertest.DefaultClientSecret,
		HTTPClient: srv.Client(), Now: clock.Now,
	}, bearer.NewMemoryStore(&bearer.Token{AccessToken: g.AccessToken, RefreshToken: g.RefreshToken, Expiry: g.Expiry, Obtained: clock.Now()}))
	defer src.Close()

	tok, err := xoauth2.TokenSource(context.Background(), src).Token()
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprintf("%v", tok); strings.Contains(s, g.RefreshToken) {
		t.Errorf("the oauth2.Token prints the refresh token in clear: %s", s)
	}
	// x/oauth2 code given this token would refresh it itself: it has no
	// refresh token to do that with.
	conf := &oauth2.Config{ClientID: bearertest.DefaultClientID, ClientSecret: bearertest.DefaultClientSecret,
		Endpoint: oauth2.Endpoint{TokenURL: srv.TokenURL()}}
	conf.TokenSource(context.WithValue(context.Background(), oauth2.HTTPClient, srv.Client()), tok).Token()
	if n := srv.Stats().TokenRequests; n != 0 {
		t.Errorf("x/oauth2 code sent %d token requests with the token TokenSource handed out, want 0", n)
	}
	clock.Advance(6 * time.Second)
	_, err = src.Token(context.Background())
	st := srv.Stats()
	if st.ReuseAttempts != 0 || st.Revocations != 0 {
		t.Errorf("refresh token spent twice (reuse=%d, revocations=%d); bearer.Source now fails: %v", st.ReuseAttempts, st.Revocations, err)
	}
}
