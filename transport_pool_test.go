package bearer_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
)

// The 401 answer's connection goes back to the pool before the refresh:
// with one connection per host, shared by the API and the token endpoint,
// the refresh would otherwise wait for a connection its own caller holds.
func TestTransportFreesConnectionBeforeRefresh(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	pool := &http.Transport{MaxConnsPerHost: 1}
	defer pool.CloseIdleConnections()
	g := srv.Issue()
	src := bearer.NewSource(bearer.Config{
		TokenURL:       srv.TokenURL(),
		ClientID:       bearertest.DefaultClientID,
		ClientSecret:   bearertest.DefaultClientSecret,
		HTTPClient:     &http.Client{Transport: pool},
		RefreshTimeout: 5 * time.Second,
	}, bearer.NewMemoryStore(tokenFromGrant(g)))
	defer src.Close()
	client := &http.Client{Transport: &bearer.Transport{Source: src, Base: pool}}

	srv.RevokeAccess(g.AccessToken)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.APIURL()+"x", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("request after an early revocation: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status = %d, want 200 after one refresh", resp.StatusCode)
	}
	if n := srv.Stats().Refreshes; n != 1 {
		t.Errorf("refreshes = %d, want 1", n)
	}
}
