package bearer

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/tokenkit/bearer/bearertest"
)

// rfcVerifier is the verifier of RFC 7636 appendix B.
const rfcVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

func TestAuthCodeURL(t *testing.T) {
	cfg := Config{
		AuthURL:  "https://auth.example.test/authorize?audience=api&prompt=consent",
		ClientID: "client 1",
		Scopes:   []string{"read", "write"},
	}
	got, err := cfg.AuthCodeURL("state-1", "http://127.0.0.1:8910/callback", rfcVerifier)
	if err != nil {
		t.Fatalf("AuthCodeURL: %v", err)
	}
	u, err := url.Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "https" || u.Host != "auth.example.test" || u.Path != "/authorize" {
		t.Errorf("AuthCodeURL = %s, want it at AuthURL", got)
	}
	want := url.Values{
		"audience":              {"api"},
		"prompt":                {"consent"},
		"response_type":         {"code"},
		"client_id":             {"client 1"},
		"redirect_uri":          {"http://127.0.0.1:8910/callback"},
		"scope":                 {"read write"},
		"state":                 {"state-1"},
		"code_challenge":        {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
		"code_challenge_method": {"S256"},
	}
	if q := u.Query(); q.Encode() != want.Encode() {
		t.Errorf("AuthCodeURL query = %v, want %v", q, want)
	}

	// Without a redirect URI or scopes, neither is sent.
	cfg.Scopes = nil
	got, err = cfg.AuthCodeURL("s", "", rfcVerifier)
	if err != nil {
		t.Fatalf("AuthCodeURL: %v", err)
	}
	if u, _ := url.Parse(got); u.Query().Has("redirect_uri") || u.Query().Has("scope") {
		t.Errorf("AuthCodeURL = %s, want no redirect_uri and no scope", got)
	}
}

func TestAuthCodeURLRefuses(t *testing.T) {
	const verifierPart = "dBjftJeZ4CVP"
	// args are AuthCodeURL's arguments, which a case changes.
	type args struct{ authURL, state, redirect, verifier string }
	tests := []struct {
		name   string
		change func(a *args)
		want   string // in the error
		wantIs error
	}{
		{"no AuthURL", func(a *args) { a.authURL = "" }, "Config.AuthURL is empty", nil},
		{"relative AuthURL", func(a *args) { a.authURL = "/authorize" }, "Config.AuthURL is not an absolute URL", nil},
		{"plain http", func(a *args) { a.authURL = "http://auth.example.test/authorize" }, "", ErrInsecure},
		{"ftp", func(a *args) { a.authURL = "ftp://auth.example.test/authorize" }, "not https", nil},
		{"no state", func(a *args) { a.state = "" }, "empty state", nil},
		{"no verifier", func(a *args) { a.verifier = "" }, "empty PKCE verifier", nil},
		{"short verifier", func(a *args) { a.verifier = verifierPart }, "43 to 128", nil},
		{"verifier with a space", func(a *args) { a.verifier = strings.Repeat("a", 42) + " " }, "character", nil},
		{"relative redirect", func(a *args) { a.redirect = "/callback" }, "redirect URI", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := args{"https://auth.example.test/authorize", "state-1", "http://127.0.0.1:1/cb", rfcVerifier}
			tt.change(&a)
			cfg := Config{AuthURL: a.authURL}
			got, err := cfg.AuthCodeURL(a.state, a.redirect, a.verifier)
			if err == nil {
				t.Fatalf("AuthCodeURL = %q, want an error", got)
			}
			if got != "" {
				t.Errorf("AuthCodeURL = %q with an error, want \"\"", got)
			}
			if tt.want != "" && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("AuthCodeURL error = %q, want it to say %q", err, tt.want)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("AuthCodeURL error = %v, want %v", err, tt.wantIs)
			}
			if strings.Contains(err.Error(), verifierPart) {
				t.Errorf("AuthCodeURL error %q quotes the verifier", err)
			}
		})
	}
	// AllowInsecureHTTP lets plain http through, as for the token endpoint.
	cfg := Config{AuthURL: "http://auth.example.test/authorize", AllowInsecureHTTP: true}
	if _, err := cfg.AuthCodeURL("s", "", rfcVerifier); err != nil {
		t.Errorf("AuthCodeURL with AllowInsecureHTTP: %v", err)
	}
}

// TestExchangeRefusesBadVerifier: a verifier the server cannot accept is
// refused before anything is sent.
func TestExchangeRefusesBadVerifier(t *testing.T) {
	cfg, mt := epConfig(epJSON(200, epTokenBody))
	for _, v := range []string{"short", strings.Repeat("a", 129), strings.Repeat("a", 42) + "/"} {
		if _, err := cfg.Exchange(t.Context(), "code-1", "", v); err == nil {
			t.Errorf("Exchange with verifier %q = nil error, want one", v)
		}
	}
	if n := mt.GetTotalCallCount(); n != 0 {
		t.Errorf("requests = %d, want 0", n)
	}
}

// TestAuthCodeFlow is the whole authorization code flow against
// bearertest, the test playing the browser: an http.Client follows the
// authorization endpoint's redirect to the app's callback.
func TestAuthCodeFlow(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	got := make(chan url.Values, 1)
	callback := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.Query()
		w.Write([]byte("you may close this window"))
	}))
	defer callback.Close()

	cfg := Config{
		AuthURL:      srv.AuthURL(),
		TokenURL:     srv.TokenURL(),
		ClientID:     bearertest.DefaultClientID,
		ClientSecret: bearertest.DefaultClientSecret,
		Scopes:       []string{"tickets"},
	}
	state, verifier := GenerateVerifier(), GenerateVerifier()
	authURL, err := cfg.AuthCodeURL(state, callback.URL+"/cb", verifier)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(authURL) // the browser, following the redirect
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	q := <-got
	if q.Get("state") != state {
		t.Fatalf("the redirect's state = %q, want the one sent", q.Get("state"))
	}
	tok, err := cfg.Exchange(t.Context(), q.Get("code"), callback.URL+"/cb", verifier)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if !srv.Alive(tok.RefreshToken) {
		t.Error("the exchanged refresh token is not alive")
	}
	if st := srv.Stats(); st.Authorizations != 1 || st.Exchanges != 1 {
		t.Errorf("server Authorizations, Exchanges = %d, %d; want 1, 1", st.Authorizations, st.Exchanges)
	}
	// The code is single use, and the challenge binds it to the verifier.
	if _, err := cfg.Exchange(t.Context(), q.Get("code"), callback.URL+"/cb", verifier); !errors.Is(err, ErrReauthorize) {
		t.Errorf("second Exchange of the code = %v, want invalid_grant (ErrReauthorize)", err)
	}
}
