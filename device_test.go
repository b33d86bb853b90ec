package bearer

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenkit/bearer/bearertest"
	"github.com/tokenkit/bearer/internal/issuer"
)

// roundTripFunc is an http.RoundTripper in a func.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// devHarness runs bearertest's handler in memory, so that the device
// grant's waits run on synctest's clock. onPoll, if set, sees each token
// request (numbered from 1) before the server, and may answer it instead.
type devHarness struct {
	srv    *bearertest.Server
	cfg    Config
	mu     sync.Mutex
	polls  []time.Time
	onPoll func(n int, w http.ResponseWriter) bool
}

const devBase = "http://127.0.0.1:8080"

func newDevHarness(t *testing.T, scfg bearertest.Config) *devHarness {
	h := &devHarness{srv: bearertest.NewUnstartedServer(scfg)}
	t.Cleanup(h.srv.Close)
	handler := h.srv.Handler()
	h.cfg = Config{
		TokenURL:      devBase + "/tokens",
		DeviceAuthURL: devBase + "/device",
		ClientID:      bearertest.DefaultClientID,
		ClientSecret:  bearertest.DefaultClientSecret,
		Scopes:        []string{"tickets"},
		HTTPClient: &http.Client{Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
			rec := httptest.NewRecorder()
			if req.URL.Path == "/tokens" {
				h.mu.Lock()
				h.polls = append(h.polls, time.Now())
				n, on := len(h.polls), h.onPoll
				h.mu.Unlock()
				if on != nil && on(n, rec) {
					return rec.Result(), nil
				}
			}
			handler.ServeHTTP(rec, req)
			return rec.Result(), nil
		})},
	}
	return h
}

// decide answers the device's user code as the person at the verification
// URI would.
func (h *devHarness) decide(t *testing.T, userCode, decision string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, devBase+"/device/verify",
		strings.NewReader("user_code="+userCode+"&decision="+decision))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("verification %s = %d %s", decision, rec.Code, rec.Body)
	}
}

func slowDown(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	w.Write([]byte(`{"error":"slow_down"}`))
}

// TestDeviceAuth: the person approves while the device polls; the device
// waits the interval the server asks, and five seconds more after a
// slow_down.
func TestDeviceAuth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newDevHarness(t, bearertest.Config{DeviceInterval: 3 * time.Second})
		var userCode string
		h.onPoll = func(n int, w http.ResponseWriter) bool {
			switch n {
			case 2:
				slowDown(w)
				return true
			case 3:
				h.decide(t, userCode, "approve")
			}
			return false
		}
		var prompted time.Time
		tok, err := h.cfg.DeviceAuth(t.Context(), func(code, uri, complete string) {
			userCode, prompted = code, time.Now()
			if uri != devBase+"/device/verify" || !strings.HasPrefix(complete, uri+"?user_code=") {
				t.Errorf("prompt(%q, %q, %q): want the verification URIs", code, uri, complete)
			}
		})
		if err != nil {
			t.Fatalf("DeviceAuth() = %v", err)
		}
		if tok.RefreshToken == "" {
			t.Error("DeviceAuth() gave no refresh token")
		}
		if got, want := issuer.Of(tok), (issuer.Record{TokenURL: h.cfg.TokenURL, ClientID: bearertest.DefaultClientID}); got != want {
			t.Errorf("record = %+v, want %+v", got, want)
		}
		var gaps []time.Duration
		last := prompted
		for _, p := range h.polls {
			gaps = append(gaps, p.Sub(last))
			last = p
		}
		want := []time.Duration{3 * time.Second, 3 * time.Second, 8 * time.Second}
		if len(gaps) != len(want) || gaps[0] != want[0] || gaps[1] != want[1] || gaps[2] != want[2] {
			t.Errorf("waits before each poll = %v, want %v (the interval, then five seconds more after slow_down)", gaps, want)
		}
		if st := h.srv.Stats(); st.DeviceCodes != 1 || st.DeviceGrants != 1 || st.Authorizations != 1 {
			t.Errorf("server DeviceCodes, DeviceGrants, Authorizations = %d, %d, %d; want 1, 1, 1", st.DeviceCodes, st.DeviceGrants, st.Authorizations)
		}
	})
}

func TestDeviceAuthEnds(t *testing.T) {
	pending := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"authorization_pending"}`))
	}
	tests := []struct {
		name     string
		first    func(h *devHarness, clk *bearertest.Clock, userCode string) // before the first poll
		every    bool                                                        // answer every poll "pending" itself
		wantCode string                                                      // the RetrieveError's
		wantIs   error
	}{
		{name: "denied", first: func(h *devHarness, _ *bearertest.Clock, code string) { h.decide(t, code, "deny") }, wantCode: "access_denied"},
		{name: "code expired at the server", first: func(_ *devHarness, clk *bearertest.Clock, _ string) { clk.Advance(11 * time.Minute) }, wantCode: "expired_token"},
		{name: "nobody answers", every: true, wantIs: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				clk := bearertest.NewClock(time.Now())
				h := newDevHarness(t, bearertest.Config{Now: clk.Now})
				var userCode string
				h.onPoll = func(n int, w http.ResponseWriter) bool {
					if n == 1 && tt.first != nil {
						tt.first(h, clk, userCode)
					}
					if tt.every {
						pending(w)
					}
					return tt.every
				}
				start := time.Now()
				tok, err := h.cfg.DeviceAuth(t.Context(), func(code, _, _ string) { userCode = code })
				if err == nil {
					t.Fatalf("DeviceAuth() = %v, want an error", tok)
				}
				var re *RetrieveError
				if tt.wantCode != "" && (!errors.As(err, &re) || re.ErrorCode != tt.wantCode) {
					t.Errorf("DeviceAuth() = %v, want error code %s", err, tt.wantCode)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("DeviceAuth() = %v, want %v", err, tt.wantIs)
				}
				if tt.every {
					if d := time.Since(start); d != 10*time.Minute {
						t.Errorf("gave up after %v, want the code's lifetime, 10m", d)
					}
					// The last poll and the deadline fall on the same instant.
					if n := len(h.polls); n != 119 && n != 120 {
						t.Errorf("%d polls in 10 minutes, want one every 5 s", n)
					}
				}
				if strings.Contains(err.Error(), bearertest.DefaultClientSecret) {
					t.Errorf("error %q holds the client secret", err)
				}
			})
		})
	}
}

func TestDeviceAuthRefuses(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   string
		wantIs error
	}{
		{"no endpoint", func(c *Config) { c.DeviceAuthURL = "" }, "Config.DeviceAuthURL is empty", nil},
		{"plain http", func(c *Config) { c.DeviceAuthURL = "http://auth.example.test/device" }, "", ErrInsecure},
		{"wrong secret", func(c *Config) { c.ClientSecret = "wrong" }, "device authorization endpoint: status 401: invalid_client", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newDevHarness(t, bearertest.Config{})
				tt.change(&h.cfg)
				prompted := false
				_, err := h.cfg.DeviceAuth(t.Context(), func(string, string, string) { prompted = true })
				if err == nil || prompted {
					t.Fatalf("DeviceAuth() = %v, prompted %t; want an error before any prompt", err, prompted)
				}
				if tt.want != "" && !strings.Contains(err.Error(), tt.want) {
					t.Errorf("DeviceAuth() = %q, want it to say %q", err, tt.want)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("DeviceAuth() = %v, want %v", err, tt.wantIs)
				}
				if st := h.srv.Stats(); st.DeviceCodes != 0 || st.TokenRequests != 0 {
					t.Errorf("server issued %d device codes and got %d token requests, want none", st.DeviceCodes, st.TokenRequests)
				}
			})
		})
	}
}
