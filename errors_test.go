package bearer

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/tokenkit/bearer/bearertest"
)

// Every error says "bearer:" once, however deep the chain, and still
// unwraps to the typed errors a caller branches on.
func TestErrorsReadOnce(t *testing.T) {
	f := newFixture(t, bearertest.Config{})
	ctx := t.Context()
	missing := NewSource(f.config(), NewFileStore(filepath.Join(t.TempDir(), "token.json")))
	defer missing.Close()

	spent := f.token()
	f.source(NewMemoryStore(f.token())).Refresh(ctx, f.token()) // spends it
	interruptedStore := NewFileStore(filepath.Join(t.TempDir(), "token.json"))
	if err := interruptedStore.Save(ctx, spent); err != nil {
		t.Fatal(err)
	}
	lease, err := interruptedStore.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lease.Begin(ctx, spent)
	lease.Unlock(ctx)
	interrupted := f.source(interruptedStore)

	unreadable := filepath.Join(t.TempDir(), "token.json")
	if err := os.Mkdir(unreadable, 0o700); err != nil {
		t.Fatal(err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	tests := []struct {
		name string
		err  func() error
		want []error
	}{
		{"no token stored", func() error { _, err := missing.Token(ctx); return err }, []error{ErrNoToken}},
		{"interrupted and rejected", func() error {
			f.clock.Advance(101 * time.Second)
			_, err := interrupted.Token(ctx)
			return err
		}, []error{ErrInterrupted, ErrReauthorize}},
		{"unreadable store", func() error {
			_, err := f.source(NewFileStore(unreadable)).Token(ctx)
			return err
		}, nil},
		{"cancelled", func() error { _, err := missing.Token(cancelled); return err }, []error{context.Canceled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err()
			if err == nil {
				t.Fatal("no error")
			}
			if n := strings.Count(err.Error(), "bearer:"); n != 1 || !strings.HasPrefix(err.Error(), "bearer: ") {
				t.Errorf("error says \"bearer:\" %d times: %q", n, err)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("error %q does not match %v", err, w)
				}
			}
		})
	}
}

func TestErrorAnswer(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		wantCode   string
		wantDesc   string
		wantReauth bool
	}{
		{
			name:       "invalid_grant",
			status:     400,
			body:       `{"error":"invalid_grant","error_description":"The refresh token was already used"}`,
			wantCode:   "invalid_grant",
			wantDesc:   "The refresh token was already used",
			wantReauth: true,
		},
		{
			name:     "invalid_request",
			status:   400,
			body:     `{"error":"invalid_request","error_description":"missing grant_type"}`,
			wantCode: "invalid_request",
			wantDesc: "missing grant_type",
		},
		{
			name:     "invalid_client",
			status:   401,
			body:     `{"error":"invalid_client"}`,
			wantCode: "invalid_client",
		},
		{
			name:       "invalid_grant on 200",
			status:     200,
			body:       `{"error":"invalid_grant"}`,
			wantCode:   "invalid_grant",
			wantReauth: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, mt := epConfig(epJSON(tt.status, tt.body))
			_, err := cfg.refreshGrant(t.Context(), "rt-old")
			var re *RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("refreshGrant error = %v, want a *RetrieveError", err)
			}
			if re.StatusCode != tt.status {
				t.Errorf("StatusCode = %d, want %d", re.StatusCode, tt.status)
			}
			if re.ErrorCode != tt.wantCode {
				t.Errorf("ErrorCode = %q, want %q", re.ErrorCode, tt.wantCode)
			}
			if re.ErrorDescription != tt.wantDesc {
				t.Errorf("ErrorDescription = %q, want %q", re.ErrorDescription, tt.wantDesc)
			}
			if got := errors.Is(err, ErrReauthorize); got != tt.wantReauth {
				t.Errorf("errors.Is(err, ErrReauthorize) = %t, want %t", got, tt.wantReauth)
			}
			if n := mt.GetTotalCallCount(); n != 1 {
				t.Errorf("requests = %d, want 1 (never retried)", n)
			}
		})
	}
}

func TestErrorAnswerRedactsEcho(t *testing.T) {
	const rt, secret = "RT-ECHO-3c1d", "CS-ECHO-77aa"
	tests := []struct {
		name   string
		status int
		r      httpmock.Responder
	}{
		{"invalid_grant description", 400, epJSON(400, `{"error":"invalid_grant","error_description":"token `+rt+` for client secret `+secret+` is spent"}`)},
		{"error code", 400, epJSON(400, `{"error":"bad_`+rt+`","error_uri":"https://x.test/?s=`+secret+`"}`)},
		{"html page", 400, epHTML(400, `<html><body>Bad request: refresh_token=`+rt+`&client_secret=`+secret+`</body></html>`)},
		{"not json", 400, epJSON(400, `refresh_token=`+rt+` client_secret=`+secret)},
		{"html 5xx", 503, epHTML(503, `<pre>{"refresh_token":"`+rt+`","client_secret":"`+secret+`"}</pre>`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := epConfig(tt.r)
			cfg.ClientSecret = secret
			cfg.MaxRetries = -1
			_, err := cfg.refreshGrant(t.Context(), rt)
			var re *RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("refreshGrant error = %v, want a *RetrieveError", err)
			}
			if re.StatusCode != tt.status {
				t.Errorf("StatusCode = %d, want %d", re.StatusCode, tt.status)
			}
			for _, s := range []string{rt, secret} {
				for what, text := range map[string]string{
					"err.Error()":      err.Error(),
					"Body":             re.Body,
					"ErrorCode":        re.ErrorCode,
					"ErrorDescription": re.ErrorDescription,
					"ErrorURI":         re.ErrorURI,
				} {
					if containsFold(text, s) {
						t.Errorf("%s = %q, holds the secret %q", what, text, s)
					}
				}
			}
		})
	}
}

func TestRetrieveErrorIs(t *testing.T) {
	tests := []struct {
		name string
		err  *RetrieveError
		want bool
	}{
		{"invalid_grant", &RetrieveError{StatusCode: 400, ErrorCode: "invalid_grant"}, true},
		{"invalid_client", &RetrieveError{StatusCode: 401, ErrorCode: "invalid_client"}, false},
		{"500", &RetrieveError{StatusCode: 500}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errors.Is(tt.err, ErrReauthorize); got != tt.want {
				t.Errorf("errors.Is(%v, ErrReauthorize) = %t, want %t", tt.err, got, tt.want)
			}
			if errors.Is(tt.err, ErrNoToken) {
				t.Errorf("errors.Is(%v, ErrNoToken) = true, want false", tt.err)
			}
		})
	}
}

func TestRetrieveErrorUnwrap(t *testing.T) {
	cause := errors.New("dial failed")
	cfg, _ := epConfig(httpmock.NewErrorResponder(cause))
	cfg.MaxRetries = -1
	_, err := cfg.refreshGrant(t.Context(), "rt-old")
	if !errors.Is(err, cause) {
		t.Errorf("refreshGrant error = %v, want it to wrap %v", err, cause)
	}
	var re *RetrieveError
	if !errors.As(err, &re) || re.StatusCode != 0 {
		t.Errorf("refreshGrant error = %#v, want a *RetrieveError with StatusCode 0", err)
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
	t.Parallel() // touches nothing shared
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

func TestSecretsTokenResponse(t *testing.T) {
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
			tok, err := parseTokenResponse([]byte(tt.body), tt.contentType, epNow)
			if err == nil {
				t.Fatalf("parseTokenResponse = %v, want an error", tok)
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

func TestSecretsInsecureError(t *testing.T) {
	cfg := secConfig()
	cfg.TokenURL = "http://auth.example.test/tokens"
	_, err := cfg.refreshGrant(t.Context(), secRT)
	if !errors.Is(err, ErrInsecure) {
		t.Fatalf("refreshGrant = %v, want ErrInsecure", err)
	}
	secErrCheck(t, err)
}
