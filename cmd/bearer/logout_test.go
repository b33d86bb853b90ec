package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/tokenkit/bearer/bearertest"
)

func TestLogout(t *testing.T) {
	t.Parallel()
	f := newFixture(t, bearertest.Config{})
	g := f.srv.Issue()
	f.env["OAUTH_TOKEN_URL"] = f.srv.TokenURL()
	f.env["OAUTH_REVOCATION_URL"] = f.srv.RevocationURL()
	wantCode(t, f.run(t, string(g.JSON()), "import", "--store", f.store), exitOK)

	r := f.run(t, "", "logout", "--store", f.store)
	wantCode(t, r, exitOK)
	if want := "revoked the grant and cleared " + f.store; !strings.Contains(r.stdout, want) {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
	noSecrets(t, r, g.AccessToken, g.RefreshToken)
	if f.srv.FamilyAlive(g.Family) {
		t.Error("the family is alive after logout")
	}
	if b, _ := os.ReadFile(f.store); strings.Contains(string(b), g.RefreshToken) {
		t.Error("the store still holds the refresh token")
	}
	// The store is empty now: token says so, and import needs no --force.
	r = f.run(t, "", "token", "--store", f.store)
	wantCode(t, r, exitReauthorize)
	if !strings.Contains(r.stderr, "no token stored") {
		t.Errorf("token after logout: stderr = %q, want it to say no token is stored", r.stderr)
	}
	wantCode(t, f.run(t, string(f.srv.Issue().JSON()), "import", "--store", f.store), exitOK)

	// Logging out twice is no error.
	wantCode(t, f.run(t, "", "logout", "--store", f.store), exitOK)
	r = f.run(t, "", "logout", "--store", f.store)
	wantCode(t, r, exitOK)
	if !strings.Contains(r.stderr, "nothing to revoke") {
		t.Errorf("second logout: stderr = %q, want it to say there is nothing to revoke", r.stderr)
	}
}

func TestLogoutFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		fault    bool
		wantCode int
		want     string
	}{
		{name: "no revocation endpoint", wantCode: exitUsage, want: "--revocation-url"},
		{name: "server unavailable", fault: true, wantCode: exitUnavailable, want: "run bearer logout again"},
		{name: "wrong client secret", args: []string{"--client-secret", "wrong-secret"}, wantCode: exitFailure, want: "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, bearertest.Config{})
			g := f.srv.Issue()
			f.env["OAUTH_TOKEN_URL"] = f.srv.TokenURL()
			wantCode(t, f.run(t, string(g.JSON()), "import", "--store", f.store), exitOK)
			before, _ := os.ReadFile(f.store)
			args := []string{"logout", "--store", f.store}
			if tt.name != "no revocation endpoint" {
				revocation := f.srv.RevocationURL()
				if tt.fault {
					down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
					}))
					defer down.Close()
					revocation = down.URL + "/revoke"
				}
				args = append(args, "--revocation-url", revocation)
			}
			r := f.run(t, "", append(args, tt.args...)...)
			wantCode(t, r, tt.wantCode)
			if strings.Contains(r.stderr, "bearer: bearer:") {
				t.Errorf("stderr repeats its prefix: %q", r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr = %q, want it to say %q", r.stderr, tt.want)
			}
			noSecrets(t, r, g.AccessToken, g.RefreshToken, "wrong-secret")
			if after, _ := os.ReadFile(f.store); string(after) != string(before) {
				t.Error("the store changed")
			}
			if !f.srv.FamilyAlive(g.Family) {
				t.Error("the family is dead")
			}
		})
	}
}
