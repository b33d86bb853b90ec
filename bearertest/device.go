package bearertest

import (
	"crypto/rand"
	"encoding/json"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// deviceCode is a device authorization (RFC 8628) waiting for its user.
type deviceCode struct {
	userCode string
	expiry   time.Time // by Config.Now
	state    string    // "pending", "approved", "denied" or "used"
	interval time.Duration
	lastPoll time.Time // real time: polling is paced in real time
}

// serveDevice is the device authorization endpoint (RFC 8628 section 3.1):
// POST {URL}/device with the client authenticated as at the token
// endpoint. It answers a device code, a user code, where to enter it, how
// long the code lives (ten minutes) and how often to poll.
func (s *Server) serveDevice(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if r.Method != http.MethodPost {
		a := s.errorAnswer(http.StatusMethodNotAllowed, "invalid_request", "the device authorization endpoint accepts only POST")
		a.allow = http.MethodPost
		s.write(w, a)
		return
	}
	var p tokenParams
	if err == nil {
		p, err = parseParams(r.Header.Get("Content-Type"), body)
	}
	if err != nil {
		s.write(w, s.errorAnswer(http.StatusBadRequest, "invalid_request", "malformed request"))
		return
	}
	if a, ok := s.authenticate(r, p); !ok {
		s.count(&s.stats.InvalidClients)
		s.write(w, a)
		return
	}
	d := &deviceCode{userCode: newUserCode(), state: "pending", interval: s.cfg.DeviceInterval}
	code := newToken("dc_")
	s.mu.Lock()
	d.expiry = s.cfg.Now().Add(codeLifetime)
	s.devices[code] = d
	s.stats.DeviceCodes++
	s.mu.Unlock()
	verify := baseURL(r) + "/device/verify"
	b, _ := json.Marshal(map[string]any{
		"device_code":               code,
		"user_code":                 d.userCode,
		"verification_uri":          verify,
		"verification_uri_complete": verify + "?user_code=" + url.QueryEscape(d.userCode),
		"expires_in":                int64(codeLifetime / time.Second),
		"interval":                  max(1, int64(s.cfg.DeviceInterval/time.Second)),
	})
	s.write(w, answer{status: http.StatusOK, contentType: "application/json", body: b})
}

// deviceGrantLocked answers a device_code grant (RFC 8628 section 3.5).
func (s *Server) deviceGrantLocked(p tokenParams, now time.Time) answer {
	d := s.devices[p.DeviceCode]
	switch {
	case d == nil || d.state == "used":
		return s.invalidGrantLocked("unknown or used device code")
	case !now.Before(d.expiry):
		return s.errorAnswer(http.StatusBadRequest, "expired_token", "the device code expired")
	case d.state == "denied":
		return s.errorAnswer(http.StatusBadRequest, "access_denied", "the user denied the request")
	case d.state == "pending":
		real := time.Now()
		tooSoon := !d.lastPoll.IsZero() && real.Sub(d.lastPoll) < d.interval
		d.lastPoll = real
		if tooSoon {
			d.interval += 5 * time.Second
			s.stats.SlowDowns++
			return s.errorAnswer(http.StatusBadRequest, "slow_down", "polling too often")
		}
		return s.errorAnswer(http.StatusBadRequest, "authorization_pending", "the user has not answered yet")
	}
	d.state = "used"
	s.stats.DeviceGrants++
	return s.grantAnswer(s.startFamilyLocked(now), now)
}

// serveVerify is the verification URI: a GET with a user code approves it
// at once, unless Config.Consent asks for the consent page; a GET without
// one shows a form to enter it. A POST decides as its decision says.
func (s *Server) serveVerify(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "malformed request", http.StatusBadRequest)
		return
	}
	userCode := strings.ToUpper(strings.TrimSpace(r.Form.Get("user_code")))
	decision := r.Form.Get("decision")
	if r.Method == http.MethodGet {
		if userCode == "" || s.cfg.Consent {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			verifyTemplate.Execute(w, userCode)
			return
		}
		decision = "approve"
	}
	s.mu.Lock()
	var d *deviceCode
	for _, c := range s.devices {
		if c.userCode == userCode {
			d = c
		}
	}
	ok := d != nil && d.state == "pending" && s.cfg.Now().Before(d.expiry)
	if ok {
		switch decision {
		case "approve":
			d.state = "approved"
			s.stats.Authorizations++
		case "deny":
			d.state = "denied"
			s.stats.Denials++
		default:
			ok = false
		}
	}
	s.mu.Unlock()
	if !ok {
		http.Error(w, "unknown, expired or already answered user code, or no decision", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "The device was "+d.state+". You may close this window.\n")
}

var verifyTemplate = template.Must(template.New("verify").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>bearertest: connect a device</title></head>
<body>
<h1>Connect a device</h1>
<form method="post">
<label>Code shown on the device: <input name="user_code" value="{{.}}"></label>
<button name="decision" value="approve">Approve</button>
<button name="decision" value="deny">Deny</button>
</form>
</body></html>
`))

// newUserCode returns a code a person can type: eight letters without
// vowels (RFC 8628 section 6.1), as XXXX-XXXX.
func newUserCode() string {
	const alphabet = "BCDFGHJKLMNPQRSTVWXZ"
	b := make([]byte, 8)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:4]) + "-" + string(b[4:])
}

// baseURL is the scheme and host the request was sent to.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
