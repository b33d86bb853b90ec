package bearer

import (
	"errors"
	"maps"
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

func TestExchangeRequest(t *testing.T) {
	tests := []struct {
		name     string
		redirect string
		verifier string
		want     map[string]string
	}{
		{
			name:     "pkce",
			redirect: "https://app.example.test/cb",
			verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
			want: map[string]string{"grant_type": "authorization_code", "code": "code-1", "redirect_uri": "https://app.example.test/cb",
				"code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "client_id": "client-1", "client_secret": "secret-1"},
		},
		{
			name: "no redirect, no pkce",
			want: map[string]string{"grant_type": "authorization_code", "code": "code-1", "client_id": "client-1", "client_secret": "secret-1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []epRequest
			cfg, _ := epConfig(epCapture(&got, epJSON(200, epTokenBody)))
			tok, err := cfg.Exchange(t.Context(), "code-1", tt.redirect, tt.verifier)
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if tok.AccessToken != "at-new" {
				t.Errorf("AccessToken = %q, want %q", tok.AccessToken, "at-new")
			}
			if len(got) != 1 {
				t.Fatalf("requests = %d, want 1", len(got))
			}
			if got[0].method != http.MethodPost || got[0].contentType != "application/json" {
				t.Errorf("request = %s with %q, want POST with application/json", got[0].method, got[0].contentType)
			}
			if fields := epFields(t, got[0]); !maps.Equal(fields, tt.want) {
				t.Errorf("body fields = %v, want %v", fields, tt.want)
			}
		})
	}
}

func TestExchangeEmptyCode(t *testing.T) {
	cfg, mt := epConfig(epJSON(200, epTokenBody))
	if _, err := cfg.Exchange(t.Context(), "", "", ""); err == nil {
		t.Errorf("Exchange(\"\") = nil error, want one")
	}
	if n := mt.GetTotalCallCount(); n != 0 {
		t.Errorf("requests = %d, want 0", n)
	}
}

func TestExchangeBearertest(t *testing.T) {
	const redirect = "https://app.example.test/callback"
	tests := []struct {
		name     string
		encoding Encoding
		style    AuthStyle
		form     bool // server answers form-encoded
	}{
		{name: "json"},
		{name: "form", encoding: Form},
		{name: "basic", style: AuthBasic},
		{name: "form answers", form: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := bearertest.NewServer(bearertest.Config{FormResponses: tt.form})
			defer srv.Close()
			cfg := Config{
				TokenURL:     srv.TokenURL(),
				ClientID:     bearertest.DefaultClientID,
				ClientSecret: bearertest.DefaultClientSecret,
				HTTPClient:   srv.Client(),
				Encoding:     tt.encoding,
				AuthStyle:    tt.style,
			}
			verifier := GenerateVerifier()
			code := srv.AuthorizeCode(redirect, s256Challenge(verifier))
			tok, err := cfg.Exchange(t.Context(), code, redirect, verifier)
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if n := srv.Stats().Exchanges; n != 1 {
				t.Errorf("server Exchanges = %d, want 1", n)
			}
			if !srv.Alive(tok.RefreshToken) {
				t.Errorf("refresh token from Exchange is not alive on the server")
			}
			if tok.Expiry.IsZero() || tok.RefreshExpiry.IsZero() {
				t.Errorf("Expiry = %v, RefreshExpiry = %v, want both set", tok.Expiry, tok.RefreshExpiry)
			}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.APIURL()+"me", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", tok.scheme()+" "+tok.AccessToken)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatalf("API request: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("API status with the exchanged token = %d, want 200", resp.StatusCode)
			}
			// The token's refresh token works for the refresh grant too.
			next, err := cfg.refreshGrant(t.Context(), tok.RefreshToken)
			if err != nil {
				t.Fatalf("refreshGrant after Exchange: %v", err)
			}
			if next.RefreshToken == tok.RefreshToken {
				t.Errorf("refresh returned the same refresh token, want a rotated one")
			}
		})
	}
}

func TestExchangeBearertestRejected(t *testing.T) {
	const redirect = "https://app.example.test/callback"
	tests := []struct {
		name     string
		redirect string
		verifier func(v string) string
	}{
		{name: "wrong verifier", redirect: redirect, verifier: func(string) string { return GenerateVerifier() }},
		{name: "missing verifier", redirect: redirect, verifier: func(string) string { return "" }},
		{name: "wrong redirect", redirect: "https://evil.example.test/cb", verifier: func(v string) string { return v }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := bearertest.NewServer(bearertest.Config{})
			defer srv.Close()
			cfg := Config{
				TokenURL:     srv.TokenURL(),
				ClientID:     bearertest.DefaultClientID,
				ClientSecret: bearertest.DefaultClientSecret,
				HTTPClient:   srv.Client(),
			}
			verifier := GenerateVerifier()
			code := srv.AuthorizeCode(redirect, s256Challenge(verifier))
			tok, err := cfg.Exchange(t.Context(), code, tt.redirect, tt.verifier(verifier))
			if err == nil {
				t.Fatalf("Exchange = %v, want an error", tok)
			}
			var re *RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("Exchange error = %v, want a *RetrieveError", err)
			}
			if re.StatusCode != http.StatusBadRequest || re.Attempts != 1 {
				t.Errorf("StatusCode, Attempts = %d, %d, want 400, 1", re.StatusCode, re.Attempts)
			}
		})
	}
}

func TestPKCE(t *testing.T) {
	// RFC 7636 appendix B.
	const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	const challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
	if got := s256Challenge(verifier); got != challenge {
		t.Errorf("s256Challenge(%q) = %q, want %q", verifier, got, challenge)
	}
	a, b := GenerateVerifier(), GenerateVerifier()
	if a == b {
		t.Errorf("GenerateVerifier returned %q twice", a)
	}
	if len(a) != 43 {
		t.Errorf("len(GenerateVerifier()) = %d, want 43", len(a))
	}
}
