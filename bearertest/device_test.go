package bearertest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
)

// deviceAnswer is the device authorization endpoint's answer.
type deviceAnswer struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

func deviceCode(t *testing.T, srv *bearertest.Server) deviceAnswer {
	t.Helper()
	req := jsonRequest(t, srv, withClient(map[string]string{"scope": "tickets"}))
	req.URL, _ = url.Parse(srv.DeviceAuthURL())
	r := send(t, srv, req)
	if r.Status != http.StatusOK {
		t.Fatalf("device authorization = %d %s", r.Status, r.Body)
	}
	var d deviceAnswer
	if err := json.Unmarshal(r.Body, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func pollDevice(t *testing.T, srv *bearertest.Server, code string) reply {
	t.Helper()
	return send(t, srv, jsonRequest(t, srv, withClient(map[string]string{
		"grant_type":  "urn:ietf:params:oauth:grant-type:device_code",
		"device_code": code,
	})))
}

func visit(t *testing.T, srv *bearertest.Server, method, u string, form url.Values) (int, string) {
	t.Helper()
	var resp *http.Response
	var err error
	if method == http.MethodGet {
		resp, err = srv.Client().Get(u)
	} else {
		resp, err = srv.Client().PostForm(u, form)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDeviceFlow(t *testing.T) {
	clk := newClock()
	srv := bearertest.NewServer(bearertest.Config{Now: clk.Now, DeviceInterval: 2 * time.Second})
	defer srv.Close()
	d := deviceCode(t, srv)
	if d.DeviceCode == "" || len(d.UserCode) != 9 || d.VerificationURI != srv.URL+"/device/verify" ||
		d.VerificationURIComplete != d.VerificationURI+"?user_code="+d.UserCode || d.ExpiresIn != 600 || d.Interval != 2 {
		t.Fatalf("device answer = %+v", d)
	}
	if r := pollDevice(t, srv, d.DeviceCode); r.Error != "authorization_pending" {
		t.Errorf("first poll = %d %s, want authorization_pending", r.Status, r.Error)
	}
	if r := pollDevice(t, srv, d.DeviceCode); r.Error != "slow_down" {
		t.Errorf("a poll sooner than the interval = %d %s, want slow_down", r.Status, r.Error)
	}
	// The page without a code asks for it; with it, a GET approves.
	if status, page := visit(t, srv, http.MethodGet, d.VerificationURI, nil); status != http.StatusOK || !strings.Contains(page, `name="user_code"`) {
		t.Errorf("verification page = %d %q, want a form for the code", status, page)
	}
	if status, page := visit(t, srv, http.MethodGet, d.VerificationURIComplete, nil); status != http.StatusOK || !strings.Contains(page, "approved") {
		t.Errorf("verification with the code = %d %q, want it approved", status, page)
	}
	r := pollDevice(t, srv, d.DeviceCode)
	if r.Status != http.StatusOK || !srv.Alive(r.RefreshToken) {
		t.Fatalf("poll after approval = %d %s, want a live token pair", r.Status, r.Error)
	}
	if r := pollDevice(t, srv, d.DeviceCode); r.Error != "invalid_grant" {
		t.Errorf("poll after the token = %s, want invalid_grant: a device code buys one token", r.Error)
	}
	st := srv.Stats()
	if st.DeviceCodes != 1 || st.DeviceGrants != 1 || st.SlowDowns != 1 || st.Authorizations != 1 {
		t.Errorf("stats = %+v, want 1 device code, grant, slow_down and authorization", st)
	}
}

func TestDeviceFlowEnds(t *testing.T) {
	for _, tt := range []struct {
		name, want string
		act        func(srv *bearertest.Server, clk *clock, d deviceAnswer)
	}{
		{"denied", "access_denied", func(srv *bearertest.Server, _ *clock, d deviceAnswer) {
			visit(t, srv, http.MethodPost, d.VerificationURI, url.Values{"user_code": {strings.ToLower(d.UserCode)}, "decision": {"deny"}})
		}},
		{"expired", "expired_token", func(_ *bearertest.Server, clk *clock, _ deviceAnswer) { clk.Add(10 * time.Minute) }},
		{"unknown", "invalid_grant", func(srv *bearertest.Server, _ *clock, d deviceAnswer) {}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			srv := bearertest.NewServer(bearertest.Config{Now: clk.Now})
			defer srv.Close()
			d := deviceCode(t, srv)
			tt.act(srv, clk, d)
			code := d.DeviceCode
			if tt.name == "unknown" {
				code = "dc_unknown"
			}
			if r := pollDevice(t, srv, code); r.Status != http.StatusBadRequest || r.Error != tt.want {
				t.Errorf("poll = %d %s, want 400 %s", r.Status, r.Error, tt.want)
			}
		})
	}
}

func TestDeviceEndpointRejects(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{Consent: true})
	defer srv.Close()
	req := jsonRequest(t, srv, map[string]string{"client_id": bearertest.DefaultClientID, "client_secret": "wrong"})
	req.URL, _ = url.Parse(srv.DeviceAuthURL())
	if r := send(t, srv, req); r.Status != http.StatusUnauthorized || r.Error != "invalid_client" {
		t.Errorf("device authorization with a wrong secret = %d %s, want 401 invalid_client", r.Status, r.Error)
	}
	get, _ := http.NewRequest(http.MethodGet, srv.DeviceAuthURL(), nil)
	if r := send(t, srv, get); r.Status != http.StatusMethodNotAllowed {
		t.Errorf("GET = %d, want 405", r.Status)
	}
	d := deviceCode(t, srv)
	// With Consent, the code in the link only fills in the form.
	if status, page := visit(t, srv, http.MethodGet, d.VerificationURIComplete, nil); status != http.StatusOK || !strings.Contains(page, `value="`+d.UserCode+`"`) {
		t.Errorf("consent page = %d %q, want the form with the code", status, page)
	}
	if srv.Stats().Authorizations != 0 {
		t.Error("a GET approved the device although Consent is set")
	}
	if status, _ := visit(t, srv, http.MethodPost, d.VerificationURI, url.Values{"user_code": {"BCDF-GHJK"}, "decision": {"approve"}}); status != http.StatusBadRequest {
		t.Errorf("approving an unknown code = %d, want 400", status)
	}
}

// The unstarted server, its handler in a mux of one's own, and TLS.
func TestUnstartedServer(t *testing.T) {
	srv := bearertest.NewUnstartedServer(bearertest.Config{})
	defer srv.Close()
	if srv.URL != "" {
		t.Errorf("URL of an unstarted server = %q, want \"\"", srv.URL)
	}
	mux := http.NewServeMux()
	mux.Handle("/", srv.Handler())
	own := httptest.NewServer(mux) // a server of one's own
	defer own.Close()
	g := srv.Issue()
	req, _ := http.NewRequest(http.MethodGet, own.URL+"/api/x", nil)
	req.Header.Set("Authorization", "Bearer "+g.AccessToken)
	resp, err := own.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the handler's API = %d, want 200", resp.StatusCode)
	}
	// Absolute URLs in answers name the server the request went to.
	dreq, _ := http.NewRequest(http.MethodPost, own.URL+"/device", strings.NewReader(
		"client_id="+bearertest.DefaultClientID+"&client_secret="+bearertest.DefaultClientSecret))
	dreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	dresp, err := own.Client().Do(dreq)
	if err != nil {
		t.Fatal(err)
	}
	var d deviceAnswer
	json.NewDecoder(dresp.Body).Decode(&d)
	dresp.Body.Close()
	if d.VerificationURI != own.URL+"/device/verify" {
		t.Errorf("verification_uri = %q, want it on %s", d.VerificationURI, own.URL)
	}

	tlsSrv := bearertest.NewUnstartedServer(bearertest.Config{})
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	if !strings.HasPrefix(tlsSrv.URL, "https://127.0.0.1:") || tlsSrv.Certificate() == nil {
		t.Fatalf("StartTLS: URL %q, certificate %v; want https and a certificate", tlsSrv.URL, tlsSrv.Certificate())
	}
	if r := refresh(t, tlsSrv, tlsSrv.Issue().RefreshToken); r.Status != http.StatusOK {
		t.Errorf("refresh over TLS = %d, want 200", r.Status)
	}
}
