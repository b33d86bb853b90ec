package bearer

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
	"github.com/tokenkit/bearer/internal/issuer"
)

// rvConfig is a client of srv with its revocation endpoint.
func rvConfig(srv *bearertest.Server) Config {
	return Config{
		TokenURL:      srv.TokenURL(),
		RevocationURL: srv.RevocationURL(),
		ClientID:      bearertest.DefaultClientID,
		ClientSecret:  bearertest.DefaultClientSecret,
		RetryBackoff:  time.Millisecond,
	}
}

func TestRevoke(t *testing.T) {
	for _, encoding := range []Encoding{JSON, Form} {
		t.Run(encodingName(encoding), func(t *testing.T) {
			srv := bearertest.NewServer(bearertest.Config{})
			defer srv.Close()
			tok := issuedToken(srv)
			path := filepath.Join(t.TempDir(), "token.json")
			store := NewFileStore(path)
			if err := store.Save(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
			cfg := rvConfig(srv)
			cfg.Encoding = encoding
			src := NewSource(cfg, store)
			defer src.Close()
			if _, err := src.Token(t.Context()); err != nil {
				t.Fatal(err)
			}

			if err := src.Revoke(t.Context()); err != nil {
				t.Fatalf("Revoke() = %v", err)
			}
			if srv.Alive(tok.RefreshToken) {
				t.Error("the refresh token is alive after Revoke")
			}
			if got := srv.Stats().RevokeRequests; got != 1 {
				t.Errorf("server RevokeRequests = %d, want 1", got)
			}
			if got, err := store.Load(t.Context()); !errors.Is(err, ErrNoToken) {
				t.Errorf("store Load() after Revoke = %v, %v; want ErrNoToken", got, err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(data), tok.RefreshToken) || strings.Contains(string(data), tok.AccessToken) {
				t.Error("the store file still holds a token after Revoke")
			}
			if got, err := src.Token(t.Context()); !errors.Is(err, ErrNoToken) {
				t.Errorf("Token() after Revoke = %v, %v; want ErrNoToken", got, err)
			}
			// Another process's Source finds the store empty, too.
			other := NewSource(cfg, NewFileStore(path))
			defer other.Close()
			if got, err := other.Token(t.Context()); !errors.Is(err, ErrNoToken) {
				t.Errorf("another Source's Token() after Revoke = %v, %v; want ErrNoToken", got, err)
			}
			if got := srv.Stats().TokenRequests; got != 0 {
				t.Errorf("server TokenRequests = %d, want 0", got)
			}
		})
	}
}

// Revoke revokes what the store holds now, not what this Source loaded:
// another process may have rotated it since.
func TestRevokeNewestToken(t *testing.T) {
	clk := bearertest.NewClock(time.Time{})
	srv := bearertest.NewServer(bearertest.Config{Now: clk.Now})
	defer srv.Close()
	g := srv.Issue()
	store := NewMemoryStore(&Token{AccessToken: g.AccessToken, RefreshToken: g.RefreshToken, Expiry: g.Expiry})
	cfg := rvConfig(srv)
	cfg.Now = clk.Now
	a, b := NewSource(cfg, store), NewSource(cfg, store)
	defer a.Close()
	defer b.Close()
	if _, err := a.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	if _, err := b.Token(t.Context()); err != nil { // b rotates
		t.Fatal(err)
	}
	if err := a.Revoke(t.Context()); err != nil {
		t.Fatalf("Revoke() = %v", err)
	}
	if srv.FamilyAlive(g.Family) {
		t.Error("the family is alive: Revoke sent a spent refresh token, not the newest")
	}
	if got := srv.Stats().ReuseAttempts; got != 0 {
		t.Errorf("server ReuseAttempts = %d, want 0", got)
	}
	if _, err := store.Load(t.Context()); !errors.Is(err, ErrNoToken) {
		t.Errorf("store Load() after Revoke = %v, want ErrNoToken", err)
	}
}

// A token without a refresh token has its access token revoked.
func TestRevokeAccessToken(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	g := srv.Issue()
	src := NewSource(rvConfig(srv), NewMemoryStore(&Token{AccessToken: g.AccessToken}))
	defer src.Close()
	if err := src.Revoke(t.Context()); err != nil {
		t.Fatalf("Revoke() = %v", err)
	}
	if srv.FamilyAlive(g.Family) {
		t.Error("the family is alive after its access token was revoked")
	}
}

// What Revoke refuses, it refuses before sending anything, and the store
// keeps its token.
func TestRevokeSendsNothing(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	tests := []struct {
		name   string
		cfg    func(c *Config)
		stored bool
		wantIs error
		want   string
	}{
		{"no revocation endpoint", func(c *Config) { c.RevocationURL = "" }, true, nil, "Config.RevocationURL is empty"},
		{"plain http", func(c *Config) { c.RevocationURL = "http://auth.example.test/revoke" }, true, ErrInsecure, ""},
		{"nothing stored", func(c *Config) {}, false, ErrNoToken, ""},
		{"another client", func(c *Config) { c.ClientID = "client-b" }, true, issuer.ErrMismatch, `"client-b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ct countingTransport
			cfg := rvConfig(srv)
			cfg.HTTPClient = &http.Client{Transport: &ct}
			tt.cfg(&cfg)
			store := NewMemoryStore(nil)
			tok := issuedToken(srv)
			if tt.stored {
				store.Save(t.Context(), tok)
			}
			src := NewSource(cfg, store)
			defer src.Close()
			err := src.Revoke(t.Context())
			if err == nil {
				t.Fatal("Revoke() = nil, want an error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Revoke() = %v, want %v", err, tt.wantIs)
			}
			if tt.want != "" && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Revoke() = %q, want it to say %q", err, tt.want)
			}
			if n := ct.n.Load(); n != 0 {
				t.Errorf("%d requests sent, want none", n)
			}
			if got, err := store.Load(t.Context()); tt.stored && (err != nil || got.RefreshToken != tok.RefreshToken) {
				t.Errorf("the store changed: %v, %v", got, err)
			}
		})
	}
}

// A revocation endpoint that fails leaves the store as it was: the grant
// may be live, and Revoke can be tried again.
func TestRevokeServerFails(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	var calls atomic.Int32
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"temporarily_unavailable"}`))
	}))
	defer failing.Close()
	tok := issuedToken(srv)
	store := NewMemoryStore(tok)
	cfg := rvConfig(srv)
	cfg.RevocationURL = failing.URL + "/revoke"
	cfg.MaxRetries = 2
	src := NewSource(cfg, store)
	defer src.Close()

	err := src.Revoke(t.Context())
	var re *RetrieveError
	if !errors.As(err, &re) || re.StatusCode != http.StatusServiceUnavailable || re.Attempts != 3 {
		t.Fatalf("Revoke() = %v, want a RetrieveError with status 503 after 3 attempts", err)
	}
	if !strings.Contains(err.Error(), "revocation endpoint") {
		t.Errorf("Revoke() = %q, want it to name the revocation endpoint", err)
	}
	if got := calls.Load(); got != 3 {
		t.Errorf("revocation requests = %d, want 3", got)
	}
	if got, err := store.Load(t.Context()); err != nil || got.RefreshToken != tok.RefreshToken {
		t.Errorf("the store changed after a failed revocation: %v, %v", got, err)
	}
	if got, err := src.Token(t.Context()); err != nil || got.AccessToken != tok.AccessToken {
		t.Errorf("Token() after a failed revocation = %v, %v; want the stored token", got, err)
	}
	if !srv.Alive(tok.RefreshToken) {
		t.Error("the refresh token is dead, although its revocation failed")
	}
}

func TestRevokeClosed(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	src := NewSource(rvConfig(srv), NewMemoryStore(issuedToken(srv)))
	src.Close()
	if err := src.Revoke(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Revoke() after Close = %v, want ErrClosed", err)
	}
	if err := new(Source).Revoke(t.Context()); !errors.Is(err, errZeroSource) {
		t.Errorf("Revoke() of a zero Source = %v, want errZeroSource", err)
	}
}
