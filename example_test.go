package bearer_test

import (
	"context"
	"errors"
	"expvar"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
)

// tokenFromGrant turns what bearertest issued into the Token a user would
// have stored after authorizing the app.
func tokenFromGrant(g bearertest.Grant) *bearer.Token {
	return &bearer.Token{
		AccessToken:   g.AccessToken,
		TokenType:     "Bearer",
		RefreshToken:  g.RefreshToken,
		Expiry:        g.Expiry,
		RefreshExpiry: g.RefreshExpiry,
	}
}

// The OpenTicket setup: credentials from the environment, the token kept in
// a file, and a Transport that authenticates every request. bearertest stands
// in for OpenTicket here; in production TokenURL stays empty.
func Example() {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	os.Setenv("OAUTH_CLIENT_ID", bearertest.DefaultClientID)
	os.Setenv("OAUTH_CLIENT_SECRET", bearertest.DefaultClientSecret)

	dir, _ := os.MkdirTemp("", "bearer-example")
	defer os.RemoveAll(dir)
	store := bearer.NewFileStore(filepath.Join(dir, "token.json"))
	// Once, after the user authorized the app:
	store.Save(context.Background(), tokenFromGrant(srv.Issue()))

	src := bearer.NewSource(bearer.Config{
		TokenURL:     srv.TokenURL(), // "" in production: OpenTicket
		ClientID:     os.Getenv("OAUTH_CLIENT_ID"),
		ClientSecret: os.Getenv("OAUTH_CLIENT_SECRET"),
	}, store)
	defer src.Close()
	client := &http.Client{Transport: &bearer.Transport{Source: src}}

	resp, err := client.Get(srv.APIURL() + "tickets")
	if errors.Is(err, bearer.ErrReauthorize) {
		fmt.Println("authorize the app again")
		return
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}

// A Source refreshes when the token expires and saves the new one before
// anyone uses it; a restart picks it up from the store.
func ExampleNewSource() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	srv := bearertest.NewServer(bearertest.Config{AccessLifetime: time.Hour, Now: clock})
	defer srv.Close()
	store := bearer.NewMemoryStore(tokenFromGrant(srv.Issue()))
	cfg := bearer.Config{
		TokenURL:     srv.TokenURL(),
		ClientID:     bearertest.DefaultClientID,
		ClientSecret: bearertest.DefaultClientSecret,
		Now:          clock,
	}
	src := bearer.NewSource(cfg, store)
	defer src.Close()

	ctx := context.Background()
	first, _ := src.Token(ctx)
	now = now.Add(2 * time.Hour) // the access token has expired
	second, _ := src.Token(ctx)
	saved, _ := store.Load(ctx)

	fmt.Println("rotated:", first.RefreshToken != second.RefreshToken)
	fmt.Println("saved before use:", saved.RefreshToken == second.RefreshToken)
	fmt.Println("server refreshes:", srv.Stats().Refreshes)
	// Output:
	// rotated: true
	// saved before use: true
	// server refreshes: 1
}

// The first token, from a person: send them to AuthCodeURL, check the state
// the redirect brings back, and exchange its code with the same verifier.
// bearertest approves at once; an http.Client plays the browser.
func ExampleConfig_AuthCodeURL() {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	// The app's redirect URI receives the code.
	redirects := make(chan *http.Request, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		redirects <- r
		fmt.Fprintln(w, "done: you may close this window")
	}))
	defer app.Close()

	cfg := bearer.Config{
		AuthURL:      srv.AuthURL(), // no default: every server names its own
		TokenURL:     srv.TokenURL(),
		ClientID:     bearertest.DefaultClientID,
		ClientSecret: bearertest.DefaultClientSecret,
		Scopes:       []string{"tickets"},
	}
	state, verifier := bearer.GenerateVerifier(), bearer.GenerateVerifier()
	authURL, err := cfg.AuthCodeURL(state, app.URL+"/callback", verifier)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp, err := http.Get(authURL) // the person's browser
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()

	r := <-redirects
	if r.FormValue("state") != state {
		fmt.Println("a forged redirect: ignore it")
		return
	}
	tok, err := cfg.Exchange(context.Background(), r.FormValue("code"), app.URL+"/callback", verifier)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("has refresh token:", tok.RefreshToken != "")
	// Output: has refresh token: true
}

// Machine-to-machine tokens come from the client_credentials grant; the
// Source fetches a new one when the old one expires.
func ExampleConfig_clientCredentials() {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	src := bearer.NewSource(bearer.Config{
		TokenURL:          srv.TokenURL(),
		ClientID:          bearertest.DefaultClientID,
		ClientSecret:      bearertest.DefaultClientSecret,
		ClientCredentials: true,
		Scopes:            []string{"tickets:read"},
	}, nil)
	defer src.Close()
	client := &http.Client{Transport: &bearer.Transport{Source: src}}
	resp, err := client.Get(srv.APIURL() + "events")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status, "after", srv.Stats().ClientCredentials, "token request")
	// Output: 200 OK after 1 token request
}

// Tokens printed by accident show no secret.
func ExampleToken_String() {
	tok := &bearer.Token{
		AccessToken:  "at-very-secret",
		TokenType:    "Bearer",
		RefreshToken: "rt-very-secret",
		Expiry:       time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
	}
	fmt.Println(tok)
	fmt.Printf("%#v\n", bearer.Config{ClientID: "app", ClientSecret: "cs-very-secret"})
	// Output:
	// bearer.Token{AccessToken:[redacted] TokenType:"Bearer" RefreshToken:[redacted] Expiry:2026-03-01T12:00:00Z RefreshExpiry:none}
	// bearer.Config{TokenURL:"https://auth.openticket.tech/tokens" ClientID:"app" ClientSecret:[redacted] Encoding:json AuthStyle:0 ClientCredentials:false}
}

// Stats and Hooks feed any metrics system; here, the standard expvar.
func ExampleSource_Stats() {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	refreshes := new(expvar.Int)
	src := bearer.NewSource(bearer.Config{
		TokenURL:          srv.TokenURL(),
		ClientID:          bearertest.DefaultClientID,
		ClientSecret:      bearertest.DefaultClientSecret,
		ClientCredentials: true,
		Hooks: bearer.Hooks{
			RefreshFinished: func(ctx context.Context, d time.Duration, err error) {
				if err == nil {
					refreshes.Add(1)
				}
			},
		},
	}, nil)
	defer src.Close()
	// expvar.Publish("bearer", expvar.Func(func() any { return src.Stats() })) in a real program.
	stats := expvar.Func(func() any { return src.Stats() })

	src.Token(context.Background())
	fmt.Println("hook counted:", refreshes.Value())
	fmt.Println("stats refreshes:", stats.Value().(bearer.Stats).Refreshes)
	// Output:
	// hook counted: 1
	// stats refreshes: 1
}
