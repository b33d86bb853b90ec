package bearer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
)

// epURL is the token endpoint the httpmock tests talk to.
const epURL = "https://auth.example.test/tokens"

// epNow is the fake clock of the httpmock tests.
var epNow = time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)

// epTokenBody is a well-formed OpenTicket answer.
const epTokenBody = `{"token_type":"Bearer","expires_in":259200,"access_token":"at-new","refresh_token":"rt-new","refresh_token_expires_in":31535999,"info":{"user":"u1"}}`

// epConfig returns a Config whose token requests go to a fresh httpmock
// transport answering epURL with r (if not nil), on the fake clock epNow,
// with a millisecond retry backoff.
func epConfig(r httpmock.Responder) (Config, *httpmock.MockTransport) {
	mt := httpmock.NewMockTransport()
	if r != nil {
		mt.RegisterResponder(http.MethodPost, epURL, r)
	}
	return Config{
		TokenURL:     epURL,
		ClientID:     "client-1",
		ClientSecret: "secret-1",
		HTTPClient:   &http.Client{Transport: mt},
		RetryBackoff: time.Millisecond,
		Now:          func() time.Time { return epNow },
	}, mt
}

// epJSON answers status with body labelled application/json.
func epJSON(status int, body string) httpmock.Responder {
	return httpmock.NewStringResponder(status, body).HeaderSet(http.Header{"Content-Type": {"application/json"}})
}

// epHTML answers status with body labelled text/html.
func epHTML(status int, body string) httpmock.Responder {
	return httpmock.NewStringResponder(status, body).HeaderSet(http.Header{"Content-Type": {"text/html; charset=utf-8"}})
}

// epSeq answers the i-th request with rs[i], and every later one with the
// last of rs.
func epSeq(rs ...httpmock.Responder) httpmock.Responder {
	var n atomic.Int64
	return func(req *http.Request) (*http.Response, error) {
		i := min(int(n.Add(1))-1, len(rs)-1)
		return rs[i](req)
	}
}

// epRequest is what a responder saw of a token request.
type epRequest struct {
	method, url, contentType, accept string
	body                             []byte
	user, pass                       string
	basic                            bool
}

// epCapture answers with next and records each request in *got.
func epCapture(got *[]epRequest, next httpmock.Responder) httpmock.Responder {
	return func(req *http.Request) (*http.Response, error) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		r := epRequest{
			method:      req.Method,
			url:         req.URL.String(),
			contentType: req.Header.Get("Content-Type"),
			accept:      req.Header.Get("Accept"),
			body:        body,
		}
		r.user, r.pass, r.basic = req.BasicAuth()
		*got = append(*got, r)
		return next(req)
	}
}

// epFields decodes a request body as JSON or form into a flat map,
// failing the test on a non-string JSON value.
func epFields(t *testing.T, r epRequest) map[string]string {
	t.Helper()
	fields := map[string]string{}
	switch r.contentType {
	case "application/json":
		var m map[string]any
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatalf("request body is not a JSON object: %v", err)
		}
		for k, v := range m {
			s, ok := v.(string)
			if !ok {
				t.Fatalf("request field %q = %T, want string", k, v)
			}
			fields[k] = s
		}
	case "application/x-www-form-urlencoded":
		vals, err := url.ParseQuery(string(r.body))
		if err != nil {
			t.Fatalf("request body is not form-encoded: %v", err)
		}
		for k, v := range vals {
			if len(v) != 1 {
				t.Fatalf("request field %q sent %d times, want once", k, len(v))
			}
			fields[k] = v[0]
		}
	default:
		t.Fatalf("request Content-Type = %q, want application/json or application/x-www-form-urlencoded", r.contentType)
	}
	return fields
}

func TestRefreshRequest(t *testing.T) {
	const id, secret = "client id:1/ä", "s&e/c r+t%=" // need escaping in Basic auth
	tests := []struct {
		name            string
		encoding        Encoding
		style           AuthStyle
		wantContentType string
		wantFields      map[string]string
		wantBasic       bool
	}{
		{
			name:            "json in body",
			encoding:        JSON,
			wantContentType: "application/json",
			wantFields:      map[string]string{"grant_type": "refresh_token", "refresh_token": "rt-old", "client_id": id, "client_secret": secret},
		},
		{
			name:            "form in body",
			encoding:        Form,
			wantContentType: "application/x-www-form-urlencoded",
			wantFields:      map[string]string{"grant_type": "refresh_token", "refresh_token": "rt-old", "client_id": id, "client_secret": secret},
		},
		{
			name:            "json basic",
			encoding:        JSON,
			style:           AuthBasic,
			wantContentType: "application/json",
			wantFields:      map[string]string{"grant_type": "refresh_token", "refresh_token": "rt-old"},
			wantBasic:       true,
		},
		{
			name:            "form basic",
			encoding:        Form,
			style:           AuthBasic,
			wantContentType: "application/x-www-form-urlencoded",
			wantFields:      map[string]string{"grant_type": "refresh_token", "refresh_token": "rt-old"},
			wantBasic:       true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []epRequest
			cfg, _ := epConfig(epCapture(&got, epJSON(200, epTokenBody)))
			cfg.ClientID, cfg.ClientSecret = id, secret
			cfg.Encoding, cfg.AuthStyle = tt.encoding, tt.style
			if _, err := cfg.refreshGrant(t.Context(), "rt-old"); err != nil {
				t.Fatalf("refreshGrant: %v", err)
			}
			if len(got) != 1 {
				t.Fatalf("requests = %d, want 1", len(got))
			}
			r := got[0]
			if r.method != http.MethodPost {
				t.Errorf("method = %q, want POST", r.method)
			}
			if r.url != epURL {
				t.Errorf("URL = %q, want %q", r.url, epURL)
			}
			if r.contentType != tt.wantContentType {
				t.Errorf("Content-Type = %q, want %q", r.contentType, tt.wantContentType)
			}
			if r.accept != "application/json" {
				t.Errorf("Accept = %q, want application/json", r.accept)
			}
			if fields := epFields(t, r); !maps.Equal(fields, tt.wantFields) {
				t.Errorf("body fields = %v, want %v", fields, tt.wantFields)
			}
			if r.basic != tt.wantBasic {
				t.Fatalf("Basic auth sent = %t, want %t", r.basic, tt.wantBasic)
			}
			if tt.wantBasic {
				if r.user != url.QueryEscape(id) || r.pass != url.QueryEscape(secret) {
					t.Errorf("Basic auth = %q:%q, want %q:%q", r.user, r.pass, url.QueryEscape(id), url.QueryEscape(secret))
				}
			}
		})
	}
}

func TestRefreshRequestNoClientSecret(t *testing.T) {
	var got []epRequest
	cfg, _ := epConfig(epCapture(&got, epJSON(200, epTokenBody)))
	cfg.ClientSecret = ""
	if _, err := cfg.refreshGrant(t.Context(), "rt-old"); err != nil {
		t.Fatalf("refreshGrant: %v", err)
	}
	want := map[string]string{"grant_type": "refresh_token", "refresh_token": "rt-old", "client_id": "client-1"}
	if fields := epFields(t, got[0]); !maps.Equal(fields, want) {
		t.Errorf("body fields = %v, want %v", fields, want)
	}
}

func TestDefaultTokenURL(t *testing.T) {
	cfg, mt := epConfig(nil)
	cfg.TokenURL = ""
	mt.RegisterResponder(http.MethodPost, DefaultTokenURL, epJSON(200, epTokenBody))
	if _, err := cfg.refreshGrant(t.Context(), "rt-old"); err != nil {
		t.Fatalf("refreshGrant: %v", err)
	}
	key := "POST " + DefaultTokenURL
	if got := mt.GetCallCountInfo()[key]; got != 1 {
		t.Errorf("calls to %s = %d, want 1", key, got)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	const elsewhere = "https://elsewhere.example.test/tokens"
	for _, status := range []int{301, 302, 303, 307, 308} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			cfg, mt := epConfig(httpmock.NewStringResponder(status, "").HeaderSet(http.Header{"Location": {elsewhere}}))
			mt.RegisterResponder(http.MethodPost, elsewhere, epJSON(200, epTokenBody))
			mt.RegisterResponder(http.MethodGet, elsewhere, epJSON(200, epTokenBody))
			_, err := cfg.refreshGrant(t.Context(), "rt-old")
			var re *RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("refreshGrant error = %v, want a *RetrieveError", err)
			}
			if re.StatusCode != status {
				t.Errorf("StatusCode = %d, want %d", re.StatusCode, status)
			}
			info := mt.GetCallCountInfo()
			if n := info["POST "+elsewhere] + info["GET "+elsewhere]; n != 0 {
				t.Errorf("requests to the redirect target = %d, want 0", n)
			}
		})
	}
}

func TestRedirectNotFollowedUserCheckRedirect(t *testing.T) {
	// A user client that would follow redirects must not make the grant
	// follow them, and must be left as it was.
	const elsewhere = "https://elsewhere.example.test/tokens"
	cfg, mt := epConfig(httpmock.NewStringResponder(307, "").HeaderSet(http.Header{"Location": {elsewhere}}))
	mt.RegisterResponder(http.MethodPost, elsewhere, epJSON(200, epTokenBody))
	follow := func(*http.Request, []*http.Request) error { return nil }
	cfg.HTTPClient.CheckRedirect = follow
	if _, err := cfg.refreshGrant(t.Context(), "rt-old"); err == nil {
		t.Errorf("refreshGrant after a 307 = nil error, want one")
	}
	if n := mt.GetCallCountInfo()["POST "+elsewhere]; n != 0 {
		t.Errorf("requests to the redirect target = %d, want 0", n)
	}
	if cfg.HTTPClient.CheckRedirect == nil {
		t.Errorf("user's HTTPClient.CheckRedirect was cleared")
	}
}

func TestInsecureTokenURL(t *testing.T) {
	tests := []struct {
		name         string
		url          string
		allow        bool
		wantInsecure bool
		wantOtherErr bool
	}{
		{name: "https", url: "https://auth.example.test/tokens"},
		{name: "http remote", url: "http://auth.example.test/tokens", wantInsecure: true},
		{name: "http remote ip", url: "http://192.0.2.10/tokens", wantInsecure: true},
		{name: "http loopback lookalike", url: "http://127.0.0.1.example.test/tokens", wantInsecure: true},
		{name: "http localhost lookalike", url: "http://localhost.example.test/tokens", wantInsecure: true},
		{name: "http 127.0.0.1", url: "http://127.0.0.1:8080/tokens"},
		{name: "http 127.1.2.3", url: "http://127.1.2.3/tokens"},
		{name: "http ::1", url: "http://[::1]:8080/tokens"},
		{name: "http localhost", url: "http://localhost:8080/tokens"},
		{name: "http remote allowed", url: "http://auth.example.test/tokens", allow: true},
		{name: "ftp", url: "ftp://auth.example.test/tokens", wantOtherErr: true},
		{name: "relative", url: "/tokens", wantOtherErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, mt := epConfig(nil)
			mt.RegisterNoResponder(epJSON(200, epTokenBody))
			cfg.TokenURL = tt.url
			cfg.AllowInsecureHTTP = tt.allow
			_, err := cfg.refreshGrant(t.Context(), "rt-old")
			if got := errors.Is(err, ErrInsecure); got != tt.wantInsecure {
				t.Errorf("errors.Is(%v, ErrInsecure) = %t, want %t", err, got, tt.wantInsecure)
			}
			wantErr := tt.wantInsecure || tt.wantOtherErr
			if (err != nil) != wantErr {
				t.Errorf("refreshGrant error = %v, want error %t", err, wantErr)
			}
			wantCalls := 1
			if wantErr {
				wantCalls = 0
			}
			if n := mt.GetTotalCallCount(); n != wantCalls {
				t.Errorf("requests = %d, want %d", n, wantCalls)
			}
		})
	}
}

func TestInsecureTokenURLSource(t *testing.T) {
	cfg, mt := epConfig(nil)
	mt.RegisterNoResponder(epJSON(200, epTokenBody))
	cfg.TokenURL = "http://auth.example.test/tokens"
	src := NewSource(cfg, NewMemoryStore(&Token{AccessToken: "at-old", RefreshToken: "rt-old", Expiry: epNow.Add(-time.Hour)}))
	defer src.Close()
	_, err := src.Token(t.Context())
	if !errors.Is(err, ErrInsecure) {
		t.Errorf("Token error = %v, want ErrInsecure", err)
	}
	if n := mt.GetTotalCallCount(); n != 0 {
		t.Errorf("requests = %d, want 0", n)
	}
}

func TestRefreshExpiredNoRequest(t *testing.T) {
	tests := []struct {
		name string
		tok  Token
	}{
		{"refresh token expired", Token{AccessToken: "at-old", RefreshToken: "rt-old", Expiry: epNow.Add(-time.Hour), RefreshExpiry: epNow.Add(-time.Minute)}},
		{"refresh token expires now", Token{AccessToken: "at-old", RefreshToken: "rt-old", Expiry: epNow.Add(-time.Hour), RefreshExpiry: epNow}},
		{"no refresh token", Token{AccessToken: "at-old", Expiry: epNow.Add(-time.Hour)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, mt := epConfig(epJSON(200, epTokenBody))
			src := NewSource(cfg, NewMemoryStore(&tt.tok))
			defer src.Close()
			tok, err := src.Token(t.Context())
			if !errors.Is(err, ErrReauthorize) {
				t.Errorf("Token() = %v, %v; want ErrReauthorize", tok, err)
			}
			if n := mt.GetTotalCallCount(); n != 0 {
				t.Errorf("requests = %d, want 0", n)
			}
		})
	}
}

func TestSourceInvalidGrant(t *testing.T) {
	cfg, mt := epConfig(epJSON(400, `{"error":"invalid_grant","error_description":"spent"}`))
	var hooked []error
	cfg.Hooks.Reauthorize = func(_ context.Context, err error) { hooked = append(hooked, err) }
	src := NewSource(cfg, NewMemoryStore(&Token{AccessToken: "at-old", RefreshToken: "rt-old", Expiry: epNow.Add(-time.Hour)}))
	defer src.Close()
	_, err := src.Token(t.Context())
	if !errors.Is(err, ErrReauthorize) {
		t.Errorf("Token error = %v, want ErrReauthorize", err)
	}
	var re *RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Errorf("Token error = %v, want a *RetrieveError with invalid_grant", err)
	}
	if n := mt.GetTotalCallCount(); n != 1 {
		t.Errorf("requests = %d, want 1", n)
	}
	if len(hooked) != 1 || !errors.Is(hooked[0], ErrReauthorize) {
		t.Errorf("Reauthorize hook got %v, want one ErrReauthorize", hooked)
	}
}

// Request secrets of FuzzRetrieve: none may reach an error.
const (
	fzClientSecret = "SECRETclient-0123456789"
	fzCode         = "SECRETcode-0123456789"
	fzVerifier     = "SECRETverifier-0123456789-abcdefghijklmnopqrstu"
	fzRefresh      = "SECRETrefresh-0123456789"
)

// fzRetrieveSeeds are token endpoint answers for FuzzRetrieve: status,
// Content-Type, body, mode (see FuzzRetrieve).
var fzRetrieveSeeds = []struct {
	status int
	ct     string
	body   string
	mode   uint8
}{
	{200, "application/json", fzTokenSeeds[0].body, 0},
	{200, "application/json", fzTokenSeeds[0].body, 1},
	{200, "application/x-www-form-urlencoded", fzTokenSeeds[3].body, 2 | 4},
	{200, "application/json", `{"access_token":"SECRETat0123456789","token_type":"mac"}`, 1},
	{400, "application/json", `{"error":"invalid_grant","error_description":"refresh token SECRETrefresh-0123456789 was already used"}`, 1},
	{401, "application/json", `{"error":"invalid_client","error_description":"client_secret=SECRETclient-0123456789 is wrong"}`, 8},
	{500, "text/html", `<html><body><h1>500</h1><pre>client_secret=SECRETclient-0123456789&code=SECRETcode-0123456789&code_verifier=SECRETverifier-0123456789</pre></body></html>`, 0},
	{502, "text/html", "<pre>grant: SECRETrefresh-0123456789\n\tclient: SECRETclient-0123456789</pre>", 1 | 4},
	{429, "application/json", `{"error":"slow_down"}`, 2},
	{503, "", "", 0},
	{200, "application/json", `{"access_token":"SECRETat0123456789","expires_in":259200,`, 16},
	{200, "application/json", `{"access_token":"`, 32},
	{500, "text/plain", `oops `, 32},
	{302, "text/html", `<a href="https://evil.example/">moved</a>`, 0},
	{200, "application/json", `{"error":"invalid_grant","error_description":"SECRETrefresh-0123456789"}`, 1},
	{200, "text/plain", `access_token=SECRETat0123456789&expires_in=-5`, 1},
	{100, "application/json", `{}`, 0},
	{599, "application/json", `{"error":"` + strings.Repeat("e", 300) + `"}`, 0},
}

// FuzzRetrieve drives a token request against an in-memory endpoint whose
// answer is fuzzed. mode: bits 0-1 the grant (authorization_code,
// refresh_token, client_credentials), bit 2 form-encoded requests, bit 3
// HTTP Basic client authentication, bit 4 a body that fails after its
// bytes, bit 5 a body that repeats forever.
func FuzzRetrieve(f *testing.F) {
	for _, s := range fzRetrieveSeeds {
		f.Add(s.status, s.ct, []byte(s.body), s.mode)
	}
	f.Fuzz(func(t *testing.T, status int, contentType string, data []byte, mode uint8) {
		status = fzStatus(status)
		body := &fzBody{data: data, endless: mode&32 != 0}
		if mode&16 != 0 {
			body.errAfter = errFzRead
		}
		calls := 0
		cfg := Config{
			TokenURL:     "https://auth.example.test/tokens",
			ClientID:     "client-1",
			ClientSecret: fzClientSecret,
			MaxRetries:   -1,
			Now:          func() time.Time { return fzNow },
			HTTPClient: &http.Client{Transport: fzRoundTripper{func(req *http.Request) (*http.Response, error) {
				calls++
				if req.Body != nil {
					io.Copy(io.Discard, req.Body)
					req.Body.Close()
				}
				h := http.Header{}
				if contentType != "" {
					h.Set("Content-Type", contentType)
				}
				return &http.Response{
					Status:        fmt.Sprintf("%d fuzzed", status),
					StatusCode:    status,
					Proto:         "HTTP/1.1",
					ProtoMajor:    1,
					ProtoMinor:    1,
					Header:        h,
					Body:          body,
					ContentLength: -1,
					Request:       req,
				}, nil
			}}},
		}
		if mode&4 != 0 {
			cfg.Encoding = Form
		}
		if mode&8 != 0 {
			cfg.AuthStyle = AuthBasic
		}
		secrets := []string{fzClientSecret}
		var tok *Token
		var err error
		switch mode & 3 {
		case 0:
			secrets = append(secrets, fzCode, fzVerifier)
			tok, err = cfg.Exchange(t.Context(), fzCode, "https://app.example.test/callback", fzVerifier)
		case 1:
			secrets = append(secrets, fzRefresh)
			tok, err = cfg.refreshGrant(t.Context(), fzRefresh)
		default:
			cfg.Scopes = []string{"read", "write"}
			tok, err = cfg.clientCredentialsGrant(t.Context())
		}

		if calls != 1 {
			t.Errorf("requests sent = %d, want 1 (MaxRetries -1)", calls)
		}
		if body.n > maxBody+1 {
			t.Errorf("bytes read from the answer = %d, want at most %d", body.n, maxBody+1)
		}
		if body.closed != 1 {
			t.Errorf("answer body closed %d times, want 1", body.closed)
		}
		if tok == nil && err == nil {
			t.Fatalf("retrieve = nil, nil; want a token or an error")
		}
		if tok != nil && err != nil && (tok.AccessToken != "" || tok.RefreshToken == "" || status/100 != 2) {
			// With an error, a token only carries the refresh token
			// that a successful but unusable answer rotated to.
			t.Fatalf("retrieve = %v, %v; want only a salvaged refresh token beside an error", tok, err)
		}
		if err != nil {
			var re *RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("retrieve error %v is a %T, want a *RetrieveError", err, err)
			}
			if re.StatusCode != status {
				t.Errorf("RetrieveError.StatusCode = %d, want %d", re.StatusCode, status)
			}
			msg := err.Error()
			for _, s := range secrets {
				if strings.Contains(msg, s) {
					t.Errorf("retrieve error %q holds the request secret %q", msg, s)
				}
			}
			for _, s := range []string{re.ErrorCode, re.ErrorDescription, re.ErrorURI, re.Body} {
				for _, sec := range secrets {
					if strings.Contains(s, sec) {
						t.Errorf("RetrieveError field %q holds the request secret %q", s, sec)
					}
				}
			}
			if status >= 200 && status < 300 {
				// A successful answer carries tokens: no excerpt of it.
				if re.Body != "" {
					t.Errorf("RetrieveError.Body = %q for a %d answer, want none", re.Body, status)
				}
				allowed := re.ErrorCode + "\x00" + re.ErrorDescription + "\x00" + re.ErrorURI
				if w, derr := decodeToken(data, contentType); derr == nil {
					allowed += "\x00" + fmt.Sprintf("%.20q", w.TokenType)
				}
				fzNoLeak(t, "retrieve", err, fzSecretRuns(data), allowed)
			}
			return
		}
		if status < 200 || status >= 300 {
			t.Errorf("retrieve = a token from a %d answer", status)
		}
		if tok.AccessToken == "" || !fzHeaderSafe(tok.AccessToken) || !vschar(tok.RefreshToken) {
			t.Errorf("retrieve = token %q refresh %q, want a non-empty header-safe access token and a VSCHAR refresh token", tok.AccessToken, tok.RefreshToken)
		}
		if !strings.EqualFold(tok.TokenType, "bearer") {
			t.Errorf("TokenType = %q, want bearer in any case", tok.TokenType)
		}
		if !tok.Expiry.IsZero() && tok.Expiry.Before(fzNow) {
			t.Errorf("Expiry = %v, before the time of receipt %v", tok.Expiry, fzNow)
		}
	})
}
