package bearertest_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
)

func multipartBody(t *testing.T, fields map[string]string) (body []byte, boundary string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), mw.Boundary()
}

func TestRequestEncodings(t *testing.T) {
	// A secret that needs escaping checks RFC 6749 section 2.3.1 decoding.
	const id, secret = "my client", "s3c:r+t/&é"
	fields := func(withCreds bool) map[string]string {
		f := map[string]string{"grant_type": "client_credentials"}
		if withCreds {
			f["client_id"], f["client_secret"] = id, secret
		}
		return f
	}
	values := func(withCreds bool) url.Values {
		v := url.Values{}
		for k, s := range fields(withCreds) {
			v.Set(k, s)
		}
		return v
	}
	tests := []struct {
		name string
		req  func(t *testing.T, srv *bearertest.Server) *http.Request
	}{
		{"JSON body credentials", func(t *testing.T, srv *bearertest.Server) *http.Request {
			return jsonRequest(t, srv, fields(true))
		}},
		{"JSON with charset", func(t *testing.T, srv *bearertest.Server) *http.Request {
			req := jsonRequest(t, srv, fields(true))
			req.Header.Set("Content-Type", "application/json; charset=utf-8")
			return req
		}},
		{"form body credentials", func(t *testing.T, srv *bearertest.Server) *http.Request {
			return formRequest(t, srv, values(true))
		}},
		{"form Basic auth", func(t *testing.T, srv *bearertest.Server) *http.Request {
			req := formRequest(t, srv, values(false))
			req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
			return req
		}},
		{"JSON Basic auth", func(t *testing.T, srv *bearertest.Server) *http.Request {
			req := jsonRequest(t, srv, fields(false))
			req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
			return req
		}},
		{"multipart", func(t *testing.T, srv *bearertest.Server) *http.Request {
			body, boundary := multipartBody(t, fields(true))
			req, _ := http.NewRequest(http.MethodPost, srv.TokenURL(), bytes.NewReader(body))
			req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
			return req
		}},
		{"multipart labelled JSON, as the seed's curl example", func(t *testing.T, srv *bearertest.Server) *http.Request {
			body, _ := multipartBody(t, fields(true))
			req, _ := http.NewRequest(http.MethodPost, srv.TokenURL(), bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			return req
		}},
		{"form without Content-Type", func(t *testing.T, srv *bearertest.Server) *http.Request {
			req := formRequest(t, srv, values(true))
			req.Header.Del("Content-Type")
			return req
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := bearertest.NewServer(bearertest.Config{ClientID: id, ClientSecret: secret})
			defer srv.Close()
			r := send(t, srv, tt.req(t, srv))
			if r.Status != http.StatusOK || r.AccessToken == "" {
				t.Errorf("client_credentials = %d %q, want 200 with an access token", r.Status, r.Body)
			}
		})
	}
}

func TestTokenErrors(t *testing.T) {
	const secret = bearertest.DefaultClientSecret
	tests := []struct {
		name       string
		req        func(t *testing.T, srv *bearertest.Server) *http.Request
		wantStatus int
		wantError  string
		wantHeader string // WWW-Authenticate
	}{
		{"wrong secret in body", func(t *testing.T, srv *bearertest.Server) *http.Request {
			return jsonRequest(t, srv, map[string]string{"grant_type": "client_credentials", "client_id": "test-client", "client_secret": "nope"})
		}, 401, "invalid_client", ""},
		{"no credentials", func(t *testing.T, srv *bearertest.Server) *http.Request {
			return jsonRequest(t, srv, map[string]string{"grant_type": "client_credentials"})
		}, 401, "invalid_client", ""},
		{"wrong Basic auth", func(t *testing.T, srv *bearertest.Server) *http.Request {
			req := formRequest(t, srv, url.Values{"grant_type": {"client_credentials"}})
			req.SetBasicAuth("test-client", "nope")
			return req
		}, 401, "invalid_client", `Basic realm="bearertest"`},
		{"malformed JSON", func(t *testing.T, srv *bearertest.Server) *http.Request {
			req := jsonRequest(t, srv, nil)
			req.Body = io.NopCloser(strings.NewReader(`{"grant_type":`))
			req.ContentLength = -1
			return req
		}, 400, "invalid_request", ""},
		{"non-string field", func(t *testing.T, srv *bearertest.Server) *http.Request {
			req := jsonRequest(t, srv, nil)
			req.Body = io.NopCloser(strings.NewReader(`{"grant_type":"refresh_token","refresh_token":42}`))
			req.ContentLength = -1
			return req
		}, 400, "invalid_request", ""},
		{"unsupported Content-Type", func(t *testing.T, srv *bearertest.Server) *http.Request {
			req := formRequest(t, srv, url.Values{})
			req.Header.Set("Content-Type", "text/plain")
			return req
		}, 400, "invalid_request", ""},
		{"missing grant_type", func(t *testing.T, srv *bearertest.Server) *http.Request {
			return jsonRequest(t, srv, withClient(map[string]string{}))
		}, 400, "invalid_request", ""},
		{"unknown grant_type", func(t *testing.T, srv *bearertest.Server) *http.Request {
			return jsonRequest(t, srv, withClient(map[string]string{"grant_type": "password"}))
		}, 400, "unsupported_grant_type", ""},
		{"missing refresh_token", func(t *testing.T, srv *bearertest.Server) *http.Request {
			return jsonRequest(t, srv, withClient(map[string]string{"grant_type": "refresh_token"}))
		}, 400, "invalid_request", ""},
		{"unknown refresh_token", func(t *testing.T, srv *bearertest.Server) *http.Request {
			return jsonRequest(t, srv, withClient(map[string]string{"grant_type": "refresh_token", "refresh_token": "rt_bogus"}))
		}, 400, "invalid_grant", ""},
		{"access token as refresh token", func(t *testing.T, srv *bearertest.Server) *http.Request {
			return jsonRequest(t, srv, withClient(map[string]string{"grant_type": "refresh_token", "refresh_token": srv.Issue().AccessToken}))
		}, 400, "invalid_grant", ""},
		{"GET", func(t *testing.T, srv *bearertest.Server) *http.Request {
			req, _ := http.NewRequest(http.MethodGet, srv.TokenURL(), nil)
			return req
		}, 405, "invalid_request", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := bearertest.NewServer(bearertest.Config{})
			defer srv.Close()
			r := send(t, srv, tt.req(t, srv))
			if r.Status != tt.wantStatus || r.Error != tt.wantError {
				t.Errorf("answer = %d %q, want %d %q", r.Status, r.Error, tt.wantStatus, tt.wantError)
			}
			if got := r.Header.Get("WWW-Authenticate"); got != tt.wantHeader {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.wantHeader)
			}
			if bytes.Contains(r.Body, []byte(secret)) {
				t.Errorf("error body %s reveals the client secret", r.Body)
			}
			if st := srv.Stats(); st.TokenRequests != 1 || st.Refreshes+st.ClientCredentials != 0 {
				t.Errorf("Stats() = %+v, want one request and no grant", st)
			}
		})
	}
}

func pkcePair(verifier string) (string, string) {
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestAuthorizationCode(t *testing.T) {
	const redirect = "http://127.0.0.1:9999/callback"
	verifier, challenge := pkcePair(strings.Repeat("v", 50))
	tests := []struct {
		name       string
		challenge  string
		redirect   string
		verifier   string
		code       string // replaces the issued code if set
		age        time.Duration
		wantStatus int
	}{
		{"PKCE", challenge, redirect, verifier, "", 0, 200},
		{"no PKCE", "", redirect, "", "", 0, 200},
		{"wrong verifier", challenge, redirect, strings.Repeat("w", 50), "", 0, 400},
		{"missing verifier", challenge, redirect, "", "", 0, 400},
		{"verifier without challenge", "", redirect, verifier, "", 0, 400},
		{"wrong redirect_uri", "", "http://evil.example/cb", "", "", 0, 400},
		{"unknown code", "", redirect, "", "ac_bogus", 0, 400},
		{"expired code", "", redirect, "", "", 11 * time.Minute, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			srv := bearertest.NewServer(bearertest.Config{Now: clk.Now})
			defer srv.Close()
			code := srv.AuthorizeCode(redirect, tt.challenge)
			if tt.code != "" {
				code = tt.code
			}
			clk.Add(tt.age)
			v := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {tt.redirect},
				"client_id": {bearertest.DefaultClientID}, "client_secret": {bearertest.DefaultClientSecret}}
			if tt.verifier != "" {
				v.Set("code_verifier", tt.verifier)
			}
			r := send(t, srv, formRequest(t, srv, v))
			if r.Status != tt.wantStatus {
				t.Fatalf("exchange status = %d, want %d; body %s", r.Status, tt.wantStatus, r.Body)
			}
			if r.Status != http.StatusOK {
				if r.Error != "invalid_grant" {
					t.Errorf("exchange error = %q, want invalid_grant", r.Error)
				}
				return
			}
			if !srv.Alive(r.RefreshToken) || !srv.FamilyAlive(r.Info["family"]) {
				t.Errorf("exchanged refresh token is not alive")
			}
			// A replayed code fails and revokes what it bought.
			if r2 := send(t, srv, formRequest(t, srv, v)); r2.Error != "invalid_grant" {
				t.Errorf("replayed code = %d %q, want invalid_grant", r2.Status, r2.Error)
			}
			if srv.FamilyAlive(r.Info["family"]) {
				t.Errorf("family bought with a replayed code is alive, want revoked")
			}
			if st := srv.Stats(); st.Exchanges != 1 {
				t.Errorf("Stats().Exchanges = %d, want 1", st.Exchanges)
			}
		})
	}
}

func TestClientCredentials(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	r := send(t, srv, jsonRequest(t, srv, withClient(map[string]string{"grant_type": "client_credentials"})))
	if r.Status != http.StatusOK || !strings.HasPrefix(r.AccessToken, "at_") {
		t.Fatalf("client_credentials = %d %s, want 200 with an at_ token", r.Status, r.Body)
	}
	var raw map[string]any
	json.Unmarshal(r.Body, &raw)
	for _, k := range []string{"refresh_token", "refresh_token_expires_in"} {
		if _, ok := raw[k]; ok {
			t.Errorf("client_credentials answer has %q, want none", k)
		}
	}
	if got := callAPI(t, srv, r.AccessToken).Status; got != http.StatusOK {
		t.Errorf("API with client_credentials token: status %d, want 200", got)
	}
	if st := srv.Stats(); st.ClientCredentials != 1 {
		t.Errorf("Stats().ClientCredentials = %d, want 1", st.ClientCredentials)
	}
}

func TestFormResponses(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{FormResponses: true})
	defer srv.Close()
	g := srv.Issue()
	tests := []struct {
		name      string
		token     string
		wantKey   string
		wantValue string
	}{
		{"success", g.RefreshToken, "token_type", "Bearer"},
		{"error", "rt_bogus", "error", "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := refresh(t, srv, tt.token)
			if got, want := r.Header.Get("Content-Type"), "application/x-www-form-urlencoded"; got != want {
				t.Errorf("Content-Type = %q, want %q", got, want)
			}
			v, err := url.ParseQuery(string(r.Body))
			if err != nil {
				t.Fatalf("ParseQuery(%q): %v", r.Body, err)
			}
			if got := v.Get(tt.wantKey); got != tt.wantValue {
				t.Errorf("%s = %q, want %q", tt.wantKey, got, tt.wantValue)
			}
		})
	}
	next, _ := srv.Head(g.Family)
	if next.RefreshToken == g.RefreshToken {
		t.Errorf("form refresh did not rotate")
	}
}
