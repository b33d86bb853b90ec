package main

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
)

// The issue's story: an import run again from shell history, after the
// chain had rotated, must not put the spent refresh token in place of the
// live one.
func TestImportReplayedFromHistory(t *testing.T) {
	t.Parallel()
	f := newFixture(t, bearertest.Config{})
	g := f.srv.Issue()
	wantCode(t, f.run(t, string(g.JSON()), "import", "--store", f.store, "--token-url", f.srv.TokenURL()), exitOK)
	f.clock.Advance(2 * accessLife)
	wantCode(t, f.run(t, "", f.client("token")...), exitOK) // rotates

	r := f.run(t, string(g.JSON()), "import", "--store", f.store, "--token-url", f.srv.TokenURL())
	wantCode(t, r, exitFailure)
	for _, want := range []string{
		"issued by:      " + f.srv.TokenURL(),
		"client:         " + testClientID,
		"refusing to replace the token stored in " + f.store + ": its refresh token is still live",
		"obtained:       2026-01-02 05:04:05 UTC (0s ago)",
		"refresh token:  present (redacted), expires 2026-01-03 05:04:05 UTC",
		"--force",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	head, alive := f.srv.Head(g.Family)
	noSecrets(t, r, g.AccessToken, g.RefreshToken, head.AccessToken, head.RefreshToken)
	if got := f.stored(t).RefreshToken; got != head.RefreshToken {
		t.Fatalf("the store no longer holds the live refresh token")
	}

	// The chain lives on: token uses the live token, and nothing was spent twice.
	f.clock.Advance(2 * accessLife)
	wantCode(t, f.run(t, "", f.client("token")...), exitOK)
	if st := f.srv.Stats(); !alive || st.ReuseAttempts != 0 || st.Revocations != 0 {
		t.Errorf("server: reuse %d, revocations %d; want none", st.ReuseAttempts, st.Revocations)
	}
}

func TestImportGuard(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		stored   func(t *testing.T, f *fixture) // what the store holds before the import
		force    bool
		wantCode int
		replaced bool
	}{
		{name: "empty store", stored: func(*testing.T, *fixture) {}, wantCode: exitOK, replaced: true},
		{name: "live token", stored: func(t *testing.T, f *fixture) { f.seed(t, f.srv.Issue()) }, wantCode: exitFailure},
		{name: "live token forced", stored: func(t *testing.T, f *fixture) { f.seed(t, f.srv.Issue()) }, force: true, wantCode: exitOK, replaced: true},
		{name: "expired refresh token", stored: func(t *testing.T, f *fixture) {
			f.seed(t, f.srv.Issue())
			f.clock.Advance(25 * time.Hour)
		}, wantCode: exitOK, replaced: true},
		{name: "no refresh token", stored: func(t *testing.T, f *fixture) {
			bearer.NewFileStore(f.store).Save(t.Context(), &bearer.Token{AccessToken: "at-only"})
		}, wantCode: exitOK, replaced: true},
		{name: "unreadable store", stored: func(t *testing.T, f *fixture) { os.WriteFile(f.store, []byte("{torn"), 0o600) }, wantCode: exitFailure},
		{name: "unreadable store forced", stored: func(t *testing.T, f *fixture) { os.WriteFile(f.store, []byte("{torn"), 0o600) }, force: true, wantCode: exitOK, replaced: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, bearertest.Config{})
			tt.stored(t, f)
			before, _ := os.ReadFile(f.store)
			g := f.srv.Issue()
			args := []string{"import", "--store", f.store}
			if tt.force {
				args = append(args, "--force")
			}
			r := f.run(t, string(g.JSON()), args...)
			wantCode(t, r, tt.wantCode)
			noSecrets(t, r, g.AccessToken, g.RefreshToken)
			after, _ := os.ReadFile(f.store)
			if tt.replaced {
				if f.stored(t).RefreshToken != g.RefreshToken {
					t.Errorf("the store does not hold the imported token")
				}
			} else if string(after) != string(before) {
				t.Errorf("the store changed although the import was refused")
			}
		})
	}
}

// An answer without a refresh token cannot be kept fresh: it replaces
// nothing, not even an expired token.
func TestImportNeedsRefreshToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, bearertest.Config{})
	f.seed(t, f.srv.Issue())
	f.clock.Advance(25 * time.Hour)
	before, _ := os.ReadFile(f.store)
	r := f.run(t, `{"access_token":"at-no-refresh","token_type":"Bearer","expires_in":60}`, "import", "--force", "--store", f.store)
	wantCode(t, r, exitFailure)
	if !strings.Contains(r.stderr, "no refresh token") {
		t.Errorf("stderr = %q, want it to say there is no refresh token", r.stderr)
	}
	noSecrets(t, r, "at-no-refresh")
	if after, _ := os.ReadFile(f.store); string(after) != string(before) {
		t.Errorf("the store changed")
	}
}

// exchange checks the store before it spends the code: a refusal wastes
// nothing.
func TestExchangeGuard(t *testing.T) {
	t.Parallel()
	const redirect = "http://127.0.0.1:8910/callback"
	f := newFixture(t, bearertest.Config{})
	f.seed(t, f.srv.Issue())
	code := f.srv.AuthorizeCode(redirect, "")
	r := f.run(t, "", f.client("exchange", "--code", code, "--redirect-uri", redirect)...)
	wantCode(t, r, exitFailure)
	if !strings.Contains(r.stderr, "refusing to replace") {
		t.Errorf("stderr = %q, want a refusal", r.stderr)
	}
	if got := f.srv.Stats().TokenRequests; got != 0 {
		t.Errorf("server TokenRequests = %d, want 0: the code must not be spent", got)
	}
	// The code still works, with --force.
	r = f.run(t, "", f.client("exchange", "--force", "--code", code, "--redirect-uri", redirect)...)
	wantCode(t, r, exitOK)
	if !f.srv.Alive(f.stored(t).RefreshToken) {
		t.Errorf("the store does not hold the exchanged token")
	}
}

func TestLive(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		tok  *bearer.Token
		want bool
	}{
		{"nil", nil, false},
		{"no refresh token", &bearer.Token{AccessToken: "a"}, false},
		{"no expiry", &bearer.Token{RefreshToken: "r"}, true},
		{"expires later", &bearer.Token{RefreshToken: "r", RefreshExpiry: now.Add(time.Second)}, true},
		{"expires now", &bearer.Token{RefreshToken: "r", RefreshExpiry: now}, false},
	}
	for _, tt := range tests {
		if got := live(tt.tok, now); got != tt.want {
			t.Errorf("live(%s) = %t, want %t", tt.name, got, tt.want)
		}
	}
	if errors.Is(errLive, bearer.ErrNoToken) {
		t.Error("errLive must not read as ErrNoToken")
	}
}

// The issue's story: a token imported from one server, refreshed with
// --token-url forgotten, went to OpenTicket with the client secret. Now the
// token records its endpoint and client, and nothing is sent elsewhere.
func TestIssuerFollowsTheToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, bearertest.Config{})
	g := f.srv.Issue()
	f.env["OAUTH_TOKEN_URL"] = f.srv.TokenURL()
	wantCode(t, f.run(t, string(g.JSON()), "import", "--store", f.store), exitOK)
	r := f.run(t, "", "status", "--store", f.store)
	for _, want := range []string{"issued by:      " + f.srv.TokenURL() + "\n", "client:         " + testClientID + "\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	f.clock.Advance(2 * accessLife)

	delete(f.env, "OAUTH_TOKEN_URL") // forgotten
	for _, tt := range []struct {
		name  string
		args  []string
		names []string
	}{
		{"default endpoint", []string{"token", "--store", f.store}, []string{bearer.DefaultTokenURL, f.srv.TokenURL()}},
		{"another client", []string{"token", "--store", f.store, "--token-url", f.srv.TokenURL(), "--client-id", "other-client"}, []string{`"other-client"`, `"` + testClientID + `"`}},
		{"request", []string{"request", "--store", f.store, f.srv.APIURL()}, []string{bearer.DefaultTokenURL}},
	} {
		r := f.run(t, "", tt.args...)
		wantCode(t, r, exitUsage)
		for _, want := range append(tt.names, "--token-url", "OAUTH_TOKEN_URL") {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("%s: stderr lacks %q:\n%s", tt.name, want, r.stderr)
			}
		}
		if strings.Contains(r.stderr, "bearer: bearer:") {
			t.Errorf("%s: stderr repeats its prefix:\n%s", tt.name, r.stderr)
		}
		noSecrets(t, r, g.AccessToken, g.RefreshToken)
	}
	if got := f.srv.Stats().TokenRequests; got != 0 {
		t.Errorf("server TokenRequests = %d, want 0", got)
	}
	if f.stored(t).RefreshToken != g.RefreshToken {
		t.Errorf("the store changed")
	}

	// With the endpoint given again, from the environment, it refreshes.
	f.env["OAUTH_TOKEN_URL"] = f.srv.TokenURL()
	wantCode(t, f.run(t, "", "token", "--store", f.store), exitOK)
	if got := f.srv.Stats().Refreshes; got != 1 {
		t.Errorf("server Refreshes = %d, want 1", got)
	}
}
