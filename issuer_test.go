package bearer

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
	"github.com/tokenkit/bearer/internal/issuer"
)

// countingTransport fails every request and counts it: a test that wants
// nothing sent reads n.
type countingTransport struct{ n atomic.Int32 }

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	c.n.Add(1)
	return nil, errors.New("countingTransport: nothing may be sent")
}

// issuedToken is a live token of srv's, recorded as issued by it to the
// default client, as an exchange would record it.
func issuedToken(srv *bearertest.Server) *Token {
	g := srv.Issue()
	tok := &Token{AccessToken: g.AccessToken, TokenType: "Bearer", RefreshToken: g.RefreshToken,
		Expiry: g.Expiry, RefreshExpiry: g.RefreshExpiry}
	tok.issuer = issuer.Record{TokenURL: srv.TokenURL(), ClientID: bearertest.DefaultClientID}
	return tok
}

func TestIssuerRecorded(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	cfg := Config{TokenURL: srv.TokenURL(), ClientID: bearertest.DefaultClientID, ClientSecret: bearertest.DefaultClientSecret}
	want := issuer.Record{TokenURL: srv.TokenURL(), ClientID: bearertest.DefaultClientID}

	code := srv.AuthorizeCode("http://127.0.0.1:1/cb", "")
	tok, err := cfg.Exchange(t.Context(), code, "http://127.0.0.1:1/cb", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := issuer.Of(tok); got != want {
		t.Errorf("exchanged token's record = %+v, want %+v", got, want)
	}

	// Kept at rest, by marshalToken and by FileStore.
	b, err := marshalToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	back, err := unmarshalToken(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := issuer.Of(back); got != want {
		t.Errorf("record after marshalToken and unmarshalToken = %+v, want %+v", got, want)
	}
	fs := NewFileStore(filepath.Join(t.TempDir(), "token.json"))
	if err := fs.Save(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	if loaded, err := fs.Load(t.Context()); err != nil || issuer.Of(loaded) != want {
		t.Errorf("record after a FileStore round trip = %+v, %v; want %+v", issuer.Of(loaded), err, want)
	}

	// A refresh records it too.
	src := NewSource(cfg, NewMemoryStore(&Token{RefreshToken: tok.RefreshToken}))
	defer src.Close()
	fresh, err := src.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := issuer.Of(fresh); got != want {
		t.Errorf("refreshed token's record = %+v, want %+v", got, want)
	}
}

// A token from one server is never refreshed against another endpoint, or
// by another client: nothing is sent, anywhere, and the error names both.
func TestIssuerMismatchSendsNothing(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	other := bearertest.NewServer(bearertest.Config{})
	defer other.Close()
	tests := []struct {
		name      string
		tokenURL  string // of the Source
		clientID  string
		wantNamed []string
	}{
		{"another endpoint", other.TokenURL(), bearertest.DefaultClientID, []string{other.TokenURL()}},
		{"another client", srv.TokenURL(), "client-b", []string{`"client-b"`}},
		{"the zero Config's default endpoint", "", bearertest.DefaultClientID, []string{DefaultTokenURL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := issuedToken(srv)
			store := NewFileStore(filepath.Join(t.TempDir(), "token.json"))
			if err := store.Save(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
			var ct countingTransport
			before := srv.Stats().TokenRequests + other.Stats().TokenRequests
			src := NewSource(Config{
				TokenURL:     tt.tokenURL,
				ClientID:     tt.clientID,
				ClientSecret: bearertest.DefaultClientSecret,
				HTTPClient:   &http.Client{Transport: &ct},
				Now:          func() time.Time { return tok.Expiry.Add(time.Minute) },
			}, store)
			defer src.Close()
			got, err := src.Token(t.Context())
			if !errors.Is(err, issuer.ErrMismatch) {
				t.Fatalf("Token() = %v, %v; want ErrMismatch", got, err)
			}
			if errors.Is(err, ErrReauthorize) {
				t.Errorf("Token() error %v is ErrReauthorize; the token is fine, the configuration is not", err)
			}
			for _, want := range append(tt.wantNamed, srv.TokenURL(), `"`+bearertest.DefaultClientID+`"`) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %s", err, want)
				}
			}
			for _, secret := range []string{tok.RefreshToken, tok.AccessToken, bearertest.DefaultClientSecret} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q holds a secret", err)
				}
			}
			if n := ct.n.Load(); n != 0 {
				t.Errorf("%d requests sent, want none", n)
			}
			if n := srv.Stats().TokenRequests + other.Stats().TokenRequests - before; n != 0 {
				t.Errorf("the servers got %d token requests, want none", n)
			}
			if stored, err := store.Load(t.Context()); err != nil || stored.RefreshToken != tok.RefreshToken {
				t.Errorf("the store changed: %v, %v", stored, err)
			}
		})
	}
}

// The same endpoint written with another case in scheme or host is the
// same endpoint.
func TestIssuerSameEndpoint(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	tok := issuedToken(srv)
	src := NewSource(Config{
		TokenURL:     strings.Replace(srv.TokenURL(), "http://", "HTTP://", 1),
		ClientID:     bearertest.DefaultClientID,
		ClientSecret: bearertest.DefaultClientSecret,
		Now:          func() time.Time { return tok.Expiry.Add(time.Minute) },
	}, NewMemoryStore(tok))
	defer src.Close()
	if _, err := src.Token(t.Context()); err != nil {
		t.Errorf("Token() = %v, want a refresh", err)
	}
}

// A store written before records were kept loads, refreshes against the
// configured endpoint, and records it from then on.
func TestIssuerUnrecordedStoreLoads(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	g := srv.Issue()
	path := filepath.Join(t.TempDir(), "token.json")
	old := `{"version":1,"token":{"access_token":"` + g.AccessToken + `","token_type":"Bearer","refresh_token":"` + g.RefreshToken +
		`","expiry":"` + g.Expiry.Format(time.RFC3339Nano) + `"},"saved":"2026-01-01T00:00:00Z"}`
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	store := NewFileStore(path)
	loaded, err := store.Load(t.Context())
	if err != nil {
		t.Fatalf("Load of an old store: %v", err)
	}
	if issuer.Of(loaded).Known() {
		t.Errorf("old store's record = %+v, want unknown", issuer.Of(loaded))
	}
	cfg := Config{TokenURL: srv.TokenURL(), ClientID: bearertest.DefaultClientID, ClientSecret: bearertest.DefaultClientSecret,
		Now: func() time.Time { return g.Expiry.Add(time.Minute) }}
	src := NewSource(cfg, store)
	if _, err := src.Token(t.Context()); err != nil {
		t.Fatalf("Token() over an old store: %v", err)
	}
	src.Close()
	saved, err := store.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := (issuer.Record{TokenURL: srv.TokenURL(), ClientID: bearertest.DefaultClientID}); issuer.Of(saved) != want {
		t.Errorf("record after the first refresh = %+v, want %+v", issuer.Of(saved), want)
	}
}
