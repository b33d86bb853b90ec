package bearertest_test

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tokenkit/bearer/bearertest"
)

const testVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

func challengeOf(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authParams is a well-formed authorization request.
func authParams() url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {bearertest.DefaultClientID},
		"redirect_uri":          {"http://127.0.0.1:9/cb"},
		"state":                 {"st-1"},
		"scope":                 {"tickets"},
		"code_challenge":        {challengeOf(testVerifier)},
		"code_challenge_method": {"S256"},
	}
}

// noFollow does not follow redirects, so the test sees where the browser
// would be sent.
func noFollow(srv *bearertest.Server) *http.Client {
	c := *srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// authorize sends an authorization request and returns the answer's status
// and the query of the redirect it points to (nil if none).
func authorize(t *testing.T, srv *bearertest.Server, method string, p url.Values) (int, url.Values, string) {
	t.Helper()
	var req *http.Request
	var err error
	if method == http.MethodGet {
		req, err = http.NewRequest(method, srv.AuthURL()+"?"+p.Encode(), nil)
	} else {
		req, err = http.NewRequest(method, srv.AuthURL(), strings.NewReader(p.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if err != nil {
		t.Fatal(err)
	}
	resp, err := noFollow(srv).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	loc := resp.Header.Get("Location")
	if loc == "" {
		return resp.StatusCode, nil, string(body)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != "http://127.0.0.1:9/cb" {
		t.Errorf("redirected to %s, want the redirect_uri", got)
	}
	return resp.StatusCode, u.Query(), string(body)
}

func TestAuthorizeApproves(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	status, q, _ := authorize(t, srv, http.MethodGet, authParams())
	if status != http.StatusFound || q.Get("code") == "" || q.Get("state") != "st-1" {
		t.Fatalf("authorize = %d with %v, want 302 with a code and state st-1", status, q)
	}
	r := send(t, srv, jsonRequest(t, srv, withClient(map[string]string{
		"grant_type": "authorization_code", "code": q.Get("code"),
		"redirect_uri": "http://127.0.0.1:9/cb", "code_verifier": testVerifier,
	})))
	if r.Status != http.StatusOK || !srv.Alive(r.RefreshToken) {
		t.Errorf("exchange = %d %s, want 200 with a live refresh token", r.Status, r.Error)
	}
	if st := srv.Stats(); st.Authorizations != 1 || st.Denials != 0 {
		t.Errorf("Authorizations, Denials = %d, %d; want 1, 0", st.Authorizations, st.Denials)
	}
}

func TestAuthorizeConsentPage(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{Consent: true})
	defer srv.Close()
	status, q, page := authorize(t, srv, http.MethodGet, authParams())
	if status != http.StatusOK || q != nil {
		t.Fatalf("authorize with Consent = %d, redirect %v; want 200 and a page", status, q)
	}
	for _, want := range []string{`<form method="post">`, `name="state" value="st-1"`, `value="approve"`, `value="deny"`, "tickets"} {
		if !strings.Contains(page, want) {
			t.Errorf("consent page lacks %q:\n%s", want, page)
		}
	}
	for _, tt := range []struct {
		decision, wantErr string
		approved, denied  int
	}{
		{"deny", "access_denied", 0, 1},
		{"approve", "", 1, 1},
		{"maybe", "invalid_request", 1, 1},
	} {
		p := authParams()
		p.Set("decision", tt.decision)
		status, q, _ := authorize(t, srv, http.MethodPost, p)
		if status != http.StatusFound || q.Get("error") != tt.wantErr || q.Get("state") != "st-1" || (q.Get("code") != "") != (tt.wantErr == "") {
			t.Errorf("decision %s = %d with %v, want 302 with error %q and state st-1", tt.decision, status, q, tt.wantErr)
		}
		if st := srv.Stats(); st.Authorizations != tt.approved || st.Denials != tt.denied {
			t.Errorf("after %s: Authorizations, Denials = %d, %d; want %d, %d", tt.decision, st.Authorizations, st.Denials, tt.approved, tt.denied)
		}
	}
}

func TestAuthorizeRejects(t *testing.T) {
	tests := []struct {
		name       string
		change     func(p url.Values)
		wantStatus int    // 400 when the server must not redirect
		wantErr    string // the redirect's error otherwise
	}{
		{"unknown client", func(p url.Values) { p.Set("client_id", "someone") }, http.StatusBadRequest, ""},
		{"no redirect", func(p url.Values) { p.Del("redirect_uri") }, http.StatusBadRequest, ""},
		{"relative redirect", func(p url.Values) { p.Set("redirect_uri", "/cb") }, http.StatusBadRequest, ""},
		{"token response", func(p url.Values) { p.Set("response_type", "token") }, http.StatusFound, "unsupported_response_type"},
		{"plain pkce", func(p url.Values) { p.Set("code_challenge_method", "plain") }, http.StatusFound, "invalid_request"},
		{"method without challenge", func(p url.Values) { p.Del("code_challenge") }, http.StatusFound, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := bearertest.NewServer(bearertest.Config{})
			defer srv.Close()
			p := authParams()
			tt.change(p)
			status, q, _ := authorize(t, srv, http.MethodGet, p)
			if status != tt.wantStatus || q.Get("error") != tt.wantErr || q.Get("code") != "" {
				t.Errorf("authorize = %d with %v, want %d with error %q and no code", status, q, tt.wantStatus, tt.wantErr)
			}
			if tt.wantErr != "" && q.Get("state") != "st-1" {
				t.Errorf("error redirect state = %q, want st-1", q.Get("state"))
			}
			if got := srv.Stats().Authorizations; got != 0 {
				t.Errorf("Authorizations = %d, want 0", got)
			}
		})
	}
}
