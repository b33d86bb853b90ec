package bearer

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
)

// Distinctive secrets: none may appear in any printed form.
const (
	secAT = "AT-SECRET-7f3a"
	secRT = "RT-SECRET-91bc"
	secCS = "CS-SECRET-55de"
)

var secAll = []string{secAT, secRT, secCS}

// secCheck fails if text holds any of secrets.
func secCheck(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	if len(secrets) == 0 {
		secrets = secAll
	}
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s holds the secret %q: %s", what, s, text)
		}
	}
}

func secToken() Token {
	return Token{
		AccessToken:   secAT,
		TokenType:     "Bearer",
		RefreshToken:  secRT,
		Expiry:        epNow.Add(time.Hour),
		RefreshExpiry: epNow.Add(24 * time.Hour),
		Info:          []byte(`{"user":"u1"}`),
	}
}

func secConfig() Config {
	cfg, _ := epConfig(nil)
	cfg.ClientSecret = secCS
	return cfg
}

// secHolder is a user struct that holds a Token, as applications do.
type secHolder struct {
	Name  string
	Tok   Token
	Ptr   *Token
	Cfg   Config
	CfgP  *Config
	Slice []Token
	Map   map[string]*Token
}

var secVerbs = []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v", "%20s", "%-40v"}

func TestSecretsFmt(t *testing.T) {
	tok := secToken()
	cfg := secConfig()
	holder := secHolder{Name: "h", Tok: tok, Ptr: &tok, Cfg: cfg, CfgP: &cfg, Slice: []Token{tok}, Map: map[string]*Token{"k": &tok}}
	values := []struct {
		name string
		v    any
	}{
		{"Token", tok},
		{"*Token", &tok},
		{"Config", cfg},
		{"*Config", &cfg},
		{"holder", holder},
		{"*holder", &holder},
		{"[]Token", []Token{tok}},
		{"[]*Token", []*Token{&tok}},
		{"map", map[string]Token{"k": tok}},
		{"anonymous struct", struct{ T Token }{tok}},
	}
	for _, v := range values {
		t.Run(v.name, func(t *testing.T) {
			for _, verb := range secVerbs {
				secCheck(t, fmt.Sprintf("Sprintf(%q, %s)", verb, v.name), fmt.Sprintf(verb, v.v))
			}
			secCheck(t, "Sprint", fmt.Sprint(v.v))
			secCheck(t, "Sprintln", fmt.Sprintln(v.v))
			secCheck(t, "Errorf", fmt.Errorf("wrapping %v: %w", v.v, errors.New("x")).Error())
		})
	}
	// The methods themselves.
	secCheck(t, "Token.String", tok.String())
	secCheck(t, "Token %#v", fmt.Sprintf("%#v", tok))
	secCheck(t, "Config.String", cfg.String())
	secCheck(t, "Config %#v", fmt.Sprintf("%#v", cfg))
}

func TestSecretsFmtShowsNonSecrets(t *testing.T) {
	// Redaction must not hide what is safe and useful to see.
	tok := secToken()
	cfg := secConfig()
	tests := []struct {
		name string
		got  string
		want []string
	}{
		{"Token", fmt.Sprintf("%v", tok), []string{"Bearer", "[redacted]", "2031-03-04T06:06:07Z"}},
		{"empty Token", fmt.Sprintf("%v", Token{}), []string{`AccessToken:""`}},
		{"Config", fmt.Sprintf("%v", cfg), []string{epURL, "client-1", "[redacted]"}},
		{"default Config", fmt.Sprintf("%v", Config{}), []string{DefaultTokenURL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, w := range tt.want {
				if !strings.Contains(tt.got, w) {
					t.Errorf("%s printed = %q, want it to contain %q", tt.name, tt.got, w)
				}
			}
		})
	}
}

// secBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type secBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *secBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *secBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSecretsSlog(t *testing.T) {
	tok := secToken()
	cfg := secConfig()
	handlers := []struct {
		name string
		new  func(w *secBuffer) slog.Handler
	}{
		{"json", func(w *secBuffer) slog.Handler {
			return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})
		}},
		{"text", func(w *secBuffer) slog.Handler {
			return slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})
		}},
	}
	for _, h := range handlers {
		t.Run(h.name, func(t *testing.T) {
			var buf secBuffer
			l := slog.New(h.new(&buf))
			l.Debug("token", "tok", tok)
			l.Debug("token pointer", "tok", &tok)
			l.Info("config", "cfg", cfg)
			l.Info("config pointer", "cfg", &cfg)
			l.LogAttrs(t.Context(), slog.LevelDebug, "attrs", slog.Any("tok", tok), slog.Any("cfg", &cfg))
			l.With("tok", tok).WithGroup("g").Warn("with", "cfg", cfg)
			l.Debug("group", slog.Group("g", "tok", &tok, "cfg", cfg))
			out := buf.String()
			if strings.Count(out, "\n") != 7 {
				t.Fatalf("log has %d lines, want 7:\n%s", strings.Count(out, "\n"), out)
			}
			secCheck(t, "log", out)
			for _, w := range []string{"client-1", "Bearer"} {
				if !strings.Contains(out, w) {
					t.Errorf("log does not contain %q:\n%s", w, out)
				}
			}
		})
	}
}

// secRefreshErr refreshes secRT with client secret secCS against an
// httpmock endpoint answering r once, and returns the error.
func secRefreshErr(t *testing.T, enc Encoding, r httpmock.Responder) error {
	t.Helper()
	cfg := secConfig()
	cfg.Encoding = enc
	cfg.MaxRetries = -1
	cfg.HTTPClient.Transport.(*httpmock.MockTransport).RegisterResponder(http.MethodPost, epURL, r)
	tok, err := cfg.refreshGrant(t.Context(), secRT)
	if err == nil {
		t.Fatalf("refreshGrant = %v, want an error", tok)
	}
	return err
}

// secEcho answers status with a body made by page from the raw request
// body, as error pages that echo the request do.
func secEcho(status int, contentType string, page func(reqBody string) string) httpmock.Responder {
	return func(req *http.Request) (*http.Response, error) {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		resp := httpmock.NewStringResponse(status, page(string(b)))
		resp.Header.Set("Content-Type", contentType)
		return resp, nil
	}
}

// secErrCheck checks every printed form of err.
func secErrCheck(t *testing.T, err error, secrets ...string) {
	t.Helper()
	secCheck(t, "err.Error()", err.Error(), secrets...)
	for _, verb := range []string{"%v", "%+v", "%#v", "%q"} {
		secCheck(t, "Sprintf("+verb+", err)", fmt.Sprintf(verb, err), secrets...)
	}
	var re *RetrieveError
	if errors.As(err, &re) {
		for what, s := range map[string]string{"Body": re.Body, "ErrorCode": re.ErrorCode, "ErrorDescription": re.ErrorDescription, "ErrorURI": re.ErrorURI} {
			secCheck(t, "RetrieveError."+what, s, secrets...)
		}
	}
}

func TestSecretsRetrieveErrors(t *testing.T) {
	all := secAT + " " + secRT + " " + secCS
	// What was sent, which error answers can echo; the access token is
	// not sent with the refresh grant.
	sent := secRT + " " + secCS
	tests := []struct {
		name string
		enc  Encoding
		r    httpmock.Responder
	}{
		{"invalid_grant echoing", JSON, epJSON(400, `{"error":"invalid_grant","error_description":"refresh token `+secRT+` of client secret `+secCS+` was used"}`)},
		{"error code echoing", JSON, epJSON(400, `{"error":"`+secRT+`","error_uri":"https://x.test/`+secCS+`"}`)},
		{"invalid_client echoing", JSON, epJSON(401, `{"error":"invalid_client","error_description":"bad secret `+secCS+`"}`)},
		{"500 html echoing", JSON, epHTML(500, `<html><body><h1>Internal error</h1><pre>refresh_token=`+secRT+` client_secret=`+secCS+`</pre></body></html>`)},
		{"502 plain echoing", JSON, httpmock.NewStringResponder(502, sent)},
		{"500 json echoing", JSON, epJSON(500, `{"message":"`+sent+`"}`)},
		{"429 echoing", JSON, epJSON(429, `{"error":"slow_down","error_description":"`+sent+`"}`)},
		{"400 form echoing", JSON, httpmock.NewStringResponder(400, "error=invalid_grant&error_description="+url.QueryEscape(sent)).HeaderSet(http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})},
		{"request echoed json", JSON, secEcho(500, "text/html", func(b string) string { return "<pre>" + b + "</pre>" })},
		{"request echoed form", Form, secEcho(500, "text/html", func(b string) string { return "<pre>" + b + "</pre>" })},
		{"request echoed in description", JSON, secEcho(400, "application/json", func(b string) string {
			return `{"error":"invalid_request","error_description":"cannot parse ` + strings.ReplaceAll(b, `"`, `\"`) + `"}`
		})},
		{"malformed 200 truncated", JSON, epJSON(200, `{"access_token":"`+secAT+`","refresh_token":"`+secRT+`","inf`)},
		{"malformed 200 wrong type", JSON, epJSON(200, `{"access_token":"`+secAT+`","refresh_token":"`+secRT+`","expires_in":{"x":"`+secCS+`"}}`)},
		{"malformed 200 lifetime", JSON, epJSON(200, `{"access_token":"`+secAT+`","expires_in":"`+secCS+`"}`)},
		{"malformed 200 access token type", JSON, epJSON(200, `{"access_token":["`+secAT+`"],"refresh_token":"`+secRT+`"}`)},
		{"malformed 200 CRLF", JSON, epJSON(200, `{"access_token":"`+secAT+`\r\n","refresh_token":"`+secRT+`"}`)},
		{"malformed 200 mac", JSON, epJSON(200, `{"access_token":"`+secAT+`","refresh_token":"`+secRT+`","token_type":"mac"}`)},
		{"malformed 200 no access token", JSON, epJSON(200, `{"refresh_token":"`+secRT+`","info":"`+secCS+`"}`)},
		{"malformed 200 html", JSON, epHTML(200, `<html>`+all+`</html>`)},
		{"malformed 200 array", JSON, epJSON(200, `["`+secAT+`","`+secRT+`"]`)},
		{"malformed 200 huge", JSON, epJSON(200, `{"access_token":"`+secAT+strings.Repeat("x", 2<<20)+`"}`)},
		{"huge 500", JSON, epHTML(500, sent+strings.Repeat("x", 2<<20))},
		{"transport error", JSON, httpmock.NewErrorResponder(errors.New("connection reset"))},
		{"redirect", JSON, httpmock.NewStringResponder(307, sent).HeaderSet(http.Header{"Location": {"https://elsewhere.example.test/?" + secCS}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secErrCheck(t, secRefreshErr(t, tt.enc, tt.r))
		})
	}
}

func TestSecretsParseTokenResponse(t *testing.T) {
	tests := []struct {
		name, contentType, body string
	}{
		{"truncated", "application/json", `{"access_token":"` + secAT + `","refresh_token":"` + secRT + `","inf`},
		{"wrong type", "application/json", `{"access_token":"` + secAT + `","refresh_token":"` + secRT + `","expires_in":{"x":"` + secCS + `"}}`},
		{"lifetime", "application/json", `{"access_token":"` + secAT + `","expires_in":"` + secCS + `"}`},
		{"CRLF", "application/json", `{"access_token":"` + secAT + `\r\n","refresh_token":"` + secRT + `"}`},
		{"mac", "application/json", `{"access_token":"` + secAT + `","refresh_token":"` + secRT + `","token_type":"mac"}`},
		{"array", "application/json", `["` + secAT + `","` + secRT + `"]`},
		{"html", "text/html", `<html>` + secAT + `</html>`},
		{"form CRLF", "application/x-www-form-urlencoded", "access_token=" + secAT + "%0D%0A&refresh_token=" + secRT},
		{"form lifetime", "application/x-www-form-urlencoded", "access_token=" + secAT + "&expires_in=" + secCS},
		{"huge", "application/json", `{"access_token":"` + secAT + strings.Repeat("x", 2<<20) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := ParseTokenResponse([]byte(tt.body), tt.contentType, epNow)
			if err == nil {
				t.Fatalf("ParseTokenResponse = %v, want an error", tok)
			}
			secErrCheck(t, err)
		})
	}
}

func TestSecretsRetrieveErrorsEncodedEcho(t *testing.T) {
	// Secrets with characters that the request encoding escapes: an
	// error page echoing the raw request shows them escaped, which is no
	// less a leak.
	const rt = "RT/SECRET+91bc=="
	const cs = "CS&SECRET<55de>"
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("BUG: excerpt (errors.go) removes secrets only as sent verbatim, not url- or JSON-escaped as the request carried them")
		}
	})
	basic := base64.StdEncoding.EncodeToString([]byte("c:" + url.QueryEscape(cs)))
	escaped := []string{rt, cs, url.QueryEscape(rt), url.QueryEscape(cs), `CS\u0026SECRET\u003c55de\u003e`, `CS\\u0026SECRET\\u003c55de\\u003e`, basic}
	echoBody := secEcho(500, "text/plain", func(b string) string { return b })
	echoAuth := func(req *http.Request) (*http.Response, error) {
		resp := httpmock.NewStringResponse(500, "Authorization: "+req.Header.Get("Authorization"))
		resp.Header.Set("Content-Type", "text/plain")
		return resp, nil
	}
	tests := []struct {
		name  string
		enc   Encoding
		style AuthStyle
		r     httpmock.Responder
	}{
		{"json", JSON, AuthInBody, echoBody},
		{"form", Form, AuthInBody, echoBody},
		{"basic header", JSON, AuthBasic, echoAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The echo is short enough that the excerpt holds all of it.
			cfg, mt := epConfig(tt.r)
			cfg.ClientID = "c"
			cfg.ClientSecret = cs
			cfg.Encoding = tt.enc
			cfg.AuthStyle = tt.style
			cfg.MaxRetries = -1
			_, err := cfg.refreshGrant(t.Context(), rt)
			if err == nil {
				t.Fatal("refreshGrant = nil error, want one")
			}
			if n := mt.GetTotalCallCount(); n != 1 {
				t.Fatalf("requests = %d, want 1", n)
			}
			secErrCheck(t, err, escaped...)
		})
	}
}

func TestSecretsExchangeErrors(t *testing.T) {
	const code, verifier = "CODE-SECRET-4e4e", "VERIFIER-SECRET-0a0a-0123456789abcdefghijklmn"
	cfg := secConfig()
	cfg.MaxRetries = -1
	cfg.HTTPClient.Transport.(*httpmock.MockTransport).RegisterResponder(http.MethodPost, epURL,
		secEcho(400, "application/json", func(b string) string {
			return `{"error":"invalid_grant","error_description":"` + strings.ReplaceAll(b, `"`, `'`) + `"}`
		}))
	_, err := cfg.Exchange(t.Context(), code, "https://app.example.test/cb", verifier)
	if !errors.Is(err, ErrReauthorize) {
		t.Fatalf("Exchange error = %v, want invalid_grant", err)
	}
	secErrCheck(t, err, code, verifier, secCS)
}

func TestSecretsStoreErrors(t *testing.T) {
	key, err := NewAESGCM(ccKey(9))
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := NewAESGCM(ccKey(10))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		data  string
		codec Codec
	}{
		{"garbage", "garbage " + secAT + " " + secRT, nil},
		{"truncated", `{"version":1,"token":{"access_token":"` + secAT + `","refresh_token":"` + secRT, nil},
		{"wrong type", `{"version":1,"token":{"access_token":"` + secAT + `","refresh_token":["` + secRT + `"]}}`, nil},
		{"unknown field", `{"version":1,"token":{"access_token":"` + secAT + `"},"` + secRT + `":1}`, nil},
		{"bad expiry", `{"version":1,"token":{"access_token":"` + secAT + `","expiry":"` + secRT + `"}}`, nil},
		{"CRLF", `{"version":1,"token":{"access_token":"` + secAT + `\r\n","refresh_token":"` + secRT + `"}}`, nil},
		{"wrong version", `{"version":7,"token":{"access_token":"` + secAT + `","refresh_token":"` + secRT + `"}}`, nil},
		{"plain under codec", `{"version":1,"token":{"access_token":"` + secAT + `","refresh_token":"` + secRT + `"}}`, key},
		{"huge", strings.Repeat(secAT, 1<<17), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := NewFileStore(filepath.Join(t.TempDir(), "token.json"))
			fs.Codec = tt.codec
			if err := os.WriteFile(fs.path, []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := fs.Load(t.Context())
			if err == nil {
				t.Fatal("Load = nil error, want one")
			}
			secErrCheck(t, err)

			// Through a Source, with the Logger on.
			var buf secBuffer
			cfg := secConfig()
			cfg.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			src := NewSource(cfg, fs)
			_, err = src.Token(t.Context())
			if cerr := src.Close(); cerr != nil {
				t.Errorf("Close: %v", cerr)
			}
			if err == nil {
				t.Fatal("Source.Token = nil error, want one")
			}
			secErrCheck(t, err)
			secCheck(t, "log", buf.String())
		})
	}
	t.Run("wrong key", func(t *testing.T) {
		fs := NewFileStore(filepath.Join(t.TempDir(), "token.json"))
		fs.Codec = key
		tok := secToken()
		if err := fs.Save(t.Context(), &tok); err != nil {
			t.Fatal(err)
		}
		fs2 := NewFileStore(fs.path)
		fs2.Codec = otherKey
		_, err := fs2.Load(t.Context())
		if !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Load with the wrong key = %v, want ErrDecrypt", err)
		}
		secErrCheck(t, err)
	})
	t.Run("UnmarshalToken", func(t *testing.T) {
		for _, data := range []string{secAT, `{"access_token":"` + secAT + `"`, `{"access_token":["` + secAT + `"]}`, `{"expiry":"` + secRT + `","access_token":"x"}`} {
			_, err := unmarshalToken([]byte(data))
			if err == nil {
				t.Fatalf("unmarshalToken(%q) = nil error, want one", data)
			}
			secErrCheck(t, err)
		}
	})
}

func TestSecretsSourceLog(t *testing.T) {
	handlers := []struct {
		name string
		new  func(w *secBuffer) slog.Handler
	}{
		{"json", func(w *secBuffer) slog.Handler {
			return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})
		}},
		{"text", func(w *secBuffer) slog.Handler {
			return slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})
		}},
	}
	for _, h := range handlers {
		t.Run(h.name, func(t *testing.T) {
			var buf secBuffer
			now := epNow
			var mu sync.Mutex // guards now
			clock := func() time.Time {
				mu.Lock()
				defer mu.Unlock()
				return now
			}
			advance := func(d time.Duration) {
				mu.Lock()
				now = now.Add(d)
				mu.Unlock()
			}
			const newAT, newRT = "AT-SECRET-NEW-1111", "RT-SECRET-NEW-2222"
			ok := epJSON(200, `{"token_type":"Bearer","expires_in":3600,"access_token":"`+newAT+`","refresh_token":"`+newRT+`","info":{"u":1}}`)
			// Servers can echo only what they were sent: the refresh
			// token being spent and the client secret.
			fail500 := secEcho(500, "text/html", func(b string) string { return "<pre>" + b + "</pre>" })
			grant := secEcho(400, "application/json", func(b string) string {
				return `{"error":"invalid_grant","error_description":"` + strings.ReplaceAll(b, `"`, `'`) + `"}`
			})
			cfg, mt := epConfig(epSeq(ok, fail500, fail500, grant))
			cfg.ClientSecret = secCS
			cfg.MaxRetries = 1
			cfg.Now = clock
			cfg.Logger = slog.New(h.new(&buf))
			var hookErrs []error
			cfg.Hooks.RefreshFinished = func(_ context.Context, _ time.Duration, err error) {
				if err != nil {
					hookErrs = append(hookErrs, err)
				}
			}
			cfg.Hooks.Reauthorize = func(_ context.Context, err error) { hookErrs = append(hookErrs, err) }
			store := NewMemoryStore(&Token{AccessToken: secAT, RefreshToken: secRT, Expiry: epNow.Add(-time.Minute)})
			src := NewSource(cfg, store)

			// A refresh that works.
			tok, err := src.Token(t.Context())
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if tok.AccessToken != newAT {
				t.Fatalf("AccessToken = %q, want the refreshed one", tok.AccessToken)
			}
			// The new token expires: the next refresh fails twice with
			// 500, then the server rejects the grant.
			advance(2 * time.Hour)
			if _, err := src.Token(t.Context()); err == nil {
				t.Fatal("Token after 500s = nil error, want one")
			} else {
				secErrCheck(t, err, secAT, secRT, secCS, newAT, newRT)
			}
			if _, err := src.Token(t.Context()); !errors.Is(err, ErrReauthorize) {
				t.Fatalf("Token after invalid_grant = %v, want ErrReauthorize", err)
			} else {
				secErrCheck(t, err, secAT, secRT, secCS, newAT, newRT)
			}
			if err := src.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if n := mt.GetTotalCallCount(); n != 4 {
				t.Errorf("requests = %d, want 4", n)
			}
			out := buf.String()
			for _, level := range []string{"DEBUG", "WARN", "ERROR"} {
				if !strings.Contains(out, level) {
					t.Errorf("log has no %s line:\n%s", level, out)
				}
			}
			secCheck(t, "Source log", out, secAT, secRT, secCS, newAT, newRT)
			for _, err := range hookErrs {
				secErrCheck(t, err, secAT, secRT, secCS, newAT, newRT)
			}
			if len(hookErrs) == 0 {
				t.Errorf("hooks got no errors, want the failures")
			}
			secCheck(t, "Stats", fmt.Sprintf("%+v", src.Stats()), secAT, secRT, secCS, newAT, newRT)
		})
	}
}

func TestSecretsInsecureError(t *testing.T) {
	cfg := secConfig()
	cfg.TokenURL = "http://auth.example.test/tokens"
	_, err := cfg.refreshGrant(t.Context(), secRT)
	if !errors.Is(err, ErrInsecure) {
		t.Fatalf("refreshGrant = %v, want ErrInsecure", err)
	}
	secErrCheck(t, err)
}
