package bearer

import (
	"context"
	"errors"
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
