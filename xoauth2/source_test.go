package xoauth2_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
	"github.com/tokenkit/bearer/xoauth2"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// oauth2Context makes x/oauth2 send its token requests with srv's client,
// whose connections srv.Close closes, so that no keep-alive goroutine
// outlives a test.
func oauth2Context(srv *bearertest.Server) context.Context {
	return context.WithValue(context.Background(), oauth2.HTTPClient, srv.Client())
}

// get requests url with client and returns the status, failing the test on
// an error.
func get(t *testing.T, client *http.Client, url string) int {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("Get(%s): %v", url, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// newSource returns a bearer.Source against srv holding tok.
func newSource(t *testing.T, srv *bearertest.Server, tok *bearer.Token) *bearer.Source {
	t.Helper()
	src := bearer.NewSource(bearer.Config{
		TokenURL:     srv.TokenURL(),
		ClientID:     bearertest.DefaultClientID,
		ClientSecret: bearertest.DefaultClientSecret,
		HTTPClient:   srv.Client(),
	}, bearer.NewMemoryStore(tok))
	t.Cleanup(func() { src.Close() })
	return src
}

func TestTokenSourceRefreshesThroughBearer(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	g := srv.Issue()
	// Expired an hour ago, so the first Token call refreshes.
	src := newSource(t, srv, &bearer.Token{AccessToken: g.AccessToken, RefreshToken: g.RefreshToken, Expiry: time.Now().Add(-time.Hour)})

	ts := xoauth2.TokenSource(context.Background(), src)
	client := &http.Client{Transport: &oauth2.Transport{Source: ts, Base: srv.Client().Transport}}
	for i := range 3 {
		if got := get(t, client, srv.APIURL()+"hello"); got != http.StatusOK {
			t.Errorf("request %d: status = %d, want 200", i, got)
		}
	}
	if got := srv.Stats().Refreshes; got != 1 {
		t.Errorf("refreshes = %d, want 1", got)
	}

	tok, err := ts.Token()
	if err != nil {
		t.Fatalf("Token() error = %v", err)
	}
	head, _ := srv.Head(g.Family)
	if tok.AccessToken != head.AccessToken {
		t.Error("Token() is not the family's head")
	}
	if tok.RefreshToken != "" {
		t.Error("Token() hands the single-use refresh token to x/oauth2 code")
	}
	if !tok.Valid() || tok.Type() != "Bearer" {
		t.Errorf("Token() Valid() = %v, Type() = %q; want true, Bearer", tok.Valid(), tok.Type())
	}
	info, _ := tok.Extra("info").(map[string]any)
	if info["family"] != g.Family {
		t.Errorf(`Extra("info") = %v, want family %s`, tok.Extra("info"), g.Family)
	}
	again, _ := ts.Token()
	if again != tok {
		t.Error("Token() converted the same bearer token twice; want the same *oauth2.Token")
	}
}

func TestTokenSourceReportsReauthorize(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	g := srv.Issue()
	srv.RevokeFamily(g.Family)
	src := newSource(t, srv, &bearer.Token{AccessToken: g.AccessToken, RefreshToken: g.RefreshToken, Expiry: time.Now().Add(-time.Hour)})

	client := &http.Client{Transport: &oauth2.Transport{
		Source: xoauth2.TokenSource(context.Background(), src),
		Base:   srv.Client().Transport,
	}}
	_, err := client.Get(srv.APIURL() + "hello")
	if !errors.Is(err, bearer.ErrReauthorize) {
		t.Errorf("Get() error = %v, want one matching bearer.ErrReauthorize", err)
	}
}

func TestTokenSourceKeepsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ts := xoauth2.TokenSource(ctx, tokenSourceFunc(func(ctx context.Context) (*bearer.Token, error) {
		return nil, ctx.Err()
	}))
	if _, err := ts.Token(); !errors.Is(err, context.Canceled) {
		t.Errorf("Token() error = %v, want context.Canceled", err)
	}
}

// tokenSourceFunc is a bearer.TokenSource made of a function.
type tokenSourceFunc func(context.Context) (*bearer.Token, error)

func (f tokenSourceFunc) Token(ctx context.Context) (*bearer.Token, error) { return f(ctx) }

// TestOAuth2ConfigRefreshes has x/oauth2 itself refresh against bearertest
// (form-encoded, credentials in the body) and bearer.Transport send its
// tokens, once with each kind of token response.
func TestOAuth2ConfigRefreshes(t *testing.T) {
	for _, form := range []bool{false, true} {
		name := map[bool]string{false: "json response", true: "form response"}[form]
		t.Run(name, func(t *testing.T) {
			srv := bearertest.NewServer(bearertest.Config{FormResponses: form})
			defer srv.Close()
			g := srv.Issue()
			conf := &oauth2.Config{
				ClientID:     bearertest.DefaultClientID,
				ClientSecret: bearertest.DefaultClientSecret,
				Endpoint:     oauth2.Endpoint{TokenURL: srv.TokenURL(), AuthStyle: oauth2.AuthStyleInParams},
			}
			expired := &oauth2.Token{AccessToken: g.AccessToken, RefreshToken: g.RefreshToken, Expiry: time.Now().Add(-time.Hour)}
			src := xoauth2.FromOAuth2(conf.TokenSource(oauth2Context(srv), expired))

			client := &http.Client{Transport: &bearer.Transport{Source: src, Base: srv.Client().Transport}}
			for i := range 3 {
				if got := get(t, client, srv.APIURL()+"hello"); got != http.StatusOK {
					t.Errorf("request %d: status = %d, want 200", i, got)
				}
			}
			if got := srv.Stats().Refreshes; got != 1 {
				t.Errorf("refreshes = %d, want 1", got)
			}
			tok, err := src.Token(context.Background())
			if err != nil {
				t.Fatalf("Token() error = %v", err)
			}
			head, _ := srv.Head(g.Family)
			if tok.AccessToken != head.AccessToken || tok.RefreshToken != head.RefreshToken {
				t.Error("Token() is not the family's head")
			}
			if want := `{"family":"` + g.Family + `"}`; string(tok.Info) != want {
				t.Errorf("Info = %s, want %s", tok.Info, want)
			}
			again, _ := src.Token(context.Background())
			if again != tok {
				t.Error("Token() converted the same oauth2 token twice; want the same *bearer.Token")
			}
		})
	}
}

func TestFromOAuth2ClientCredentials(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	cc := clientcredentials.Config{
		ClientID:     bearertest.DefaultClientID,
		ClientSecret: bearertest.DefaultClientSecret,
		TokenURL:     srv.TokenURL(),
		AuthStyle:    oauth2.AuthStyleInParams,
	}
	client := &http.Client{Transport: &bearer.Transport{
		Source: xoauth2.FromOAuth2(cc.TokenSource(oauth2Context(srv))),
		Base:   srv.Client().Transport,
	}}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			resp, err := client.Get(srv.APIURL() + "hello")
			if err != nil {
				t.Errorf("Get() error = %v", err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status = %d, want 200", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if got := srv.Stats().ClientCredentials; got != 1 {
		t.Errorf("client_credentials grants = %d, want 1", got)
	}
}

// seqSource is an oauth2.TokenSource that returns its tokens in turn,
// repeating the last.
type seqSource struct {
	calls atomic.Int32
	toks  []*oauth2.Token
}

func (s *seqSource) Token() (*oauth2.Token, error) {
	i := int(s.calls.Add(1)) - 1
	return s.toks[min(i, len(s.toks)-1)], nil
}

// TestFromOAuth2After401 shows what bearer.Transport's one retry after a
// 401 does with an x/oauth2 source: it resends only when the source has a
// newer token by then.
func TestFromOAuth2After401(t *testing.T) {
	tests := []struct {
		name         string
		newer        bool
		wantStatus   int
		wantRequests int
	}{
		{name: "source has a newer token", newer: true, wantStatus: http.StatusOK, wantRequests: 2},
		{name: "source stands by the token", newer: false, wantStatus: http.StatusUnauthorized, wantRequests: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := bearertest.NewServer(bearertest.Config{})
			defer srv.Close()
			revoked, live := srv.Issue(), srv.Issue()
			srv.RevokeAccess(revoked.AccessToken)
			ts := &seqSource{toks: []*oauth2.Token{{AccessToken: revoked.AccessToken}}}
			if tt.newer {
				ts.toks = append(ts.toks, &oauth2.Token{AccessToken: live.AccessToken})
			}
			client := &http.Client{Transport: &bearer.Transport{Source: xoauth2.FromOAuth2(ts), Base: srv.Client().Transport}}
			// A body that can be replayed, as the retry requires.
			resp, err := client.Post(srv.APIURL()+"hello", "text/plain", strings.NewReader("payload"))
			if err != nil {
				t.Fatalf("Post() error = %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := srv.Stats().APIRequests; got != tt.wantRequests {
				t.Errorf("API requests = %d, want %d", got, tt.wantRequests)
			}
		})
	}
}

func TestFromOAuth2Errors(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	g := srv.Issue()
	srv.RevokeFamily(g.Family)
	conf := &oauth2.Config{
		ClientID:     bearertest.DefaultClientID,
		ClientSecret: bearertest.DefaultClientSecret,
		Endpoint:     oauth2.Endpoint{TokenURL: srv.TokenURL(), AuthStyle: oauth2.AuthStyleInParams},
	}
	expired := &oauth2.Token{RefreshToken: g.RefreshToken, Expiry: time.Now().Add(-time.Hour)}
	src := xoauth2.FromOAuth2(conf.TokenSource(oauth2Context(srv), expired))

	_, err := src.Token(context.Background())
	if !errors.Is(err, bearer.ErrReauthorize) {
		t.Errorf("Token() error = %v, want one matching bearer.ErrReauthorize", err)
	}
	var be *bearer.RetrieveError
	if !errors.As(err, &be) || be.StatusCode != http.StatusBadRequest || be.ErrorCode != "invalid_grant" {
		t.Errorf("Token() error = %#v, want a *bearer.RetrieveError with status 400, invalid_grant", err)
	}
	var oe *oauth2.RetrieveError
	if !errors.As(err, &oe) {
		t.Errorf("Token() error = %v, want one holding an *oauth2.RetrieveError", err)
	}
	if msg := err.Error(); strings.Contains(msg, "{") || strings.Contains(msg, g.RefreshToken) {
		t.Errorf("Token() error = %q, want no response body and no token", msg)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := src.Token(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Token(cancelled ctx) error = %v, want context.Canceled", err)
	}
}

func TestFromOAuth2TransportError(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	url := srv.TokenURL()
	ctx := oauth2Context(srv)
	srv.Close()
	cc := clientcredentials.Config{ClientID: "id", ClientSecret: "s3cret", TokenURL: url}
	_, err := xoauth2.FromOAuth2(cc.TokenSource(ctx)).Token(context.Background())
	var be *bearer.RetrieveError
	if err == nil || errors.As(err, &be) || errors.Is(err, bearer.ErrReauthorize) {
		t.Fatalf("Token() error = %v, want a transport error, not an answer", err)
	}
	if !strings.HasPrefix(err.Error(), "xoauth2: ") {
		t.Errorf("Token() error = %q, want the prefix xoauth2: ", err)
	}
}
