package bearer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/tokenkit/bearer/bearertest"
)

func TestTokenResponse(t *testing.T) {
	const info = `{ "user": {"id": 42, "name": "Zoë"},  "scopes": ["a","b"] }`
	tests := []struct {
		name        string
		contentType string
		body        string
		want        Token
	}{
		{
			name:        "openticket",
			contentType: "application/json",
			body:        `{"token_type":"Bearer","expires_in":259200,"access_token":"at-1","refresh_token":"rt-1","refresh_token_expires_in":31535999,"info":` + info + `}`,
			want: Token{AccessToken: "at-1", TokenType: "Bearer", RefreshToken: "rt-1",
				Expiry: epNow.Add(259200 * time.Second), RefreshExpiry: epNow.Add(31535999 * time.Second), Info: []byte(info)},
		},
		{
			name:        "json with charset",
			contentType: "application/json; charset=utf-8",
			body:        `{"token_type":"Bearer","expires_in":60,"access_token":"at-1","refresh_token":"rt-1"}`,
			want:        Token{AccessToken: "at-1", TokenType: "Bearer", RefreshToken: "rt-1", Expiry: epNow.Add(time.Minute)},
		},
		{
			name: "no content type",
			body: `{"token_type":"Bearer","expires_in":60,"access_token":"at-1"}`,
			want: Token{AccessToken: "at-1", TokenType: "Bearer", Expiry: epNow.Add(time.Minute)},
		},
		{
			name:        "expires_in as string",
			contentType: "application/json",
			body:        `{"token_type":"Bearer","expires_in":"3600","access_token":"at-1","refresh_token_expires_in":"7200"}`,
			want:        Token{AccessToken: "at-1", TokenType: "Bearer", Expiry: epNow.Add(time.Hour), RefreshExpiry: epNow.Add(2 * time.Hour)},
		},
		{
			name:        "expires_in zero",
			contentType: "application/json",
			body:        `{"token_type":"Bearer","expires_in":0,"access_token":"at-1"}`,
			want:        Token{AccessToken: "at-1", TokenType: "Bearer"},
		},
		{
			name:        "expires_in absent",
			contentType: "application/json",
			body:        `{"token_type":"Bearer","access_token":"at-1"}`,
			want:        Token{AccessToken: "at-1", TokenType: "Bearer"},
		},
		{
			name:        "expires_in null",
			contentType: "application/json",
			body:        `{"token_type":"Bearer","access_token":"at-1","expires_in":null}`,
			want:        Token{AccessToken: "at-1", TokenType: "Bearer"},
		},
		{
			name:        "token_type absent",
			contentType: "application/json",
			body:        `{"access_token":"at-1"}`,
			want:        Token{AccessToken: "at-1", TokenType: "Bearer"},
		},
		{
			name:        "token_type upper case",
			contentType: "application/json",
			body:        `{"access_token":"at-1","token_type":"BEARER"}`,
			want:        Token{AccessToken: "at-1", TokenType: "BEARER"},
		},
		{
			name:        "token_type lower case",
			contentType: "application/json",
			body:        `{"access_token":"at-1","token_type":"bearer"}`,
			want:        Token{AccessToken: "at-1", TokenType: "bearer"},
		},
		{
			name:        "info null",
			contentType: "application/json",
			body:        `{"access_token":"at-1","info":null}`,
			want:        Token{AccessToken: "at-1", TokenType: "Bearer"},
		},
		{
			name:        "unknown fields ignored",
			contentType: "application/json",
			body:        `{"access_token":"at-1","scope":"read write","id_token":"x"}`,
			want:        Token{AccessToken: "at-1", TokenType: "Bearer"},
		},
		{
			name:        "form",
			contentType: "application/x-www-form-urlencoded",
			body:        `access_token=at-1&token_type=Bearer&refresh_token=rt-1&expires_in=60&refresh_token_expires_in=120&info=%7B%22a%22%3A1%7D`,
			want: Token{AccessToken: "at-1", TokenType: "Bearer", RefreshToken: "rt-1",
				Expiry: epNow.Add(time.Minute), RefreshExpiry: epNow.Add(2 * time.Minute), Info: []byte(`{"a":1}`)},
		},
		{
			name:        "text/plain form",
			contentType: "text/plain; charset=utf-8",
			body:        `access_token=at-1&token_type=bearer&expires_in=60`,
			want:        Token{AccessToken: "at-1", TokenType: "bearer", Expiry: epNow.Add(time.Minute)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httpmock.NewStringResponder(200, tt.body)
			if tt.contentType != "" {
				r = r.HeaderSet(http.Header{"Content-Type": {tt.contentType}})
			}
			cfg, _ := epConfig(r)
			got, err := cfg.refreshGrant(t.Context(), "rt-old")
			if err != nil {
				t.Fatalf("refreshGrant: %v", err)
			}
			tkTokenEqual(t, got, &tt.want)

			parsed, err := parseTokenResponse([]byte(tt.body), tt.contentType, epNow)
			if err != nil {
				t.Fatalf("parseTokenResponse: %v", err)
			}
			tkTokenEqual(t, parsed, &tt.want)
		})
	}
}

// tkTokenEqual compares every field of got and want, Info byte for byte.
func tkTokenEqual(t *testing.T, got, want *Token) {
	t.Helper()
	if got.AccessToken != want.AccessToken {
		t.Errorf("AccessToken = %q, want %q", got.AccessToken, want.AccessToken)
	}
	if got.TokenType != want.TokenType {
		t.Errorf("TokenType = %q, want %q", got.TokenType, want.TokenType)
	}
	if got.RefreshToken != want.RefreshToken {
		t.Errorf("RefreshToken = %q, want %q", got.RefreshToken, want.RefreshToken)
	}
	if !got.Expiry.Equal(want.Expiry) {
		t.Errorf("Expiry = %v, want %v", got.Expiry, want.Expiry)
	}
	if !got.RefreshExpiry.Equal(want.RefreshExpiry) {
		t.Errorf("RefreshExpiry = %v, want %v", got.RefreshExpiry, want.RefreshExpiry)
	}
	if !bytes.Equal(got.Info, want.Info) || (got.Info == nil) != (want.Info == nil) {
		t.Errorf("Info = %q, want %q", got.Info, want.Info)
	}
}

func TestTokenResponseRejected(t *testing.T) {
	t.Parallel() // touches nothing shared
	big := `{"access_token":"` + strings.Repeat("a", 2<<20) + `"}`
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		spent       bool // rotated, and the new refresh token cannot be kept
	}{
		{name: "missing access_token", body: `{"token_type":"Bearer","expires_in":60,"refresh_token":"rt-1"}`},
		{name: "empty access_token", body: `{"access_token":"","token_type":"Bearer"}`},
		{name: "token_type mac", body: `{"access_token":"at-1","token_type":"mac"}`},
		{name: "token_type bearer with space", body: `{"access_token":"at-1","token_type":"Bearer "}`},
		{name: "access token with CRLF", body: `{"access_token":"at-1\r\nX-Evil: 1","token_type":"Bearer"}`},
		{name: "access token with NUL", body: `{"access_token":"at\u0000-1"}`},
		{name: "access token with tab", body: `{"access_token":"at\t1"}`},
		{name: "access token with DEL", body: `{"access_token":"at\u007f1"}`},
		{name: "access token with space", body: `{"access_token":"at 1"}`},
		{name: "refresh token with LF", body: `{"access_token":"at-1","refresh_token":"rt\n1"}`, spent: true},
		{name: "negative expires_in", body: `{"access_token":"at-1","expires_in":-1}`},
		{name: "negative expires_in string", body: `{"access_token":"at-1","expires_in":"-60"}`},
		{name: "negative refresh_token_expires_in", body: `{"access_token":"at-1","refresh_token_expires_in":-60}`},
		{name: "expires_in not a number", body: `{"access_token":"at-1","expires_in":"soon"}`},
		{name: "expires_in bool", body: `{"access_token":"at-1","expires_in":true}`},
		{name: "expires_in NaN", body: `{"access_token":"at-1","expires_in":"NaN"}`},
		{name: "expires_in Inf", body: `{"access_token":"at-1","expires_in":"Inf"}`},
		{name: "access_token a number", body: `{"access_token":12345}`},
		{name: "not json", body: `<html><body>Welcome</body></html>`},
		{name: "json array", body: `[{"access_token":"at-1"}]`},
		{name: "json string", body: `"at-1"`},
		{name: "json null", body: `null`},
		{name: "empty body", body: ``},
		{name: "truncated", body: `{"access_token":"at-1","token_ty`},
		{name: "over 1 MiB", body: big},
		{name: "over 1 MiB on 500", status: 500, body: big},
		{name: "form CRLF", contentType: "application/x-www-form-urlencoded", body: `access_token=at%0D%0A1`},
		{name: "form negative expires_in", contentType: "application/x-www-form-urlencoded", body: `access_token=at-1&expires_in=-5`},
		{name: "form missing access_token", contentType: "application/x-www-form-urlencoded", body: `token_type=Bearer`},
		{name: "form over 1 MiB", contentType: "application/x-www-form-urlencoded", body: "access_token=at-1&padding=" + strings.Repeat("a", 2<<20)},
		{name: "form token_type mac", contentType: "application/x-www-form-urlencoded", body: `access_token=at-1&token_type=mac`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status := tt.status
			if status == 0 {
				status = 200
			}
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			cfg, mt := epConfig(httpmock.NewStringResponder(status, tt.body).HeaderSet(http.Header{"Content-Type": {ct}}))
			cfg.MaxRetries = -1
			var tok *Token
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("refreshGrant panicked: %v", p)
					}
				}()
				tok, err = cfg.refreshGrant(t.Context(), "rt-old")
			}()
			if err == nil {
				t.Fatalf("refreshGrant = %v, want an error", tok)
			}
			if tok != nil && (tok.AccessToken != "" || tok.RefreshToken == "") {
				t.Errorf("refreshGrant token = %v, want nil, or only the new refresh token, with the error", tok)
			}
			var re *RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("refreshGrant error = %v (%T), want a *RetrieveError", err, err)
			}
			if re.StatusCode != status {
				t.Errorf("StatusCode = %d, want %d", re.StatusCode, status)
			}
			if errors.Is(err, ErrReauthorize) != tt.spent {
				t.Errorf("errors.Is(%v, ErrReauthorize) = %v, want %v", err, !tt.spent, tt.spent)
			}
			if status == 200 && re.Body != "" {
				t.Errorf("Body = %q, want empty for a 200 answer (it carries tokens)", re.Body)
			}
			if n := mt.GetTotalCallCount(); n != 1 {
				t.Errorf("requests = %d, want 1", n)
			}
			if len(err.Error()) > 1000 {
				t.Errorf("len(err.Error()) = %d, want a short message", len(err.Error()))
			}
			if status != 200 {
				return
			}
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("parseTokenResponse panicked: %v", p)
					}
				}()
				tok, err = parseTokenResponse([]byte(tt.body), ct, epNow)
			}()
			if err == nil || tok != nil {
				t.Errorf("parseTokenResponse = %v, %v; want nil and an error", tok, err)
			}
		})
	}
}

// tkCountingBody is a response body that counts the bytes read from it and
// its Close calls.
type tkCountingBody struct {
	r      io.Reader
	n      atomic.Int64
	closed atomic.Int32
}

func (b *tkCountingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *tkCountingBody) Close() error {
	b.closed.Add(1)
	return nil
}

// tkSniff returns the Content-Type for a body-cap case by its name.
func tkSniff(name string) string {
	if strings.Contains(name, "form") {
		return "application/x-www-form-urlencoded"
	}
	return "application/json"
}

// tkEndlessReader yields 'a' forever.
type tkEndlessReader struct{}

func (tkEndlessReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

func TestTokenResponseBodyCap(t *testing.T) {
	t.Parallel() // touches nothing shared
	tests := []struct {
		name   string
		status int
		body   func() io.Reader
	}{
		{"200 of 2 MiB", 200, func() io.Reader {
			return io.MultiReader(strings.NewReader(`{"access_token":"`), strings.NewReader(strings.Repeat("a", 2<<20)), strings.NewReader(`"}`))
		}},
		{"500 of 2 MiB", 500, func() io.Reader { return strings.NewReader(strings.Repeat("<p>oops</p>", 2<<20/11)) }},
		// Bounded, so that a regression fails instead of exhausting memory.
		{"200 of 64 MiB", 200, func() io.Reader {
			return io.MultiReader(strings.NewReader(`{"access_token":"`), io.LimitReader(tkEndlessReader{}, 64<<20))
		}},
		// A form answer stays parseable when cut: only the size check
		// rejects it.
		{"200 form of 2 MiB", 200, func() io.Reader {
			return strings.NewReader("access_token=at-1&token_type=Bearer&padding=" + strings.Repeat("a", 2<<20))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := &tkCountingBody{r: tt.body()}
			cfg, _ := epConfig(func(req *http.Request) (*http.Response, error) {
				return &http.Response{
					StatusCode:    tt.status,
					Header:        http.Header{"Content-Type": {tkSniff(tt.name)}},
					Body:          body,
					ContentLength: -1,
					Request:       req,
				}, nil
			})
			cfg.MaxRetries = -1
			_, err := cfg.refreshGrant(t.Context(), "rt-old")
			var re *RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("refreshGrant error = %v, want a *RetrieveError", err)
			}
			if n := body.n.Load(); n > maxBody+1 {
				t.Errorf("bytes read = %d, want at most %d", n, maxBody+1)
			}
			if n := body.closed.Load(); n != 1 {
				t.Errorf("body closed %d times, want 1", n)
			}
		})
	}
}

func TestTokenResponseBodyClosed(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{"ok", 200, epTokenBody},
		{"invalid_grant", 400, `{"error":"invalid_grant"}`},
		{"html 500", 500, `<h1>oops</h1>`},
		{"malformed", 200, `{`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bodies []*tkCountingBody
			cfg, _ := epConfig(func(req *http.Request) (*http.Response, error) {
				b := &tkCountingBody{r: strings.NewReader(tt.body)}
				bodies = append(bodies, b)
				return &http.Response{StatusCode: tt.status, Header: http.Header{"Content-Type": {"application/json"}}, Body: b, ContentLength: -1, Request: req}, nil
			})
			cfg.MaxRetries = 2
			cfg.refreshGrant(t.Context(), "rt-old")
			if len(bodies) == 0 {
				t.Fatal("no request sent")
			}
			for i, b := range bodies {
				if n := b.closed.Load(); n != 1 {
					t.Errorf("body %d closed %d times, want 1", i, n)
				}
			}
		})
	}
}

func TestTokenFormResponsesBearertest(t *testing.T) {
	now := time.Date(2030, time.June, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	srv := bearertest.NewServer(bearertest.Config{FormResponses: true, Now: clock, AccessLifetime: time.Hour, RefreshLifetime: 48 * time.Hour})
	defer srv.Close()
	g := srv.Issue()
	cfg := Config{
		TokenURL:     srv.TokenURL(),
		ClientID:     bearertest.DefaultClientID,
		ClientSecret: bearertest.DefaultClientSecret,
		HTTPClient:   srv.Client(),
		Now:          clock,
	}
	tok, err := cfg.refreshGrant(t.Context(), g.RefreshToken)
	if err != nil {
		t.Fatalf("refreshGrant: %v", err)
	}
	head, alive := srv.Head(g.Family)
	if !alive {
		t.Fatalf("family is not alive after a refresh")
	}
	want := &Token{AccessToken: head.AccessToken, TokenType: tok.TokenType, RefreshToken: head.RefreshToken,
		Expiry: now.Add(time.Hour), RefreshExpiry: now.Add(48 * time.Hour), Info: tok.Info}
	tkTokenEqual(t, tok, want)
	if !strings.EqualFold(tok.TokenType, "bearer") {
		t.Errorf("TokenType = %q, want Bearer", tok.TokenType)
	}
	if tok.Info == nil {
		t.Errorf("Info = nil, want the info object from the form answer")
	}
}

func TestTokenKeepsRefreshToken(t *testing.T) {
	oldExpiry := epNow.Add(30 * 24 * time.Hour)
	tests := []struct {
		name              string
		body              string
		wantRefresh       string
		wantRefreshExpiry time.Time
	}{
		{
			name:              "no refresh_token",
			body:              `{"token_type":"Bearer","expires_in":3600,"access_token":"at-new"}`,
			wantRefresh:       "rt-old",
			wantRefreshExpiry: oldExpiry,
		},
		{
			name:              "empty refresh_token",
			body:              `{"token_type":"Bearer","expires_in":3600,"access_token":"at-new","refresh_token":""}`,
			wantRefresh:       "rt-old",
			wantRefreshExpiry: oldExpiry,
		},
		{
			name:              "no refresh_token, new refresh lifetime",
			body:              `{"token_type":"Bearer","expires_in":3600,"access_token":"at-new","refresh_token_expires_in":60}`,
			wantRefresh:       "rt-old",
			wantRefreshExpiry: epNow.Add(time.Minute),
		},
		{
			name:              "rotated",
			body:              `{"token_type":"Bearer","expires_in":3600,"access_token":"at-new","refresh_token":"rt-new"}`,
			wantRefresh:       "rt-new",
			wantRefreshExpiry: time.Time{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, mt := epConfig(epJSON(200, tt.body))
			store := NewMemoryStore(&Token{AccessToken: "at-old", RefreshToken: "rt-old", Expiry: epNow.Add(-time.Minute), RefreshExpiry: oldExpiry})
			src := NewSource(cfg, store)
			defer src.Close()
			tok, err := src.Token(t.Context())
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if n := mt.GetTotalCallCount(); n != 1 {
				t.Errorf("requests = %d, want 1", n)
			}
			if tok.AccessToken != "at-new" {
				t.Errorf("AccessToken = %q, want %q", tok.AccessToken, "at-new")
			}
			if tok.RefreshToken != tt.wantRefresh {
				t.Errorf("RefreshToken = %q, want %q", tok.RefreshToken, tt.wantRefresh)
			}
			if !tok.RefreshExpiry.Equal(tt.wantRefreshExpiry) {
				t.Errorf("RefreshExpiry = %v, want %v", tok.RefreshExpiry, tt.wantRefreshExpiry)
			}
			saved, err := store.Load(t.Context())
			if err != nil {
				t.Fatalf("store Load: %v", err)
			}
			if saved.AccessToken != "at-new" || saved.RefreshToken != tt.wantRefresh {
				t.Errorf("stored token = %q/%q, want %q/%q", saved.AccessToken, saved.RefreshToken, "at-new", tt.wantRefresh)
			}
		})
	}
}

func FuzzDecodeToken(f *testing.F) {
	for _, s := range fzTokenSeeds {
		f.Add([]byte(s.body), s.contentType)
	}
	f.Fuzz(func(t *testing.T, data []byte, contentType string) {
		secrets := fzSecretRuns(data)
		w, err := decodeToken(data, contentType)
		if err != nil {
			if w != nil {
				t.Errorf("decodeToken = %+v, %v; want no wire token with an error", w, err)
			}
			fzNoLeak(t, "decodeToken", err, secrets, "")
			return
		}
		if w == nil {
			t.Fatal("decodeToken = nil, nil")
		}
		if w.Info != nil && !json.Valid(w.Info) {
			t.Errorf("Info = %q, not valid JSON", w.Info)
		}
		tok, err := w.token(fzNow)
		ptok, perr := parseTokenResponse(data, contentType, fzNow)
		switch {
		case w.Error != "":
			var re *RetrieveError
			if !errors.As(perr, &re) || ptok != nil {
				t.Errorf("parseTokenResponse of an error answer = %v, %v; want a *RetrieveError", ptok, perr)
			}
		case (perr == nil) != (err == nil) && len(data) <= maxBody:
			t.Errorf("parseTokenResponse error %v, token() error %v; want both or neither", perr, err)
		case perr == nil:
			fzSameToken(t, "parseTokenResponse", ptok, tok)
		default:
			fzNoLeak(t, "parseTokenResponse", perr, append(fzSecretRuns(data), w.AccessToken, w.RefreshToken), fmt.Sprintf("%.20q", w.TokenType))
		}
		if err != nil {
			if tok != nil {
				t.Errorf("token() = %v, %v; want no token with an error", tok, err)
			}
			// token_type is shown on purpose (%.20q): it is not a secret.
			secrets = append(secrets, w.AccessToken, w.RefreshToken)
			fzNoLeak(t, "token", err, secrets, fmt.Sprintf("%.20q", w.TokenType))
			return
		}
		if tok.AccessToken == "" || !fzHeaderSafe(tok.AccessToken) {
			t.Errorf("AccessToken = %q, want non-empty and header-safe", tok.AccessToken)
		}
		if !vschar(tok.RefreshToken) {
			t.Errorf("RefreshToken = %q, want VSCHAR only", tok.RefreshToken)
		}
		if !strings.EqualFold(tok.TokenType, "bearer") {
			t.Errorf("TokenType = %q, want bearer in any case", tok.TokenType)
		}
		if !tok.Expiry.IsZero() && tok.Expiry.Before(fzNow) {
			t.Errorf("Expiry = %v, before the time of receipt %v", tok.Expiry, fzNow)
		}
		if !tok.RefreshExpiry.IsZero() && tok.RefreshExpiry.Before(fzNow) {
			t.Errorf("RefreshExpiry = %v, before the time of receipt %v", tok.RefreshExpiry, fzNow)
		}
		// The printed forms depend on the secrets only through whether
		// they are empty.
		other := *tok
		other.AccessToken, other.RefreshToken = "x", ""
		if tok.RefreshToken != "" {
			other.RefreshToken = "x"
		}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			if got, want := fmt.Sprintf(verb, tok), fmt.Sprintf(verb, &other); got != want {
				t.Errorf("Sprintf(%q, tok) = %q; it depends on the secrets (with others: %q)", verb, got, want)
			}
		}
	})
}
