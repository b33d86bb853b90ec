package bearer

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/tokenkit/bearer/bearertest"
)

func TestRetries(t *testing.T) {
	ok := epJSON(200, epTokenBody)
	html500 := epHTML(500, "<html><body><h1>500 Internal Server Error</h1></body></html>")
	html502 := epHTML(502, "<html><body><h1>502 Bad Gateway</h1>nginx</body></html>")
	reset := httpmock.NewErrorResponder(errors.New("connection reset by peer"))
	tests := []struct {
		name         string
		maxRetries   int
		r            httpmock.Responder
		wantCalls    int
		wantErr      bool
		wantStatus   int
		wantAttempts int
	}{
		{name: "500 then 502 then ok", r: epSeq(html500, html502, ok), wantCalls: 3},
		{name: "transport error then ok", r: epSeq(reset, ok), wantCalls: 2},
		{name: "429 then ok", r: epSeq(epJSON(429, `{"error":"slow_down"}`), ok), wantCalls: 2},
		{name: "400 invalid_request", r: epSeq(epJSON(400, `{"error":"invalid_request"}`), ok), wantCalls: 1, wantErr: true, wantStatus: 400, wantAttempts: 1},
		{name: "401 invalid_client", r: epSeq(epJSON(401, `{"error":"invalid_client"}`), ok), wantCalls: 1, wantErr: true, wantStatus: 401, wantAttempts: 1},
		{name: "400 html", r: epSeq(epHTML(400, "<h1>bad</h1>"), ok), wantCalls: 1, wantErr: true, wantStatus: 400, wantAttempts: 1},
		// A 200 cut short has an unknown outcome, like a reset: retried.
		{name: "malformed 200 then ok", r: epSeq(epJSON(200, `{"access_token":`), ok), wantCalls: 2},
		{name: "malformed 200 always", r: epJSON(200, `{"access_token":`), wantCalls: 4, wantErr: true, wantStatus: 200, wantAttempts: 4},
		{name: "unusable 200", r: epSeq(epJSON(200, `{"access_token":"a","token_type":"mac"}`), ok), wantCalls: 1, wantErr: true, wantStatus: 200, wantAttempts: 1},
		{name: "default bound", r: html500, wantCalls: 4, wantErr: true, wantStatus: 500, wantAttempts: 4},
		{name: "MaxRetries 2", maxRetries: 2, r: html500, wantCalls: 3, wantErr: true, wantStatus: 500, wantAttempts: 3},
		{name: "MaxRetries 2 transport", maxRetries: 2, r: reset, wantCalls: 3, wantErr: true, wantAttempts: 3},
		{name: "MaxRetries -1", maxRetries: -1, r: html500, wantCalls: 1, wantErr: true, wantStatus: 500, wantAttempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, mt := epConfig(tt.r)
			cfg.MaxRetries = tt.maxRetries
			tok, err := cfg.refreshGrant(t.Context(), "rt-old")
			if n := mt.GetTotalCallCount(); n != tt.wantCalls {
				t.Errorf("requests = %d, want %d", n, tt.wantCalls)
			}
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("refreshGrant: %v", err)
				}
				if tok.AccessToken != "at-new" {
					t.Errorf("AccessToken = %q, want %q", tok.AccessToken, "at-new")
				}
				return
			}
			var re *RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("refreshGrant error = %v, want a *RetrieveError", err)
			}
			if re.StatusCode != tt.wantStatus {
				t.Errorf("StatusCode = %d, want %d", re.StatusCode, tt.wantStatus)
			}
			if re.Attempts != tt.wantAttempts {
				t.Errorf("Attempts = %d, want %d", re.Attempts, tt.wantAttempts)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name    string
		header  func(now time.Time) string
		minWait time.Duration
	}{
		{name: "seconds", header: func(time.Time) string { return "7" }, minWait: 7 * time.Second},
		// An HTTP date has whole seconds: the wait may be up to one shorter.
		{name: "http date", header: func(now time.Time) string { return now.Add(12 * time.Second).UTC().Format(http.TimeFormat) }, minWait: 11 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var times []time.Time
				mt := httpmock.NewMockTransport()
				tooMany := func(req *http.Request) (*http.Response, error) {
					times = append(times, time.Now())
					resp := httpmock.NewStringResponse(429, `{"error":"slow_down"}`)
					resp.Header.Set("Content-Type", "application/json")
					resp.Header.Set("Retry-After", tt.header(time.Now()))
					return resp, nil
				}
				ok := func(req *http.Request) (*http.Response, error) {
					times = append(times, time.Now())
					return epJSON(200, epTokenBody)(req)
				}
				mt.RegisterResponder(http.MethodPost, epURL, epSeq(tooMany, ok))
				cfg := Config{
					TokenURL:     epURL,
					HTTPClient:   &http.Client{Transport: mt},
					RetryBackoff: time.Millisecond,
				}
				if _, err := cfg.refreshGrant(t.Context(), "rt-old"); err != nil {
					t.Fatalf("refreshGrant: %v", err)
				}
				if len(times) != 2 {
					t.Fatalf("requests = %d, want 2", len(times))
				}
				if waited := times[1].Sub(times[0]); waited < tt.minWait {
					t.Errorf("wait before the retry = %v, want at least %v", waited, tt.minWait)
				}
			})
		})
	}
}

func TestRetryStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		tooMany := httpmock.NewStringResponder(429, "").HeaderSet(http.Header{"Retry-After": {"60"}})
		mt.RegisterResponder(http.MethodPost, epURL, tooMany)
		cfg := Config{TokenURL: epURL, HTTPClient: &http.Client{Transport: mt}}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		start := time.Now()
		_, err := cfg.refreshGrant(ctx, "rt-old")
		var re *RetrieveError
		if !errors.As(err, &re) || re.StatusCode != 429 {
			t.Fatalf("refreshGrant error = %v, want a *RetrieveError with status 429", err)
		}
		if n := mt.GetTotalCallCount(); n != 1 {
			t.Errorf("requests = %d, want 1 (a 60 s wait outlasts the 5 s deadline)", n)
		}
		// Waiting would outlast the deadline: the answer comes at once.
		if d := time.Since(start); d != 0 {
			t.Errorf("refreshGrant took %v of fake time, want 0", d)
		}
	})
}

// TestRetryAfterThenDeadline: a Retry-After that fits in what is left of
// the refresh's time (Config.RefreshTimeout) is waited out once; when the
// next one would outlast it, the refresh ends at once with the server's
// answer, typed.
func TestRetryAfterThenDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		mt.RegisterResponder(http.MethodPost, epURL,
			epJSON(429, `{"error":"temporarily_unavailable"}`).HeaderSet(http.Header{"Retry-After": {"1"}}))
		cfg := Config{TokenURL: epURL, HTTPClient: &http.Client{Transport: mt}, RefreshTimeout: 1500 * time.Millisecond}
		src := NewSource(cfg, NewMemoryStore(&Token{AccessToken: "at-old", RefreshToken: "rt-old", Expiry: time.Now().Add(-time.Hour)}))
		defer src.Close()
		start := time.Now()
		_, err := src.Token(t.Context())
		var re *RetrieveError
		if !errors.As(err, &re) {
			t.Fatalf("Token error = %v, want a *RetrieveError", err)
		}
		if re.StatusCode != 429 || re.ErrorCode != "temporarily_unavailable" || re.RetryAfter != time.Second || re.Attempts != 2 {
			t.Errorf("status, code, RetryAfter, attempts = %d, %q, %v, %d; want 429, temporarily_unavailable, 1s, 2",
				re.StatusCode, re.ErrorCode, re.RetryAfter, re.Attempts)
		}
		if errors.Is(err, ErrReauthorize) {
			t.Errorf("error %v matches ErrReauthorize; an outage must not ask for authorization", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("Token took %v of fake time, want the one wait of 1s", d)
		}
	})
}

func TestRetryAfterParse(t *testing.T) {
	now := epNow
	tests := []struct {
		name string
		v    string
		want time.Duration
	}{
		{"empty", "", 0},
		{"seconds", "120", 120 * time.Second},
		{"negative", "-5", 0},
		{"capped", "999999", time.Hour},
		{"date", now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{"past date", now.Add(-30 * time.Second).Format(http.TimeFormat), 0},
		{"garbage", "soon", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retryAfter(tt.v, now); got != tt.want {
				t.Errorf("retryAfter(%q) = %v, want %v", tt.v, got, tt.want)
			}
		})
	}
}

// containsFold reports whether s contains sub, ignoring case.
func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// TestRetriesLogged: with a Logger, each attempt, its outcome and each
// wait before a retry are logged as they happen, without a secret.
func TestRetriesLogged(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	g := srv.Issue()
	srv.InjectFault(bearertest.Fault{Status: http.StatusServiceUnavailable})
	var buf bytes.Buffer
	cfg := Config{
		TokenURL:     srv.TokenURL(),
		ClientID:     bearertest.DefaultClientID,
		ClientSecret: bearertest.DefaultClientSecret,
		RetryBackoff: time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	tok, err := cfg.refreshGrant(t.Context(), g.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		_, msg, _ := strings.Cut(line, `msg="`)
		msg, _, _ = strings.Cut(msg, `"`)
		got = append(got, msg)
		if !strings.Contains(line, `request="token request (refresh_token)" url=`+srv.TokenURL()) {
			t.Errorf("log line %q does not name the request and its URL", line)
		}
	}
	want := []string{"bearer: sending", "bearer: answered", "bearer: waiting before the next attempt", "bearer: sending", "bearer: answered"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("log = %q, want %q", got, want)
	}
	for _, w := range []string{"attempt=1 outcome=\"bearer: token endpoint: status 503", "attempt=2 outcome=ok", "wait="} {
		if !strings.Contains(buf.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, buf.String())
		}
	}
	for _, secret := range []string{g.RefreshToken, tok.RefreshToken, tok.AccessToken, bearertest.DefaultClientSecret} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("the log holds a secret:\n%s", buf.String())
		}
	}
}
