package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
)

func TestImport(t *testing.T) {
	t.Parallel()
	f := newFixture(t, bearertest.Config{})
	g := f.srv.Issue()
	r := f.run(t, string(g.JSON()), "import", "--store", f.store)
	wantCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "stored a Bearer token in "+f.store) {
		t.Errorf("import output = %q, want it to name the store", r.stdout)
	}
	noSecrets(t, r, g.AccessToken, g.RefreshToken)

	tok := f.stored(t)
	if tok.AccessToken != g.AccessToken || tok.RefreshToken != g.RefreshToken {
		t.Errorf("the store does not hold the imported tokens")
	}
	if got, want := tok.Expiry, f.clock.Now().Add(accessLife); !got.Equal(want) {
		t.Errorf("stored Expiry = %v, want now + expires_in = %v", got, want)
	}
	if tok.RefreshExpiry.IsZero() {
		t.Errorf("stored RefreshExpiry is zero, want now + refresh_token_expires_in")
	}

	// The imported token is used as it is.
	r = f.run(t, "", f.client("token")...)
	wantCode(t, r, exitOK)
	if r.stdout != g.AccessToken+"\n" {
		t.Errorf("token after import printed another token than the imported one")
	}
	if got := f.srv.Stats().TokenRequests; got != 0 {
		t.Errorf("server TokenRequests = %d, want 0", got)
	}
}

func TestImportForm(t *testing.T) {
	t.Parallel()
	f := newFixture(t, bearertest.Config{})
	in := "token_type=Bearer&expires_in=60&access_token=at-form&refresh_token=rt-form&info=%7B%22user%22%3A%22ada%22%7D"
	r := f.run(t, in, "import", "--form", "--store", f.store)
	wantCode(t, r, exitOK)
	noSecrets(t, r, "at-form", "rt-form")
	tok := f.stored(t)
	if tok.AccessToken != "at-form" || tok.RefreshToken != "rt-form" {
		t.Errorf("the store does not hold the imported tokens")
	}
	if got, want := tok.Expiry, f.clock.Now().Add(time.Minute); !got.Equal(want) {
		t.Errorf("stored Expiry = %v, want %v", got, want)
	}
	r = f.run(t, "", "status", "--store", f.store)
	wantCode(t, r, exitOK)
	if want := "info:           present (fields: user)\n"; !strings.Contains(r.stdout, want) {
		t.Errorf("status output lacks %q:\n%s", want, r.stdout)
	}
}

func TestDescribeInfo(t *testing.T) {
	tests := []struct {
		info json.RawMessage
		want string
	}{
		{nil, "absent"},
		{json.RawMessage(`{"user":"ada","scope":"read"}`), "present (fields: scope, user)"},
		{json.RawMessage(`{}`), "present (empty object)"},
		{json.RawMessage(`[1,2]`), "present (5 bytes)"},
	}
	for _, tt := range tests {
		if got := describeInfo(tt.info); got != tt.want {
			t.Errorf("describeInfo(%s) = %q, want %q", tt.info, got, tt.want)
		}
	}
}

func TestImportRejects(t *testing.T) {
	t.Parallel()
	const secret = "rt-must-not-leak"
	tests := []struct {
		name, in string
	}{
		{"empty", ""},
		{"not JSON", "access_token=" + secret},
		{"no access token", `{"refresh_token":"` + secret + `","expires_in":60}`},
		{"wrong type", `{"access_token":42,"refresh_token":"` + secret + `"}`},
		{"bad accessLife", `{"access_token":"a","refresh_token":"` + secret + `","expires_in":"soon"}`},
		{"negative accessLife", `{"access_token":"a","refresh_token":"` + secret + `","expires_in":-5}`},
		{"not bearer", `{"access_token":"a","token_type":"mac","refresh_token":"` + secret + `"}`},
		{"error answer", `{"error":"invalid_grant","error_description":"` + secret + `"}`},
		{"space in token", `{"access_token":"a b","refresh_token":"` + secret + `"}`},
		{"truncated", `{"access_token":"a","refresh_token":"` + secret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, bearertest.Config{})
			r := f.run(t, tt.in, "import", "--store", f.store)
			wantCode(t, r, exitFailure)
			if r.stderr == "" {
				t.Error("stderr is empty, want an explanation")
			}
			noSecrets(t, r, secret)
			if _, err := os.Stat(f.store); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the store was written after a rejected import")
			}
		})
	}
}

func TestExchange(t *testing.T) {
	t.Parallel()
	const redirect = "http://127.0.0.1:8910/callback"
	t.Run("pkce", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, bearertest.Config{})
		verifier := bearer.GenerateVerifier()
		code := f.srv.AuthorizeCode(redirect, s256(verifier))
		// The store's folder does not exist yet: exchange creates it.
		f.store = filepath.Join(f.dir, "new", "token.json")
		r := f.run(t, "", f.client("exchange", "--code", code, "--redirect-uri", redirect, "--verifier", verifier)...)
		wantCode(t, r, exitOK)
		if got := f.srv.Stats().Exchanges; got != 1 {
			t.Errorf("server Exchanges = %d, want 1", got)
		}
		tok := f.stored(t)
		if !f.srv.Alive(tok.RefreshToken) {
			t.Errorf("the stored refresh token is not alive")
		}
		noSecrets(t, r, tok.AccessToken, tok.RefreshToken, verifier, code)

		// The code is single-use (--force gets past the live token stored).
		r = f.run(t, "", f.client("exchange", "--force", "--code", code, "--redirect-uri", redirect, "--verifier", verifier)...)
		wantCode(t, r, exitReauthorize)
		if !strings.Contains(r.stderr, "the authorization code was rejected") {
			t.Errorf("stderr = %q, want it to say the code was rejected", r.stderr)
		}
		noSecrets(t, r, tok.AccessToken, tok.RefreshToken, verifier, code)
		if f.stored(t).RefreshToken != tok.RefreshToken {
			t.Errorf("a rejected exchange changed the store")
		}
	})
	t.Run("form basic without pkce", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, bearertest.Config{})
		code := f.srv.AuthorizeCode(redirect, "")
		r := f.run(t, "", f.client("exchange", "--form", "--basic", "--code", code, "--redirect-uri", redirect)...)
		wantCode(t, r, exitOK)
		if got := f.srv.Stats().Exchanges; got != 1 {
			t.Errorf("server Exchanges = %d, want 1", got)
		}
	})
	t.Run("wrong verifier", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, bearertest.Config{})
		code := f.srv.AuthorizeCode(redirect, s256(bearer.GenerateVerifier()))
		r := f.run(t, "", f.client("exchange", "--code", code, "--redirect-uri", redirect, "--verifier", bearer.GenerateVerifier())...)
		wantCode(t, r, exitReauthorize)
		if _, err := os.Stat(f.store); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the store was written after a failed exchange")
		}
	})
	t.Run("wrong client secret", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, bearertest.Config{})
		code := f.srv.AuthorizeCode(redirect, "")
		r := f.run(t, "", f.client("exchange", "--client-secret", "not-the-secret", "--code", code, "--redirect-uri", redirect)...)
		wantCode(t, r, exitFailure)
		noSecrets(t, r, "not-the-secret")
	})
	t.Run("missing code", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, bearertest.Config{})
		r := f.run(t, "", f.client("exchange", "--redirect-uri", redirect)...)
		wantCode(t, r, exitUsage)
	})
}
